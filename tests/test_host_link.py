"""The host link: protocol and driver (pure Python), the UART (Amaranth simulator), and the
whole host ⇄ serial-top loop on Verilator with the driver that talks to boards."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from spikeforge.config import load_config
from spikeforge.hw.uart import UARTRx, UARTTx
from spikeforge.protocol import (
    COUNTERS,
    CRC_BYTES,
    ERROR_NAMES,
    ERROR_STATUS,
    EVENT,
    EVENTS_REQUEST,
    FRAME_HEADER,
    INFO_HEAD,
    PROTOCOL_VERSION,
    READOUT_ITEM,
    RESPONSE_START,
    RUN_REQUEST,
    RUN_RESPONSE,
    WEIGHTS_REQUEST,
    Command,
    ErrorCode,
    EventsFlags,
    Features,
    RunFlags,
    buffer_depth,
    crc8,
    events_per_frame,
    field_bytes,
    gateware_hash,
    info_bytes,
    nbytes,
    pack,
    unpack,
    wire_dtype,
)
from spikeforge.sw.host import HostLink, LinkError, crc, frame
from spikeforge.sw.weights import pack_words


def test_crc8_is_crc8_smbus():
    assert crc(b"123456789") == 0xF4            # the catalogue's check value
    body = bytes([Command.INFO, 0, 0])
    assert crc(body + bytes([crc(body)])) == 0  # a frame with its CRC sums to zero


def test_hardware_crc_matches_the_protocol_crc():
    from amaranth.hdl import Signal
    from amaranth.sim import Simulator

    from spikeforge.hw.host_link import crc8_next

    a, b = Signal(8), Signal(8)
    out = Signal(8)
    m = Module()
    m.d.comb += out.eq(crc8_next(a, b))
    sim = Simulator(m)
    rng = np.random.default_rng(0)

    async def tb(ctx):
        for x, y in rng.integers(0, 256, size=(200, 2)):
            ctx.set(a, int(x))
            ctx.set(b, int(y))
            assert ctx.get(out) == crc8(int(x), int(y))

    sim.add_testbench(tb)
    sim.run()


def test_frame_layout():
    f = frame(Command.RUN, b"\x01\x02")
    assert f[:4] == bytes([0xA5, Command.RUN, 2, 0]) and f[4:6] == b"\x01\x02"
    assert f[-1] == crc(f[1:-1])


def test_wire_format_is_pinned():
    """The codes and layouts of spikeforge.protocol are the wire format of docs/host_link.md,
    protocol version 5: a change in this test is a protocol change (and a new version)."""
    assert PROTOCOL_VERSION == 5
    assert {c.name: c.value for c in Command} == {
        "INFO": 0x01, "WRITE": 0x02, "READ": 0x03, "RUN": 0x04, "COUNTERS": 0x05, "EVENTS": 0x06}
    assert {e.name: e.value for e in ErrorCode} == {
        "CRC": 0x81, "COMMAND": 0x82, "LENGTH": 0x83, "TIMEOUT": 0x84, "ARGUMENT": 0x85,
        "FRAMING": 0x86}
    assert all(e & ERROR_STATUS for e in ErrorCode) and not any(c & ERROR_STATUS for c in Command)
    assert set(ERROR_NAMES) == set(ErrorCode)
    assert (RunFlags.LEARN, RunFlags.RASTER, RunFlags.DECODE, EventsFlags.CLEAR) == (
        0x01, 0x02, 0x04, 0x01)
    assert (Features.LEARNING, Features.EVENTS, Features.DECODER) == (0x01, 0x02, 0x04)

    def fields(layout):         # name: (first byte, bits)
        return {name: (f.offset // 8, f.width) for name, f in layout}

    assert fields(FRAME_HEADER) == {"start": (0, 8), "code": (1, 8), "length": (2, 16)}
    assert fields(WEIGHTS_REQUEST) == {"layer": (0, 8), "address": (1, 16), "count": (3, 16)}
    assert fields(RUN_REQUEST) == {"flags": (0, 8), "label": (1, 8), "lr_shift": (2, 8)}
    assert fields(EVENTS_REQUEST) == {"flags": (0, 8)}
    assert fields(EVENT) == {"step": (0, 8), "neuron": (1, 16)}
    assert fields(RUN_RESPONSE) == {"cycles": (0, 32), "prediction": (4, 8), "spikes": (5, 16),
                                    "steps": (7, 8)}
    assert fields(READOUT_ITEM) == {"step": (0, 8), "neuron": (1, 8)}
    assert [(n, f.offset, f.width) for n, f in COUNTERS] == [
        ("samples", 0, 32), ("frames", 32, 32), ("errors", 64, 32), ("fifo_overflow", 96, 1),
        ("readout_overflow", 97, 1), ("rx_overrun", 98, 1), ("stream_error", 99, 1),
        ("reserved", 100, 4)]
    assert fields(INFO_HEAD) == {
        "magic": (0, 16), "version": (2, 8), "populations": (3, 8), "store_bits": (4, 8),
        "features": (5, 8), "lanes": (6, 16), "time_steps": (8, 16), "word_bytes": (10, 16),
        "buffer_bytes": (12, 16), "config_hash": (14, 32)}
    # whole frames, as version 5 puts them on the wire
    read = frame(Command.READ, pack(WEIGHTS_REQUEST, {"layer": 1, "address": 0x203, "count": 4}))
    assert read == bytes.fromhex("a5030500010302040045")
    run = frame(Command.RUN, pack(RUN_REQUEST, {"flags": RunFlags.LEARN | RunFlags.RASTER,
                                                "label": 2, "lr_shift": 1}))
    assert run == bytes.fromhex("a504030003020192")
    tiny = load_config("digits-tiny")
    info = info_bytes(tiny)
    assert info[:14] == bytes.fromhex("5346050312030400140009000001")
    assert info[14:18] == gateware_hash(tiny).to_bytes(4, "little")
    assert info[18:] == bytes.fromhex("400020000a0000026000")


def test_config_hash_tells_gateware_apart_and_not_host_settings():
    """INFO's config hash: the same for configs that build the same core (another name,
    dataset, rate), different where an option the sizes do not show changes the gateware
    (digits-near's learning options, fmnist-up5k's near-threshold fraction)."""
    import dataclasses

    tiny, near = load_config("digits-tiny"), load_config("digits-near")
    assert (tiny.layers, tiny.lanes, tiny.time_steps) == (near.layers, near.lanes,
                                                          near.time_steps)
    assert gateware_hash(tiny) != gateware_hash(near)
    assert gateware_hash(load_config("mnist-up5k")) != gateware_hash(load_config("fmnist-up5k"))
    renamed = dataclasses.replace(tiny, name="other", dataset="mnist-t10k",
                                  learning=dataclasses.replace(tiny.learning, lr_shift=3))
    assert gateware_hash(renamed) == gateware_hash(tiny)
    assert gateware_hash(dataclasses.replace(tiny, threshold=65)) != gateware_hash(tiny)
    link = HostLink(FakeTransport(response(Command.INFO, info_bytes(near))), tiny)
    with pytest.raises(LinkError, match=r"another config than digits-tiny: config_hash "
                                        r"0x[0-9a-f]{8} vs 0x[0-9a-f]{8} \(core vs config\)$"):
        link.check_info()


def test_pack_and_unpack_check_their_fields():
    raw = pack(RUN_RESPONSE, {"cycles": 0x01020304, "prediction": 0xFF, "spikes": 0x0506,
                              "steps": 7})
    assert raw == bytes([4, 3, 2, 1, 0xFF, 6, 5, 7])
    got = unpack(RUN_RESPONSE, raw)
    assert (got.cycles, got.prediction, got.spikes, got.steps) == (0x01020304, 0xFF, 0x0506, 7)
    with pytest.raises(ValueError, match=r"fields\.label = 256 does not fit its 8 bits"):
        pack(RUN_REQUEST, {"label": 256})
    with pytest.raises(ValueError, match=r"fields\.address = -1 does not fit its 16 bits"):
        pack(WEIGHTS_REQUEST, {"address": -1})
    with pytest.raises(ValueError, match="no field 'pixels'"):
        pack(RUN_REQUEST, {"pixels": 3})
    with pytest.raises(ValueError, match="7 bytes for a layout of 8"):
        unpack(RUN_RESPONSE, raw[:7])
    items = np.frombuffer(bytes([1, 2, 0, 3, 4, 0]), dtype=wire_dtype(EVENT))
    assert items["step"].tolist() == [1, 3] and items["neuron"].tolist() == [2, 4]
    with pytest.raises(ValueError, match="field 'fifo_overflow': 1 bits at bit 96 has no dtype"):
        wire_dtype(COUNTERS)


class FakeTransport:
    """Answers with canned bytes; records what was written."""

    def __init__(self, reply: bytes):
        self.reply, self.written = reply, b""

    def write(self, data):
        self.written += data

    def read(self, n):
        data, self.reply = self.reply[:n], self.reply[n:]
        if len(data) < n:
            raise LinkError(f"timeout: {len(data)} of {n} response bytes arrived")
        return data


def response(status, payload=b""):
    body = bytes([status]) + len(payload).to_bytes(2, "little") + payload
    return bytes([RESPONSE_START]) + body + bytes([crc(body)])


def test_driver_reports_errors_by_name():
    cfg = load_config("digits-tiny")
    link = HostLink(FakeTransport(response(ErrorCode.CRC, bytes([Command.INFO]))), cfg)
    with pytest.raises(LinkError, match=r"error 0x81 \(checksum mismatch\)"):
        link.info()
    corrupted = bytearray(response(Command.INFO, info_bytes(cfg)))
    corrupted[5] ^= 1
    with pytest.raises(LinkError, match="checksum mismatch"):
        HostLink(FakeTransport(bytes(corrupted)), cfg).info()
    with pytest.raises(LinkError, match="timeout: 2 of 4"):
        HostLink(FakeTransport(b"\x5a\x01"), cfg).info()
    other = load_config("mnist-ecp5")
    with pytest.raises(LinkError, match="built for another config"):
        HostLink(FakeTransport(response(Command.INFO, info_bytes(other))), cfg).check_info()
    with pytest.raises(ValueError, match=r"pixels: shape \(3,\), expected \(64,\)"):
        HostLink(FakeTransport(b""), cfg).run(np.zeros(3))


def test_driver_reads_counters():
    cfg = load_config("digits-tiny")
    payload = pack(COUNTERS, {"samples": 7, "frames": 1 << 31, "errors": 2, "rx_overrun": 1,
                              "stream_error": 1})
    c = HostLink(FakeTransport(response(Command.COUNTERS, payload)), cfg).counters()
    assert (c.samples, c.frames, c.errors) == (7, 1 << 31, 2)
    assert (c.fifo_overflow, c.readout_overflow, c.rx_overrun, c.stream_error) == (
        False, False, True, True)
    with pytest.raises(LinkError, match="COUNTERS response of 12 bytes"):
        HostLink(FakeTransport(response(Command.COUNTERS, payload[:12])), cfg).counters()


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Request frames back into ``(cmd, payload)``, each checked for its CRC."""
    out = []
    while data:
        n = int.from_bytes(data[2:4], "little")
        body, data = data[1:5 + n], data[5 + n:]
        assert crc(body) == 0
        out.append((body[0], body[3:-1]))
    return out


