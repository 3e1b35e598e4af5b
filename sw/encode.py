"""Deterministic rate encoder: one non-leaky integrate-and-fire neuron per pixel.

Number formats (``docs/number_formats.md`` §Encoder): pixels are unsigned ``pixel_bits``
integers; the encoder threshold is ``theta_in = 2**pixel_bits - 1``; the accumulator holds
``[0, 2*theta_in - 1]`` (``pixel_bits + 1`` bits). Per step::

    u <- u + p ;  s = (u >= theta_in) ;  u <- u - theta_in * s

starting from ``u = 0``. A full-scale pixel spikes at every step, a zero pixel never.
"""

from __future__ import annotations

import numpy as np


def rate_encoder_step(u: np.ndarray, pixels: np.ndarray, theta_in: int):
    """One step of the encoder. Returns ``(u_next, spikes)``; pure, inputs untouched."""
    u = u + pixels
    spikes = u >= theta_in
    return u - theta_in * spikes, spikes


def rate_encode(pixels: np.ndarray, time_steps: int, theta_in: int) -> np.ndarray:
    """Encode ``pixels`` of shape ``(B, N)`` into a spike raster ``(B, T, N)`` of bools."""
    pixels = np.asarray(pixels, dtype=np.int64)
    u = np.zeros_like(pixels)
    raster = np.zeros((pixels.shape[0], time_steps, pixels.shape[1]), dtype=bool)
    for t in range(time_steps):
        u, raster[:, t] = rate_encoder_step(u, pixels, theta_in)
    return raster
