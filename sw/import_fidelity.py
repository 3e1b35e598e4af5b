"""What an import did to a float network: the fidelity check and the choice of formats.

``spikeforge import`` turns a foreign float SNN into our integer one (:mod:`sw.nir_io`). This
module measures, for every import, how far the result is from the source (``docs/nir.md``,
"Fidelity"):

* per layer, the weights clipped, the nonzero weights rounded to 0, and the threshold in
  integer units (:func:`weight_stats`);
* on a few hundred samples (the dataset's first test images, or random images), the source
  network run in float (:func:`float_forward`: threshold 1, subtract reset, its own decay per
  step and its own delays) next to the integer network run by the golden model: how many
  predictions agree, how many output count vectors are identical, how many samples make the
  output layer fire at all, and per layer the share of spikes both make (:func:`measure`).

The source's timing is a parameter (:class:`SourceTiming`): a source whose first layer reads
the input of the same step (``input_delay = 0``), or whose layers read each other's spikes of
the same step (``layer_delay = 0``), is ahead of ours by one step per such edge. The import
compensates with as many more time steps (:meth:`SourceTiming.extra_steps`): our output layer
then sees exactly the input steps the source's does, and our counts over ``T + extra`` steps
are the source's counts over ``T``.

:func:`choose_formats` searches the weight width, the scale (threshold) and the membrane width
for the smallest formats whose prediction agreement reaches a target: ``--weight-bits auto``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.config import MEMBRANE_BITS, ConfigError
from spikeforge.sw import golden

#: Weight widths ``--weight-bits auto`` tries, narrowest first.
AUTO_WEIGHT_BITS = (8, 10, 12, 14, 16)
#: Scales it tries: the threshold is ``floor(w_max / a)``, ``a`` the largest ``|u|`` (``max``)
#: or the largest per-layer percentile of ``|u|`` (a handful of huge weights then clip
#: instead of rounding every other weight to 0).
AUTO_PERCENTILES = (None, 99.99, 99.9, 99.5, 99.0)
#: How much prediction agreement a narrower membrane may cost (fraction of samples).
MEMBRANE_SLACK = 0.01
#: Samples the check runs by default (``--check-samples``).
CHECK_SAMPLES = 300


@dataclass(frozen=True)
class SourceTiming:
    """When the source network's layers read their inputs.

    ``input_delay``: 1 if its first layer integrates the input spikes of the step before
    (ours), 0 if those of the same step. ``layer_delay``: the same between consecutive layers
    (ours: 1; snnTorch, Norse and NIR graphs without ``Delay`` nodes: 0).
    """

    input_delay: int = 1
    layer_delay: int = 1

    def __post_init__(self):
        for name in ("input_delay", "layer_delay"):
            if getattr(self, name) not in (0, 1):
                raise ConfigError(f"--{name.replace('_', '-')}: {getattr(self, name)!r} is out "
                                  f"of range, legal values are 0 and 1")

    def lag(self, layer: int) -> int:
        """Steps our LIF layer ``layer`` (0-based) lags the source's same layer."""
        return (1 - self.input_delay) + layer * (1 - self.layer_delay)

    def extra_steps(self, n_layers: int) -> int:
        """Time steps to add so our output layer sees all the input the source's sees."""
        return self.lag(n_layers - 1)

    def describe(self) -> str:
        return (f"input -> layer 1 delay {self.input_delay}, layer -> layer delay "
                f"{self.layer_delay} (ours: 1 and 1)")


def float_forward(units: list[np.ndarray], decays: list[float], raster: np.ndarray,
                  timing: SourceTiming) -> list[np.ndarray]:
    """The source network in float on an input raster ``(B, T, N_in)``; all rasters.

    Layer ``l``: ``V += sum_j u[j, i] * s_in[j]`` (``s_in``: the previous population's spikes
    of the same step or of the step before, per ``timing``), ``s = V >= 1``, ``V -= s``,
    ``V *= decays[l]`` (our order: integrate, fire, subtract-reset, leak for the next step).
    """
    rasters = [np.asarray(raster, dtype=bool)]
    for layer, (u, decay) in enumerate(zip(units, decays, strict=True)):
        pre = rasters[-1].astype(np.float32)
        if (timing.input_delay if layer == 0 else timing.layer_delay) == 1:
            pre = np.concatenate([np.zeros_like(pre[:, :1]), pre[:, :-1]], axis=1)
        current = pre @ np.asarray(u, dtype=np.float32)
        v = np.zeros(current[:, 0].shape, dtype=np.float32)
        out = np.zeros(current.shape, dtype=bool)
        for t in range(current.shape[1]):
            v += current[:, t]
            out[:, t] = v >= 1.0
            v -= out[:, t]
            v *= np.float32(decay)
        rasters.append(out)
    return rasters