def test_driver_sends_events_in_frames_that_fit_the_buffer():
    """run_events: EVENTS frames of at most the buffer's size, the first one clearing the
    raster, every event on the wire once and in order, then RUN on the stored raster with
    no pixels; its response parsed as run's is."""
    cfg = load_config("digits-tiny")
    link = HostLink(FakeTransport(b""), cfg)
    per_frame = events_per_frame(cfg)
    assert per_frame == link.max_events == (buffer_depth(cfg) - 1) // nbytes(EVENT)
    rng = np.random.default_rng(2)
    events = np.stack([rng.integers(0, cfg.time_steps, 2 * per_frame + 5),
                       rng.integers(0, cfg.layers[0], 2 * per_frame + 5)], axis=1)
    events[-1] = (cfg.time_steps - 1, cfg.layers[0] - 1)
    run_reply = ((1234).to_bytes(4, "little") + b"\xff" + (1).to_bytes(2, "little") + b"\x14"
                 + b"\x02\x07")
    link.transport = FakeTransport(response(Command.EVENTS) * 3 + response(Command.RUN, run_reply))
    result = link.run_events(events, label=3, lr_shift=2)
    assert (result.cycles, result.prediction, result.steps) == (1234, -1, 20)
    assert result.events.tolist() == [[2, 7]]
    frames = split_frames(link.transport.written)
    assert [c for c, _ in frames] == [Command.EVENTS] * 3 + [Command.RUN]
    assert all(len(p) <= buffer_depth(cfg) for _, p in frames)
    assert [p[0] for _, p in frames[:3]] == [EventsFlags.CLEAR, 0, 0]
    wire = b"".join(p[1:] for _, p in frames[:3])
    sent = [(wire[i], int.from_bytes(wire[i + 1:i + 3], "little"))
            for i in range(0, len(wire), nbytes(EVENT))]
    assert sent == [tuple(e) for e in events.tolist()]
    assert frames[3][1] == bytes([RunFlags.LEARN | RunFlags.RASTER, 3, 2])

    # a bool raster is sent as its events; an empty one still clears the stored raster
    raster = np.zeros((cfg.time_steps, cfg.layers[0]), dtype=bool)
    raster[4, 9] = raster[0, 63] = True
    assert link.events_of(raster).tolist() == [[0, 63], [4, 9]]
    link.transport = FakeTransport(response(Command.EVENTS))
    assert link.send_events(np.zeros_like(raster)) == 1
    assert split_frames(link.transport.written) == [(Command.EVENTS, bytes([EventsFlags.CLEAR]))]


