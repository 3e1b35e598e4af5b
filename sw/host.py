"""Host side of the link (docs/host_link.md): talk to the core over a serial port, or to the
RTL in simulation through any object with ``write(bytes)`` and ``read(n) -> bytes``.

>>> link = HostLink(SerialTransport("/dev/ttyUSB1", baud=1_000_000), cfg)
>>> link.check_info()
>>> link.load_weights(weights)
>>> result = link.run(pixels)          # RunResult(cycles, prediction, events)
>>> result = link.run_events(raster)   # the input spikes themselves: (T, N_in) bool raster
>>> result = link.run_events([(0, 5), (3, 17)], label=2)      # or (step, neuron) events
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.protocol import (
    CMD_COUNTERS,
    CMD_EVENTS,
    CMD_INFO,
    CMD_READ,
    CMD_RUN,
    CMD_WRITE,
    COUNTERS_BYTES,
    ERROR_NAMES,
    EVENTS_CLEAR,
    REQUEST_START,
    RESPONSE_START,
    RUN_HEADER_BYTES,
    RUN_LEARN,
    RUN_RASTER,
    buffer_depth,
    crc8,
    events_per_frame,
    info_bytes,
    word_bytes,
)
from spikeforge.sw.weights import pack_words, unpack_words


class LinkError(RuntimeError):
    """The core answered with an error, or the link broke (timeout, bad frame)."""


def crc(data: bytes) -> int:
    c = 0
    for b in data:
        c = crc8(c, b)
    return c


def frame(cmd: int, payload: bytes = b"") -> bytes:
    """A request frame: ``A5 cmd len_lo len_hi payload crc``."""
    if len(payload) >= 1 << 16:
        raise ValueError(f"payload of {len(payload)} bytes: at most 65535")
    body = bytes([cmd]) + len(payload).to_bytes(2, "little") + payload
    return bytes([REQUEST_START]) + body + bytes([crc(body)])


@dataclass(frozen=True)
class RunResult:
    cycles: int                 # the core's cycle counter for the sample
    prediction: int             # -1: no unique argmax
    events: np.ndarray          # (n_spikes, 2) int: (step, neuron) per output spike

    def raster(self, steps: int, n_out: int) -> np.ndarray:
        r = np.zeros((steps, n_out), dtype=bool)
        r[self.events[:, 0], self.events[:, 1]] = True
        return r


@dataclass(frozen=True)
class Counters:
    samples: int
    frames: int
    errors: int
    fifo_overflow: bool
    events_overflow: bool
    rx_overrun: bool
    stream_error: bool


class SerialTransport:
    """pyserial port: 8N1 at ``baud``; ``read`` raises :class:`LinkError` on timeout."""

    def __init__(self, port: str, baud: int = 1_000_000, timeout: float = 2.0):
        import serial

        self.port = serial.Serial(port, baudrate=baud, timeout=timeout)

    def write(self, data: bytes) -> None:
        self.port.write(data)

    def read(self, n: int) -> bytes:
        data = self.port.read(n)
        if len(data) != n:
            raise LinkError(f"timeout: {len(data)} of {n} response bytes arrived")
        return data

    def close(self) -> None:
        self.port.close()


class HostLink:
    """The protocol, command by command, for the network of ``cfg``."""

    def __init__(self, transport, cfg):
        self.transport = transport
        self.cfg = cfg
        self.word_bytes = word_bytes(cfg)
        self.depths = [cfg.layers[i] * cfg.groups(i) for i in range(cfg.n_layers)]
        self.max_words = (buffer_depth(cfg) - 5) // self.word_bytes
        self.max_events = events_per_frame(cfg)

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one frame, return the response payload; raise :class:`LinkError` on an error
        response or a corrupted response."""
        self.transport.write(frame(cmd, payload))
        return self.response(cmd)

    def response(self, cmd: int) -> bytes:
        head = self.transport.read(4)
        if head[0] != RESPONSE_START:
            raise LinkError(f"response starts with 0x{head[0]:02x}, expected "
                            f"0x{RESPONSE_START:02x}")
        n = int.from_bytes(head[2:4], "little")
        rest = self.transport.read(n + 1)
        if crc(head[1:] + rest) != 0:
            raise LinkError(f"response to command 0x{cmd:02x}: checksum mismatch")
        status, payload = head[1], rest[:-1]
        if status & 0x80:
            name = ERROR_NAMES.get(status, "unknown error")
            raise LinkError(f"command 0x{cmd:02x}: error 0x{status:02x} ({name})")
        if status != cmd:
            raise LinkError(f"response for command 0x{status:02x}, expected 0x{cmd:02x}")
        return payload

    # ---- commands ----
    def info(self) -> bytes:
        return self.request(CMD_INFO)

    def check_info(self) -> None:
        """Raise :class:`LinkError` unless the core was built for this config."""
        got, want = self.info(), info_bytes(self.cfg)
        if got != want:
            raise LinkError(f"the core was built for another config: INFO {got.hex()}, "
                            f"expected {want.hex()} ({self.cfg.name})")

    def write_words(self, layer: int, addr: int, words) -> None:
        wb = self.word_bytes
        for lo in range(0, len(words), self.max_words):
            chunk = words[lo:lo + self.max_words]
            payload = bytes([layer]) + (addr + lo).to_bytes(2, "little") + \
                len(chunk).to_bytes(2, "little") + \
                b"".join(int(w).to_bytes(wb, "little") for w in chunk)
            self.request(CMD_WRITE, payload)

    def read_words(self, layer: int, addr: int, count: int) -> list[int]:
        wb, out = self.word_bytes, []
        step = 0xFFFF // wb
        for lo in range(0, count, step):
            n = min(step, count - lo)
            data = self.request(CMD_READ, bytes([layer]) + (addr + lo).to_bytes(2, "little")
                                + n.to_bytes(2, "little"))
            out += [int.from_bytes(data[i * wb:(i + 1) * wb], "little") for i in range(n)]
        return out

    def load_weights(self, weights) -> None:
        """Write the stored weights of every layer (``pack_words`` images)."""
        for layer, w in enumerate(weights):
            self.write_words(layer, 0, pack_words(self.cfg, layer, w))

    def read_weights(self) -> list[np.ndarray]:
        return [unpack_words(self.cfg, layer, self.read_words(layer, 0, depth))
                for layer, depth in enumerate(self.depths)]

    def run(self, pixels, *, label: int | None = None, lr_shift: int = 0) -> RunResult:
        """One sample; a training sample when ``label`` is given (learning configs)."""
        pixels = np.asarray(pixels)
        if pixels.shape != (self.cfg.layers[0],):
            raise ValueError(f"pixels: shape {pixels.shape}, expected ({self.cfg.layers[0]},)")
        return self._run(0, label, lr_shift, bytes(int(p) for p in pixels))

    def events_of(self, raster_or_events) -> np.ndarray:
        """``(n, 2)`` int array of ``(step, neuron)`` input events, checked against the config.

        A bool array of shape ``(T, N_in)`` is a raster (``raster[t, j]``: input ``j`` spikes
        at step ``t``; its events in ascending step, then neuron); anything else is a list of
        ``(step, neuron)`` pairs, taken in the order given (a pair given twice sets one spike).
        """
        T, n_in = self.cfg.time_steps, self.cfg.layers[0]
        arr = np.asarray(raster_or_events)
        if arr.dtype == bool:
            if arr.shape != (T, n_in):
                raise ValueError(f"input raster: shape {arr.shape}, expected ({T}, {n_in})")
            return np.argwhere(arr).astype(np.int64)
        if arr.size == 0:
            return np.zeros((0, 2), dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"input events: expected (step, neuron) integer pairs, shape "
                             f"(n, 2), or a bool raster ({T}, {n_in}); got {arr.dtype} "
                             f"{arr.shape}")
        for col, (name, hi) in enumerate((("step", T), ("neuron", n_in))):
            bad = (arr[:, col] < 0) | (arr[:, col] >= hi)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"input event {i}: {name} {int(arr[i, col])} is out of range, "
                                 f"legal range is [0, {hi - 1}]")
        return arr.astype(np.int64)

    def check_event_input(self) -> None:
        """Raise :class:`LinkError` unless the core has the input-event port."""
        if not self.cfg.event_input:
            raise LinkError(f"config {self.cfg.name!r} is built without input events "
                            f"(encoding.event_input = false): send pixels with run()")

    def send_events(self, raster_or_events, *, clear: bool = True) -> int:
        """Store input events in the core's input raster (cleared first with ``clear``), in
        EVENTS frames that fit the buffer; returns the number of frames sent."""
        self.check_event_input()
        events = self.events_of(raster_or_events)
        chunks = [events[lo:lo + self.max_events]
                  for lo in range(0, len(events), self.max_events)] or [events]
        for i, chunk in enumerate(chunks):
            payload = bytes([EVENTS_CLEAR if clear and i == 0 else 0]) + b"".join(
                bytes([int(t)]) + int(j).to_bytes(2, "little") for t, j in chunk)
            self.request(CMD_EVENTS, payload)
        return len(chunks)

    def run_events(self, raster_or_events, *, label: int | None = None,
                   lr_shift: int = 0) -> RunResult:
        """One sample whose input spikes are given (a raster or events, see
        :meth:`events_of`) instead of pixels: the core's input raster is cleared, loaded
        and run (:meth:`run_stored`). A training sample when ``label`` is given."""
        self.send_events(raster_or_events, clear=True)
        return self.run_stored(label=label, lr_shift=lr_shift)

    def run_stored(self, *, label: int | None = None, lr_shift: int = 0) -> RunResult:
        """One sample on the input raster the core holds (what EVENTS frames stored)."""
        self.check_event_input()
        return self._run(RUN_RASTER, label, lr_shift, b"")

    def _run(self, flags: int, label, lr_shift: int, pixels: bytes) -> RunResult:
        if label is not None:
            flags |= RUN_LEARN
        head = bytes([flags, 0 if label is None else int(label), int(lr_shift)])
        data = self.request(CMD_RUN, head + pixels)
        cycles = int.from_bytes(data[0:4], "little")
        n = int.from_bytes(data[5:7], "little")
        if len(data) != RUN_HEADER_BYTES + 2 * n:
            raise LinkError(f"RUN response of {len(data)} bytes for {n} spikes")
        events = np.frombuffer(data[RUN_HEADER_BYTES:], dtype=np.uint8).reshape(n, 2)
        return RunResult(cycles, -1 if data[4] == 0xFF else data[4], events.astype(np.int64))

    def counters(self) -> Counters:
        d = self.request(CMD_COUNTERS)
        if len(d) != COUNTERS_BYTES:
            raise LinkError(f"COUNTERS response of {len(d)} bytes")
        flags = d[12]
        return Counters(int.from_bytes(d[0:4], "little"), int.from_bytes(d[4:8], "little"),
                        int.from_bytes(d[8:12], "little"), bool(flags & 1),
                        bool(flags & 2), bool(flags & 4), bool(flags & 8))