@dataclass
class LayerStats:
    """One layer of an import: weights clipped and nonzero weights rounded to 0 (counts and
    shares), and, once measured, the share of spikes both networks make."""

    name: str
    shape: tuple[int, int]
    clipped: int
    zeroed: int
    nonzero: int
    spike_agreement: float | None = None
    int_spikes: float | None = None
    float_spikes: float | None = None

    def describe(self) -> str:
        total = self.shape[0] * self.shape[1]
        text = (f"{self.name} {self.shape[0]}x{self.shape[1]}: {self.clipped} clipped "
                f"({100 * self.clipped / max(total, 1):.2f}%), {self.zeroed} of "
                f"{self.nonzero} nonzero weights rounded to 0 "
                f"({100 * self.zeroed / max(self.nonzero, 1):.1f}%)")
        if self.spike_agreement is not None:
            text += (f"; spikes/sample {self.int_spikes:.1f} (float {self.float_spikes:.1f}), "
                     f"{100 * self.spike_agreement:.1f}% of them in both")
        return text


def weight_stats(imp) -> list[LayerStats]:
    """Per layer of an :class:`sw.nir_io.Imported`: the weights its quantisation clipped
    (counted there) and the nonzero source weights that became integer 0."""
    return [LayerStats(f"w{i}", tuple(u.shape), layer.clipped,
                       int(((u != 0) & (np.asarray(w) == 0)).sum()), int((u != 0).sum()))
            for i, (u, w, layer) in enumerate(zip(imp.units, imp.weights, imp.layers,
                                                  strict=True))]


@dataclass
class Fidelity:
    """The check of one import on ``samples`` inputs (``source``: what they were)."""

    threshold: int
    layers: list[LayerStats]
    samples: int
    source: str
    predictions_agree: float
    counts_identical: float
    output_fires: float
    int_accuracy: float | None = None
    float_accuracy: float | None = None

    def score(self) -> tuple[float, float]:
        """What the format search maximises: prediction agreement, then identical counts."""
        return (self.predictions_agree, self.counts_identical)

    def lines(self) -> list[str]:
        out = [f"fidelity: threshold 1.0 -> {self.threshold} integer units"]
        out += [f"fidelity: {layer.describe()}" for layer in self.layers]
        acc = ""
        if self.int_accuracy is not None:
            acc = (f"; accuracy {100 * self.int_accuracy:.2f}% (float "
                   f"{100 * self.float_accuracy:.2f}%)")
        out.append(f"fidelity: on {self.samples} {self.source}: predictions agree on "
                   f"{100 * self.predictions_agree:.1f}%, output counts identical on "
                   f"{100 * self.counts_identical:.1f}%, output layer fires on "
                   f"{100 * self.output_fires:.1f}% of samples{acc}")
        return out


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> float:
    both, either = (ours & theirs).sum(), (ours | theirs).sum()
    return float(both / either) if either else 1.0


def source_run(imp, timing: SourceTiming, pixels: np.ndarray) -> list[np.ndarray]:
    """The float source of an import on ``pixels``: :func:`float_forward` of our encoder's
    raster over the source's own ``T`` steps (the config's, less the compensating ones)."""
    cfg = imp.cfg
    steps = cfg.time_steps - timing.extra_steps(cfg.n_layers)
    raster = golden.encode(cfg, golden.check_pixels(cfg, pixels))
    return float_forward(imp.units, imp.decays, raster[:, :steps], timing)


def measure(imp, timing: SourceTiming, pixels: np.ndarray, labels: np.ndarray | None,
            source: str, float_run: list[np.ndarray] | None = None) -> Fidelity:
    """:class:`Fidelity` of an import (:class:`sw.nir_io.Imported`: its config, whose
    ``time_steps`` include ``timing``'s extra steps, integer weights and float source) on
    ``pixels``. Pass ``float_run`` (:func:`float_forward` of the same inputs) to reuse it
    across formats."""
    cfg = imp.cfg
    steps = cfg.time_steps - timing.extra_steps(cfg.n_layers)
    run = golden.run_network(cfg, imp.weights, pixels)
    if float_run is None:
        float_run = source_run(imp, timing, pixels)
    stats = weight_stats(imp)
    for layer, st in enumerate(stats):
        lag = timing.lag(layer)
        ours = run.rasters[layer + 1][:, lag:lag + steps]
        theirs = float_run[layer + 1]
        st.spike_agreement = _agreement(ours, theirs)
        st.int_spikes = float(ours.sum() / len(pixels))
        st.float_spikes = float(theirs.sum() / len(pixels))
    f_counts = float_run[-1].sum(axis=1)
    f_pred = golden.predict(f_counts)
    fid = Fidelity(cfg.threshold, stats, len(pixels), source,
                   float((run.predictions == f_pred).mean()),
                   float((run.counts == f_counts).all(axis=1).mean()),
                   float((run.counts.sum(axis=1) > 0).mean()))
    if labels is not None:
        fid.int_accuracy = float((run.predictions == labels).mean())
        fid.float_accuracy = float((f_pred == labels).mean())
    return fid