def test_driver_refuses_bad_events_before_sending():
    cfg = load_config("digits-tiny")
    link = HostLink(FakeTransport(b""), cfg)
    with pytest.raises(ValueError, match=r"input raster: shape \(3, 64\), expected \(20, 64\)"):
        link.run_events(np.zeros((3, 64), dtype=bool))
    with pytest.raises(ValueError, match=r"input event 1: step 20 is out of range, legal range "
                                         r"is \[0, 19\]"):
        link.run_events([(0, 0), (20, 0)])
    with pytest.raises(ValueError, match=r"input event 0: neuron -1 is out of range, legal "
                                         r"range is \[0, 63\]"):
        link.send_events([(0, -1)])
    with pytest.raises(ValueError, match=r"expected \(step, neuron\) integer pairs"):
        link.run_events(np.zeros((20, 64)))
    assert link.transport.written == b""


async def _send(ctx, dut, request) -> int:
    """Offer ``request``'s bytes on the gateware's ``rx`` stream, one after the other, each
    held until taken; returns the cycles it took."""
    cycles = 0
    for b in request:
        ctx.set(dut.rx.payload, b)
        ctx.set(dut.rx.valid, 1)
        taken = False
        while not taken:
            taken = ctx.get(dut.rx.ready)
            await ctx.tick()
            cycles += 1
    ctx.set(dut.rx.valid, 0)
    return cycles


