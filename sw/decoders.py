"""Decoding the readout spike raster: fixed rules (rate, first spike) and learned ANN decoders.

The input of every decoder is the binary raster of the readout neurons over the first ``T``
steps of a sample, ``(B, T, n_out)`` (what the gateware streams out, :mod:`sw.spike_stream`;
the golden model's raster is bit-identical to the RTL's). The fixed rules:

* ``rate``: the unique argmax of the spike counts (a tie is wrong), the chip's own rule;
* ``first-spike``: the neuron that spikes first; a tie on the step goes to the one with
  more spikes; a tie on both (or no spike at all) is wrong.

The learned decoders (torch, trained with cross-entropy on golden-model rasters of the
training split) read the whole raster, not only counts:

* ``linear``: one affine map of the flattened ``T x n_out`` raster;
* ``mlp``: flattened raster -> 128 ReLU -> classes;
* ``conv``: a small temporal CNN: two 1-D convolutions over time (``n_out`` channels in,
  32 out, kernel 3) with ReLU, then an affine map of the flattened features.
"""

from __future__ import annotations

import numpy as np

from spikeforge.sw.golden import predict

FIXED = ("rate", "first-spike")
LEARNED = ("linear", "mlp", "conv")
DECODERS = FIXED + LEARNED


def rate_decode(raster: np.ndarray) -> np.ndarray:
    return predict(np.asarray(raster).sum(axis=1))


def first_spike_decode(raster: np.ndarray) -> np.ndarray:
    raster = np.asarray(raster, dtype=bool)
    steps = raster.shape[1]
    first = np.where(raster.any(axis=1), raster.argmax(axis=1), steps)     # (B, n_out)
    # earliest first; among those, most spikes; a remaining tie (or silence) is wrong
    key = (steps - first) * (steps + 1) + raster.sum(axis=1)
    key = np.where(first < steps, key, -1)
    pred = predict(key)
    return np.where(key.max(axis=1) >= 0, pred, -1)


def _model(kind: str, steps: int, n_out: int, classes: int):
    import torch.nn as nn

    flat = steps * n_out
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(flat, classes))
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(),
                             nn.Linear(128, classes))
    if kind == "conv":
        class TimeAsChannels(nn.Module):
            """``(B, T, n)`` -> ``(B, n, T)`` for ``Conv1d`` over time."""

            def forward(self, x):
                return x.transpose(1, 2)

        return nn.Sequential(TimeAsChannels(), nn.Conv1d(n_out, 32, 3, padding=1), nn.ReLU(),
                             nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(32 * steps, classes))
    raise ValueError(f"decoder {kind!r}: learned decoders are {LEARNED}")


class LearnedDecoder:
    """A trained torch decoder of rasters ``(B, T, n_out)``."""

    def __init__(self, kind: str, model, steps: int):
        self.kind, self.model, self.steps = kind, model, steps

    def predict(self, raster: np.ndarray, batch: int = 4096) -> np.ndarray:
        import torch

        self.model.eval()
        out = []
        with torch.no_grad():
            for lo in range(0, len(raster), batch):
                x = torch.as_tensor(np.asarray(raster[lo:lo + batch], dtype=np.float32))
                out.append(self.model(x).argmax(dim=1).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _fit(kind: str, raster, targets, n_outputs: int, loss_fn, *, epochs: int, seed: int,
         lr: float, batch: int, weight_decay: float = 0.0) -> LearnedDecoder:
    """Adam on ``loss_fn(model(raster), targets)`` over shuffled mini-batches (seeded)."""
    import torch

    torch.manual_seed(seed)
    raster = np.asarray(raster, dtype=np.float32)
    _, steps, n_out = raster.shape
    model = _model(kind, steps, n_out, n_outputs)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x_all = torch.as_tensor(raster)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x_all), generator=gen).split(batch):
            opt.zero_grad()
            loss_fn(model(x_all[idx]), targets[idx]).backward()
            opt.step()
    return LearnedDecoder(kind, model, steps)


def train_decoder(kind: str, raster: np.ndarray, labels: np.ndarray, *, classes: int = 10,
                  epochs: int = 30, seed: int = 0, lr: float = 3e-3,
                  batch: int = 256) -> LearnedDecoder:
    """Train a learned decoder with Adam and cross-entropy on ``raster`` ``(B, T, n_out)``."""
    import torch

    return _fit(kind, raster, torch.as_tensor(np.array(labels, dtype=np.int64)), classes,
                torch.nn.CrossEntropyLoss(), epochs=epochs, seed=seed, lr=lr, batch=batch,
                weight_decay=1e-4)


