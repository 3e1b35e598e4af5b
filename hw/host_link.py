"""Host link: the framed byte protocol of docs/host_link.md in front of a :class:`Network`.

Request ``A5 cmd len_lo len_hi payload[len] crc``; response ``5A status len_lo len_hi
payload[len] crc``. ``crc`` is CRC-8 (polynomial 0x07, initial value 0, MSB first) over
everything after the start byte. A payload is checked (CRC, length, arguments) before the
command touches the network, so a corrupted frame changes nothing; every error is answered
with an error response (``status = 0x80 | code``) and the link waits for the next start byte.
"""


from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from spikeforge.config import LR_SHIFT
from spikeforge.hw.lif_layer import WEIGHT_READ_LATENCY
from spikeforge.hw.network import Network
from spikeforge.protocol import (
    CMD_COUNTERS,
    CMD_EVENTS,
    CMD_INFO,
    CMD_READ,
    CMD_RUN,
    CMD_WRITE,
    COUNTERS_BYTES,
    ERR_ARGUMENT,
    ERR_COMMAND,
    ERR_CRC,
    ERR_FRAMING,
    ERR_LENGTH,
    ERR_TIMEOUT,
    EVENT_BYTES,
    EVENTS_CLEAR,
    REQUEST_START,
    RESPONSE_START,
    RUN_HEADER_BYTES,
    RUN_LEARN,
    RUN_RASTER,
    buffer_depth,
    check_link_config,
    crc8,
    info_bytes,
    weight_depths,
    word_bytes,
)


def crc8_next(crc, byte):
    """:func:`spikeforge.protocol.crc8` as Amaranth values: the update is linear over GF(2),
    so each output bit is an XOR of bits of ``crc ^ byte``."""
    d = crc ^ byte
    bits = []
    for out in range(8):
        taps = [i for i in range(8) if crc8(1 << i, 0) >> out & 1]
        bit = d[taps[0]]
        for i in taps[1:]:
            bit = bit ^ d[i]
        bits.append(bit)
    return Cat(*bits)