def _frame_bytes(head: bytes) -> int:
    """A whole response's bytes, from its first ``nbytes(FRAME_HEADER)`` bytes."""
    length = unpack(FRAME_HEADER, head).length
    return nbytes(FRAME_HEADER) + int(length) + CRC_BYTES


def exchange(cfg, requests, max_cycles=200_000):
    """Each request's bytes straight into the gateware HostLink's ``rx`` stream (Amaranth
    simulator, no UART), its response's bytes from ``tx``; returns the responses."""
    from spikeforge.hw.host_link import HostLink as Gateware

    dut = Gateware(cfg, timeout=64)
    responses = []

    async def tb(ctx):
        ctx.set(dut.tx.ready, 1)
        head = nbytes(FRAME_HEADER)
        for request in requests:
            await _send(ctx, dut, request)
            out, need = [], head
            for _ in range(max_cycles):
                valid, byte = ctx.get(dut.tx.valid), ctx.get(dut.tx.payload)
                await ctx.tick()
                if valid:
                    out.append(byte)
                    if len(out) == head:
                        need = _frame_bytes(bytes(out))
                    if len(out) == need:
                        break
            responses.append(bytes(out))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return responses


def timeline(cfg, requests):
    """The requests' bytes into the gateware HostLink (Amaranth simulator, ``tx`` always
    ready), each request once the previous response is out. Per request: the cycle its CRC
    byte was taken, the cycle of each response byte, the cycles of the network's ``start``."""
    from spikeforge.hw.host_link import HostLink as Gateware

    dut = Gateware(cfg, timeout=64)
    out = []

    async def tb(ctx):
        ctx.set(dut.tx.ready, 1)
        cycle, head = 0, nbytes(FRAME_HEADER)
        for request in requests:
            cycle += await _send(ctx, dut, request)
            crc_at, sent, starts, need = cycle - 1, [], [], head
            while len(sent) < need:
                if ctx.get(dut.network.start):
                    starts.append(cycle)
                if ctx.get(dut.tx.valid):
                    sent.append((cycle, ctx.get(dut.tx.payload)))
                    if len(sent) == head:
                        need = _frame_bytes(bytes(b for _, b in sent))
                await ctx.tick()
                cycle += 1
            out.append((crc_at, [c for c, _ in sent], starts))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("lanes, layers", [(1, (5, 3, 2)), (3, (5, 6, 4))])
