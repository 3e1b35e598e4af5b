"""The decoder on the chip and its early exit: the bit-exact golden model of
:class:`hw.exit_decoder.ExitDecoder` (``docs/decoder.md``).

The decoder reads the binary readout raster ``s[t, j]`` (output neuron ``j`` spiked at step
``t``) of the first ``T_dec = decoder.steps`` steps. Its integer weights ``W[t, j, c]`` and
biases ``b[c]`` (``decoder.weight_bits`` signed) give one running score per class ``c``:

    score[c] after step t = b[c] + sum_{u <= t} sum_j s[u, j] * W[u, j, c]

exact in ``score_bits`` (no saturation is ever needed). After step ``t`` (``n = t + 1``
steps run) the chip checks the scores when ``n >= first_check``: the sample ends there if
``n == T_dec``, or with ``exit = "margin"`` if the top score leads the second by at least
``margin``. The second is the largest of the other classes' scores (a tie at the top leads
by 0). The decision is the class of the top score, the lowest such class on a tie.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.sw.weights import WeightError


@dataclass(frozen=True)
class DecoderWeights:
    """A linear decoder's integers: ``w`` ``(T_dec, N_out, C)`` and ``b`` ``(C,)``."""

    w: np.ndarray
    b: np.ndarray


@dataclass
class DecoderRun:
    """What the decoder decided for a batch: ``steps`` ``(B,)``, the steps each sample ran
    (``1 .. T_dec``); ``scores`` ``(B, C)`` at the exit; ``decisions`` ``(B,)``."""

    steps: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray


def check_decoder(cfg, w, b) -> DecoderWeights:
    """The decoder's integers as int64 arrays, or :class:`WeightError` naming the problem
    (a config without ``[decoder]``, a shape or a value out of the signed range)."""
    if cfg.decoder is None:
        raise WeightError(f"config {cfg.name!r} has no [decoder] section")
    d, n_out = cfg.decoder, cfg.layers[-1]
    lo, hi = -(1 << (d.weight_bits - 1)), (1 << (d.weight_bits - 1)) - 1
    checked = []
    for name, x, shape in (("decoder_w", w, (d.steps, n_out, n_out)), ("decoder_b", b, (n_out,))):
        x = np.asarray(x)
        if x.shape != shape:
            raise WeightError(f"{name}: shape {x.shape} does not match the config's {shape}"
                              + (" (T_dec, N_out, classes)" if x.ndim == 3 else ""))
        if not np.issubdtype(x.dtype, np.integer):
            raise WeightError(f"{name}: dtype {x.dtype} is not an integer type")
        if x.size and (x.min() < lo or x.max() > hi):
            raise WeightError(f"{name}: values in [{x.min()}, {x.max()}] exceed the "
                              f"{d.weight_bits}-bit signed range [{lo}, {hi}]")
        checked.append(x.astype(np.int64))
    return DecoderWeights(*checked)


def running_scores(dec: DecoderWeights, out_raster: np.ndarray) -> np.ndarray:
    """Every class's score after each decoded step: ``(B, T_dec, C)`` from the readout raster
    ``(B, T, N_out)`` (its first ``T_dec`` steps)."""
    steps = dec.w.shape[0]
    spikes = np.asarray(out_raster[:, :steps], dtype=np.int64)
    per_step = np.einsum("btj,tjc->btc", spikes, dec.w)
    return dec.b + np.cumsum(per_step, axis=1)


def top_and_lead(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decision (lowest class of the top score) and the top score's lead over the
    second, along the last axis."""
    best = scores.argmax(axis=-1)
    top2 = np.sort(scores, axis=-1)[..., -2:]
    return best, top2[..., 1] - top2[..., 0]


def exit_steps(cfg, scores: np.ndarray) -> np.ndarray:
    """The steps each sample runs, ``(B,)``, from its running scores ``(B, T_dec, C)``: the
    first checked ``n`` whose scores lead by ``margin`` (``exit = "margin"``), else
    ``T_dec``."""
    d = cfg.decoder
    batch = scores.shape[0]
    ran = np.full(batch, d.steps, dtype=np.int64)
    if d.exit == "margin":
        _, lead = top_and_lead(scores)                       # (B, T_dec)
        ok = lead >= d.margin
        ok[:, :d.min_steps - 1] = False
        ran = np.where(ok.any(axis=1), ok.argmax(axis=1) + 1, ran)
    return ran


def decode(cfg, dec: DecoderWeights, out_raster: np.ndarray) -> DecoderRun:
    """The decoder of ``cfg`` on the readout rasters ``(B, T, N_out)``: where each sample
    exits, its scores there and its decision."""
    scores = running_scores(dec, out_raster)
    steps = exit_steps(cfg, scores)
    at_exit = scores[np.arange(len(steps)), steps - 1]
    return DecoderRun(steps=steps, scores=at_exit, decisions=top_and_lead(at_exit)[0])


def random_decoder(cfg, rng: np.random.Generator, *, scale: float = 0.5) -> DecoderWeights:
    """Uniform random decoder integers spanning ``scale`` of the signed range (tests and
    ``spikeforge compare`` without a trained decoder)."""
    d, n_out = cfg.decoder, cfg.layers[-1]
    hi = max(1, round(((1 << (d.weight_bits - 1)) - 1) * scale))
    return DecoderWeights(rng.integers(-hi, hi + 1, size=(d.steps, n_out, n_out)),
                          rng.integers(-hi, hi + 1, size=n_out))
