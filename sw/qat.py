"""Quantisation-aware surrogate-gradient training of the integer SNN (offline, in torch).

The forward pass is the integer network of :mod:`sw.golden`, emulated with float tensors that
hold integer values (exact: every value stays far below ``2**24``):

* the input raster is the deterministic rate code of :func:`sw.encode.rate_encode` (it has
  no parameters, so it is encoded batch by batch outside the graph);
* each layer's weights are a float latent tensor, rounded and clamped to
  ``[w_min, w_max]`` in the forward pass with a straight-through estimator;
* LIF layer ``l`` at step ``t`` integrates ``s_{l-1}[t-1]`` (at ``t = 0`` it is cleared and
  silent), saturates to the membrane range, fires at ``V >= threshold`` (Heaviside forward,
  fast-sigmoid surrogate backward), subtracts the threshold and leaks ``V <- V - (V >> k)``
  (floor forward, straight-through backward: ``dV'/dV = 1 - 2**-k``).

The only difference from the golden model is saturation: :func:`sw.lif.integrate` clamps
after every presynaptic spike, here the whole step's input is added and then clamped. The two
agree whenever the membrane does not saturate in the middle of a step, which needs partial
sums far beyond the threshold; the tests check that the output counts agree exactly.

The loss is cross-entropy on the output spike counts (optionally plus a hinge on the count
margin between the true class and the best other class: the prediction is the *unique*
argmax, so a tie is an error).

**The float reference** (:func:`train_float`, ``exact=False``) is the same network in plain
float: the same encoder raster, one-step delay per layer, threshold, subtract reset and
readout (unique argmax of the output spike counts), but float weights with no range, no
membrane clamp and the leak ``V <- V * (1 - 2**-k)`` without the floor. It trains with the
same recipe, so ``bench/qat_gap.py`` measures what the integer network loses, side by side.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from spikeforge.sw.encode import rate_encode
from spikeforge.sw.golden import run_network
from spikeforge.sw.recipes import Recipe
from spikeforge.sw.weights import check_weights

__all__ = ["train_qat", "train_float", "evaluate_integer", "evaluate_float"]

SURROGATE_SLOPE = 4.0   # fast sigmoid 1 / (1 + SURROGATE_SLOPE * |V/theta - 1|)^2
MARGIN = 2.0            # wanted lead, in output spikes, of the true class over the runner-up
INIT_GAIN = 1.0         # initial per-step drive std, in thresholds
TARGET_RATE = 0.2       # assumed spike rate of hidden layers at initialisation


def _surrogate(u: torch.Tensor, theta: float) -> torch.Tensor:
    """Fast-sigmoid stand-in for the derivative of the spike ``H(u/theta - 1)`` by ``u/theta``."""
    return 1.0 / (1.0 + SURROGATE_SLOPE * (u / theta - 1.0).abs()) ** 2


def _ste(exact: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """``exact`` in the forward pass, the gradient of ``soft`` in the backward pass."""
    return soft + (exact - soft).detach()


def _quantise(latent: torch.Tensor, cfg) -> torch.Tensor:
    """Integer-valued weights from a latent tensor in units of ``w_max`` (STE round/clamp)."""
    w = latent * cfg.w_max
    return _ste(torch.clamp(torch.round(w), cfg.w_min, cfg.w_max), w)


class _LIFDynamics(torch.autograd.Function):
    """The membrane recurrence of one layer over all steps, with a hand-written BPTT.

    Input: the synaptic currents ``(B, T-1, N)`` (step ``t+1`` receives ``current[:, t]``);
    output: the spikes of steps ``1 .. T-1``. Per step, with the surrogate gradients
    ``ds/du = f/theta`` (:func:`_surrogate`) and straight-through leak ``dv'/dv = 1 - 2**-k``::

        u = clamp(v + i)   s = [u >= theta]   r = u - theta*s   v' = r - floor(r / 2**k)

    It is what autograd would compute for these lines, without its per-operation overhead.
    ``exact=False``: the float neuron (no clamp, ``v' = r - r / 2**k``), same gradients.
    """

    @staticmethod
    def forward(ctx, current, threshold, leak_shift, v_min, v_max, exact=True):
        theta, div = float(threshold), float(1 << leak_shift)
        v = current.new_zeros((current.shape[0], current.shape[2]))
        pre = torch.empty_like(current)
        inside = torch.ones_like(current, dtype=torch.bool)
        spikes = torch.empty_like(current)
        for t in range(current.shape[1]):
            v = v + current[:, t]
            if exact:
                inside[:, t] = (v >= v_min) & (v <= v_max)
                v = v.clamp_(v_min, v_max)
            pre[:, t] = v
            s = (v >= theta).to(v.dtype)
            spikes[:, t] = s
            v = v - theta * s
            v = v - (torch.floor(v / div) if exact else v / div)
        ctx.save_for_backward(pre, inside)
        ctx.theta, ctx.keep = theta, 1.0 - 1.0 / div
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes):
        pre, inside = ctx.saved_tensors
        f = _surrogate(pre, ctx.theta)
        # The gradient g[t] of the current of step t (= that of the membrane before it, where
        # the clamp passes): g[t] = inside[t] * (dL/ds[t] * f[t]/theta + keep*(1-f[t]) * g[t+1]).
        direct = inside * grad_spikes * f / ctx.theta
        carry = inside * (ctx.keep * (1.0 - f))
        grad_current = torch.empty_like(pre)
        g = pre.new_zeros((pre.shape[0], pre.shape[2]))
        for t in range(pre.shape[1] - 1, -1, -1):
            g = direct[:, t] + carry[:, t] * g
            grad_current[:, t] = g
        return grad_current, None, None, None, None, None


def _lif_layer(cfg, weights: torch.Tensor, spikes_in: torch.Tensor,
               exact: bool = True) -> torch.Tensor:
    """One LIF layer over a whole raster ``(B, T, N_pre)``; returns its raster ``(B, T, N)``."""
    # Step t integrates the spikes of step t-1: one product for all steps at once.
    current = spikes_in[:, :-1] @ weights
    spikes = _LIFDynamics.apply(current, cfg.threshold, cfg.leak_shift, cfg.v_min, cfg.v_max,
                                exact)
    return torch.cat([spikes.new_zeros((spikes.shape[0], 1, spikes.shape[2])), spikes], dim=1)


def _forward(cfg, latents, raster: torch.Tensor, exact: bool = True) -> torch.Tensor:
    """Output spike counts ``(B, N_out)`` of an input raster, through every LIF layer:
    the integer network (``exact``, quantised weights) or the float reference."""
    spikes = raster
    for latent in latents:
        weights = _quantise(latent, cfg) if exact else latent * cfg.w_max
        spikes = _lif_layer(cfg, weights, spikes, exact)
    return spikes.sum(dim=1)


def _unique_argmax(counts: torch.Tensor) -> torch.Tensor:
    """Like :func:`sw.golden.predict`: the unique argmax per row, ``-1`` on a tie."""
    best = counts.max(dim=1, keepdim=True).values
    unique = (counts == best).sum(dim=1) == 1
    return torch.where(unique, counts.argmax(dim=1), torch.full_like(unique, -1, dtype=torch.long))


def _loss(cfg, counts: torch.Tensor, labels: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    loss = torch.nn.functional.cross_entropy(recipe.count_scale * counts, labels)
    if recipe.margin_weight:
        true = counts.gather(1, labels[:, None])[:, 0]
        others = counts.scatter(1, labels[:, None], float("-inf")).max(dim=1).values
        loss = loss + recipe.margin_weight * torch.relu(MARGIN - (true - others)).mean()
    if recipe.desire_weight:
        loss = loss + recipe.desire_weight * _desire_hinge(cfg, counts, labels)
    return loss


def _desire_hinge(cfg, counts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How far the counts are from where desire backpropagation (``docs/learning.md``) marks
    no output neuron active: label ``>= (1 - desire_out) C*``, others ``<= desire_out C*``,
    with a spike of slack; in units of ``C*``, summed over outputs, averaged over samples."""
    if cfg.learning is None:
        raise ValueError(f"recipe.desire_weight: config {cfg.name!r} has no [learning] "
                         f"section to take the desire targets from")
    c_star = cfg.time_steps - cfg.learning.error_margin
    low, high = (1 - cfg.learning.desire_out) * c_star, cfg.learning.desire_out * c_star
    label = torch.nn.functional.one_hot(labels, counts.shape[1]).to(counts.dtype)
    gap = label * torch.relu(low + 1 - counts) + (1 - label) * torch.relu(counts - (high - 1))
    return gap.sum(dim=1).mean() / c_star


def _check_data(cfg, pixels, labels) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.asarray(pixels)
    labels = np.asarray(labels)
    if pixels.ndim != 2 or pixels.shape[1] != cfg.layers[0]:
        raise ValueError(f"pixels: expected shape (B, {cfg.layers[0]}), got {pixels.shape}")
    if pixels.min(initial=0) < 0 or pixels.max(initial=0) > cfg.pixel_max:
        raise ValueError(f"pixels: values must lie in [0, {cfg.pixel_max}]")
    if labels.shape != (pixels.shape[0],):
        raise ValueError(f"labels: expected shape ({pixels.shape[0]},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= cfg.layers[-1]):
        raise ValueError(f"labels: values must lie in [0, {cfg.layers[-1] - 1}]")
    return pixels.astype(np.int64), labels.astype(np.int64)


def _encode(cfg, pixels: np.ndarray) -> torch.Tensor:
    """The input raster ``(B, T, N_in)`` of :func:`sw.encode.rate_encode`, as floats."""
    raster = rate_encode(pixels, cfg.time_steps, cfg.encoder_threshold)
    return torch.from_numpy(raster).to(torch.float32)


def _init_latents(cfg, pixels: np.ndarray, gen: torch.Generator) -> list[torch.Tensor]:
    """Gaussian weights giving every neuron a per-step drive of std ``INIT_GAIN * theta``.

    The input spike rate is measured on (up to 1024 of) the training samples; hidden layers
    are assumed to fire at ``TARGET_RATE``.
    """
    latents = []
    rate = float(_encode(cfg, pixels[:1024]).mean())
    for layer in range(cfg.n_layers):
        n_pre, n_post = cfg.weight_shape(layer)
        std = INIT_GAIN * cfg.threshold / np.sqrt(max(n_pre * rate, 1.0)) / cfg.w_max
        latent = torch.randn(n_pre, n_post, generator=gen, dtype=torch.float32) * std
        latents.append(latent.clamp_(-1.0, 1.0).requires_grad_(True))
        rate = TARGET_RATE
    return latents


def train_qat(cfg, train_pixels, train_labels, *, recipe: Recipe | None = None, seed: int = 0,
              progress: bool = True, **overrides) -> list[np.ndarray]:
    """Train integer weights for ``cfg`` with quantisation-aware surrogate gradients.

    Parameters
    ----------
    cfg : NetworkConfig
        The network to train; its rate encoder, weight and membrane widths, threshold and
        leak are emulated exactly in the forward pass.
    train_pixels : numpy.ndarray
        ``(B, N_in)`` unsigned integer pixels in ``[0, cfg.pixel_max]``.
    train_labels : numpy.ndarray
        ``(B,)`` integer class labels in ``[0, N_out)``.
    recipe : Recipe, optional
        Epochs, optimiser, batch, schedule and loss (default:
        :meth:`Recipe.for_training_set`); keyword ``overrides`` replace single fields
        (``epochs=5``).
    seed : int, optional
        Seeds the weight initialisation and the batch order; the same seed, data and
        recipe give the same weights.
    progress : bool, optional
        Show a progress bar over epochs with the running training accuracy.

    Returns
    -------
    list of numpy.ndarray
        One ``(N_pre, N_post)`` int64 array per LIF layer, within ``[cfg.w_min, cfg.w_max]``;
        it passes :func:`sw.weights.check_weights`.

    Notes
    -----
    Training runs on one torch thread (restored afterwards), so the weights depend only on
    the seed, the data and the recipe.
    """
    latents = _fit(cfg, train_pixels, train_labels, recipe, overrides, seed, progress, True)
    with torch.no_grad():
        weights = [_quantise(latent, cfg).to(torch.int64).numpy() for latent in latents]
    return check_weights(cfg, weights)


def train_float(cfg, train_pixels, train_labels, *, recipe: Recipe | None = None,
                seed: int = 0, progress: bool = True, **overrides) -> list[np.ndarray]:
    """Train the float reference of ``cfg``'s network (module docstring) with the same
    recipe, initialisation and batch order as :func:`train_qat`.

    Returns one float ``(N_pre, N_post)`` array per LIF layer, in the integer network's
    units (a weight of ``cfg.threshold`` is one threshold), unbounded and unrounded; run it
    with :func:`evaluate_float`.
    """
    latents = _fit(cfg, train_pixels, train_labels, recipe, overrides, seed, progress, False)
    return [(latent.detach() * cfg.w_max).numpy().astype(np.float64) for latent in latents]


def _fit(cfg, pixels, labels, recipe, overrides, seed, progress, exact) -> list[torch.Tensor]:
    pixels, labels = _check_data(cfg, pixels, labels)
    if not len(labels):
        raise ValueError("train_pixels: no training samples")
    recipe = replace(recipe or Recipe.for_training_set(len(labels)), **overrides)
    # The tensors are small and the steps many: one thread is faster than several (and far
    # faster on a loaded machine), and it makes the result independent of the core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(cfg, pixels, labels, recipe, seed, progress, exact)
    finally:
        torch.set_num_threads(threads)


def _train(cfg, pixels, labels, recipe: Recipe, seed, progress, exact) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    latents = _init_latents(cfg, pixels, gen)
    optimiser = torch.optim.Adam(latents, lr=recipe.lr)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(recipe.epochs, 1))
                if recipe.schedule == "cosine" else None)
    targets = torch.from_numpy(labels)
    kind = "qat" if exact else "float"
    bar = tqdm(range(recipe.epochs), desc=f"{kind} {cfg.name}", unit="epoch",
               disable=not progress)
    for _ in bar:
        order = rng.permutation(len(labels))
        correct, total_loss = 0, 0.0
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            counts = _forward(cfg, latents, _encode(cfg, pixels[idx]), exact)
            loss = _loss(cfg, counts, targets[idx], recipe)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                if exact:       # the weight range: a latent beyond it has no effect
                    for latent in latents:
                        latent.clamp_(-1.0, 1.0)
                correct += int((_unique_argmax(counts) == targets[idx]).sum())
                total_loss += loss.item() * len(idx)
        if schedule is not None:
            schedule.step()
        bar.set_postfix(train_acc=f"{correct / len(labels):.3f}",
                        loss=f"{total_loss / len(labels):.3f}")
    return latents