def test_link_cycles_match_the_docstrings(lanes, layers):
    """HostLink's latency contract, cycle by cycle: a command starts two cycles after its CRC
    byte; WRITE takes 3 * word_bytes + 1 cycles per word; READ sends a word every
    WEIGHT_READ_LATENCY + 2 * word_bytes cycles, its bytes 2 cycles apart; EVENTS takes 8
    cycles per event; RUN loads its pixels in 2 * N_in cycles (none on the stored raster)."""
    import dataclasses

    from spikeforge.protocol import word_bytes
    from spikeforge.timing import WEIGHT_READ_LATENCY

    cfg = dataclasses.replace(load_config("digits-tiny"), name="cycles", layers=layers,
                              lanes=lanes, time_steps=6, threshold=20, membrane_bits=9,
                              weight_bits=6)
    wb, n_in, head = word_bytes(cfg), cfg.layers[0], nbytes(FRAME_HEADER)

    def weights(n, words=b""):
        return pack(WEIGHTS_REQUEST, {"layer": 0, "count": n}) + words

    def events(n):
        return pack(EVENTS_REQUEST, {"flags": 0}) + b"".join(
            pack(EVENT, {"step": i, "neuron": i}) for i in range(n))

    runs = [pack(RUN_REQUEST, {}) + bytes(n_in), pack(RUN_REQUEST, {"flags": RunFlags.RASTER})]
    requests = ([frame(Command.INFO)]
                + [frame(Command.WRITE, weights(n, bytes(n * wb))) for n in (1, 2, 3)]
                + [frame(Command.READ, weights(3))]
                + [frame(Command.EVENTS, events(n)) for n in (1, 2, 3)]
                + [frame(Command.RUN, p) for p in runs])
    info, *writes, read, e1, e2, e3, run_pixels, run_raster = timeline(cfg, requests)

    def first_byte(t):
        crc_at, sent, _ = t
        return sent[0] - crc_at

    assert first_byte(info) == 2
    assert [first_byte(t) for t in writes] == [2 + n * (3 * wb + 1) for n in (1, 2, 3)]
    data = read[1][head:-1]
    assert len(data) == 3 * wb
    gaps = [b - a for a, b in zip(data[:-1], data[1:], strict=True)]
    assert gaps == [WEIGHT_READ_LATENCY + 2 if (i + 1) % wb == 0 else 2
                    for i in range(len(gaps))]
    assert [first_byte(t) for t in (e2, e3)] == [first_byte(e1) + 8, first_byte(e1) + 16]
    assert run_pixels[2] == [run_pixels[0] + 2 + 2 * n_in]
    assert run_raster[2] == [run_raster[0] + 2]


