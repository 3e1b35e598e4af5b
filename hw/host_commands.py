"""The host link's commands (docs/host_link.md), between the deframer and the enframer.

* :class:`RequestChecks` captures a request's arguments as they arrive and registers the
  checks.
* :class:`CommandUnit` dispatches a checked frame and runs its command: INFO, COUNTERS,
  WRITE, READ, RUN and (with the input raster) EVENTS. It answers through the enframer.
"""

from contextlib import contextmanager

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from spikeforge.config import LR_SHIFT
from spikeforge.hw.host_framing import (
    payload_reader,
    request_signature,
    response_layout,
    tail_signature,
)
from spikeforge.hw.host_spikes import events_control, readout_control
from spikeforge.protocol import (
    COUNTERS,
    EVENT,
    EVENTS_REQUEST,
    FRAME_HEADER,
    MAX_PAYLOAD,
    NO_PREDICTION,
    RUN_REQUEST,
    RUN_RESPONSE,
    WEIGHTS_REQUEST,
    Command,
    ErrorCode,
    EventsFlags,
    RunFlags,
    buffer_depth,
    field_bytes,
    info_bytes,
    nbytes,
    port_depths,
    word_bytes,
)
from spikeforge.timing import WEIGHT_READ_LATENCY

# A request's arguments: the header of its payload, whichever command it is, captured byte
# by byte as it arrives (RUN's and EVENTS' flags are WRITE's and READ's layer byte).
REQUEST_ARGS = data.UnionLayout({"weights": WEIGHTS_REQUEST, "run": RUN_REQUEST,
                                 "events": EVENTS_REQUEST})

# The checks DISPATCH reads, one bit each: len_zero is set for an empty payload (what INFO
# and COUNTERS need), every other bit when its check fails.
VERDICTS = data.StructLayout({name: 1 for name in (
    "len_zero",
    "write_len_bad", "read_len_bad", "run_len_bad", "events_len_bad",
    "range_bad",        # WRITE, READ: layer, or address range
    "run_arg_bad",      # an unknown flag, label or lr_shift
    "events_arg_bad",   # an unknown flag, an event's step or neuron
)})

ADDRESS_SUM = WEIGHTS_REQUEST["address"].width + 1    # bits of address + count

assert EVENT["step"].width == 8 and EVENT["neuron"].width == 16   # RequestChecks' byte states


def commands(cfg) -> list[Command]:
    """The commands a core of ``cfg`` knows, in the order of its one-hot command flags."""
    return [Command.INFO, Command.COUNTERS, Command.WRITE, Command.READ, Command.RUN] + (
        [Command.EVENTS] if cfg.event_input else [])


def checked_signature(cfg) -> wiring.Signature:
    """What :class:`RequestChecks` tells the :class:`CommandUnit`, the checks' side.

    * ``args``: the request's arguments.
    * ``command``: one flag per known command.
    * ``verdicts``: the checks.
    * ``count_bytes``: WRITE's and READ's word count in bytes.
    """
    return wiring.Signature({
        "args": Out(REQUEST_ARGS),
        "command": Out(data.StructLayout({c.name.lower(): 1 for c in commands(cfg)})),
        "verdicts": Out(VERDICTS),
        "count_bytes": Out(WEIGHTS_REQUEST["count"].width + 1 + word_bytes(cfg).bit_length()),
    })


