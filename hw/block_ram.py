"""A RAM whose port starts from flip-flops, mapped to one row of block RAMs on the ECP5.

Yosys maps a memory deeper than one block RAM's widest configuration as rows of block RAMs
with a multiplexer after them: on the ECP5, ``mnist-ecp5``'s 6,272 x 288-bit weight memory
became 7 rows of 16 DP16KDs (1024 x 18), so every read went through a 7:1 multiplexer after
the block RAMs' slow clock-to-output, every write fanned out to 7 rows, and nextpnr could
not route it. Cut into columns of the width at which the whole depth fits one block RAM
(8192 x 2 for that memory), every slice is a single DP16KD: no multiplexer, no row decode,
each data bit wired to one block RAM. Its 144 block RAMs then share one address: the address
register is copied, each copy driving an eighth of the slices (a single flip-flop driving
144 block RAMs across the die was the longest path of the routed design, 14.6 ns of
routing; a copy driving 72, 16.3 ns).

The board builds pass :class:`BlockRamPlatform` to Amaranth's ``convert``; the simulations
elaborate the same :class:`RegisteredRAM` without a platform, as one memory with one set of
registers. ``tests/test_block_ram.py`` checks both cycle by cycle, alone and in a learning
network.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

# ECP5 DP16KD (16 kbit): true dual-port depth -> data width
ECP5_SLICES = ((2048, 9), (4096, 4), (8192, 2), (16384, 1))
ECP5_ROW_DEPTH = 1024   # deepest configuration that is already the widest (18 bits)
MAX_SLICE_COST = 1.5    # block RAMs of the slices / block RAMs of the rows, at most

# Copies of the address and write-enable registers, each driving an equal share of the
# slices. Synthesis would merge identical flip-flops: the copies carry the wire attribute
# ``KEEP_COPY``, and the synthesis script (``spikeforge.synth.KEEP_COPIES``) gives the
# flip-flops that drive them Yosys' ``keep`` attribute, which stops the merge.
ADDRESS_COPIES = 8
KEEP_COPY = "spikeforge_copy"


def slice_geometry(family: str | None, depth: int, width: int) -> tuple[int, int] | None:
    """``(width, depth)`` of one block RAM holding a column slice of a ``depth`` x ``width``
    memory on ``family``; ``None`` when it maps to one row of block RAMs as it is, or when
    slicing would cost more than ``MAX_SLICE_COST`` times the block RAMs of Yosys' rows of
    1024 x 18 (``fmnist-ecp5``'s 9,408-word memory: 288 one-bit slices against 160; the
    ECP5-85F has 208)."""
    if family != "ecp5" or depth <= ECP5_ROW_DEPTH:
        return None
    rows = -(-depth // ECP5_ROW_DEPTH) * -(-width // 18)
    for max_depth, slice_width in ECP5_SLICES:
        if depth <= max_depth:
            if -(-width // slice_width) > MAX_SLICE_COST * rows:
                return None
            return slice_width, max_depth
    return None


def ram_port(width: int, depth: int) -> dict:
    """The members of one registered RAM port (``RegisteredRAM``, ``hw.spram.SPRAMStore``)."""
    return {"addr": In(range(depth)), "rd_data": Out(width), "wr_data": In(width),
            "wr_en": In(1)}


class BlockRamPlatform:
    """What :class:`RegisteredRAM` asks of the platform it is elaborated for: the FPGA family
    (``"ecp5"``, ``"ice40"``). Pass it as ``platform`` to ``amaranth.back.rtlil.convert``."""

    def __init__(self, family: str):
        self.family = family


class RegisteredRAM(wiring.Component):
    """``depth`` words of ``width`` bits behind one registered port: each cycle one address,
    read and (with ``wr_en``) written.

    Latency: ``rd_data`` is the word at ``addr`` two cycles after the address is presented
    (the address register, then the block RAM's own); a write (``wr_en`` with ``wr_data``)
    lands one cycle after it is presented. Read-first: a read presented with a write returns
    the old word, a read presented in the next cycle the new one. Throughput: one access per
    cycle. The registers have no reset: a write presented before a reset still lands, and a
    read presented in a cycle of reset returns the word it addressed.

    One address for both, so that every block RAM is used as a single read-first port, which
    it implements natively: with separate read and write addresses Yosys emulates the
    read-old-word rule across the two ports with flip-flops and a multiplexer after every
    block RAM output.

    On an ECP5 (``platform.family``), a memory deeper than 1,024 words is cut into column
    slices of one block RAM each (``slice_geometry``), with copies of the address and
    write-enable registers (``ADDRESS_COPIES``) spread over the slices.
    """

    def __init__(self, *, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__(ram_port(width, depth))

    def elaborate(self, platform):
        m = Module()
        geometry = slice_geometry(getattr(platform, "family", None), self.depth, self.width)
        if geometry is None or geometry[0] >= self.width:
            slice_width, depth, copies = self.width, self.depth, 1
        else:
            slice_width, depth = geometry
            copies = min(ADDRESS_COPIES, -(-self.width // slice_width))
        attrs = {KEEP_COPY: 1} if copies > 1 else None
        addr = [Signal((depth - 1).bit_length(), name=f"addr{k}", reset_less=True, attrs=attrs)
                for k in range(copies)]
        wr_en = [Signal(name=f"wr_en{k}", reset_less=True, attrs=attrs) for k in range(copies)]
        wr_data = Signal(self.width, reset_less=True)
        m.d.sync += [a.eq(self.addr) for a in addr]
        m.d.sync += [e.eq(self.wr_en) for e in wr_en]
        m.d.sync += wr_data.eq(self.wr_data)

        starts = range(0, self.width, slice_width)
        for i, lo in enumerate(starts):
            hi = min(lo + slice_width, self.width)
            mem = Memory(shape=hi - lo, depth=depth, init=[])
            m.submodules[f"slice{i}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            k = i * copies // len(starts)
            m.d.comb += [wp.addr.eq(addr[k]), wp.data.eq(wr_data[lo:hi]), wp.en.eq(wr_en[k]),
                         rp.addr.eq(addr[k]), self.rd_data[lo:hi].eq(rp.data)]
        return m
