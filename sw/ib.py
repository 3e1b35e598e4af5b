"""End-to-end training of the encoding SNN and its decoder through an information bottleneck.

The hybrid model of Skatchkovsky, Simeone and Jang (NeurIPS 2021), on our integer SNN: the
encoding SNN is the config's rate-coded network, emulated exactly as in :mod:`sw.qat`
(quantised weights with a straight-through estimator, surrogate-gradient spikes); its
readout is the output layer's binary raster over the first ``steps`` steps; a decoder of
:mod:`sw.decoders` reads that raster. Both are trained together on

    loss = cross-entropy(decoder(raster), label) + beta * mean_i KL(Bern(p_i) || Bern(r))

where ``p_i`` is readout neuron ``i``'s spike probability in the window (its firing rate over
the ``steps`` steps of the sample, differentiable through the surrogate) and ``r`` the prior
rate: the KL term bounds how much the spike train may carry, the bottleneck. The trained
weights are integers in the config's format (they load into the gateware as they are) and
the decoder is then evaluated on rasters the golden model (and the RTL) produce.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from spikeforge.sw.decoders import LearnedDecoder, _model
from spikeforge.sw.qat import _check_data, _encode, _init_latents, _lif_layer, _quantise
from spikeforge.sw.weights import check_weights

EPS = 1e-4


def kl_bernoulli(p: torch.Tensor, r: float) -> torch.Tensor:
    """Mean of ``KL(Bern(p) || Bern(r))`` over all entries of ``p``."""
    p = p.clamp(EPS, 1 - EPS)
    return (p * torch.log(p / r) + (1 - p) * torch.log((1 - p) / (1 - r))).mean()


def readout(cfg, latents, raster: torch.Tensor, steps: int) -> torch.Tensor:
    """The output layer's raster ``(B, steps, n_out)`` of an input raster."""
    spikes = raster
    for latent in latents:
        spikes = _lif_layer(cfg, _quantise(latent, cfg), spikes)
    return spikes[:, :steps]


def train_end_to_end(cfg, pixels, labels, *, decoder: str = "conv", steps: int | None = None,
                     beta: float = 0.01, rate: float = 0.2, epochs: int = 10, seed: int = 0,
                     lr: float = 0.01, decoder_lr: float = 3e-3, batch_size: int = 64,
                     progress: bool = True):
    """Train SNN weights and a decoder together (see the module doc).

    Returns ``(weights, decoder)``: integer weights per LIF layer (checked against ``cfg``)
    and the :class:`sw.decoders.LearnedDecoder` reading the first ``steps`` steps.
    """
    pixels, labels = _check_data(cfg, pixels, labels)
    steps = steps or cfg.time_steps
    if not 1 <= steps <= cfg.time_steps:
        raise ValueError(f"steps: {steps} is out of range, legal range is [1, {cfg.time_steps}]")
    if not 0 < rate < 1 or beta < 0:
        raise ValueError(f"rate must lie in (0, 1) and beta be >= 0, got {rate}, {beta}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        latents = _init_latents(cfg, pixels, gen)
        model = _model(decoder, steps, cfg.layers[-1], cfg.layers[-1])
        opt = torch.optim.Adam([{"params": latents, "lr": lr},
                                {"params": model.parameters(), "lr": decoder_lr}])
        targets = torch.from_numpy(labels)
        bar = tqdm(range(epochs), desc=f"ib {cfg.name} {decoder} T={steps}", unit="epoch",
                   disable=not progress)
        for _ in bar:
            order = rng.permutation(len(labels))
            correct, total = 0, 0.0
            model.train()
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                window = readout(cfg, latents, _encode(cfg, pixels[idx]), steps)
                logits = model(window)
                ce = torch.nn.functional.cross_entropy(logits, targets[idx])
                loss = ce + beta * kl_bernoulli(window.mean(dim=1), rate)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for latent in latents:
                        latent.clamp_(-1.0, 1.0)
                    correct += int((logits.argmax(dim=1) == targets[idx]).sum())
                    total += loss.item() * len(idx)
            bar.set_postfix(train_acc=f"{correct / len(labels):.3f}",
                            loss=f"{total / len(labels):.3f}")
        with torch.no_grad():
            weights = [_quantise(latent, cfg).to(torch.int64).numpy() for latent in latents]
    finally:
        torch.set_num_threads(threads)
    return check_weights(cfg, weights), LearnedDecoder(decoder, model, steps)