class RequestChecks(wiring.Component):
    """A request's arguments and their checks, registered for DISPATCH.

    The arguments (:data:`REQUEST_ARGS`) are captured from the payload bytes as the
    deframer takes them, and so are EVENTS' range checks, event by event. The payload is
    not read again. The command byte is decoded into one flag per command. Every check
    (payload length for the command, layer and address range, flags, label, lr_shift) is
    registered.

    Parameters
    ----------
    cfg : Config
        The network's config.

    Attributes
    ----------
    requests : In(request_signature())
        The deframer's frame: header and payload bytes.
    checked : Out(checked_signature(cfg))
        The arguments, command flags and checks.

    Notes
    -----
    Latency: the arguments are registered with their byte. The command flags and the checks
    follow one cycle after their inputs (WRITE's length check two: it reads the registered
    ``count_bytes``). These inputs settle with the last payload byte, at least a byte (the
    CRC) before DISPATCH reads them. This keeps the 8-bit compares and the multiplier-free
    ``count * word_bytes`` off the command path.

    Throughput: one payload byte per cycle.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        super().__init__({"requests": In(request_signature()),
                          "checked": Out(checked_signature(cfg))})

    def elaborate(self, platform):
        m = Module()
        cfg, checked = self.cfg, self.checked
        payload = self.requests.payload
        with m.If(payload.valid):
            for i in range(nbytes(REQUEST_ARGS)):
                with m.If(payload.payload.index == i):
                    m.d.sync += checked.args.as_value()[8 * i:8 * (i + 1)].eq(
                        payload.payload.data)
        code = self.requests.header.code
        m.d.sync += [checked.command[c.name.lower()].eq(code == c) for c in commands(cfg)]
        # count * word_bytes as shifts and adds: no multiplier lands on the command path
        count, wb = checked.args.weights.count, word_bytes(cfg)
        m.d.sync += checked.count_bytes.eq(sum(count << i for i in range(wb.bit_length())
                                               if wb >> i & 1))
        self._check_lengths(m)
        self._check_arguments(m)
        if cfg.event_input:
            self._check_events(m)
        return m

    def _check_lengths(self, m):
        cfg, v = self.cfg, self.checked.verdicts
        length, depth = self.requests.header.length, buffer_depth(cfg)
        weights, run = nbytes(WEIGHTS_REQUEST), nbytes(RUN_REQUEST)
        raster = (self.checked.args.run.flags & RunFlags.RASTER).any()
        m.d.sync += [
            v.len_zero.eq(length == 0),
            v.write_len_bad.eq((length < weights + word_bytes(cfg)) | (length > depth) |
                               (length != weights + self.checked.count_bytes)),
            v.read_len_bad.eq(length != weights),
            v.run_len_bad.eq(length != (Mux(raster, run, run + cfg.layers[0])
                                        if cfg.event_input else run + cfg.layers[0])),
        ]

    def _check_arguments(self, m):
        cfg, v, args = self.cfg, self.checked.verdicts, self.checked.args
        w, run = args.weights, args.run
        end_addr = Signal(ADDRESS_SUM)
        m.d.comb += end_addr.eq(w.address + w.count)
        depths = Array(Const(d, ADDRESS_SUM) for d in port_depths(cfg))
        known = ((RunFlags.RASTER if cfg.event_input else 0)
                 | (RunFlags.LEARN if cfg.learning is not None else 0)
                 | (RunFlags.DECODE if cfg.decoder is not None else 0))
        unknown = (1 << RUN_REQUEST["flags"].width) - 1 ^ known
        label_bad = (((run.flags & RunFlags.LEARN).any()
                      & ((run.label >= cfg.layers[-1]) | (run.lr_shift > LR_SHIFT[1])))
                     if cfg.learning is not None else 0)
        m.d.sync += [
            v.range_bad.eq((w.layer >= len(port_depths(cfg))) | (w.count == 0) |
                           (end_addr > depths[w.layer])),
            v.run_arg_bad.eq(((run.flags & unknown) != 0) | label_bad),
        ]

    def _check_events(self, m):
        """EVENTS: each event (step, then neuron) is checked as it arrives; the verdicts
        need a whole number of events after the header, each in range."""
        cfg, v, payload = self.cfg, self.checked.verdicts, self.requests.payload
        byte, index = payload.payload.data, payload.payload.index
        pos = Signal(range(nbytes(EVENT)))  # byte of the event that the next payload byte is
        low = Signal(8)                     # the neuron's low byte
        bad = Signal()                      # an event of this frame is out of range
        step, neuron = field_bytes(EVENT, "step").start, field_bytes(EVENT, "neuron").start
        with m.If(payload.valid):
            with m.If(index < nbytes(EVENTS_REQUEST)):      # the header: a new frame
                m.d.sync += [pos.eq(0), bad.eq(0)]
            with m.Else():
                m.d.sync += pos.eq(Mux(pos == nbytes(EVENT) - 1, 0, pos + 1))
                with m.Switch(pos):
                    with m.Case(step):
                        with m.If(byte >= cfg.time_steps):
                            m.d.sync += bad.eq(1)
                    with m.Case(neuron):
                        m.d.sync += low.eq(byte)
                    with m.Case(neuron + 1):
                        with m.If(Cat(low, byte) >= cfg.layers[0]):
                            m.d.sync += bad.eq(1)
        length = self.requests.header.length
        unknown = (1 << EVENTS_REQUEST["flags"].width) - 1 ^ EventsFlags.CLEAR
        m.d.sync += [
            v.events_len_bad.eq((length == 0) | (length > buffer_depth(cfg)) | (pos != 0)),
            v.events_arg_bad.eq(((self.checked.args.events.flags & unknown) != 0) | bad),
        ]


class CommandUnit(wiring.Component):
    """Dispatches a checked frame and runs its command, or refuses it; answers every frame,
    and every error of the deframer, through the enframer.

    * INFO and COUNTERS answer with their fixed payload.
    * WRITE copies the words from the payload buffer into the weight memory, byte by byte.
    * READ answers with the words as the tail of its response.
    * RUN loads the pixels from the buffer (none on the stored raster), runs the sample and
      answers with its cycles, prediction and spike count. The :class:`ReadoutSender`
      sends the spikes.
    * EVENTS waits for the :class:`EventsLoader`.

    Each response increments the good-frame counter, each error response the error counter
    and sets the sticky ``error``.

    Parameters
    ----------
    cfg : Config
        The network's config.
    network : wiring.Signature
        The unit's side of the network ports in :attr:`NETWORK_PORTS` (those the network
        has).

    Attributes
    ----------
    requests : In(request_signature())
        The deframer's verdict (``frame``, ``error``) and the command byte.
    checked : In(checked_signature(cfg))
        The arguments and their checks.
    responses : Out(stream.Signature(response_layout(fixed_bytes), always_ready=True))
        The response to send.
    tail : Out(tail_signature())
        READ's words, the tail of its response.
    buffer : Out(payload_reader(buffer_depth))
        Reads the payload buffer.
    readout : Out(readout_control())
        Starts the readout sender's count with the sample; its spike count.
    events : Out(events_control())
        Runs the events loader (configs with the input raster).
    network : Out(network)
        The network's weight port, pixel port, start, done, result and flags.
    rx_overrun : In(1)
        For COUNTERS.
    error : Out(1)
        Sticky: an error response was sent.

    Notes
    -----
    Latency: DISPATCH is the cycle after ``requests.frame``, and a refusal or a fixed
    response goes to the enframer in that cycle. WRITE takes ``3 * word_bytes + 1`` cycles
    per word (address, data and place per byte, then the write). RUN takes ``2 * N_in``
    cycles for the pixels, then the network's own. READ takes ``WEIGHT_READ_LATENCY``
    cycles per word before its bytes.

    Throughput: a READ byte every 2 cycles (pick, send) at the pace the enframer takes
    them.
    """

    NETWORK_PORTS = ("start", "done", "cycles", "prediction", "prediction_valid",
                     "fifo_overflow", "readout_overflow", "px_addr", "px_data", "px_we",
                     "w_layer", "w_addr", "w_wdata", "w_we", "w_rdata", "from_raster", "learn",
                     "label", "lr_shift", "steps_run", "decode")

    def __init__(self, cfg, network: wiring.Signature):
        self.cfg = cfg
        self.info = info_bytes(cfg)
        self.fixed_bytes = max(len(self.info), nbytes(COUNTERS), nbytes(RUN_RESPONSE),
                               FRAME_HEADER["code"].width // 8)
        wb, depth = word_bytes(cfg), buffer_depth(cfg)
        members = {
            "requests": In(request_signature()),
            "checked": In(checked_signature(cfg)),
            "responses": Out(stream.Signature(response_layout(self.fixed_bytes),
                                              always_ready=True)),
            "tail": Out(tail_signature()),
            "buffer": Out(payload_reader(depth)),
            "readout": Out(readout_control()),
            "network": Out(network),
            "rx_overrun": In(1),
            "error": Out(1),
        }
        if cfg.event_input:
            members["events"] = Out(events_control())
        super().__init__(members)
        # registers, shared by the commands' states
        self._k = Signal(WEIGHTS_REQUEST["count"].shape)   # word (WRITE, READ), pixel (RUN)
        self._k_last = Signal()                 # word k is the last one, registered
        self._j = Signal(range(max(wb, 2)))     # byte of the word
        self._ptr = Signal(range(depth))        # next byte of the payload buffer
        self._word = Signal(8 * wb)             # WRITE: the word being assembled
        self._wbyte = Signal(8)                 # the buffer's output, registered
        self._tx_byte = Signal(8)               # READ: the weight byte being sent
        self._samples, self._frames, self._errors = Signal(32), Signal(32), Signal(32)

    def elaborate(self, platform):
        m = Module()
        net, weights = self.network, self.checked.args.weights
        m.d.sync += self._wbyte.eq(self.buffer.data)
        # W_WRITE and R_SEND come at least two cycles after k changed (a 16-bit add and
        # compare off the response's load enables)
        m.d.sync += self._k_last.eq(self._k + 1 == weights.count)
        # the weight port's address and data come from registers, not from a state decode
        # (they fan out to every weight bit of every layer); only the write enable is gated
        m.d.comb += [net.w_layer.eq(weights.layer), net.w_addr.eq(weights.address + self._k),
                     net.w_wdata.eq(self._word)]
        counters, result = self._counters(m), self._result(m)
        if self.cfg.event_input:
            m.d.comb += [self.events.length.eq(self.requests.header.length),
                         self.events.clear.eq(
                             (self.checked.args.events.flags & EventsFlags.CLEAR).any())]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.requests.error.valid):
                    self._fail(m, self.requests.error.payload)
                with m.If(self.requests.frame):
                    m.next = "DISPATCH"
            self._dispatch(m, counters)
            self._write(m)
            self._read(m)
            self._run(m, result)
            if self.cfg.event_input:
                self._events(m)
        return m

    def _events(self, m):
        """EVENTS: the events loader stores the events, then the (empty) response."""
        with m.State("EVENTS"):
            m.d.comb += self.events.start.eq(1)
            with m.If(self.events.done):
                self._respond(m, 0)

    def _respond(self, m, length, fixed=0, n_fixed=0, tail=False, next_state="IDLE"):
        """Answer the command: status = its command byte."""
        r = self.responses
        m.d.comb += [r.valid.eq(1), r.payload.code.eq(self.requests.header.code),
                     r.payload.length.eq(length), r.payload.fixed.eq(fixed),
                     r.payload.fixed_len.eq(n_fixed), r.payload.tail.eq(tail)]
        m.d.sync += self._frames.eq(self._frames + 1)
        m.next = next_state

    def _fail(self, m, code):
        """Refuse the frame: status = ``code``, payload = its command byte."""
        r, command = self.responses, self.requests.header.code
        m.d.comb += [r.valid.eq(1), r.payload.code.eq(code),
                     r.payload.length.eq(len(command) // 8),
                     r.payload.fixed.eq(command), r.payload.fixed_len.eq(len(command) // 8)]
        m.d.sync += [self._errors.eq(self._errors + 1), self.error.eq(1)]
        m.next = "IDLE"

    def _counters(self, m):
        """The COUNTERS payload (this response counted among the good frames)."""
        net, counters = self.network, Signal(COUNTERS)
        m.d.comb += [counters.samples.eq(self._samples), counters.frames.eq(self._frames + 1),
                     counters.errors.eq(self._errors),
                     counters.fifo_overflow.eq(net.fifo_overflow),
                     counters.readout_overflow.eq(net.readout_overflow),
                     counters.rx_overrun.eq(self.rx_overrun),
                     counters.stream_error.eq(self.readout.stream_error)]
        return counters

    def _result(self, m):
        """The fixed part of the RUN payload."""
        net, result = self.network, Signal(RUN_RESPONSE)
        m.d.comb += [result.cycles.eq(net.cycles), result.spikes.eq(self.readout.spikes),
                     result.steps.eq(net.steps_run),
                     result.prediction.eq(Mux(net.prediction_valid, net.prediction,
                                              NO_PREDICTION))]
        return result

    def _dispatch(self, m, counters):
        v, checked = self.checked.verdicts, self.checked
        info = Const(int.from_bytes(self.info, "little"), 8 * len(self.info))
        order = commands(self.cfg)

        def one_hot(c):
            """The Switch pattern of the command flags for command ``c``."""
            return "".join("1" if k == c else "-" for k in reversed(order))

        @contextmanager
        def checked_command(c, length_bad, argument_bad=None):
            """The Case of command ``c``: its checks, then (the body) its start."""
            with m.Case(one_hot(c)):
                with m.If(length_bad):
                    self._fail(m, ErrorCode.LENGTH)
                if argument_bad is not None:
                    with m.Elif(argument_bad):
                        self._fail(m, ErrorCode.ARGUMENT)
                with m.Else():
                    yield

        with m.State("DISPATCH"):
            with m.Switch(checked.command.as_value()):      # one-hot (none: unknown)
                with checked_command(Command.INFO, ~v.len_zero):
                    self._respond(m, len(self.info), info, len(self.info))
                with checked_command(Command.COUNTERS, ~v.len_zero):
                    self._respond(m, nbytes(COUNTERS), counters, nbytes(COUNTERS))
                with checked_command(Command.WRITE, v.write_len_bad, v.range_bad):
                    m.d.sync += [self._k.eq(0), self._j.eq(0),
                                 self._ptr.eq(nbytes(WEIGHTS_REQUEST))]
                    m.next = "W_ADDR"
                with checked_command(Command.READ, v.read_len_bad,
                                     v.range_bad | (checked.count_bytes > MAX_PAYLOAD)):
                    m.d.sync += [self._k.eq(0), self._j.eq(0)]
                    self._respond(m, checked.count_bytes[:FRAME_HEADER["length"].width],
                                  tail=True, next_state="R_HEAD")
                with checked_command(Command.RUN, v.run_len_bad, v.run_arg_bad):
                    m.d.sync += [self._k.eq(0), self._ptr.eq(nbytes(RUN_REQUEST))]
                    m.next = "P_ADDR"
                    if self.cfg.event_input:        # no pixels to load: straight to START
                        with m.If(checked.args.run.flags & RunFlags.RASTER):
                            m.next = "START"
                if self.cfg.event_input:
                    with checked_command(Command.EVENTS, v.events_len_bad, v.events_arg_bad):
                        m.next = "EVENTS"
                with m.Default():
                    self._fail(m, ErrorCode.COMMAND)

    def _write(self, m):
        """WRITE: words from the buffer into the weight memory."""
        k, j, ptr, buf, wb = self._k, self._j, self._ptr, self.buffer, word_bytes(self.cfg)
        with m.State("W_ADDR"):
            m.d.comb += buf.addr.eq(ptr)
            m.next = "W_DATA"
        with m.State("W_DATA"):             # the byte arrives, registered into `wbyte`
            m.next = "W_PLACE"
        with m.State("W_PLACE"):
            # byte j into its place (no shift of the whole word: every byte's enable is its
            # own, and none reaches all P * store_bits flip-flops; the byte comes from a
            # register, not straight from the buffer's block RAM)
            m.d.sync += [self._word.word_select(j, 8).eq(self._wbyte), ptr.eq(ptr + 1),
                         j.eq(j + 1)]
            m.next = "W_ADDR"
            with m.If(j == wb - 1):
                m.next = "W_WRITE"
        with m.State("W_WRITE"):
            m.d.comb += self.network.w_we.eq(1)
            m.d.sync += [k.eq(k + 1), j.eq(0)]
            m.next = "W_ADDR"
            with m.If(self._k_last):
                self._respond(m, 0)

    def _read(self, m):
        """READ: after the response's header, words from the weight memory as its tail."""
        k, j, net, out, wb = self._k, self._j, self.network, self.tail, word_bytes(self.cfg)
        with m.State("R_HEAD"):
            with m.If(out.start):
                m.next = "R_ADDR"
        with m.State("R_ADDR"):         # address addr + k; WEIGHT_READ_LATENCY - 1 waits
            m.d.sync += j.eq(0)
            m.next = "R_WAIT1"
        for wait in range(1, WEIGHT_READ_LATENCY):
            with m.State(f"R_WAIT{wait}"):
                m.next = "R_PICK" if wait == WEIGHT_READ_LATENCY - 1 else f"R_WAIT{wait + 1}"
        with m.State("R_PICK"):
            # byte j from the layer's registered word (its address, addr + k, holds until
            # the word is sent), not from a copy of the word (loading and shifting all
            # P * store_bits bits of a copy was the host link's critical path), into a
            # register of its own (the byte multiplexer in front of the UART and the CRC
            # was the next one)
            m.d.sync += self._tx_byte.eq(Cat(net.w_rdata, Const(0, 8 * wb - len(net.w_rdata)))
                                         .word_select(j, 8))
            m.next = "R_SEND"
        with m.State("R_SEND"):
            m.d.comb += [out.bytes.valid.eq(1), out.bytes.payload.eq(self._tx_byte)]
            with m.If(out.bytes.ready):
                m.d.sync += j.eq(j + 1)
                m.next = "R_PICK"
                with m.If(j == wb - 1):
                    m.d.sync += k.eq(k + 1)
                    m.next = "R_ADDR"
                    with m.If(self._k_last):
                        m.d.comb += out.done.eq(1)
                        m.next = "IDLE"

    def _run(self, m, result):
        """RUN: pixels from the buffer, one sample, then its response (the spikes follow from
        the readout sender)."""
        k, ptr, net, cfg = self._k, self._ptr, self.network, self.cfg
        flags = self.checked.args.run.flags
        with m.State("P_ADDR"):
            m.d.comb += self.buffer.addr.eq(ptr)
            m.next = "P_WRITE"
        with m.State("P_WRITE"):
            m.d.comb += [net.px_addr.eq(k), net.px_data.eq(self.buffer.data), net.px_we.eq(1)]
            m.d.sync += [k.eq(k + 1), ptr.eq(ptr + 1)]
            m.next = "P_ADDR"
            with m.If(k == cfg.layers[0] - 1):
                m.next = "START"
        with m.State("START"):
            m.d.comb += [net.start.eq(1), self.readout.start.eq(1)]
            if cfg.event_input:
                m.d.comb += net.from_raster.eq((flags & RunFlags.RASTER).any())
            if cfg.decoder is not None:
                m.d.comb += net.decode.eq((flags & RunFlags.DECODE).any())
            if cfg.learning is not None:
                m.d.comb += [net.learn.eq((flags & RunFlags.LEARN).any()),
                             net.label.eq(self.checked.args.run.label),
                             net.lr_shift.eq(self.checked.args.run.lr_shift)]
            m.next = "RUNNING"
        with m.State("RUNNING"):
            with m.If(net.done):
                m.d.sync += self._samples.eq(self._samples + 1)
                self._respond(m, self.readout.length, result, nbytes(RUN_RESPONSE), tail=True)
