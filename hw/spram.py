"""A weight store in the iCE40UP5K's single-port SPRAMs (``SB_SPRAM256KA``).

The UP5K has four 16K x 16-bit SPRAMs (1 Mbit) next to its 30 EBR (120 kbit). A memory of
``depth`` words of ``width`` bits takes ``ceil(width / 16)`` SPRAMs side by side (columns)
times ``ceil(depth / 16384)`` deep (banks): a bank is selected by the address bits above
the 14 the primitive takes (its ``CHIPSELECT``), and a registered copy of them picks the
bank's ``DATAOUT``.

:class:`SPRAMStore` has the ports and the latency of :class:`hw.block_ram.RegisteredRAM`
(one address per cycle, read or written; the address, write data and write enable are
registered, the primitive's output register is the second cycle), so the LIF layer uses
either. What differs is the primitive's rule for a write: ``DATAOUT`` is undefined in the
cycle after a write (Yosys' model drives ``x``), where a block RAM returns the old word.
Nothing in the core reads the word of a write cycle: the simulation model (no platform, or
a platform that is not an iCE40) returns :data:`POISON` then, so a consumer that did would
break the bit-exact regressions. ``tests/test_spram.py`` checks the model against Yosys' own
``SB_SPRAM256KA`` model cycle by cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from spikeforge.config import SPRAM_DEPTH, SPRAM_WIDTH, spram_count
from spikeforge.hw.block_ram import ram_port

__all__ = ["POISON", "SPRAM_DEPTH", "SPRAM_WIDTH", "SPRAMStore", "spram_count"]

SPRAM_ADDR_BITS = (SPRAM_DEPTH - 1).bit_length()
POISON = 0xA5A5       # what the model's read port returns after a write, per 16-bit column


class SPRAMStore(wiring.Component):
    """``depth`` words of ``width`` bits in SPRAMs behind one registered port.

    Latency: ``rd_data`` is the word at ``addr`` two cycles after the address is presented
    (the address register, then the SPRAM's output register); a write (``wr_en`` with
    ``wr_data``) lands one cycle after it is presented. ``rd_data`` two cycles after a write
    is undefined (the simulation model returns :data:`POISON` in every 16-bit column).
    Throughput: one access per cycle. The registers have no reset, and the SPRAMs keep
    their contents through a reset of the design (not through a power cycle).
    """

    def __init__(self, *, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__(ram_port(width, depth))

    @property
    def banks(self) -> int:
        return spram_count(self.depth, 1)

    @property
    def columns(self) -> int:
        return spram_count(1, self.width)

    def elaborate(self, platform):
        m = Module()
        addr_bits = max(1, (self.depth - 1).bit_length())
        addr = Signal(addr_bits, reset_less=True)
        wr_en = Signal(reset_less=True)
        wr_data = Signal(self.columns * SPRAM_WIDTH, reset_less=True)
        m.d.sync += [addr.eq(self.addr), wr_en.eq(self.wr_en), wr_data.eq(self.wr_data)]
        if getattr(platform, "family", None) == "ice40":
            dataout = self._primitives(m, addr, wr_en, wr_data)
        else:
            dataout = self._model(m, addr, wr_en, wr_data)
        m.d.comb += self.rd_data.eq(dataout)
        return m

    def _bank_select(self, m, addr):
        """The bank addressed in this cycle, and a copy registered with the data it reads."""
        bank = addr[SPRAM_ADDR_BITS:] if self.banks > 1 else 0
        bank_out = Signal(range(max(2, self.banks)), reset_less=True)
        m.d.sync += bank_out.eq(bank)
        return bank, bank_out

    def _primitives(self, m, addr, wr_en, wr_data):
        bank, bank_out = self._bank_select(m, addr)
        words = []
        for b in range(self.banks):
            select = Signal(name=f"cs{b}")
            m.d.comb += select.eq(bank == b)
            columns = []
            for c in range(self.columns):
                out = Signal(SPRAM_WIDTH, name=f"dataout{b}_{c}")
                m.submodules[f"spram{b}_{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:SPRAM_ADDR_BITS],
                    i_DATAIN=wr_data[c * SPRAM_WIDTH:(c + 1) * SPRAM_WIDTH],
                    i_MASKWREN=0b1111, i_WREN=wr_en, i_CHIPSELECT=select,
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=out)
                columns.append(out)
            words.append(Cat(*columns))
        return _select(m, words, bank_out, self.columns * SPRAM_WIDTH)

    def _model(self, m, addr, wr_en, wr_data):
        """The primitive's behaviour: per bank a memory read every cycle its bank is
        selected and no write is presented (a non-selected bank keeps its output), POISON
        after a write."""
        bank, bank_out = self._bank_select(m, addr)
        width = self.columns * SPRAM_WIDTH
        poison = int("".join(f"{POISON:016b}" for _ in range(self.columns)), 2)
        words = []
        for b in range(self.banks):
            depth = min(SPRAM_DEPTH, self.depth - b * SPRAM_DEPTH)
            mem = Memory(shape=width, depth=depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp, rp = mem.write_port(), mem.read_port(transparent_for=())
            local = addr[:SPRAM_ADDR_BITS] if self.banks > 1 else addr
            select = Signal(name=f"cs{b}")
            written = Signal(reset_less=True, name=f"written{b}")
            m.d.comb += [select.eq(bank == b), wp.addr.eq(local), rp.addr.eq(local),
                         wp.data.eq(wr_data), wp.en.eq(select & wr_en),
                         rp.en.eq(select & ~wr_en)]
            with m.If(select):
                m.d.sync += written.eq(wr_en)
            out = Signal(width, name=f"dataout{b}")
            m.d.comb += out.eq(rp.data)
            with m.If(written):
                m.d.comb += out.eq(poison)
            words.append(out)
        return _select(m, words, bank_out, width)


def _select(m, words, bank_out, width):
    if len(words) == 1:
        return words[0]
    out = Signal(width)
    with m.Switch(bank_out):
        for b, word in enumerate(words):
            with m.Case(b):
                m.d.comb += out.eq(word)
    return out
