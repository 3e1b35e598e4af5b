"""Float reference of desire backpropagation as published (Gerlinghoff et al., 2023).

Our own implementation of the algorithm of the paper and its authors' reference code, in
numpy float64, one training sample at a time (evaluation may be batched). It is the yardstick
the integer golden model (:mod:`sw.desire`) and the gateware are measured against: run both
from the same weights to see how much accuracy the integer formats cost.

Per LIF layer and time step (threshold 1, decay ``d = 1 - 2**-leak_shift``)::

    V <- d * V ;  V <- V + W^T s_in ;  s = (V >= 1) & keep ;  V <- V - s   (subtract-reset)
    x <- d * x + s_in                  (presynaptic trace, pairs with the s made from s_in)

Input: one non-leaky IF neuron per pixel, ``u <- u + p`` (``p`` in [0, 1]), spike when
``u >= 1``, subtract 1. Two timings (``timing=``):

``"published"``
    the first LIF layer integrates the input spikes of the *same* step ``t``; every further
    layer reads the previous layer's spikes of step ``t - 1``.
``"spikeforge"``
    the structure of :mod:`sw.golden`: every LIF layer, the first included, reads the previous
    population's spikes of step ``t - 1``; at ``t = 0`` LIF layers are cleared and cannot
    fire. Run from weights ``W_store / (theta * 2**F)`` this differs from the integer model
    only by quantisation (leak and trace rounding, saturation, update rounding).

After the ``T`` steps, with counts ``c`` and ``C* = T - error_margin``:

* output: ``e_i = |d_i - c_i / C*|`` (``d`` one-hot label); active iff the signed error
  (``1 - c/C*`` for the label, ``c/C*`` else) exceeds ``desire_out``; sign +1 label, -1 others;
* hidden (from the layer above): ``S_j = sum_i W_ji * sign_i * active_i * keep_i * e_i``;
  active iff ``|S_j| >= desire_hidden``, sign ``S_j > 0``, ``e_j = |sign01_j - c_j / C*|``;
* update of every layer, after the backward pass:
  ``dW_ji = lr_e * sign_i * active_i * keep_i * sum_t s_i[t] x_j[t]``,
  ``lr_e = lr * exp(-lr_decay * epoch)``.

Near eligibility (``eligibility="near"``, not in the paper; ``docs/learning.md``): the update
pairs the trace with ``near_i[t] = V_i >= near_fraction`` (the membrane after the step's
integration, before the threshold test and reset; 0 for a dropped neuron) in place of
``s_i[t]``; everything else reads the spikes.

Dropout (training only, ``dropout=(p_in, p_hid)``): one Bernoulli keep-mask per neuron and
sample for the input and every hidden population (never the output); a dropped neuron never
spikes (nor resets), kept spikes reach the next layer scaled by ``1 / (1 - p)``
(``dropout_scale=True``, as published) or unscaled (``dropout_scale=False``, what the chip
does: ``from_config`` of a config with ``dropout_hidden``); traces see unscaled spikes.
Prediction: the unique argmax of the output spike counts, ``-1`` (wrong) on a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from spikeforge.config import ELIGIBILITIES, HIDDEN_GATES, TIE_BREAKS
from spikeforge.sw.golden import decide  # the same decision rule as the integer model

__all__ = ["TIMINGS", "FloatDesire", "FloatDesireNet", "FloatRun", "FloatStep"]

TIMINGS = ("published", "spikeforge")
THRESHOLD = 1.0  # membrane and input-neuron threshold of the published algorithm


@dataclass
class FloatRun:
    """One forward pass: ``rasters[0]`` input spikes, ``rasters[l]`` LIF layer ``l``'s, all
    ``(B, T, N)`` bool; ``counts`` ``(B, N_out)``; ``predictions`` ``(B,)``, ``-1`` on a tie;
    ``near`` (near eligibility only, else ``None``): ``near[l]`` the near raster of LIF layer
    ``l`` like ``rasters[l]``, ``near[0] = None``."""

    rasters: list[np.ndarray]
    counts: np.ndarray
    predictions: np.ndarray
    near: list[np.ndarray | None] | None = None


@dataclass
class FloatDesire:
    """Ternary desire of one population: ``active``, ``sign`` (True = +1), error ``e`` in
    [0, ...) spike-count units of ``1/C*``, and the dropout ``keep`` mask."""

    active: np.ndarray
    sign: np.ndarray
    error: np.ndarray
    keep: np.ndarray

    @property
    def coef(self) -> np.ndarray:
        """``sign * active * keep * e``: what the backward pass multiplies the weights with."""
        on = self.active & self.keep
        return np.where(on, np.where(self.sign, self.error, -self.error), 0.0)


@dataclass
class FloatStep:
    """One training sample: the forward run (``B = 1``), the desire of every LIF population,
    the backward sums ``sums[l]`` into population ``l`` (``None`` for the output layer), the
    weight changes applied and the learning rate used."""

    run: FloatRun
    desires: list[FloatDesire]
    sums: list[np.ndarray | None]
    deltas: list[np.ndarray]
    lr: float


def _check_prob(name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: {p!r} is out of range, legal range is [0, 1)")
    return float(p)


class FloatDesireNet:
    """A fully connected SNN trained by float desire backpropagation (see module doc).

    Parameters
    ----------
    layers : sequence of int
        ``(n_in, n_hidden..., n_out)``, at least two entries.
    time_steps, leak_shift, error_margin : int
        ``T``; decay ``1 - 2**-leak_shift`` of membranes and traces; ``C* = T - margin``.
    desire_out, desire_hidden : float
        Ternarisation thresholds (published 0.30 and 0.05).
    lr, lr_decay : float
        Learning rate of epoch ``e`` is ``lr * exp(-lr_decay * e)`` (published 1e-5, 0.04).
    tie_break : str
        How the prediction breaks a tie of the largest count: ``"none"`` (no prediction,
        ``-1``) or ``"first_spike"`` (:func:`sw.golden.decide`).
    dropout : (float, float)
        ``(p_in, p_hid)``, training only; ``(0, 0)`` disables it.
    dropout_scale : bool
        Kept spikes reach the next layer scaled by ``1 / (1 - p)`` (True, as published) or as
        they are (False).
    timing : str
        ``"published"`` or ``"spikeforge"`` (see module doc).
    eligibility : str
        ``"spike"`` (published) or ``"near"``: the update's post term is the near raster,
        membrane ``>= near_fraction`` (of the threshold 1) before the reset (module doc).
    near_fraction : float
        In ``(0, 1]``; used by ``eligibility="near"`` only.
    hidden_gate : str
        ``"none"`` (published) or ``"error"``: a hidden neuron learns only while its count is
        short of its desire (``c < C*`` for +1, ``c > 0`` for -1; ``docs/learning.md``).
    seed : int
        Seeds the Kaiming-normal initialisation (std ``sqrt(2 / N_pre)``) and the dropout masks.
    weights : list of array, optional
        ``(N_pre, N_post)`` float weights to start from instead of a random draw.

    Attributes
    ----------
    weights : list of ndarray of float64, ``(N_pre, N_post)``; updated in place by training.
    """

    def __init__(self, layers, *, time_steps: int = 20, leak_shift: int = 2,
                 error_margin: int = 4, desire_out: float = 0.30, desire_hidden: float = 0.05,
                 lr: float = 1e-5, lr_decay: float = 0.04, dropout=(0.0, 0.0),
                 dropout_scale: bool = True, timing: str = "published",
                 eligibility: str = "spike", near_fraction: float = 0.5, seed: int = 0,
                 weights=None, tie_break: str = "none", hidden_gate: str = "none"):
        layers = tuple(int(n) for n in layers)
        if len(layers) < 2 or min(layers) < 1:
            raise ValueError(f"layers: expected at least 2 positive sizes, got {layers}")
        if not isinstance(time_steps, int) or time_steps < 1:
            raise ValueError(f"time_steps: expected a positive integer, got {time_steps!r}")
        if not isinstance(leak_shift, int) or leak_shift < 1:
            raise ValueError(f"leak_shift: expected a positive integer, got {leak_shift!r}")
        if not isinstance(error_margin, int) or not 0 <= error_margin < time_steps:
            raise ValueError(f"error_margin: {error_margin!r} is out of range, legal range is "
                             f"[0, {time_steps - 1}]")
        if timing not in TIMINGS:
            raise ValueError(f"timing: {timing!r} is not one of {TIMINGS}")
        if eligibility not in ELIGIBILITIES:
            raise ValueError(f"eligibility: {eligibility!r} is not one of {ELIGIBILITIES}")
        if (isinstance(near_fraction, bool) or not isinstance(near_fraction, (int, float))
                or not 0.0 < near_fraction <= 1.0):
            raise ValueError(f"near_fraction: {near_fraction!r} is out of range, legal range "
                             f"is (0, 1]")
        if hidden_gate not in HIDDEN_GATES:
            raise ValueError(f"hidden_gate: {hidden_gate!r} is not one of {HIDDEN_GATES}")
        if len(dropout) != 2:
            raise ValueError(f"dropout: expected (p_in, p_hid), got {dropout!r}")
        self.layers = layers
        self.time_steps = time_steps
        self.leak_shift = leak_shift
        self.decay = 1.0 - 2.0 ** -leak_shift
        self.error_margin = error_margin
        self.desire_out = float(desire_out)
        self.desire_hidden = float(desire_hidden)
        self.lr = float(lr)
        self.lr_decay = float(lr_decay)
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break: {tie_break!r} is not one of {TIE_BREAKS}")
        self.tie_break = tie_break
        self.dropout = (_check_prob("dropout[0] (input)", dropout[0]),
                        _check_prob("dropout[1] (hidden)", dropout[1]))
        self.dropout_scale = bool(dropout_scale)
        self.timing = timing
        self.eligibility = eligibility
        self.near_fraction = float(near_fraction)
        self.hidden_gate = hidden_gate
        self.rng = np.random.default_rng(seed)
        if weights is None:
            weights = [self.rng.standard_normal((a, b)) * math.sqrt(2.0 / a)
                       for a, b in zip(layers[:-1], layers[1:], strict=True)]
        if len(weights) != len(layers) - 1:
            raise ValueError(f"weights: expected {len(layers) - 1} arrays, got {len(weights)}")
        self.weights = []
        for i, w in enumerate(weights):
            w = np.array(w, dtype=np.float64)
            if w.shape != (layers[i], layers[i + 1]):
                raise ValueError(f"weights[{i}]: shape {w.shape}, expected "
                                 f"{(layers[i], layers[i + 1])} (N_pre, N_post)")
            self.weights.append(w)

    # ---- construction from a spikeforge config ----
    @classmethod
    def from_config(cls, cfg, stored=None, *, timing: str = "published", seed: int = 0,
                    dropout=None, dropout_scale: bool | None = None,
                    lr: float | None = None) -> FloatDesireNet:
        """The float twin of ``cfg`` (a :class:`~spikeforge.config.NetworkConfig` with a
        ``[learning]`` section).

        ``stored`` (optional): integer stored weights (``weight_bits + F`` bits, as
        :func:`sw.desire.train_step` takes them); the float weights are the values they stand
        for, ``W_store / (theta * 2**F)`` (exact in float64). Without it the weights are a
        Kaiming-normal draw. (The integer inference reads ``floor(W_store / 2**F) / theta``
        of these values, see :meth:`to_stored`.) ``lr`` defaults to the integer rule's
        effective rate,
        ``trace_one / (2**lr_shift * theta * 2**F)``: an eligibility of ``acc`` trace units
        moves ``W_store`` by ``acc / 2**lr_shift``. The eligibility (``"spike"`` or
        ``"near"``) and ``near_fraction`` are the config's (the float net compares with the
        fraction itself, the integer one with ``ceil(near_fraction * theta)``). ``dropout``
        defaults to the config's, ``(0, dropout_hidden)``, and ``dropout_scale`` to False
        (unscaled, as on the chip).
        """
        learn = cfg.learning
        if learn is None:
            raise ValueError(f"config {cfg.name!r} has no [learning] section")
        scale = cfg.threshold * 2 ** cfg.frac_bits
        if lr is None:
            lr = cfg.trace_one / (2 ** learn.lr_shift * scale)
        weights = None
        if stored is not None:
            weights = [np.asarray(w, dtype=np.float64) / scale for w in stored]
        return cls(cfg.layers, time_steps=cfg.time_steps, leak_shift=cfg.leak_shift,
                   error_margin=learn.error_margin, desire_out=float(learn.desire_out),
                   desire_hidden=float(learn.desire_hidden), lr=lr,
                   lr_decay=float(learn.lr_decay),
                   dropout=(0.0, float(Fraction(str(learn.dropout_hidden))))
                   if dropout is None else dropout,
                   dropout_scale=False if dropout_scale is None else dropout_scale,
                   timing=timing, eligibility=learn.eligibility,
                   near_fraction=float(learn.near_fraction),
                   seed=seed, weights=weights, tie_break=cfg.tie_break,
                   hidden_gate=learn.hidden_gate)

    def to_stored(self, cfg, *, centre: bool = False) -> list[np.ndarray]:
        """The weights as ``cfg``'s stored integers: ``round(W * theta * 2**F)``, saturated.

        The integer model's inference reads ``W_store >> F``, a floor: on average half a
        weight LSB (``0.5 / theta``) below ``W``. ``centre=True`` adds ``2**(F-1)`` so that
        the read is ``round(W * theta)`` instead (the unbiased start for comparing the two
        models' behaviour; without it a Kaiming start quantised to ``theta = 64`` is nearly
        silent in the integer model).
        """
        scale = cfg.threshold * 2 ** cfg.frac_bits
        offset = (1 << cfg.frac_bits) >> 1 if centre else 0
        return [np.clip(np.rint(w * scale) + offset, cfg.store_min, cfg.store_max)
                .astype(np.int64) for w in self.weights]

    # ---- pieces ----
    @property
    def n_layers(self) -> int:
        return len(self.layers) - 1

    @property
    def target_count(self) -> int:
        """``C* = T - error_margin``."""
        return self.time_steps - self.error_margin

    def lr_at(self, epoch: int) -> float:
        """``lr * exp(-lr_decay * epoch)``."""
        return self.lr * math.exp(-self.lr_decay * epoch)

    def encode(self, pixels01: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """Input IF neurons: ``(B, N_in)`` pixels in [0, 1] -> ``(B, T, N_in)`` bool raster."""
        p = np.asarray(pixels01, dtype=np.float64)
        if p.ndim != 2 or p.shape[1] != self.layers[0]:
            raise ValueError(f"pixels01: expected shape (B, {self.layers[0]}), got {p.shape}")
        if p.size and (p.min() < 0.0 or p.max() > 1.0):
            raise ValueError("pixels01: values must lie in [0, 1]")
        u = np.zeros_like(p)
        raster = np.zeros((p.shape[0], self.time_steps, p.shape[1]), dtype=bool)
        for t in range(self.time_steps):
            u += p
            s = u >= THRESHOLD
            if keep is not None:
                s &= keep
            u -= s
            raster[:, t] = s
        return raster

    def _drive(self, layer: int, pre: np.ndarray) -> np.ndarray:
        """The input spikes LIF layer ``layer`` integrates at each step, ``(B, T, N_pre)``."""
        if layer == 0 and self.timing == "published":
            return pre
        drive = np.zeros_like(pre)
        drive[:, 1:] = pre[:, :-1]
        return drive

    def run_raster(self, raster: np.ndarray, keeps=None) -> FloatRun:
        """Run the LIF layers on an input raster ``(B, T, N_in)``.

        ``keeps``: per population (input first) a ``(N,)`` dropout keep-mask or ``None``;
        ``None`` altogether runs without dropout (evaluation). With near eligibility the run
        also holds the near rasters (:attr:`FloatRun.near`).
        """
        raster = np.asarray(raster, dtype=bool)
        batch, steps, _ = raster.shape
        rasters = [raster]
        nears = [None] if self.eligibility == "near" else None
        for layer, w in enumerate(self.weights):
            scale = 1.0
            if self.dropout_scale and keeps is not None and keeps[layer] is not None:
                scale = 1.0 / (1.0 - self.dropout[0 if layer == 0 else 1])
            current = self._drive(layer, rasters[layer]) @ (w * scale if scale != 1.0 else w)
            keep = None if keeps is None else keeps[layer + 1]
            v = np.zeros((batch, w.shape[1]))
            out = np.zeros((batch, steps, w.shape[1]), dtype=bool)
            near = None if nears is None else np.zeros_like(out)
            for t in range(steps):
                v *= self.decay
                v += current[:, t]
                s = v >= THRESHOLD
                if near is not None:          # the membrane before the reset
                    near[:, t] = v >= self.near_fraction * THRESHOLD
                    if keep is not None:
                        near[:, t] &= keep
                if keep is not None:
                    s &= keep
                v -= s
                out[:, t] = s
            rasters.append(out)
            if nears is not None:
                nears.append(near)
        counts = rasters[-1].sum(axis=1)
        return FloatRun(rasters=rasters, counts=counts, predictions=decide(self, rasters[-1]),
                        near=nears)

    def forward(self, pixels01: np.ndarray) -> FloatRun:
        """Evaluation pass (no dropout) of a batch ``(B, N_in)`` of pixels in [0, 1]."""
        return self.run_raster(self.encode(pixels01))

    def predict(self, pixels01: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Predictions ``(B,)`` of a batch of pixels in [0, 1], ``-1`` for a tie."""
        pixels01 = np.atleast_2d(np.asarray(pixels01, dtype=np.float64))
        return np.concatenate([self.forward(pixels01[i:i + batch_size]).predictions
                               for i in range(0, len(pixels01), batch_size)]
                              or [np.zeros(0, dtype=np.int64)])

    def accuracy(self, pixels01: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of samples whose unique argmax is the label (ties count as wrong)."""
        return float(np.mean(self.predict(pixels01) == np.asarray(labels)))

    def traces(self, drive: np.ndarray) -> np.ndarray:
        """``x[t] = d * x[t-1] + s_in[t]`` (``x[-1] = 0``) of one sample's drive ``(T, N)``."""
        x = np.zeros(drive.shape)
        acc = np.zeros(drive.shape[1])
        for t in range(drive.shape[0]):
            acc = acc * self.decay + drive[t]
            x[t] = acc
        return x

    def _error(self, counts: np.ndarray, sign: np.ndarray) -> np.ndarray:
        return np.abs(sign.astype(np.float64) - counts / self.target_count)

    def output_desire(self, counts: np.ndarray, label: int) -> FloatDesire:
        """Label: active iff ``1 - c/C* > desire_out``; others iff ``c/C* > desire_out``."""
        sign = np.arange(len(counts)) == label
        rate = counts / self.target_count
        active = np.where(sign, 1.0 - rate, rate) > self.desire_out
        return FloatDesire(active=active, sign=sign, error=self._error(counts, sign),
                           keep=np.ones(len(counts), dtype=bool))

    def hidden_desire(self, sums: np.ndarray, counts: np.ndarray, keep) -> FloatDesire:
        """Active iff ``|S| >= desire_hidden`` (and with ``hidden_gate="error"`` while the
        count is short of the desire); sign ``S > 0``; ``e`` from its own count."""
        sign = sums > 0
        active = np.abs(sums) >= self.desire_hidden
        if self.hidden_gate == "error":
            active &= np.where(sign, counts < self.target_count, counts > 0)
        return FloatDesire(active=active, sign=sign,
                           error=self._error(counts, sign),
                           keep=np.ones(len(counts), dtype=bool) if keep is None else keep)

    # ---- learning ----
    def draw_keeps(self) -> list[np.ndarray | None]:
        """Dropout keep-masks of one training sample, per population (input first)."""
        p_in, p_hid = self.dropout
        keeps: list[np.ndarray | None] = [None] * len(self.layers)
        if p_in > 0.0:
            keeps[0] = self.rng.random(self.layers[0]) >= p_in
        if p_hid > 0.0:
            for pop in range(1, len(self.layers) - 1):
                keeps[pop] = self.rng.random(self.layers[pop]) >= p_hid
        return keeps

    def train_step(self, pixels01: np.ndarray, label: int, epoch: int = 0, *,
                   raster: np.ndarray | None = None) -> FloatStep:
        """Train on one sample (pixels in [0, 1], shape ``(N_in,)``); updates ``weights``.

        ``raster`` (optional, ``(T, N_in)``): use this input raster instead of encoding
        ``pixels01`` (e.g. the integer encoder's, to isolate the quantisation gap).
        """
        if not 0 <= label < self.layers[-1]:
            raise ValueError(f"label: {label} is out of range, legal range is "
                             f"[0, {self.layers[-1] - 1}]")
        keeps = self.draw_keeps()
        if raster is None:
            raster = self.encode(np.asarray(pixels01, dtype=np.float64)[None, :], keeps[0])
        else:
            raster = np.asarray(raster, dtype=bool)[None]
            if keeps[0] is not None:
                raster = raster & keeps[0]
        run = self.run_raster(raster, keeps if any(k is not None for k in keeps) else None)
        rasters = [r[0] for r in run.rasters]
        counts = [r.sum(axis=0) for r in rasters]
        L = self.n_layers

        desires: list[FloatDesire | None] = [None] * L
        sums: list[np.ndarray | None] = [None] * L
        desires[L - 1] = self.output_desire(counts[L], label)
        for layer in range(L - 1, 0, -1):
            sums[layer - 1] = self.weights[layer] @ desires[layer].coef
            desires[layer - 1] = self.hidden_desire(sums[layer - 1], counts[layer],
                                                    keeps[layer])

        lr = self.lr_at(epoch)
        deltas = []
        for layer in range(L):
            d = desires[layer]
            delta = np.zeros_like(self.weights[layer])
            cols = np.flatnonzero(d.active & d.keep)
            if cols.size:
                x = self.traces(self._drive(layer, rasters[layer][None])[0])
                post = rasters[layer + 1] if run.near is None else run.near[layer + 1][0]
                elig = x.T @ post[:, cols]
                delta[:, cols] = lr * np.where(d.sign[cols], elig, -elig)
            deltas.append(delta)
        for w, delta in zip(self.weights, deltas, strict=True):
            w += delta
        return FloatStep(run=run, desires=desires, sums=sums, deltas=deltas, lr=lr)
