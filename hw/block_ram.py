"""Technology mapping of deep memories: one row of block RAMs, cut into column slices.

Yosys maps a memory deeper than one block RAM's widest configuration as rows of block RAMs
with a multiplexer after them: on the ECP5, ``mnist-ecp5``'s 6,272 x 288-bit weight memory
became 7 rows of 16 DP16KDs (1024 x 18), so every read went through a 7:1 multiplexer after
the block RAMs' slow clock-to-output, and every write fanned out to 7 rows. Cut into
columns of the width at which the whole depth fits one block RAM (8192 x 2 for that
memory), every slice is a single DP16KD: no multiplexer, no row decode, each data bit wired
to one block RAM.

:class:`BlockRamPlatform` does this through Amaranth's ``platform.get_memory()`` hook, so
the gateware keeps its plain :class:`~amaranth.lib.memory.Memory` and the simulations run
the same memories unsliced; ``tests/test_block_ram.py`` checks that sliced and unsliced
memories, and whole networks built both ways, behave identically cycle by cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Value
from amaranth.lib.memory import Memory

# ECP5 DP16KD (16 kbit): true dual-port depth -> data width
ECP5_SLICES = ((2048, 9), (4096, 4), (8192, 2), (16384, 1))
ECP5_ROW_DEPTH = 1024   # deepest configuration that is already the widest (18 bits)


def slice_width(family: str, depth: int) -> int | None:
    """Width of the column slices for a ``depth``-word memory on ``family``, or ``None`` when
    it maps to one row of block RAMs as it is (or cannot: deeper than one block RAM)."""
    if family != "ecp5" or depth <= ECP5_ROW_DEPTH:
        return None
    for max_depth, width in ECP5_SLICES:
        if depth <= max_depth:
            return width
    return None


class BlockRamPlatform:
    """The memory hook of an Amaranth platform for an FPGA family (``"ecp5"``, ``"ice40"``).

    Pass it as ``platform`` to ``amaranth.back.rtlil.convert``/``verilog.convert``. A memory
    is sliced when :func:`slice_width` gives a width narrower than it, its shape is plain
    unsigned and its write ports have no byte enables; every other memory elaborates as
    usual. Slices keep every port's domain, enable and transparency, so the sliced memory
    has the same read latency and read-during-write behaviour bit for bit.
    """

    def __init__(self, family: str):
        self.family = family

    def get_memory(self, memory: Memory):
        shape = memory.shape
        width = Shape.cast(shape).width if isinstance(shape, (Shape, int, range)) else None
        w = slice_width(self.family, memory.depth)
        if (w is None or width is None or Shape.cast(shape).signed or w >= width
                or any(len(port.en) != 1 for port in memory.write_ports)):
            return memory.elaborate(None)
        m = Module()
        for i, lo in enumerate(range(0, width, w)):
            hi = min(lo + w, width)
            mask = (1 << (hi - lo)) - 1
            part = Memory(shape=hi - lo, depth=memory.depth,
                          init=[(int(v) >> lo) & mask for v in memory.init], attrs=memory.attrs)
            m.submodules[f"slice{i}"] = part
            writes = {}
            for port in memory.write_ports:
                wp = part.write_port(domain=port.domain)
                writes[port] = wp
                m.d.comb += [wp.addr.eq(port.addr), wp.en.eq(port.en),
                             wp.data.eq(Value.cast(port.data)[lo:hi])]
            for port in memory.read_ports:
                rp = part.read_port(domain=port.domain,
                                    transparent_for=[writes[p] for p in port.transparent_for])
                m.d.comb += [rp.addr.eq(port.addr), Value.cast(port.data)[lo:hi].eq(rp.data)]
                if port.domain != "comb":
                    m.d.comb += rp.en.eq(port.en)
        return m
