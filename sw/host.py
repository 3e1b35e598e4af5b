"""Host side of the link (docs/host_link.md): talk to the core over a serial port, or to the
RTL in simulation through any object with ``write(bytes)`` and ``read(n) -> bytes``.

>>> link = HostLink(SerialTransport("/dev/ttyUSB1", baud=1_000_000), cfg)
>>> link.check_info()
>>> link.load_weights(weights)
>>> result = link.run(pixels)          # RunResult(cycles, prediction, events)
>>> result = link.run_events(raster)   # the input spikes themselves: (T, N_in) bool raster
>>> result = link.run_events([(0, 5), (3, 17)], label=2)      # or (step, neuron) events

Over a noisy link, ``HostLink(transport, cfg, retries=3)`` sends a frame again when no valid
answer came back (after waiting for the link to go quiet), except a RUN the core may have
applied: it asks the core's sample counter and never runs a sample twice
(:class:`SampleLost`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.protocol import (
    COUNTERS,
    CRC_BYTES,
    CRC_FROM,
    DEFAULT_BAUD,
    ERROR_NAMES,
    ERROR_STATUS,
    EVENT,
    EVENTS_REQUEST,
    FRAME_HEADER,
    MAX_PAYLOAD,
    NO_PREDICTION,
    READOUT_ITEM,
    REQUEST_START,
    RESPONSE_START,
    RUN_REQUEST,
    RUN_RESPONSE,
    WEIGHTS_REQUEST,
    Command,
    ErrorCode,
    EventsFlags,
    RunFlags,
    buffer_depth,
    crc8,
    decoder_rows,
    decoder_words,
    events_per_frame,
    info_bytes,
    info_layout,
    nbytes,
    pack,
    unpack,
    weight_depths,
    wire_dtype,
    word_bytes,
)
from spikeforge.sw.weights import pack_words, unpack_words


class LinkError(RuntimeError):
    """The core answered with an error, or the link broke (timeout, bad frame)."""


class CoreError(LinkError):
    """The core answered with an error response (``status = 0x80 | code``): it refused the
    frame, so the frame changed nothing (docs/host_link.md, "Checks before anything
    changes")."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class SampleLost(LinkError):
    """A RUN without a valid answer after the retries; it is not sent again. ``applied``:
    True if the core ran it (its sample counter moved: for a training sample the weights
    changed) and the answer was lost on the way back, False if it never ran, None if the
    counter could not be read either (the link is down)."""

    def __init__(self, message: str, applied: bool | None):
        super().__init__(message)
        self.applied = applied


SAMPLE_COUNTER = 1 << COUNTERS["samples"].width      # the core's RUN counter wraps here
LINK_ERRORS = {ErrorCode.CRC, ErrorCode.TIMEOUT, ErrorCode.FRAMING}
# error responses the line causes; the others (command, length, argument) are checked only
# after a good CRC, so they answer what was sent and sending it again cannot help


def _link_fault(exc: LinkError) -> bool:
    """Whether sending the frame again may help: no valid answer, or the core saw a broken
    frame."""
    return not isinstance(exc, CoreError) or exc.code in LINK_ERRORS


def _shown(value) -> str:
    """An INFO field for an error message: numbers as they are, arrays as lists, the
    config hash in hex."""
    if isinstance(value, int):
        return str(value) if value < 1 << 16 else f"0x{value:08x}"
    try:
        return str([int(v) for v in value])
    except TypeError:
        return str(int(value.as_value()))


def crc(data: bytes) -> int:
    c = 0
    for b in data:
        c = crc8(c, b)
    return c


def frame(cmd: int, payload: bytes = b"") -> bytes:
    """A request frame: ``A5 cmd len_lo len_hi payload crc``."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes: at most {MAX_PAYLOAD}")
    head = pack(FRAME_HEADER, {"start": REQUEST_START, "code": cmd, "length": len(payload)})
    body = head + payload
    return body + crc(body[CRC_FROM:]).to_bytes(CRC_BYTES, "little")


@dataclass(frozen=True)
class RunResult:
    cycles: int                 # the core's cycle counter for the sample
    prediction: int             # -1: no unique argmax (the decoder's decision when decoded)
    events: np.ndarray          # (n_spikes, 2) int: (step, neuron) per output spike
    steps: int = 0              # time steps the sample ran (fewer after an early exit)

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
    readout_overflow: bool
    rx_overrun: bool
    stream_error: bool


class SerialTransport:
    """pyserial port: 8N1 at ``baud``; ``read`` raises :class:`LinkError` on timeout (no
    ``n`` bytes within ``timeout`` seconds) and on a port error (a cable pulled)."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, timeout: float = 2.0):
        import serial

        self.port = serial.Serial(port, baudrate=baud, timeout=timeout)
        self.timeout = timeout

    def write(self, data: bytes) -> None:
        import serial

        try:
            self.port.write(data)
        except serial.SerialException as exc:
            raise LinkError(f"port error: {exc}") from exc

    def read(self, n: int) -> bytes:
        import serial

        try:
            data = self.port.read(n)
        except serial.SerialException as exc:
            raise LinkError(f"port error: {exc}") from exc
        if len(data) != n:
            raise LinkError(f"timeout: {len(data)} of {n} response bytes arrived")
        return data

    def drain(self, quiet: float) -> int:
        """Read and drop bytes until none came for ``quiet`` seconds (at most ``timeout``
        in all, a stuck line is not waited out forever); reopen the port if it broke.
        Returns the bytes dropped."""
        import time

        import serial

        dropped, deadline = 0, time.monotonic() + max(self.timeout, quiet)
        try:
            if not self.port.is_open:
                self.port.open()
            self.port.timeout = quiet
            while time.monotonic() < deadline:
                chunk = self.port.read(4096)
                if not chunk:
                    break
                dropped += len(chunk)
        except serial.SerialException:
            self.port.close()          # the next request fails fast and drains (reopens) again
        finally:
            self.port.timeout = self.timeout
        return dropped

    def close(self) -> None:
        self.port.close()


class HostLink:
    """The protocol, command by command, for the network of ``cfg``.

    ``retries``: how many times a frame is sent again when no valid answer came back (an
    error response, a corrupted or missing response). Before each resend the driver waits
    until the link has been quiet for ``quiet`` seconds (longer than the core's inter-byte
    timeout, so a frame the core saw only part of has been answered) and drops what came.
    INFO, WRITE, READ, COUNTERS and EVENTS are idempotent and simply sent again. A RUN whose
    answer was lost may have run: the driver asks the core's sample counter (COUNTERS) and
    sends the RUN again only if it did not (:class:`SampleLost` otherwise). ``retries = 0``
    (the default) raises at the first failure, with no resend and no drain.
    ``resends`` counts the frames sent again.
    """

    def __init__(self, transport, cfg, *, retries: int = 0, quiet: float = 0.2):
        if retries < 0:
            raise ValueError(f"retries: at least 0, got {retries}")
        self.transport = transport
        self.cfg = cfg
        self.retries, self.quiet = retries, quiet
        self.resends = 0
        self.samples: int | None = None     # the core's RUN count, once known (with retries)
        self.first_samples: int | None = None   # ... when it was first read
        self.word_bytes = word_bytes(cfg)
        self.depths = weight_depths(cfg)
        self.max_words = (buffer_depth(cfg) - nbytes(WEIGHTS_REQUEST)) // self.word_bytes
        self.max_events = events_per_frame(cfg)

    def exchange(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one frame, return the response payload; raise :class:`CoreError` on an error
        response, :class:`LinkError` on a corrupted or missing one. No retry."""
        self.transport.write(frame(cmd, payload))
        return self.response(cmd)

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """:meth:`exchange` with up to ``retries`` resends (for idempotent commands)."""
        for attempt in range(self.retries + 1):
            try:
                return self.exchange(cmd, payload)
            except LinkError as exc:
                if attempt == self.retries or not _link_fault(exc):
                    raise
            self.transport.drain(self.quiet)
            self.resends += 1

    def response(self, cmd: int) -> bytes:
        head = self.transport.read(nbytes(FRAME_HEADER))
        header = unpack(FRAME_HEADER, head)
        if header.start != RESPONSE_START:
            raise LinkError(f"response starts with 0x{header.start:02x}, expected "
                            f"0x{RESPONSE_START:02x}")
        rest = self.transport.read(header.length + CRC_BYTES)
        if crc(head[CRC_FROM:] + rest) != 0:
            raise LinkError(f"response to command 0x{cmd:02x}: checksum mismatch")
        status, payload = header.code, rest[:header.length]
        if status & ERROR_STATUS:
            name = ERROR_NAMES.get(status, "unknown error")
            raise CoreError(f"command 0x{cmd:02x}: error 0x{status:02x} ({name})", status)
        if status != cmd:
            raise LinkError(f"response for command 0x{status:02x}, expected 0x{cmd:02x}")
        return payload

    # ---- commands ----
    def info(self) -> bytes:
        return self.request(Command.INFO)

    def check_info(self) -> None:
        """Raise :class:`LinkError` unless the core was built for this config, naming the
        INFO fields that differ (the core's value, then the config's)."""
        got, want = self.info(), info_bytes(self.cfg)
        if got == want:
            return
        layout = info_layout(self.cfg)
        if len(got) != nbytes(layout):
            differ = f"INFO of {len(got)} bytes, expected {nbytes(layout)}"
        else:
            core, ours = unpack(layout, got), unpack(layout, want)
            shown = [(name, _shown(getattr(core, name)), _shown(getattr(ours, name)))
                     for name, _ in layout]
            differ = ", ".join(f"{name} {a} vs {b}" for name, a, b in shown if a != b)
        raise LinkError(f"the core was built for another config than {self.cfg.name}: "
                        f"{differ} (core vs config)")

    def write_words(self, layer: int, addr: int, words) -> None:
        wb = self.word_bytes

        def send(lo: int, n: int) -> None:
            head = pack(WEIGHTS_REQUEST, {"layer": layer, "address": addr + lo, "count": n})
            self.exchange(Command.WRITE, head + b"".join(int(w).to_bytes(wb, "little")
                                                         for w in words[lo:lo + n]))

        self._in_frames(len(words), send)

    def read_words(self, layer: int, addr: int, count: int) -> list[int]:
        wb, out = self.word_bytes, []

        def receive(lo: int, n: int) -> None:
            data = self.exchange(Command.READ, pack(WEIGHTS_REQUEST, {
                "layer": layer, "address": addr + lo, "count": n}))
            out.extend(int.from_bytes(data[i * wb:(i + 1) * wb], "little") for i in range(n))

        self._in_frames(count, receive)
        return out

    def _in_frames(self, count: int, transfer) -> None:
        """``transfer(lo, n)`` for consecutive runs of words ``lo .. lo + n - 1`` covering
        ``0 .. count - 1``: a buffer of words per frame. A frame the line broke is sent again
        (up to ``retries`` times in a row) with half the words, down to one: on a noisy line
        a shorter frame gets through more often."""
        lo, n, failures = 0, self.max_words, 0
        while lo < count:
            take = min(n, count - lo)
            try:
                transfer(lo, take)
            except LinkError as exc:
                if failures == self.retries or not _link_fault(exc):
                    raise
                failures += 1
                self.transport.drain(self.quiet)
                self.resends += 1
                n = max(1, take // 2)
                continue
            lo, failures = lo + take, 0

    def load_weights(self, weights) -> None:
        """Write the stored weights of every layer (``pack_words`` images)."""
        for layer, w in enumerate(weights):
            self.write_words(layer, 0, pack_words(self.cfg, layer, w))

    def read_weights(self) -> list[np.ndarray]:
        return [unpack_words(self.cfg, layer, self.read_words(layer, 0, depth))
                for layer, depth in enumerate(self.depths)]

    def _check_decoder(self) -> None:
        if self.cfg.decoder is None:
            raise LinkError(f"config {self.cfg.name!r} has no decoder on the chip ([decoder])")

    def load_decoder(self, decoder) -> None:
        """Write the decoder on the chip (a :class:`sw.exit_decoder.DecoderWeights`) as
        weight "layer" ``L``, one WRITE per row of ``C`` classes."""
        self._check_decoder()
        n_out = self.cfg.layers[-1]
        words = decoder_words(self.cfg, decoder)
        for lo in range(0, len(words), n_out):
            row = words[lo:lo + n_out]
            self.write_words(self.cfg.n_layers, row[0][0], [value for _, value in row])

    def read_decoder(self):
        """The decoder on the chip, read back row by row."""
        from spikeforge.sw.exit_decoder import DecoderWeights

        self._check_decoder()
        cfg, n_out = self.cfg, self.cfg.layers[-1]
        bits = cfg.decoder.weight_bits
        w = np.zeros((cfg.decoder.steps, n_out, n_out), dtype=np.int64)
        b = np.zeros(n_out, dtype=np.int64)
        for addr, t, j in decoder_rows(cfg):
            raw = np.array(self.read_words(cfg.n_layers, addr, n_out), dtype=np.int64)
            values = raw - ((raw >> (bits - 1)) << bits)             # two's complement
            if j < n_out:
                w[t, j] = values
            else:
                b[:] = values
        return DecoderWeights(w, b)

    def run(self, pixels, *, label: int | None = None, lr_shift: int = 0,
            decode: bool = False) -> RunResult:
        """One sample; a training sample when ``label`` is given (learning configs);
        ``decode``: decided by the decoder on the chip, with its early exit (an inference
        sample of a config with ``[decoder]``)."""
        pixels = np.asarray(pixels)
        if pixels.shape != (self.cfg.layers[0],):
            raise ValueError(f"pixels: shape {pixels.shape}, expected ({self.cfg.layers[0]},)")
        if decode:
            self._check_decoder()
        return self._run(RunFlags.DECODE if decode else 0, label, lr_shift,
                         bytes(int(p) for p in pixels))

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
            wire = np.zeros(len(chunk), dtype=wire_dtype(EVENT))
            wire["step"], wire["neuron"] = chunk[:, 0], chunk[:, 1]
            head = pack(EVENTS_REQUEST, {"flags": EventsFlags.CLEAR if clear and i == 0 else 0})
            self.request(Command.EVENTS, head + wire.tobytes())
        return len(chunks)

    def run_events(self, raster_or_events, *, label: int | None = None,
                   lr_shift: int = 0, decode: bool = False) -> RunResult:
        """One sample whose input spikes are given (a raster or events, see
        :meth:`events_of`) instead of pixels: the core's input raster is cleared, loaded
        and run (:meth:`run_stored`). A training sample when ``label`` is given."""
        self.send_events(raster_or_events, clear=True)
        return self.run_stored(label=label, lr_shift=lr_shift, decode=decode)

    def run_stored(self, *, label: int | None = None, lr_shift: int = 0,
                   decode: bool = False) -> RunResult:
        """One sample on the input raster the core holds (what EVENTS frames stored)."""
        self.check_event_input()
        if decode:
            self._check_decoder()
        return self._run(RunFlags.RASTER | (RunFlags.DECODE if decode else 0), label,
                         lr_shift, b"")

    def _run(self, flags: int, label, lr_shift: int, pixels: bytes) -> RunResult:
        if label is not None:
            flags |= RunFlags.LEARN
        head = pack(RUN_REQUEST, {"flags": flags, "label": 0 if label is None else label,
                                  "lr_shift": lr_shift})
        data = self._run_once(head + pixels)
        fixed = nbytes(RUN_RESPONSE)
        if len(data) < fixed:
            raise LinkError(f"RUN response of {len(data)} bytes")
        result = unpack(RUN_RESPONSE, data[:fixed])
        n = result.spikes
        if len(data) != fixed + nbytes(READOUT_ITEM) * n:
            raise LinkError(f"RUN response of {len(data)} bytes for {n} spikes")
        items = np.frombuffer(data[fixed:], dtype=wire_dtype(READOUT_ITEM))
        events = np.stack([items["step"], items["neuron"]], axis=1)
        prediction = -1 if result.prediction == NO_PREDICTION else result.prediction
        return RunResult(result.cycles, prediction, events.astype(np.int64), result.steps)

    def _run_once(self, payload: bytes) -> bytes:
        """RUN's response payload; the RUN is applied at most once (see the class)."""
        if self.retries == 0:
            return self.exchange(Command.RUN, payload)
        if self.samples is None:
            try:
                self.samples = self.counters().samples
            except LinkError as exc:
                raise SampleLost(f"RUN not sent: the sample counter could not be read ({exc})",
                                 applied=False) from exc
            if self.first_samples is None:
                self.first_samples = self.samples
        for attempt in range(self.retries + 1):
            try:
                data = self.exchange(Command.RUN, payload)
                self.samples = (self.samples + 1) % SAMPLE_COUNTER
                return data
            except LinkError as exc:
                if not _link_fault(exc):
                    raise
                error = exc
            self.transport.drain(self.quiet)
            if not isinstance(error, CoreError):     # no valid answer: did it run?
                try:
                    samples = self.counters().samples
                except LinkError as again:
                    self.samples = None                # read again before the next RUN
                    raise SampleLost(f"RUN: {error}; the sample counter could not be read "
                                     f"either ({again})", applied=None) from error
                if samples == (self.samples + 1) % SAMPLE_COUNTER:
                    self.samples = samples
                    raise SampleLost(f"RUN: the core ran the sample but its answer was lost "
                                     f"({error})", applied=True) from error
                if samples != self.samples:
                    raise LinkError(f"RUN: the core's sample counter is {samples}, expected "
                                    f"{self.samples} or one more: another host is talking "
                                    f"to it") from error
            if attempt < self.retries:
                self.resends += 1
        raise SampleLost(f"RUN: no valid answer in {self.retries + 1} tries, the core did not "
                         f"run it (last: {error})", applied=False)

    def counters(self) -> Counters:
        d = self.request(Command.COUNTERS)
        if len(d) != nbytes(COUNTERS):
            raise LinkError(f"COUNTERS response of {len(d)} bytes")
        c = unpack(COUNTERS, d)
        return Counters(c.samples, c.frames, c.errors, bool(c.fifo_overflow),
                        bool(c.readout_overflow), bool(c.rx_overrun), bool(c.stream_error))
