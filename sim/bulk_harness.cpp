// Bulk RTL runner: the Verilated spikeforge_top ("core" top) driven from C++, no cocotb.
//
// Built by sim/bulk.py with `verilator --cc --exe --build`, once per parameter set, next to
// a generated sf_ports.h (SF_PROBE_POPS(X): X(0) X(1) ... one per population; SF_LEARN: 1 if
// the top has the learn/label/lr_shift ports; SF_EVENT_INPUT: 1 if it has the stored input
// raster's from_raster/raster_* ports, held at 0: every sample runs from its pixels). Usage:
//
//     harness JOB RESULT FIRST COUNT
//
// runs samples FIRST .. FIRST+COUNT-1 of the job file and writes the result file; both formats
// are documented in sim/bulk.py (little endian). The sequence per sample is that of
// sim/tb_network.py: write the pixels, pulse start, clock until done while recording every
// spike of every population from the probe ports (step, neuron), then the hardware's cycle
// counter, the clock edges counted here and the prediction; then wait for the sample's end
// item on the readout stream, which is drained all along with ready high on about half the
// cycles (a fixed xorshift pattern). Progress lines "progress N" go to stdout.
// Exit status: 0 ok, 2 bad arguments or job file, 3 a sample ran past the cycle limit or its
// end item never came, 4 the inter-layer FIFO overflowed.

#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "Vspikeforge_top.h"
#include "verilated.h"
#include "sf_ports.h"

namespace {

const char JOB_MAGIC[8] = {'S', 'F', 'B', 'J', 'O', 'B', '1', '\0'};
const char RESULT_MAGIC[8] = {'S', 'F', 'B', 'R', 'E', 'S', '1', '\0'};

[[noreturn]] void die(int code, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    std::fprintf(stderr, "bulk harness: error: ");
    std::vfprintf(stderr, fmt, args);
    std::fprintf(stderr, "\n");
    va_end(args);
    std::exit(code);
}

struct Reader {
    FILE* f;
    const char* path;
    template <typename T> void read(T* dst, size_t n) {
        if (n && std::fread(dst, sizeof(T), n, f) != n) die(2, "%s: truncated job file", path);
    }
    int32_t i32() { int32_t v; read(&v, 1); return v; }
};

// A multi-bit input port from 32-bit chunks (least significant first): an integer type for
// ports up to 64 bits, VlWide (an array of 32-bit words) above.
template <typename T> void set_port(T& port, const uint32_t* chunks, int n) {
    if constexpr (std::is_integral<T>::value) {
        uint64_t v = chunks[0];
        if (n > 1) v |= uint64_t(chunks[1]) << 32;
        port = static_cast<T>(v);
    } else {
        for (int i = 0; i < n; ++i) port[i] = chunks[i];
    }
}

template <typename T> constexpr int port_chunks() {
    if constexpr (std::is_integral<T>::value) return sizeof(T) > 4 ? 2 : 1;
    else return sizeof(T) / sizeof(uint32_t);
}

struct Xorshift {
    uint32_t s;
    bool bit() { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s >> 31; }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) die(2, "usage: %s JOB RESULT FIRST COUNT", argv[0]);
    const char* job_path = argv[1];
    const char* result_path = argv[2];
    const long first = std::atol(argv[3]);
    const long count = std::atol(argv[4]);

    // ---- job file ------------------------------------------------------------------------
    FILE* jf = std::fopen(job_path, "rb");
    if (!jf) die(2, "cannot open job file %s", job_path);
    Reader in{jf, job_path};
    char magic[8];
    in.read(magic, 8);
    if (std::memcmp(magic, JOB_MAGIC, 8)) die(2, "%s: not a bulk job file", job_path);
    const int n_layers = in.i32(), steps = in.i32(), n_samples = in.i32();
    const int chunks = in.i32(), max_cycles = in.i32(), seed = in.i32();
    const int n_pops = n_layers + 1;
    std::vector<int> sizes(n_pops), depth(n_layers);
    for (auto& n : sizes) n = in.i32();
    for (auto& d : depth) d = in.i32();
    std::vector<std::vector<uint32_t>> words(n_layers);
    for (int l = 0; l < n_layers; ++l) {
        words[l].resize(size_t(depth[l]) * chunks);
        in.read(words[l].data(), words[l].size());
    }
    const int n_in = sizes[0];
    std::vector<uint16_t> pixels(size_t(n_samples) * n_in);
    in.read(pixels.data(), pixels.size());
    std::fclose(jf);

    int pops_here = 0;
#define SF_COUNT(p) ++pops_here;
    SF_PROBE_POPS(SF_COUNT)
#undef SF_COUNT
    if (pops_here != n_pops)
        die(2, "job has %d populations, the harness was built for %d", n_pops, pops_here);
    if (first < 0 || count < 0 || first + count > n_samples)
        die(2, "samples %ld..%ld outside the job's %d", first, first + count - 1, n_samples);

    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vspikeforge_top>(ctx.get());
    if (chunks > port_chunks<std::remove_reference_t<decltype(top->w_wdata)>>())
        die(2, "weight words of %d x 32 bits do not fit w_wdata", chunks);
    static_assert(std::is_integral<std::remove_reference_t<decltype(top->readout___05Fpayload)>>::value,
                  "readout items wider than 64 bits");