class HostLink(wiring.Component):
    """A :class:`~hw.network.Network` behind the framed host protocol (docs/host_link.md).

    ``rx``/``tx`` are byte streams (a :class:`~hw.uart.UARTRx`/:class:`~hw.uart.UARTTx`
    pair on a board). ``rx_framing_error`` and ``rx_overrun`` come from the receiver.
    ``busy`` is high while a command runs, ``error`` is sticky after any error response.

    Latency: a command starts two cycles after the CRC byte of its frame; WRITE takes
    ``2 * word_bytes + 1`` cycles per word, EVENTS ``T * 2**ceil(log2 N_in) + 2`` cycles for
    its clear (if asked) and 8 cycles per event, RUN ``2 * N_in`` cycles for the pixels (none
    on the stored raster) plus the network's own cycles, then the response goes out at the
    pace ``tx`` takes it.
    ``timeout`` cycles without a byte inside a frame abort it (error 0x84).
    """

    rx: In(stream.Signature(8))
    tx: Out(stream.Signature(8))
    rx_framing_error: In(1)
    rx_overrun: In(1)
    busy: Out(1)
    error: Out(1)

    def __init__(self, cfg, timeout: int = 100_000):
        check_link_config(cfg)
        if timeout < 16:
            raise ValueError(f"host link timeout: at least 16 cycles, got {timeout}")
        self.cfg = cfg
        self.timeout = timeout
        self.network = Network(cfg)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        cfg, net = self.cfg, self.network
        m.submodules.network = net
        n_in, n_out, L, T = cfg.layers[0], cfg.layers[-1], cfg.n_layers, cfg.time_steps
        wb = word_bytes(cfg)
        depth = buffer_depth(cfg)
        info = info_bytes(cfg)
        fixed_bytes = max(len(info), COUNTERS_BYTES, RUN_HEADER_BYTES, 1)

        m.submodules.buf = buf = Memory(shape=8, depth=depth, init=[])
        buf_w = buf.write_port()
        buf_r = buf.read_port()

        # ---- receive: frame parser ----
        cmd = Signal(8)
        length = Signal(16)
        got = Signal(16)                        # payload bytes received
        rx_crc = Signal(8)
        idle = Signal(range(self.timeout + 1))
        layer = Signal(8)
        addr = Signal(16)
        count = Signal(16)
        flags = Signal(8)
        label = Signal(8)
        lr_shift = Signal(8)
        byte = self.rx.payload
        # rx.ready is high in the receiving states (SOF .. CRC); kept in a flip-flop of its
        # own, set and cleared with those states' transitions, so that no state decoding
        # lies between the FSM and the receiver's handshake (it was on the critical path)
        listening = Signal(init=1)
        m.d.comb += self.rx.ready.eq(listening)
        take = self.rx.valid & listening
        rx_crc_next = Signal(8)
        m.d.comb += rx_crc_next.eq(crc8_next(rx_crc, byte))

        # ---- response ----
        status = Signal(8)
        resp_len = Signal(16)
        fixed = Signal(8 * fixed_bytes)
        fixed_len = Signal(range(fixed_bytes + 1))
        idx = Signal(16)
        tx_crc = Signal(8)
        crc_on = Signal()
        m.d.comb += self.tx.valid.eq(0)
        tx_crc_next = Signal(8)
        m.d.comb += tx_crc_next.eq(crc8_next(tx_crc, self.tx.payload))
        with m.If(self.tx.valid & self.tx.ready & crc_on):
            m.d.sync += tx_crc.eq(tx_crc_next)

        # ---- counters ----
        samples = Signal(32)
        frames = Signal(32)
        errors = Signal(32)
        stream_error = Signal()
        spikes = Signal(16)                     # output spikes of the running sample
        sent = Signal(16)
        word = Signal(8 * wb)
        wbyte = Signal(8)                       # the buffer's output, registered
        tx_byte = Signal(8)                     # READ: the weight byte being sent
        m.d.sync += wbyte.eq(buf_r.data)
        k = Signal(16)
        j = Signal(range(max(wb, 2)))
        ptr = Signal(range(depth))
        ev_step = Signal(8)
        ev_neuron = Signal(8)
        # EVENTS: each (step, index_lo, index_hi) is checked as it arrives
        ev_pos = Signal(2)                      # byte of the event the next payload byte is
        ev_lo = Signal(8)
        ev_bad = Signal()                       # an event of this frame is out of range
        ev_running, ev_done = Signal(), Signal()    # the link waits for the events engine

        # count * word_bytes as shifts and adds, registered: count settles a byte time
        # before DISPATCH reads this, and no multiplier lands on the command path
        count_bytes = Signal(17 + wb.bit_length())
        m.d.sync += count_bytes.eq(sum(count << i for i in range(wb.bit_length())
                                       if wb >> i & 1))
        depths = Array(Const(d, 17) for d in weight_depths(cfg))
        # word k is the last one, registered: W_WRITE and R_SEND come at least two cycles
        # after k changed (a 16-bit add and compare off the response's load enables)
        k_last = Signal()
        m.d.sync += k_last.eq(k + 1 == count)
        end_addr = Signal(17)
        m.d.comb += end_addr.eq(addr + count)

        # the command checks, registered: their inputs settle with the last payload byte,
        # at least a UART byte time (the CRC byte) before DISPATCH reads them
        learns = cfg.learning is not None
        events = cfg.event_input                # EVENTS and RUN on the stored raster
        len_zero, write_len_bad, read_len_bad, run_len_bad = Signal(), Signal(), Signal(), Signal()
        range_bad, run_arg_bad = Signal(), Signal()
        events_len_bad, events_arg_bad = Signal(), Signal()
        run_flags = (RUN_RASTER if events else 0) | (RUN_LEARN if learns else 0)
        m.d.sync += [
            len_zero.eq(length == 0),
            write_len_bad.eq((length < 5 + wb) | (length > depth) |
                             (length != 5 + count_bytes)),
            read_len_bad.eq(length != 5),
            run_len_bad.eq(length != (Mux((flags & RUN_RASTER).any(), 3, 3 + n_in) if events
                                      else 3 + n_in)),
            range_bad.eq((layer >= L) | (count == 0) | (end_addr > depths[layer])),
            run_arg_bad.eq(((flags & (0xFF ^ run_flags)) != 0) | (
                (flags & RUN_LEARN).any() & ((label >= n_out) | (lr_shift > LR_SHIFT[1]))
                if learns else 0)),
            # a whole number of events after the flags byte (ev_pos counts them mod 3)
            events_len_bad.eq((length == 0) | (length > depth) | (ev_pos != 0)),
            events_arg_bad.eq(((flags & (0xFF ^ EVENTS_CLEAR)) != 0) | ev_bad),
        ]

        # the command decoded into one flag per command, registered: cmd settles with its
        # byte, frames before DISPATCH reads these (the 8-bit compares were in front of the
        # response registers' load enables)
        commands = [CMD_INFO, CMD_COUNTERS, CMD_WRITE, CMD_READ, CMD_RUN] + (
            [CMD_EVENTS] if events else [])
        is_cmd = {c: Signal(name=f"is_cmd_{c:02x}") for c in commands}
        m.d.sync += [flag.eq(cmd == c) for c, flag in is_cmd.items()]

        def one_hot(c):
            """The Switch pattern of ``is_cmd`` for command ``c``, lowest flag first."""
            return "".join("1" if k == c else "-" for k in reversed(commands))

        def fail(code, next_state="RESP_START"):
            m.d.sync += [status.eq(code), resp_len.eq(1), fixed.eq(cmd), fixed_len.eq(1),
                         errors.eq(errors + 1), self.error.eq(1), listening.eq(0)]
            m.next = next_state

        def respond(code_len, data=0, n_fixed=0):
            m.d.sync += [status.eq(cmd), resp_len.eq(code_len), fixed.eq(data),
                         fixed_len.eq(n_fixed), frames.eq(frames + 1)]
            m.next = "RESP_START"

        with m.If(getattr(net, f"trace{L}_valid") & net.busy):
            m.d.sync += spikes.eq(spikes + 1)
        run_len = Signal(16)                    # settled: done comes cycles after a spike
        m.d.sync += run_len.eq(RUN_HEADER_BYTES + 2 * spikes)
        # the weight port's address and data come from registers, not from a state decode (they
        # fan out to every weight bit of every layer); only the write enable is gated by WRITE
        m.d.comb += [net.w_layer.eq(layer), net.w_addr.eq(addr + k), net.w_wdata.eq(word)]

        with m.FSM():
            with m.State("SOF"):
                with m.If(take & (byte == REQUEST_START)):
                    m.d.sync += [rx_crc.eq(0), idle.eq(0), cmd.eq(0xFF)]
                    m.next = "CMD"

            def receiving(state, next_state, action):
                with m.State(state):
                    with m.If(self.rx_framing_error):
                        fail(ERR_FRAMING)
                    with m.Elif(take):
                        m.d.sync += [rx_crc.eq(rx_crc_next), idle.eq(0)]
                        action()
                        if next_state:
                            m.next = next_state
                    with m.Elif(idle == self.timeout):
                        fail(ERR_TIMEOUT)
                    with m.Else():
                        m.d.sync += idle.eq(idle + 1)

            receiving("CMD", "LEN0", lambda: m.d.sync.__iadd__(cmd.eq(byte)))
            receiving("LEN0", "LEN1", lambda: m.d.sync.__iadd__(length[:8].eq(byte)))

            def len1():
                m.d.sync += [length[8:].eq(byte), got.eq(0), ev_pos.eq(0), ev_bad.eq(0)]
                with m.If(Cat(length[:8], byte) == 0):
                    m.next = "CRC"
                with m.Else():
                    m.next = "PAYLOAD"
            receiving("LEN1", None, len1)

            def payload():
                m.d.comb += [buf_w.addr.eq(got), buf_w.data.eq(byte),
                             buf_w.en.eq(got < depth)]
                m.d.sync += got.eq(got + 1)
                for pos, reg in enumerate((layer, addr[:8], addr[8:], count[:8], count[8:])):
                    with m.If(got == pos):
                        m.d.sync += reg.eq(byte)
                with m.If(got == 0):
                    m.d.sync += flags.eq(byte)
                with m.If(got == 1):
                    m.d.sync += label.eq(byte)
                with m.If(got == 2):
                    m.d.sync += lr_shift.eq(byte)
                if events:
                    with m.If(got != 0):            # EVENTS: step, index_lo, index_hi
                        m.d.sync += ev_pos.eq(Mux(ev_pos == 2, 0, ev_pos + 1))
                        with m.Switch(ev_pos):
                            with m.Case(0):
                                with m.If(byte >= T):
                                    m.d.sync += ev_bad.eq(1)
                            with m.Case(1):
                                m.d.sync += ev_lo.eq(byte)
                            with m.Case(2):
                                with m.If(Cat(ev_lo, byte) >= n_in):
                                    m.d.sync += ev_bad.eq(1)
                with m.If(got + 1 == length):
                    m.next = "CRC"
            receiving("PAYLOAD", None, payload)

            def check():
                with m.If(rx_crc_next != 0):
                    fail(ERR_CRC)
                with m.Else():
                    m.d.sync += listening.eq(0)
                    m.next = "DISPATCH"
            receiving("CRC", None, check)

            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(Cat(*is_cmd.values())):      # one-hot (none: unknown)
                    with m.Case(one_hot(CMD_INFO)):
                        with m.If(~len_zero):
                            fail(ERR_LENGTH)
                        with m.Else():
                            respond(len(info), Const(int.from_bytes(info, "little"),
                                                     8 * len(info)), len(info))
                    with m.Case(one_hot(CMD_COUNTERS)):
                        with m.If(~len_zero):
                            fail(ERR_LENGTH)
                        with m.Else():
                            respond(COUNTERS_BYTES,
                                    Cat(samples, (frames + 1)[:32], errors, net.fifo_overflow,
                                        net.events_overflow, self.rx_overrun, stream_error),
                                    COUNTERS_BYTES)
                    with m.Case(one_hot(CMD_WRITE)):
                        with m.If(write_len_bad):
                            fail(ERR_LENGTH)
                        with m.Elif(range_bad):
                            fail(ERR_ARGUMENT)
                        with m.Else():
                            m.d.sync += [k.eq(0), j.eq(0), ptr.eq(5)]
                            m.next = "W_ADDR"
                    with m.Case(one_hot(CMD_READ)):
                        with m.If(read_len_bad):
                            fail(ERR_LENGTH)
                        with m.Elif(range_bad | (count_bytes >= 1 << 16)):
                            fail(ERR_ARGUMENT)
                        with m.Else():
                            m.d.sync += [k.eq(0), j.eq(0)]
                            respond(count_bytes[:16])
                    with m.Case(one_hot(CMD_RUN)):
                        with m.If(run_len_bad):
                            fail(ERR_LENGTH)
                        with m.Elif(run_arg_bad):
                            fail(ERR_ARGUMENT)
                        with m.Else():
                            m.d.sync += [k.eq(0), ptr.eq(3)]
                            m.next = "P_ADDR"
                            if events:              # no pixels to load: straight to START
                                with m.If(flags & RUN_RASTER):
                                    m.next = "START"
                    if events:
                        with m.Case(one_hot(CMD_EVENTS)):
                            with m.If(events_len_bad):
                                fail(ERR_LENGTH)
                            with m.Elif(events_arg_bad):
                                fail(ERR_ARGUMENT)
                            with m.Else():
                                m.next = "EVENTS"
                    with m.Default():
                        fail(ERR_COMMAND)

            # ---- WRITE: words from the buffer into the weight memory ----
            with m.State("W_ADDR"):
                m.d.comb += [self.busy.eq(1), buf_r.addr.eq(ptr)]
                m.next = "W_DATA"
            with m.State("W_DATA"):         # the byte arrives, registered into `wbyte`
                m.d.comb += self.busy.eq(1)
                m.next = "W_PLACE"
            with m.State("W_PLACE"):
                # byte j into its place (no shift of the whole word: every byte's enable
                # is its own, and none reaches all P * store_bits flip-flops; the byte
                # comes from a register, not straight from the buffer's block RAM)
                m.d.comb += self.busy.eq(1)
                m.d.sync += [word.word_select(j, 8).eq(wbyte), ptr.eq(ptr + 1), j.eq(j + 1)]
                m.next = "W_ADDR"
                with m.If(j == wb - 1):
                    m.next = "W_WRITE"
            with m.State("W_WRITE"):
                m.d.comb += [self.busy.eq(1), net.w_we.eq(1)]
                m.d.sync += [k.eq(k + 1), j.eq(0)]
                m.next = "W_ADDR"
                with m.If(k_last):
                    respond(0)

            # ---- RUN: pixels from the buffer, one sample, spikes back ----
            with m.State("P_ADDR"):
                m.d.comb += [self.busy.eq(1), buf_r.addr.eq(ptr)]
                m.next = "P_WRITE"
            with m.State("P_WRITE"):
                m.d.comb += [self.busy.eq(1), net.px_addr.eq(k), net.px_data.eq(buf_r.data),
                             net.px_we.eq(1)]
                m.d.sync += [k.eq(k + 1), ptr.eq(ptr + 1)]
                m.next = "P_ADDR"
                with m.If(k == n_in - 1):
                    m.next = "START"
            # ---- EVENTS: the events engine below works, then the (empty) response ----
            if events:
                with m.State("EVENTS"):
                    m.d.comb += [self.busy.eq(1), ev_running.eq(1)]
                    with m.If(ev_done):
                        respond(0)

            with m.State("START"):
                m.d.comb += [self.busy.eq(1), net.start.eq(1)]
                if events:
                    m.d.comb += net.from_raster.eq((flags & RUN_RASTER).any())
                if cfg.learning is not None:
                    m.d.comb += [net.learn.eq(flags[0]), net.label.eq(label),
                                 net.lr_shift.eq(lr_shift)]
                m.d.sync += spikes.eq(0)
                m.next = "RUNNING"
            with m.State("RUNNING"):
                m.d.comb += self.busy.eq(1)
                with m.If(net.done):
                    m.d.sync += samples.eq(samples + 1)
                    pred = Mux(net.prediction_valid, net.prediction, 0xFF)
                    respond(run_len, Cat(net.cycles, pred[:8], spikes), RUN_HEADER_BYTES)
                    m.d.sync += sent.eq(0)

            # ---- response: start, status, length, fixed bytes, tail, CRC ----
            def send(value, next_state, with_crc=True):
                m.d.comb += [self.busy.eq(1), self.tx.valid.eq(1), self.tx.payload.eq(value),
                             crc_on.eq(with_crc)]
                with m.If(self.tx.ready):
                    m.next = next_state

            with m.State("RESP_START"):
                send(RESPONSE_START, "RESP_STATUS", with_crc=False)
                m.d.sync += [tx_crc.eq(0), idx.eq(0)]
            with m.State("RESP_STATUS"):
                send(status, "RESP_LEN0")
            with m.State("RESP_LEN0"):
                send(resp_len[:8], "RESP_LEN1")
            with m.State("RESP_LEN1"):
                send(resp_len[8:], "RESP_FIXED")
                with m.If(fixed_len == 0):
                    send(resp_len[8:], "RESP_TAIL")
            with m.State("RESP_FIXED"):
                send(fixed.word_select(idx[:len(fixed_len)], 8), "RESP_FIXED")
                with m.If(self.tx.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == fixed_len):
                        m.next = "RESP_TAIL"
            with m.State("RESP_TAIL"):
                m.d.comb += self.busy.eq(1)
                m.next = "RESP_CRC"
                with m.If(status == CMD_READ):
                    m.next = "R_ADDR"
                with m.If(status == CMD_RUN):
                    m.next = "E_TAKE"

            # ---- READ tail: words from the weight memory ----
            with m.State("R_ADDR"):            # address addr + k; WEIGHT_READ_LATENCY - 1 waits
                m.d.comb += self.busy.eq(1)
                m.d.sync += j.eq(0)
                m.next = "R_WAIT1"
            for wait in range(1, WEIGHT_READ_LATENCY):
                with m.State(f"R_WAIT{wait}"):
                    m.d.comb += self.busy.eq(1)
                    m.next = "R_PICK" if wait == WEIGHT_READ_LATENCY - 1 else f"R_WAIT{wait + 1}"
            with m.State("R_PICK"):
                # byte j from the layer's registered word (its address, addr + k, holds until
                # the word is sent), not from a copy of the word (loading and shifting all
                # P * store_bits bits of a copy was the host link's critical path), into a
                # register of its own (the byte multiplexer in front of the UART and the CRC
                # was the next one)
                m.d.comb += self.busy.eq(1)
                m.d.sync += tx_byte.eq(Cat(net.w_rdata, Const(0, 8 * wb - len(net.w_rdata)))
                                       .word_select(j, 8))
                m.next = "R_SEND"
            with m.State("R_SEND"):
                send(tx_byte, "R_SEND")
                with m.If(self.tx.ready):
                    m.d.sync += j.eq(j + 1)
                    m.next = "R_PICK"
                    with m.If(j == wb - 1):
                        m.d.sync += k.eq(k + 1)
                        m.next = "R_ADDR"
                        with m.If(k_last):
                            m.next = "RESP_CRC"

            # ---- RUN tail: the readout stream, (step, neuron) per spike, then its end item.
            # Each item is registered as it is taken and checked in the next cycle (the
            # readout FIFO's block RAM output into the framing checks was a critical path).
            # After as many spike items as spikes counted, the next must be the end item;
            # anything else sets the stream error, and the items are drained to the end ----
            taken = Signal.like(net.events.payload)
            with m.State("E_TAKE"):
                m.d.comb += [self.busy.eq(1), net.events.ready.eq(1)]
                with m.If(net.events.valid):
                    m.d.sync += taken.eq(net.events.payload)
                    m.next = "E_CHECK"
            with m.State("E_CHECK"):
                m.d.comb += self.busy.eq(1)
                m.next = "E_TAKE"
                with m.If(taken.end):
                    with m.If((taken.count != spikes) | (sent != spikes)):
                        m.d.sync += stream_error.eq(1)
                    m.next = "RESP_CRC"
                with m.Elif(sent == spikes):            # more items than spikes counted
                    m.d.sync += stream_error.eq(1)
                with m.Else():
                    m.d.sync += [ev_step.eq(taken.step), ev_neuron.eq(taken.neuron),
                                 sent.eq(sent + 1)]
                    m.next = "E_STEP"
            with m.State("E_STEP"):
                send(ev_step, "E_NEURON")
            with m.State("E_NEURON"):
                send(ev_neuron, "E_TAKE")

            with m.State("RESP_CRC"):
                send(tx_crc, "SOF", with_crc=False)
                with m.If(self.tx.ready):
                    m.d.sync += listening.eq(1)

        if events:
            self._events_engine(m, net, buf_r, flags, length, ev_running, ev_done)
        return m

    def _events_engine(self, m, net, buf_r, flags, length, ev_running, ev_done):
        """EVENTS, a state machine of its own (the link's stays small and fast): while
        ``ev_running``, clear the input raster if asked, then read each event of the checked
        payload from the buffer and set its spike; ``ev_done`` pulses at the end."""
        ev_ptr = Signal(range(buffer_depth(self.cfg) + 1))     # next byte of the payload
        ev_byte = Signal(2)                                     # its byte in the event
        ev_word = Signal(8 * EVENT_BYTES)                       # the event, shifted in
        with m.FSM(name="events"):
            with m.State("IDLE"):
                m.d.sync += [ev_ptr.eq(1), ev_byte.eq(0)]
                with m.If(ev_running):
                    m.next = "NEXT"
                    with m.If(flags & EVENTS_CLEAR):
                        m.next = "CLEAR"
            with m.State("CLEAR"):
                m.d.comb += net.raster_clear.eq(1)
                m.next = "CLEARING"
            with m.State("CLEARING"):
                with m.If(~net.raster_busy):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.next = "ADDR"
                with m.If(ev_ptr == length):
                    m.next = "DONE"
            with m.State("ADDR"):
                m.d.comb += buf_r.addr.eq(ev_ptr)
                m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += [ev_word.eq(Cat(ev_word[8:], buf_r.data)), ev_ptr.eq(ev_ptr + 1),
                             ev_byte.eq(ev_byte + 1)]
                m.next = "ADDR"
                with m.If(ev_byte == EVENT_BYTES - 1):
                    m.next = "SET"
            with m.State("SET"):
                m.d.comb += [net.raster_step.eq(ev_word[:8]), net.raster_index.eq(ev_word[8:]),
                             net.raster_set.eq(1)]
                m.d.sync += ev_byte.eq(0)
                m.next = "NEXT"
            with m.State("DONE"):
                m.d.comb += ev_done.eq(1)
                m.next = "IDLE"