def test_link_without_event_input_refuses_events():
    """A core built without the input-event port (``encoding.event_input = false``): INFO
    says so, EVENTS is an unknown command, RUN's raster flag is refused,
    pixels still run (bit-exact); the driver refuses before sending anything."""
    import dataclasses

    from spikeforge.sw.golden import run_network
    from spikeforge.sw.weights import random_weights

    cfg = dataclasses.replace(load_config("digits-tiny"), name="no-events", layers=(5, 3, 2),
                              lanes=1, time_steps=6, threshold=20, membrane_bits=9,
                              weight_bits=6, learning=None, event_input=False)
    pixels = np.array([255, 0, 90, 200, 31])
    link = HostLink(FakeTransport(b""), cfg)
    weights = random_weights(cfg, np.random.default_rng(4), scale=1.0)
    requests = [frame(Command.INFO), frame(Command.EVENTS, bytes([EventsFlags.CLEAR, 0, 1, 0])),
                frame(Command.RUN, bytes([RunFlags.RASTER, 0, 0])),
                frame(Command.RUN, bytes([RunFlags.RASTER, 0, 0]) + bytes(5))]
    for layer, w in enumerate(weights):
        words = pack_words(cfg, layer, w)
        requests.append(frame(Command.WRITE, bytes([layer, 0, 0]) + len(words).to_bytes(2, "little")
                              + b"".join(int(x).to_bytes(link.word_bytes, "little")
                                         for x in words)))
    requests.append(frame(Command.RUN, bytes([0, 0, 0]) + bytes(int(p) for p in pixels)))
    info, events, raster_run, raster_pixels, *writes, run = exchange(cfg, requests)

    def parse(reply, cmd):
        return HostLink(FakeTransport(reply), cfg).response(cmd)

    assert parse(info, Command.INFO) == info_bytes(cfg)
    assert not info_bytes(cfg)[field_bytes(INFO_HEAD, "features").start] & Features.EVENTS
    for reply, cmd, code in ((events, Command.EVENTS, r"0x82 \(unknown command\)"),
                             (raster_run, Command.RUN, r"0x83 \(payload length"),
                             (raster_pixels, Command.RUN, r"0x85 \(argument out of range\)")):
        with pytest.raises(LinkError, match=code):
            parse(reply, cmd)
    for reply in writes:
        parse(reply, Command.WRITE)
    data = parse(run, Command.RUN)
    gold = run_network(cfg, weights, pixels[None])
    assert int.from_bytes(data[:4], "little") == gold.cycles[0]
    assert data[5:7] == int(gold.rasters[-1].sum()).to_bytes(2, "little")
    with pytest.raises(LinkError, match=r"config 'no-events' is built without input events"):
        link.run_events([(0, 1)])
    with pytest.raises(LinkError, match=r"built without input events"):
        link.run_stored()
    assert link.transport.written == b""


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_link_refuses_configs_it_cannot_carry():
    import dataclasses

    from spikeforge.hw.host_link import HostLink as Gateware

    cfg = load_config("digits-tiny")
    with pytest.raises(ValueError, match="T and the output layer must be <= 256"):
        Gateware(dataclasses.replace(cfg, time_steps=300))
    with pytest.raises(ValueError, match="TTFS configs are not supported"):
        Gateware(load_config("ttfs-tiny"))
    with pytest.raises(ValueError, match="divisor must be an integer >= 4"):
        UARTRx(3)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_info_carries_the_largest_sizes_the_link_allows():
    """T = 256 (the largest a step byte carries) and P, word bytes above 255 fit INFO's
    2-byte fields, and the driver's config check reads them back."""
    import dataclasses

    from spikeforge.hw.host_link import HostLink as Gateware

    cfg = dataclasses.replace(load_config("digits-tiny"), time_steps=256, layers=(64, 300, 10),
                              lanes=300)
    Gateware(cfg)                       # accepts the config and builds its INFO
    info = info_bytes(cfg)
    sizes = [int.from_bytes(info[i:i + 2], "little") for i in range(6, 14, 2)]
    sizes += [int.from_bytes(info[i:i + 2], "little") for i in range(18, len(info), 2)]
    assert sizes[:2] == [300, 256] and sizes[2] == (300 * cfg.store_bits + 7) // 8 > 255
    assert sizes[4:7] == [64, 300, 10]
    HostLink(FakeTransport(response(Command.INFO, info)), cfg).check_info()
    with pytest.raises(LinkError, match="built for another config"):
        other = dataclasses.replace(cfg, time_steps=255)
        HostLink(FakeTransport(response(Command.INFO, info)), other).check_info()