def predictor(kind: str, train_raster, train_labels, *, steps: int, epochs: int = 30,
              seed: int = 0):
    """``raster -> predictions`` of decoder ``kind`` reading the first ``steps`` steps
    (a learned decoder is trained on ``train_raster`` first)."""
    if kind in FIXED:
        rule = rate_decode if kind == "rate" else first_spike_decode
        return lambda r: rule(r[:, :steps])
    dec = train_decoder(kind, train_raster[:, :steps], train_labels, epochs=epochs, seed=seed)
    return lambda r: dec.predict(r[:, :steps])


def decode_accuracy(kind: str, train_raster, train_labels, test_raster, test_labels, *,
                    steps: int, epochs: int = 30, seed: int = 0) -> float:
    """Accuracy of decoder ``kind`` reading the first ``steps`` steps of the rasters."""
    predict = predictor(kind, train_raster, train_labels, steps=steps, epochs=epochs, seed=seed)
    return float((predict(test_raster) == np.asarray(test_labels)).mean())


def train_reconstructor(kind: str, raster: np.ndarray, images: np.ndarray, *, epochs: int = 30,
                        seed: int = 0, lr: float = 3e-3, batch: int = 256) -> LearnedDecoder:
    """A learned decoder from rasters ``(B, T, n_out)`` to images ``(B, n_pixels)`` in
    ``[0, 1]``, trained with binary cross-entropy (the same architectures, one output per
    pixel; :func:`reconstruct` applies the sigmoid)."""
    import torch

    images = torch.as_tensor(np.array(images, dtype=np.float32))
    return _fit(kind, raster, images, images.shape[1], torch.nn.BCEWithLogitsLoss(),
                epochs=epochs, seed=seed, lr=lr, batch=batch)


def reconstruct(decoder: LearnedDecoder, raster: np.ndarray) -> np.ndarray:
    """Images in ``[0, 1]`` that a :func:`train_reconstructor` decoder makes of ``raster``."""
    import torch

    decoder.model.eval()
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(raster, dtype=np.float32))
        return torch.sigmoid(decoder.model(x)).numpy()


def train_exit_decoder(cfg, raster: np.ndarray, labels: np.ndarray, *, epochs: int = 20,
                       qat_epochs: int = 10, seed: int = 0, lr: float = 3e-3,
                       batch: int = 256):
    """The decoder on the chip of ``cfg`` (``[decoder]``, :mod:`sw.exit_decoder`), trained on
    readout rasters ``(B, T, N_out)`` of the training split; returns its
    :class:`~sw.exit_decoder.DecoderWeights` and ``scale``, the float logit of one integer
    score unit.

    Loss: the mean cross-entropy of the running scores after every step the chip may decide
    at (``first_check .. T_dec``), so the scores are good to stop on at each of them. Adam
    for ``epochs`` in float, then ``qat_epochs`` quantisation-aware (the forward pass rounds
    weights and biases to ``weight_bits`` signed integers of one power-of-two-free scale,
    ``max |param| / (2**(b-1) - 1)``, straight-through gradients), then rounded."""
    import torch

    from spikeforge.sw.exit_decoder import DecoderWeights

    d, n_out = cfg.decoder, cfg.layers[-1]
    qmax = (1 << (d.weight_bits - 1)) - 1
    torch.manual_seed(seed)
    x_all = torch.as_tensor(np.asarray(raster[:, :d.steps], dtype=np.float32))
    y_all = torch.as_tensor(np.array(labels, dtype=np.int64))
    w = torch.nn.Parameter(torch.randn(d.steps, n_out, n_out) * 0.1)
    b = torch.nn.Parameter(torch.zeros(n_out))
    opt = torch.optim.Adam([w, b], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    checked = slice(d.first_check - 1, d.steps)

    def quantised(p, scale):
        q = torch.clamp(torch.round(p / scale), -qmax - 1, qmax)
        return p + (q * scale - p).detach()          # straight-through

    def params(quantise: bool):
        if not quantise:
            return w, b
        scale = (torch.max(w.abs().max(), b.abs().max()) / qmax).detach()
        return quantised(w, scale), quantised(b, scale)

    for epoch in range(epochs + qat_epochs):
        for idx in torch.randperm(len(x_all), generator=gen).split(batch):
            wq, bq = params(epoch >= epochs)
            scores = bq + torch.cumsum(torch.einsum("btj,tjc->btc", x_all[idx], wq), dim=1)
            sel = scores[:, checked]
            loss = torch.nn.functional.cross_entropy(
                sel.reshape(-1, n_out), y_all[idx].repeat_interleave(sel.shape[1]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        scale = float(torch.max(w.abs().max(), b.abs().max()) / qmax)
        wi = np.clip(np.round(w.numpy() / scale), -qmax - 1, qmax).astype(np.int64)
        bi = np.clip(np.round(b.numpy() / scale), -qmax - 1, qmax).astype(np.int64)
    return DecoderWeights(wi, bi), scale
