"""cocotb testbench for the serial top: the host driver (:class:`sw.host.HostLink`), the very
class that talks to a board, speaks to the RTL through a UART model (cocotbext-uart).

The driver is blocking code; it runs in a :func:`cocotb.task.bridge` thread and its transport
resumes the simulation (:func:`cocotb.task.resume`) to send bytes and wait for them. Driven
by a job file (``SPIKEFORGE_JOB``): the stored weight words, pixels and, for learning, labels;
optionally input rasters (samples with ``use_raster`` run on their raster, sent as EVENTS
frames, instead of their pixels) and a ``check_raster`` stored before the broken frames and
run after them (a refused frame must not have touched it). The result file holds what the
host saw: INFO, weights read back, every sample's cycles, prediction and output events, the
weights after training, and the error responses to a set of deliberately broken frames.
"""

from __future__ import annotations

import logging
import os
import pickle
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import RisingEdge, Timer
from cocotbext.uart import UartSink, UartSource

from spikeforge.hw.generate import SIM_UART_DIVISOR
from spikeforge.protocol import (
    REQUEST_START,
    Command,
    EventsFlags,
    RunFlags,
)
from spikeforge.sw.host import HostLink, LinkError, frame

CLOCK_NS = 10
READ_TIMEOUT_NS = 2_000_000            # quiet line: far longer than any sample takes
BYTE_NS = 10 * SIM_UART_DIVISOR * CLOCK_NS


GAP_SEED = 2026
GAP_PROBABILITY = 0.03                 # of an idle gap before a request byte
GAP_MAX_BYTES = 56                     # below the link's 64-byte-time inter-byte timeout


class SimTransport:
    """``write``/``read`` of :class:`sw.host.SerialTransport`, on the simulated UART pins.

    The host side stalls at random (seeded): before a request byte, with probability
    ``GAP_PROBABILITY``, the line idles for 1 .. ``GAP_MAX_BYTES`` byte times, inside the
    link's inter-byte timeout, so every frame must still be taken as sent."""

    def __init__(self, source: UartSource, sink: UartSink):
        self.source, self.sink = source, sink
        self.write = resume(self._write)
        self.read = resume(self._read)
        self.rng = random.Random(GAP_SEED)
        self.gaps = 0

    async def _write(self, data: bytes) -> None:
        start = 0
        for i in range(len(data) + 1):
            if i == len(data) or self.rng.random() < GAP_PROBABILITY:
                await self.source.write(data[start:i])
                await self.source.wait()
                start = i
                if i < len(data):
                    self.gaps += 1
                    await Timer(BYTE_NS * self.rng.randint(1, GAP_MAX_BYTES), unit="ns")

    async def _read(self, n: int) -> bytes:
        """Wait for ``n`` bytes; fail like a serial port's read timeout if the line is quiet
        for ``READ_TIMEOUT_NS``."""
        quiet, have = 0, self.sink.count()
        while self.sink.count() < n:
            await Timer(BYTE_NS, unit="ns")
            quiet = 0 if self.sink.count() > have else quiet + BYTE_NS
            have = self.sink.count()
            if quiet >= READ_TIMEOUT_NS:
                raise LinkError(f"timeout: {have} of {n} response bytes arrived")
        return bytes(self.sink.read_nowait(n))


def broken_frames(link: HostLink) -> list[tuple[str, bytes]]:
    """Requests that must each be refused with an error response (and change nothing)."""
    cfg = link.cfg
    good = frame(Command.WRITE, bytes([0, 0, 0, 1, 0]) + bytes(link.word_bytes))
    flipped = bytearray(good)
    flipped[6] ^= 0x10                                      # a payload bit, CRC unchanged
    huge = cfg.layers[0] + 3
    T, n_in = cfg.time_steps, cfg.layers[0]

    def events(*pairs, flags=EventsFlags.CLEAR):
        return bytes([flags]) + b"".join(bytes([t]) + j.to_bytes(2, "little") for t, j in pairs)

    over = events(*[(0, 0)] * (link.max_events + 1))          # one event past the buffer
    good_events = frame(Command.EVENTS, events((1, 1)))
    flipped_events = bytearray(good_events)
    flipped_events[5] ^= 0x01                                # the first event's step
    return [
        ("crc", bytes(flipped_events)),
        ("length", frame(Command.EVENTS)),                                  # no flags byte
        ("length", frame(Command.EVENTS, events((0, 1)) + b"\x00")),        # 4 bytes/event?
        ("length", frame(Command.EVENTS, over)),
        ("argument", frame(Command.EVENTS, events((0, 0), (T, 0)))),       # step >= T
        ("argument", frame(Command.EVENTS, events((0, n_in - 1), (0, n_in)))),  # index >= N_in
        ("argument", frame(Command.EVENTS, events((0, 0), flags=0x80))),    # unknown flag
        ("length", frame(Command.RUN, bytes([RunFlags.RASTER, 0, 0]) + bytes(n_in))),  # pixels too
        ("argument", frame(Command.RUN, bytes([0x80, 0, 0]) + bytes(n_in))),  # unknown flag
        ("crc", bytes(flipped)),
        ("command", frame(0x42)),
        ("length", frame(Command.INFO, b"\x00")),
        ("length", frame(Command.RUN, bytes(huge - 1))),
        ("argument", frame(Command.READ, bytes([cfg.n_layers, 0, 0, 1, 0]))),  # no such layer
        ("argument", frame(Command.READ, bytes([0]) + link.depths[0].to_bytes(2, "little")
                           + b"\x01\x00")),                                 # past the end
        ("timeout", bytes([REQUEST_START, Command.WRITE, 40, 0, 0, 0])),    # cut short
    ]


