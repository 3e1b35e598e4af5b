"""Dropout keep-masks of a hidden LIF layer, from per-lane LFSRs."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge import lfsr
from spikeforge.config import DROPOUT_BITS, DROPOUT_STEPS
from spikeforge.hw.lfsr import advanced


class DropoutMask(wiring.Component):
    """The keep bits of the group a hidden LIF layer evaluates, in training samples.

    Lane ``p`` of group ``g`` in training sample ``n`` (training samples since reset) uses
    its mask LFSR (:mod:`spikeforge.lfsr`) ``DROPOUT_BITS * (n*G + g)`` (``8 (nG + g)``)
    steps after its seed; neuron ``gP + p`` is kept iff the low ``DROPOUT_BITS`` bits of that
    state are at least ``threshold`` (``docs/learning.md``, Dropout;
    :func:`sw.desire.dropout_keeps`). Each group moves the LFSR by a whole byte: neighbouring
    groups' keep bits come from disjoint state bits.

    Registers, per lane: ``base`` (the state of group 0 of the current training sample) and
    ``cur`` (that of the group being evaluated), both reset to the lane's seed, so a reset
    restores the seeds. ``cur`` moves ``DROPOUT_BITS`` steps (:func:`hw.lfsr.advanced`, one
    LUT4 per bit) with each group evaluated and reloads ``base`` after group ``G - 1``: every
    end-of-step pass of a sample, the clear pass of step 0 included, sees the same mask.
    After the last group of the last step's pass, ``base`` and ``cur`` both move to the next
    sample's group 0 (``DROPOUT_BITS * G`` steps after the old ``base``). Inference samples
    (``enable`` low) keep every neuron and move nothing.

    Parameters
    ----------
    seeds : tuple of int
        The ``P`` lanes' reset states (``cfg.dropout_seeds[l]``), each ``1 .. 2^20 - 1``.
    groups : int
        ``G``: groups of ``P`` neurons in the layer.
    threshold : int
        ``dropout_hidden * 256``, ``1 .. 255`` (``cfg.dropout_threshold``).

    Attributes
    ----------
    enable : In(1)
        The sample trains (held for the whole sample).
    valid, group : In(1), In(range(G))
        The layer evaluates group ``group`` in this cycle (its ``eos_valid`` and
        ``eos_group``; clear passes too).
    last_step : In(1)
        The pass is the sample's last (step ``T - 1``).
    keep : Out(P)
        The keep bits of ``group``, lane ``p`` in bit ``p``; all ones unless ``enable``.

    Notes
    -----
    Latency: none. ``keep`` is valid in the cycle of ``valid``, computed from the ``cur``
    flip-flops by a comparison of their low ``DROPOUT_BITS`` bits with a constant, with no
    cycle of its own: the cycle model does not change. Throughput: a group per cycle.

    Number formats: LFSR states ``lfsr.WIDTH`` bits, the threshold unsigned
    ``DROPOUT_BITS`` bits.
    """

    def __init__(self, seeds, groups: int, threshold: int):
        seeds = tuple(int(s) for s in seeds)
        bad = [s for s in seeds if not 1 <= s <= lfsr.MASK]
        if not seeds or bad:
            self._MustUse__silence = True      # refused: never to be elaborated
            raise ValueError(f"seeds: expected 1 or more states in [1, {lfsr.MASK}], got "
                             f"{seeds!r}")
        if not 1 <= threshold < DROPOUT_STEPS:
            self._MustUse__silence = True
            raise ValueError(f"threshold: {threshold} is out of range, legal range is "
                             f"[1, {DROPOUT_STEPS - 1}]")
        if groups < 1:
            self._MustUse__silence = True
            raise ValueError(f"groups: {groups} is out of range, legal range is groups >= 1")
        self.seeds, self.groups, self.threshold = seeds, groups, threshold
        super().__init__({
            "enable": In(1),
            "valid": In(1),
            "group": In(range(max(groups, 2))),
            "last_step": In(1),
            "keep": Out(len(seeds)),
        })

    def elaborate(self, platform):
        m = Module()
        last_group = self.group == self.groups - 1
        keep = []
        for p, seed in enumerate(self.seeds):
            base = Signal(lfsr.WIDTH, init=seed, name=f"base{p}")
            cur = Signal(lfsr.WIDTH, init=seed, name=f"cur{p}")
            moved = advanced(cur, DROPOUT_BITS)
            with m.If(self.enable & self.valid):
                with m.If(~last_group):
                    m.d.sync += cur.eq(moved)
                with m.Elif(self.last_step):
                    m.d.sync += [cur.eq(moved), base.eq(moved)]
                with m.Else():
                    m.d.sync += cur.eq(base)
            keep.append(cur[:DROPOUT_BITS] >= self.threshold)
        m.d.comb += self.keep.eq(Cat(*keep) | ~self.enable.replicate(len(self.seeds)))
        return m