def problems(fid: Fidelity, target: float) -> list[str]:
    """Why an import is not faithful (empty: it is), each naming the cause and the fix."""
    fixes = ("wider weights (--weight-bits 16, or --weight-bits auto to search), a scale "
             "that lets outliers clip (--quantise percentile), or --threshold N")
    worst = max(fid.layers, key=lambda s: s.zeroed / max(s.nonzero, 1))
    cause = (f"{worst.name}: {worst.zeroed} of {worst.nonzero} nonzero weights rounded to 0 at "
             f"threshold {fid.threshold}" if worst.zeroed else
             f"threshold {fid.threshold}; clipped weights per layer "
             f"{[s.clipped for s in fid.layers]}")
    out = []
    if fid.output_fires == 0:
        out.append(f"the output layer never fires on the {fid.samples} samples ({cause}); "
                   f"try {fixes}")
    if fid.predictions_agree < target:
        out.append(f"predictions agree with the float network on only "
                   f"{100 * fid.predictions_agree:.1f}% of samples, below the "
                   f"{100 * target:.0f}% floor (--min-agreement); {cause}; try {fixes}")
    return out


def choose_formats(quantise, timing: SourceTiming, pixels: np.ndarray,
                   labels: np.ndarray | None, source: str, target: float, progress=None):
    """The smallest weight width (of :data:`AUTO_WEIGHT_BITS`), the scale (of
    :data:`AUTO_PERCENTILES`) whose prediction agreement reaches ``target`` (the best of
    all tried where none does), then the smallest membrane width that keeps it at the target
    and within :data:`MEMBRANE_SLACK` of the widest membrane's.

    ``quantise(weight_bits, percentile, membrane_bits)`` returns an :class:`sw.nir_io.Imported`
    (``membrane_bits`` ``None``: generous, 8 bits above the least legal width). Returns
    ``(imported, fidelity, lines)``, the lines a table of what was tried and why the choice.
    """
    lines, tried = [], []
    float_run = None

    def check(imp):
        nonlocal float_run
        if float_run is None:
            float_run = source_run(imp, timing, pixels)
        fid = measure(imp, timing, pixels, labels, source, float_run)
        if progress is not None:
            progress()
        return fid

    best = None
    for bits in AUTO_WEIGHT_BITS:
        row = None
        for pct in AUTO_PERCENTILES:
            imp = quantise(bits, pct, None)
            fid = check(imp)
            name = "max" if pct is None else f"p{pct:g}"
            tried.append(f"w{bits} {name}: threshold {imp.cfg.threshold}, agree "
                         f"{100 * fid.predictions_agree:.1f}%")
            if row is None or fid.score() > row[2].score():
                row = (bits, pct, fid, imp)
        if best is None or row[2].score() > best[2].score():
            best = row
        if row[2].predictions_agree >= target:
            best = row
            break
    bits, pct, fid, imp = best
    # the membrane: from the generous width down while the agreement stays at the target and
    # within MEMBRANE_SLACK of the generous width's (saturation is not free)
    mem = imp.cfg.membrane_bits
    floor = max(MEMBRANE_BITS[0], imp.cfg.min_membrane_bits)
    keep = max(min(target, fid.predictions_agree), fid.predictions_agree - MEMBRANE_SLACK)
    while mem > floor:
        smaller = quantise(bits, pct, mem - 1)
        sfid = check(smaller)
        tried.append(f"w{bits} v{mem - 1}: agree {100 * sfid.predictions_agree:.1f}%")
        if sfid.predictions_agree < keep:
            break
        mem, imp, fid = mem - 1, smaller, sfid
    met = fid.predictions_agree >= target
    lines.append("auto formats: tried " + "; ".join(tried))
    lines.append(f"auto formats: chose weight_bits {bits}, "
                 f"{'max' if pct is None else f'{pct:g}th percentile'} scale (threshold "
                 f"{imp.cfg.threshold}), membrane_bits {imp.cfg.membrane_bits}: "
                 + (f"the smallest that keep predictions agreeing on >= {100 * target:.0f}%"
                    if met else f"none reached {100 * target:.0f}%, this is the closest"))
    return imp, fid, lines
