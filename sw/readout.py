"""Linear readout of a TTFS layer's spike times: what the learned features are worth.

The STDP layer is unsupervised; its value is measured by a classifier trained on its
output. Features are the neurons' *earliness* ``T - t_i`` (0 for a neuron that stayed
silent, ``T`` for one that fired at step 0), standardised, into multinomial logistic
regression (scikit-learn). The readout is offline (host side) and the same for every
network it compares, so differences come from the features.
"""

from __future__ import annotations

import numpy as np

from spikeforge.sw import ttfs


def features(cfg, state, pixels, batch: int = 2000) -> np.ndarray:
    """Earliness ``T - t_i`` of every neuron for every sample, ``(B, n_out)`` float."""
    out = [cfg.never - ttfs.infer(cfg, state, pixels[lo:lo + batch]).t_out
           for lo in range(0, len(pixels), batch)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, cfg.n_out))


def readout_accuracy(cfg, state, train_pixels, train_labels, test_pixels, test_labels,
                     *, max_iter: int = 2000) -> tuple[float, float]:
    """Train the readout on ``train_*`` features, return ``(train, test)`` accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train = features(cfg, state, train_pixels)
    x_test = features(cfg, state, test_pixels)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    model.fit(x_train, train_labels)
    return float(model.score(x_train, train_labels)), float(model.score(x_test, test_labels))