async def start_serial_top(dut) -> tuple[UartSource, UartSink]:
    """The serial top's clock, UART models at the simulated baud, and a reset: ready for the
    host's bytes."""
    logging.getLogger("cocotb").setLevel(logging.WARNING)
    cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start())
    baud = 1e9 / (CLOCK_NS * SIM_UART_DIVISOR)
    source = UartSource(dut.uart_rx, baud=baud)
    sink = UartSink(dut.uart_tx, baud=baud)
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    return source, sink


@cocotb.test()
async def host_link_job(dut):
    job = np.load(os.environ["SPIKEFORGE_JOB"], allow_pickle=False)
    cfg = pickle.loads(job["config"].tobytes())       # written by sim.host_link_rtl
    source, sink = await start_serial_top(dut)
    link = HostLink(SimTransport(source, sink), cfg)
    words = [[int(w) for w in job[f"words{i}"]] for i in range(cfg.n_layers)]
    pixels = job["pixels"]
    labels = job["labels"] if "labels" in job.files else None
    use_raster = job["use_raster"] if "use_raster" in job.files else np.zeros(len(pixels))
    rasters = job["rasters"].astype(bool) if "rasters" in job.files else None
    check_raster = job["check_raster"].astype(bool) if "check_raster" in job.files else None
    decoder = None
    if "decoder_w" in job.files:
        from spikeforge.sw.exit_decoder import DecoderWeights

        decoder = DecoderWeights(job["decoder_w"], job["decoder_b"])

    @bridge
    def host():
        out = {"info": np.frombuffer(link.info(), dtype=np.uint8)}
        for layer, ws in enumerate(words):
            link.write_words(layer, 0, ws)
        out["readback_ok"] = all(link.read_words(i, 0, len(ws)) == ws
                                 for i, ws in enumerate(words))
        if decoder is not None:
            link.load_decoder(decoder)
            back = link.read_decoder()
            out["decoder_ok"] = (back.w == decoder.w).all() and (back.b == decoder.b).all()
        if check_raster is not None:
            out["check_frames"] = np.array(link.send_events(check_raster))
        errors = []
        for expected, request in broken_frames(link):
            link.transport.write(request)
            try:
                link.response(request[1])
                errors.append(f"{expected}: accepted")
            except LinkError as exc:
                errors.append(f"{expected}: {exc}")
        out["errors"] = np.array(errors)
        out["unchanged_ok"] = all(link.read_words(i, 0, len(ws)) == ws
                                  for i, ws in enumerate(words))
        if check_raster is not None:
            r = link.run_stored()
            out.update(check_cycles=np.array(r.cycles), check_prediction=np.array(r.prediction),
                       check_events=r.events.reshape(-1, 2))
        cycles, predictions, events, steps = [], [], [], []
        for b, px in enumerate(pixels):
            label = None if labels is None else int(labels[b])
            if use_raster[b]:
                r = link.run_events(rasters[b], label=label, lr_shift=int(job["lr_shift"]),
                                    decode=decoder is not None)
            else:
                r = link.run(px, label=label, lr_shift=int(job["lr_shift"]),
                             decode=decoder is not None)
            steps.append(r.steps)
            cycles.append(r.cycles)
            predictions.append(r.prediction)
            events += [(b, int(s), int(n)) for s, n in r.events]
        out.update(cycles=np.array(cycles), predictions=np.array(predictions),
                   steps=np.array(steps),
                   events=np.array(events, dtype=np.int64).reshape(-1, 3))
        for i in range(cfg.n_layers):
            out[f"after{i}"] = np.array([str(w) for w in link.read_words(
                i, 0, len(words[i]))])
        c = link.counters()
        out["gaps"] = np.array(link.transport.gaps)
        out["counters"] = np.array([c.samples, c.frames, c.errors, c.fifo_overflow,
                                    c.readout_overflow, c.rx_overrun, c.stream_error])
        return out

    out = await host()
    np.savez(os.environ["SPIKEFORGE_RESULT"], **out)