def test_uart_loopback_and_framing_error():
    """Bytes through UARTTx -> UARTRx arrive unchanged; a stop bit held low is reported."""
    divisor = 5
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    sent = list(np.random.default_rng(1).integers(0, 256, 20)) + [0x00, 0xFF, 0x55]
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def send(ctx):
        for b in sent:
            ctx.set(tx.bytes.payload, int(b))
            ctx.set(tx.bytes.valid, 1)
            await ctx.tick().until(tx.bytes.ready)
            await ctx.tick()
        ctx.set(tx.bytes.valid, 0)

    async def receive(ctx):
        ctx.set(rx.bytes.ready, 1)
        while len(got) < len(sent):
            await ctx.tick()
            if ctx.get(rx.bytes.valid):
                got.append(ctx.get(rx.bytes.payload))
                await ctx.tick()

    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run_until(2e-6 * divisor * 10 * (len(sent) + 4))
    assert got == [int(b) for b in sent]

    m2 = Module()
    m2.submodules.rx = rx2 = UARTRx(divisor)
    sim2 = Simulator(m2)
    sim2.add_clock(1e-6)
    seen = []

    async def bad_stop(ctx):
        ctx.set(rx2.rx, 0)                      # start bit, 8 zero bits, stop bit low
        for _ in range(12 * divisor):
            await ctx.tick()
            seen.append((ctx.get(rx2.framing_error), ctx.get(rx2.bytes.valid)))

    sim2.add_testbench(bad_stop)
    sim2.run()
    assert any(f for f, _ in seen) and not any(v for _, v in seen)


