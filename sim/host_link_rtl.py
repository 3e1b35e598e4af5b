"""The host driver against the simulated serial top: the whole host ⇄ board loop, no board."""

from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np

from spikeforge.sim.rtl import simulate
from spikeforge.sw.weights import pack_words, to_stored, unpack_words


@dataclass
class LinkRun:
    """What the host saw over the simulated UART (:mod:`sim.tb_host_link`)."""

    info: bytes
    readback_ok: bool           # every weight word read back as written
    unchanged_ok: bool          # ... and still so after the broken frames
    errors: list[str]           # '<expected kind>: <what the driver raised>' per broken frame
    cycles: np.ndarray
    predictions: np.ndarray
    events: np.ndarray          # (n, 3): sample, step, neuron
    weights_after: list[np.ndarray]   # stored weights read back at the end
    counters: np.ndarray        # samples, frames, errors, fifo/events overflow, overrun, stream
    gaps: int                   # random idle gaps the host left inside its requests
    check: tuple | None = None  # (cycles, prediction, events) of the check raster's run
    check_frames: int = 0       # EVENTS frames the check raster took
    steps: np.ndarray | None = None   # time steps each sample ran
    decoder_ok: bool | None = None    # the decoder on the chip read back as written

    def rasters(self, n_samples: int, steps: int, n_out: int) -> np.ndarray:
        r = np.zeros((n_samples, steps, n_out), dtype=bool)
        r[self.events[:, 0], self.events[:, 1], self.events[:, 2]] = True
        return r


def run_link(cfg, weights, pixels, *, labels=None, lr_shift: int | None = None,
             stored: bool = False, input_rasters=None, check_raster=None,
             sim: str = "verilator", waves: str | None = None,
             verbose: bool = False, decoder=None) -> LinkRun:
    """Load ``weights`` (inference weights; stored ones with ``stored``), run ``pixels``
    (training when ``labels``) and read everything back, all through
    :class:`sw.host.HostLink` over the UART model.

    ``input_rasters``: per sample ``None`` (send its pixels) or a ``(T, N_in)`` raster sent
    as input events (:meth:`sw.host.HostLink.run_events`) instead. ``check_raster``: stored
    before the broken frames and run (inference) right after them: ``LinkRun.check``.
    ``decoder``: a :class:`sw.exit_decoder.DecoderWeights` to load after the weights (and
    read back); the inference samples then run decoded on the chip."""
    if not stored:
        weights = to_stored(cfg, weights)
    job = {"config": np.frombuffer(pickle.dumps(cfg), dtype=np.uint8),
           "pixels": np.asarray(pixels, dtype=np.int64),
           "lr_shift": 0 if labels is None else (
               cfg.learning.lr_shift if lr_shift is None else lr_shift),
           **{f"words{i}": np.array([str(x) for x in pack_words(cfg, i, w)])
              for i, w in enumerate(weights)}}
    if labels is not None:
        job["labels"] = np.asarray(labels, dtype=np.int64)
    shape = (cfg.time_steps, cfg.layers[0])
    if input_rasters is not None:
        if len(input_rasters) != len(pixels):
            raise ValueError(f"input_rasters: expected {len(pixels)} entries, got "
                             f"{len(input_rasters)}")
        job["use_raster"] = np.array([r is not None for r in input_rasters])
        job["rasters"] = np.stack([np.zeros(shape, bool) if r is None else np.asarray(r, bool)
                                   for r in input_rasters]).astype(np.uint8)
    if decoder is not None:
        job["decoder_w"], job["decoder_b"] = decoder.w, decoder.b
    if check_raster is not None:
        job["check_raster"] = np.asarray(check_raster, dtype=np.uint8)
    data = simulate(cfg, job, "spikeforge.sim.tb_host_link", sim=sim, waves=waves, verbose=verbose,
                    top="serial")
    return LinkRun(info=data["info"].tobytes(), readback_ok=bool(data["readback_ok"]),
                   unchanged_ok=bool(data["unchanged_ok"]),
                   errors=[str(e) for e in data["errors"]], cycles=data["cycles"],
                   predictions=data["predictions"], events=data["events"],
                   weights_after=[unpack_words(cfg, i, [int(w) for w in data[f"after{i}"]])
                                  for i in range(cfg.n_layers)],
                   counters=data["counters"], gaps=int(data["gaps"]),
                   check=None if "check_cycles" not in data else (
                       int(data["check_cycles"]), int(data["check_prediction"]),
                       data["check_events"]),
                   check_frames=int(data.get("check_frames", 0)), steps=data["steps"],
                   decoder_ok=bool(data["decoder_ok"]) if "decoder_ok" in data else None)
