"""The Galois LFSR of :mod:`spikeforge.lfsr` in gateware: the one pseudo-random source."""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge import lfsr


class GaloisLfsr(wiring.Component):
    """``lfsr.WIDTH`` flip-flops stepping ``s' = ((s << 1) & MASK) ^ (TAPS if s[WIDTH-1])``
    (:func:`spikeforge.lfsr.step`: ``s(x) * x mod p(x)``) in every cycle with ``step`` high.

    Parameters
    ----------
    seed : int
        The reset state (what the clock domain's reset restores), ``1 .. 2^WIDTH - 1``.

    Attributes
    ----------
    step : In(1)
        Step at the end of this cycle.
    state : Out(lfsr.WIDTH)
        The register (a flip-flop output: no logic in front of its users).
    """

    def __init__(self, seed: int):
        if not 1 <= seed <= lfsr.MASK:
            self._MustUse__silence = True      # refused: never to be elaborated
            raise ValueError(f"seed: {seed} is out of range, legal range is [1, {lfsr.MASK}]")
        self.seed = seed
        super().__init__({"step": In(1), "state": Out(lfsr.WIDTH)})

    def elaborate(self, platform):
        m = Module()
        reg = Signal(lfsr.WIDTH, init=self.seed)
        top = reg[lfsr.WIDTH - 1]
        with m.If(self.step):
            m.d.sync += reg.eq(Cat(Const(0, 1), reg[:lfsr.WIDTH - 1])
                               ^ Mux(top, lfsr.TAPS, 0))
        m.d.comb += self.state.eq(reg)
        return m


def advanced(state, steps: int) -> Value:
    """The state ``steps`` steps after ``state`` (a ``lfsr.WIDTH``-bit value) as XOR gates:
    the linear map ``s(x) -> s(x) * x^steps mod p(x)`` over GF(2)
    (:func:`spikeforge.lfsr.jump`), bit ``b`` the XOR of the bits ``i`` of ``state`` whose
    image ``x^(i + steps) mod p(x)`` has bit ``b``. For the trinomial ``p(x)`` and ``steps``
    up to 8 every output bit has at most four inputs (one LUT4)."""
    images = [lfsr.jump(1 << i, steps) for i in range(lfsr.WIDTH)]
    bits = []
    for b in range(lfsr.WIDTH):
        terms = [state[i] for i in range(lfsr.WIDTH) if images[i] >> b & 1]
        bits.append(functools.reduce(operator.xor, terms) if terms else Const(0, 1))
    return Cat(*bits)