    // ---- clocking and the readout stream --------------------------------------------------
    Xorshift ready_rng{uint32_t(seed) * 2654435761u + uint32_t(first) + 1u};
    std::vector<uint64_t> items;          // every readout item received, raw payload
    long ends = 0;                        // end items among them
    const int end_mask = 1;               // bit 0 of the payload: end
    uint64_t edges_total = 0;
    auto tick = [&]() {
        // inputs are settled with the clock low, the handshake is taken at the rising edge
        top->clk = 0;
        top->readout___05Fready = ready_rng.bit();
        top->eval();
        if (top->readout___05Fvalid && top->readout___05Fready) {
            uint64_t word = top->readout___05Fpayload;
            items.push_back(word);
            ends += word & end_mask;
        }
        top->clk = 1;
        top->eval();
        ++edges_total;
    };

    // ---- reset, weights ------------------------------------------------------------------
    top->rst = 1;
    top->start = 0;
    top->px_we = 0;
    top->w_we = 0;
    top->px_addr = 0;
    top->px_data = 0;
    top->w_addr = 0;
    top->w_layer = 0;
    top->count_sel = 0;
#if SF_LEARN
    top->learn = 0;
    top->label = 0;
    top->lr_shift = 0;
#endif
#if SF_EVENT_INPUT
    top->from_raster = 0;
    top->raster_step = 0;
    top->raster_index = 0;
    top->raster_set = 0;
    top->raster_clear = 0;
#endif
    for (int i = 0; i < 3; ++i) tick();
    top->rst = 0;
    tick();
    for (int l = 0; l < n_layers; ++l) {
        top->w_layer = l;
        top->w_we = 1;
        for (int a = 0; a < depth[l]; ++a) {
            top->w_addr = a;
            set_port(top->w_wdata, &words[l][size_t(a) * chunks], chunks);
            tick();
        }
        top->w_we = 0;
    }
    tick();

    // ---- samples -------------------------------------------------------------------------
    std::vector<size_t> raster_bytes(n_pops);
    for (int p = 0; p < n_pops; ++p) raster_bytes[p] = (size_t(steps) * sizes[p] + 7) / 8;
    std::vector<std::vector<uint8_t>> rasters(n_pops);
    for (int p = 0; p < n_pops; ++p) rasters[p].assign(raster_bytes[p] * count, 0);
    std::vector<int64_t> cycles(count), edges(count);
    std::vector<int32_t> predictions(count), probe_errors(count);
    const long end_wait = 100L * steps * sizes[n_pops - 1] + 1000;
    auto last_report = std::chrono::steady_clock::now();

    for (long s = 0; s < count; ++s) {
        const long b = first + s;
        tick();
        top->px_we = 1;
        for (int a = 0; a < n_in; ++a) {
            top->px_addr = a;
            top->px_data = pixels[size_t(b) * n_in + a];
            tick();
        }
        top->px_we = 0;
        top->start = 1;
        tick();                           // this edge samples start
        top->start = 0;
        top->eval();
        int64_t n_edges = 0;
        int32_t errors = 0;
        auto mark = [&](int pop, uint32_t step, uint32_t index) {
            if (step >= uint32_t(steps) || index >= uint32_t(sizes[pop])) { ++errors; return; }
            size_t bit = size_t(step) * sizes[pop] + index;
            uint8_t& byte = rasters[pop][raster_bytes[pop] * s + bit / 8];
            if (byte & (1u << (bit % 8))) ++errors;         // the same spike twice
            byte |= uint8_t(1u << (bit % 8));
        };
        while (!top->done) {
            const uint32_t step = top->probe_step;
#define SF_RECORD(p) if (top->probe##p##_valid) mark(p, step, top->probe##p##_index);
            SF_PROBE_POPS(SF_RECORD)
#undef SF_RECORD
            tick();
            if (++n_edges > max_cycles)
                die(3, "sample %ld: done did not rise within %d cycles", b, max_cycles);
        }
        if (top->fifo_overflow) die(4, "sample %ld: inter-layer FIFO overflowed", b);
        cycles[s] = top->cycles;
        edges[s] = n_edges;
        predictions[s] = top->prediction_valid ? int32_t(top->prediction) : -1;
        probe_errors[s] = errors;
        for (long waited = 0; ends < s + 1; ++waited) {       // this sample's end item
            if (waited > end_wait) die(3, "sample %ld: no end item on the readout stream", b);
            tick();
        }
        auto now = std::chrono::steady_clock::now();
        if (s + 1 == count || now - last_report > std::chrono::milliseconds(250)) {
            std::printf("progress %ld\n", s + 1);
            std::fflush(stdout);
            last_report = now;
        }
    }
    top->final();

    // ---- result file ---------------------------------------------------------------------
    FILE* rf = std::fopen(result_path, "wb");
    if (!rf) die(2, "cannot write %s", result_path);
    const int32_t header[6] = {int32_t(first), int32_t(count), n_pops, steps,
                               int32_t(top->readout_overflow), 0};
    const uint64_t n_items = items.size();
    bool ok = std::fwrite(RESULT_MAGIC, 1, 8, rf) == 8
        && std::fwrite(header, sizeof header, 1, rf) == 1
        && std::fwrite(&edges_total, 8, 1, rf) == 1
        && std::fwrite(cycles.data(), 8, count, rf) == size_t(count)
        && std::fwrite(edges.data(), 8, count, rf) == size_t(count)
        && std::fwrite(predictions.data(), 4, count, rf) == size_t(count)
        && std::fwrite(probe_errors.data(), 4, count, rf) == size_t(count)
        && std::fwrite(&n_items, 8, 1, rf) == 1
        && std::fwrite(items.data(), 8, n_items, rf) == n_items;
    for (int p = 0; p < n_pops; ++p)
        ok = ok && std::fwrite(rasters[p].data(), 1, rasters[p].size(), rf) == rasters[p].size();
    if (std::fclose(rf) != 0 || !ok) die(2, "writing %s failed", result_path);
    return 0;
}