def test_host_loop_on_the_rtl_matches_the_golden_model(sim):
    """Driver -> UART -> serial top -> UART -> driver: load weights, read them back, survive
    broken frames, run inference and training samples, on pixels and on input spike events
    (a random raster over several EVENTS frames, and the rate encoder's own raster of a pixel
    sample); every output spike, cycle count, prediction and learned weight equals the golden
    model's, and the events of the encoder's raster give exactly the pixel sample's run."""
    from spikeforge.sim.host_link_rtl import run_link
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.desire import inference_weights, train_step, train_step_raster
    from spikeforge.sw.golden import encode, run_raster
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import to_stored

    cfg = load_config("digits-tiny")
    data = load_dataset("digits", cfg.pixel_bits)
    rng = np.random.default_rng(5)
    idx = rng.choice(len(data.test_labels), 5, replace=False)
    pixels, labels = data.test_pixels[idx], data.test_labels[idx]
    pixels[2] = cfg.pixel_max                               # every input fires every step
    shape = (cfg.time_steps, cfg.layers[0])
    random_raster = rng.random(shape) < 0.1                 # > 85 events: several frames
    check_raster = rng.random(shape) < 0.05
    inputs = [None, random_raster, None, encode(cfg, pixels[:1])[0], None]
    used = np.stack([encode(cfg, pixels[b:b + 1])[0] if r is None else r
                     for b, r in enumerate(inputs)])
    link = HostLink(FakeTransport(b""), cfg)
    assert len(link.events_of(random_raster)) > link.max_events

    stored = initial_weights(cfg, 3)
    weights = inference_weights(cfg, stored)

    infer = run_link(cfg, weights, pixels, input_rasters=inputs, check_raster=check_raster,
                     sim=sim)
    gold = run_raster(cfg, weights, used)
    assert infer.info == info_bytes(cfg)
    assert infer.readback_ok and infer.unchanged_ok
    kinds = [e.split(":")[0] for e in infer.errors]
    names = {"crc": "0x81", "command": "0x82", "length": "0x83", "argument": "0x85",
             "timeout": "0x84"}
    assert all(names[k] in e for k, e in zip(kinds, infer.errors, strict=True)), infer.errors
    assert list(infer.cycles) == list(gold.cycles)
    assert list(infer.predictions) == list(gold.predictions)
    raster = infer.rasters(len(pixels), cfg.time_steps, cfg.layers[-1])
    assert (raster == gold.rasters[-1]).all() and raster[1].any()
    same = [infer.events[infer.events[:, 0] == b][:, 1:] for b in (0, 3)]
    assert (same[0] == same[1]).all() and len(same[0]) > 0       # in the same order, too
    assert infer.cycles[3] == infer.cycles[0] and infer.predictions[3] == infer.predictions[0]
    # the check raster, stored before the broken frames, ran as stored: they changed nothing
    check = run_raster(cfg, weights, check_raster[None])
    cycles, prediction, events = infer.check
    assert (cycles, prediction) == (check.cycles[0], check.predictions[0])
    got = np.zeros((cfg.time_steps, cfg.layers[-1]), dtype=bool)
    got[events[:, 0], events[:, 1]] = True
    assert (got == check.rasters[-1][0]).all() and len(events) == got.sum()
    samples, frames, errors, *flags = infer.counters
    assert (samples, errors) == (len(pixels) + 1, len(infer.errors)) and not any(flags)
    assert infer.gaps > 10              # the host really stalled inside its frames

    train = run_link(cfg, stored, pixels, labels=labels, stored=True, input_rasters=inputs,
                     sim=sim)
    w = stored
    cycles = []
    for x, r, y in zip(pixels, inputs, labels, strict=True):
        step = (train_step(cfg, w, x, int(y)) if r is None
                else train_step_raster(cfg, w, r, int(y)))
        w = step.weights
        cycles.append(step.cycles)
    assert list(train.cycles) == cycles
    assert all((a == b).all() for a, b in zip(train.weights_after, w, strict=True))
    assert any((a != b).any() for a, b in zip(w, to_stored(cfg, weights), strict=True))


def test_host_loop_with_weights_in_spram(sim):
    """The serial top of a config whose weights live in SPRAM (the simulation model, which
    returns garbage after every write): the host loads the weights and reads them back
    through the one port, runs inference and training samples; cycles, predictions, output
    spikes and learned weights equal the golden model's."""
    from spikeforge.sim.host_link_rtl import run_link
    from spikeforge.sw.desire import inference_weights, train_step
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.train import initial_weights

    cfg = dataclasses.replace(load_config("digits-up5k"), name="spram-link", time_steps=8,
                              layers=(24, 12, 10), threshold=20, spram_layers=(0, 1))
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, cfg.pixel_max + 1, size=(3, cfg.layers[0]))
    labels = np.array([2, 7, 7])
    stored = initial_weights(cfg, 4)
    weights = inference_weights(cfg, stored)
    infer = run_link(cfg, weights, pixels, sim=sim)
    gold = run_network(cfg, weights, pixels)
    assert infer.readback_ok and infer.unchanged_ok
    assert list(infer.cycles) == list(gold.cycles)
    assert list(infer.predictions) == list(gold.predictions)
    assert (infer.rasters(len(pixels), cfg.time_steps, cfg.layers[-1]) == gold.rasters[-1]).all()
    train = run_link(cfg, stored, pixels, labels=labels, stored=True, sim=sim)
    w, cycles = stored, []
    for x, y in zip(pixels, labels, strict=True):
        step = train_step(cfg, w, x, int(y))
        w = step.weights
        cycles.append(step.cycles)
    assert list(train.cycles) == cycles
    assert all((a == b).all() for a, b in zip(train.weights_after, w, strict=True))
    assert any((a != b).any() for a, b in zip(w, stored, strict=True))