def evaluate_float(cfg, weights, pixels, labels, *, batch_size: int = 1000) -> dict:
    """Test the float reference: ``{"accuracy", "argmax_accuracy", "ties"}`` in ``[0, 1]``.

    ``accuracy`` reads out like the chip (unique argmax, a tie is wrong); ``argmax_accuracy``
    breaks ties by the lowest index (what a plain ``argmax`` reports); ``ties`` is the
    fraction of samples whose highest count is shared.
    """
    pixels, labels = _check_data(cfg, pixels, labels)
    latents = [torch.from_numpy(np.asarray(w, dtype=np.float32) / cfg.w_max) for w in weights]
    unique = first = ties = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            counts = _forward(cfg, latents, _encode(cfg, pixels[start:start + batch_size]),
                              exact=False)
            y = torch.from_numpy(labels[start:start + batch_size])
            pred = _unique_argmax(counts)
            unique += int((pred == y).sum())
            first += int((counts.argmax(dim=1) == y).sum())
            ties += int((pred < 0).sum())
    n = max(len(labels), 1)
    return {"accuracy": unique / n, "argmax_accuracy": first / n, "ties": ties / n}


def evaluate_integer(cfg, weights, pixels, labels, *, batch_size: int = 1000) -> float:
    """Accuracy in ``[0, 1]`` of integer ``weights`` under the golden model.

    Parameters
    ----------
    cfg : NetworkConfig
        The network the weights belong to.
    weights : list of numpy.ndarray
        Integer weights, one ``(N_pre, N_post)`` array per LIF layer.
    pixels : numpy.ndarray
        ``(B, N_in)`` unsigned integer pixels in ``[0, cfg.pixel_max]``.
    labels : numpy.ndarray
        ``(B,)`` integer class labels.
    batch_size : int, optional
        Samples per :func:`sw.golden.run_network` call (bounds the memory of the rasters).

    Returns
    -------
    float
        Fraction of samples whose unique-argmax prediction equals the label; a tie
        (prediction ``-1``) counts as wrong.
    """
    weights = check_weights(cfg, weights)
    pixels, labels = _check_data(cfg, pixels, labels)
    if not len(labels):
        return 0.0
    correct = 0
    for start in range(0, len(labels), batch_size):
        run = run_network(cfg, weights, pixels[start:start + batch_size])
        correct += int((run.predictions == labels[start:start + batch_size]).sum())
    return correct / len(labels)
