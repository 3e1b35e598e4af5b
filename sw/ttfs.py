"""Bit-exact golden model of the TTFS core (``hw.ttfs_network.TTFSNetwork``): encoding,
fire-once integrate-and-fire neurons, k-WTA, multiplicative STDP and prune-while-learning.

Pure functions over integer numpy arrays; the spec is ``docs/ttfs.md``:

* encode: ``t_j = ((pixel_max - p_j) * T) >> pixel_bits`` if ``p_j >= floor``, else ``T``
  (never). Stronger pixels spike earlier; each input spikes at most once.
* fire: ``V_i(t) = sum_j alive_ij * w_ij * [t_j <= t]`` (unsigned, cannot overflow
  ``membrane_bits``); neuron ``i`` fires once, at ``t_i = min{t : V_i(t) >= theta}`` (``T``
  if never), with ``v_i = V_i(t_i)`` (0 if never).
* k-WTA (learning only): the fired neurons ranked by ``(t_i ascending, v_i descending,
  i ascending)``; the first ``k`` win.
* STDP, for each winner ``i`` and alive synapse ``j``: ``d = w * (w_max - w)``;
  ``w' = min(w + (d * a_plus >> s), w_max)`` if ``t_j <= t_i`` (pre no later than post),
  else ``w' = max(w - (d * a_minus >> s), 0)`` (pre later, or silent).
* prune: a visited synapse with ``w' < prune_threshold`` is removed for good (``alive = 0``,
  stored as weight 0 here); it is no longer stored in the gateware's fan-in list, so it costs
  no cycle in inference or learning (:mod:`sw.ttfs_cycles`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeforge.sw import ttfs_cycles
from spikeforge.sw.lif import exact_matmul
from spikeforge.sw.weights import WeightError


@dataclass(frozen=True)
class TTFSState:
    """Learned state: ``weights`` ``(n_in, n_out)`` unsigned, 0 where pruned; ``alive``
    ``(n_in, n_out)`` bool, the prune mask (``False`` = removed for good)."""

    weights: np.ndarray
    alive: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Fan-in list length of every neuron: its surviving synapses, ``(n_out,)``."""
        return self.alive.sum(axis=0)

    @property
    def connectivity(self) -> float:
        return float(self.alive.mean())


class TTFSStateError(WeightError):
    """A weight/mask pair (or state file) that does not fit the config."""


def check_state(cfg, weights, alive=None) -> TTFSState:
    """Validate ``weights`` (and the prune mask; default all alive) against ``cfg``."""
    weights = np.asarray(weights)
    shape = (cfg.n_in, cfg.n_out)
    if weights.shape != shape:
        raise TTFSStateError(f"weights: expected shape {shape}, got {weights.shape}")
    if not np.issubdtype(weights.dtype, np.integer):
        raise TTFSStateError(f"weights: expected integers, got dtype {weights.dtype}")
    if weights.size and (weights.min() < 0 or weights.max() > cfg.w_max):
        raise TTFSStateError(f"weights: values must lie in [0, {cfg.w_max}] "
                             f"(unsigned {cfg.weight_bits} bits)")
    alive = np.ones(shape, dtype=bool) if alive is None else np.asarray(alive)
    if alive.shape != shape or alive.dtype != bool:
        raise TTFSStateError(f"alive: expected a bool array of shape {shape}, got "
                             f"{alive.dtype} {alive.shape}")
    return TTFSState(np.where(alive, weights, 0).astype(np.int64), alive.copy())


def save_state(path, cfg, state: TTFSState) -> None:
    """Write ``state`` as ``.npz`` (``weights``, ``alive``, and the config's name)."""
    np.savez(path, weights=state.weights, alive=state.alive, config=cfg.name)


def load_state(path, cfg) -> TTFSState:
    """Read a state written by :func:`save_state`, checked against ``cfg``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"weights", "alive"} - set(data.files)
            if missing:
                raise TTFSStateError(f"{path}: not a TTFS state file (missing "
                                     f"{sorted(missing)}; expected 'weights' and 'alive')")
            return check_state(cfg, data["weights"], data["alive"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, TTFSStateError):
            raise TTFSStateError(f"{path}: {exc}") from None
        raise TTFSStateError(f"{path}: cannot read a TTFS state file: {exc}") from exc


def initial_state(cfg, seed: int) -> TTFSState:
    """Uniform integer weights in ``cfg.init_weights`` from ``seed``, all synapses alive."""
    lo, hi = cfg.init_weights
    rng = np.random.default_rng(seed)
    weights = rng.integers(lo, hi + 1, size=(cfg.n_in, cfg.n_out), dtype=np.int64)
    return TTFSState(weights, np.ones_like(weights, dtype=bool))


def check_pixels(cfg, pixels) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != cfg.n_in:
        raise ValueError(f"pixels: expected shape (B, {cfg.n_in}), got {pixels.shape}")
    if pixels.size and (pixels.min() < 0 or pixels.max() > cfg.pixel_max):
        raise ValueError(f"pixels: values must lie in [0, {cfg.pixel_max}]")
    return pixels.astype(np.int64)


def encode(cfg, pixels) -> np.ndarray:
    """Input spike times ``(B, n_in)``, ``T`` = no spike."""
    p = check_pixels(cfg, pixels)
    t = ((cfg.pixel_max - p) * cfg.time_steps) >> cfg.pixel_bits
    return np.where(p >= cfg.floor, t, cfg.never)


def raster(times: np.ndarray, steps: int) -> np.ndarray:
    """Spike times ``(B, N)`` (``steps`` = none) as a raster ``(B, steps, N)`` of bools."""
    times = np.asarray(times)
    return times[:, None, :] == np.arange(steps)[None, :, None]


#: Samples whose one-hot input rasters are multiplied at once.
CHUNK = 512


def fire(cfg, state: TTFSState, t_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fire times ``t_out`` ``(B, n_out)`` (``T`` = never) and values ``v_out`` (``V`` at the
    firing step, 0 if never) of the neurons for input times ``t_in`` ``(B, n_in)``."""
    t_in = np.asarray(t_in)
    batch, steps = t_in.shape[0], cfg.time_steps
    t_out = np.full((batch, cfg.n_out), cfg.never, dtype=np.int64)
    v_out = np.zeros((batch, cfg.n_out), dtype=np.int64)
    bound = cfg.n_in * cfg.w_max
    for b0 in range(0, batch, CHUNK):
        spikes = raster(t_in[b0:b0 + CHUNK], steps)          # (b, T, n_in)
        b = spikes.shape[0]
        hist = exact_matmul(spikes.reshape(b * steps, cfg.n_in), state.weights, bound)
        v = np.cumsum(hist.reshape(b, steps, cfg.n_out), axis=1)
        crossed = v >= cfg.threshold
        fired = crossed.any(axis=1)
        first = crossed.argmax(axis=1)
        t_out[b0:b0 + b] = np.where(fired, first, cfg.never)
        v_at = np.take_along_axis(v, first[:, None, :], axis=1)[:, 0]
        v_out[b0:b0 + b] = np.where(fired, v_at, 0)
    return t_out, v_out


def winners(cfg, t_out: np.ndarray, v_out: np.ndarray) -> np.ndarray:
    """k-WTA of one sample: indices of up to ``k`` fired neurons, best first, ranked by
    ``(t ascending, v descending, index ascending)``."""
    fired = np.flatnonzero(t_out < cfg.never)
    order = np.lexsort((fired, -v_out[fired], t_out[fired]))
    return fired[order][:cfg.winners]


def stdp(cfg, state: TTFSState, t_in: np.ndarray, t_out: np.ndarray,
         won: np.ndarray) -> TTFSState:
    """The STDP update and pruning of one sample's winners ``won`` (see the module doc)."""
    weights, alive = state.weights.copy(), state.alive.copy()
    for i in won:
        w, live = weights[:, i], alive[:, i]
        d = w * (cfg.w_max - w)
        up = np.minimum(w + ((d * cfg.a_plus) >> cfg.stdp_shift), cfg.w_max)
        down = np.maximum(w - ((d * cfg.a_minus) >> cfg.stdp_shift), 0)
        new = np.where(t_in <= t_out[i], up, down)
        keep = live & (new >= cfg.prune_threshold)
        weights[:, i] = np.where(keep, new, 0)
        alive[:, i] = keep
    return TTFSState(weights, alive)


@dataclass
class TTFSRun:
    """Inference of a batch: input and output spike times ``(B, N)`` (``T`` = none), firing
    values, and the cycles per sample the gateware takes."""

    t_in: np.ndarray
    t_out: np.ndarray
    v_out: np.ndarray
    cycles: np.ndarray


def infer(cfg, state: TTFSState, pixels) -> TTFSRun:
    """Inference (no WTA, no learning) of a batch of samples."""
    t_in = encode(cfg, pixels)
    t_out, v_out = fire(cfg, state, t_in)
    cycles = np.full(len(t_in), ttfs_cycles.infer_cycles(cfg, state.lengths), dtype=np.int64)
    return TTFSRun(t_in, t_out, v_out, cycles)


@dataclass
class TTFSStep:
    """One training sample: what inference did, who won, the state after learning, and the
    cycles of inference and of learning."""

    t_in: np.ndarray            # (n_in,)
    t_out: np.ndarray           # (n_out,)
    v_out: np.ndarray
    winners: np.ndarray
    state: TTFSState
    infer_cycles: int
    learn_cycles: int

    @property
    def cycles(self) -> int:
        return self.infer_cycles + self.learn_cycles


def learn_step(cfg, state: TTFSState, pixels_row) -> TTFSStep:
    """One on-chip training sample: infer, k-WTA, STDP and pruning of the winners."""
    t_in = encode(cfg, np.asarray(pixels_row)[None])
    t_out, v_out = fire(cfg, state, t_in)
    t_in, t_out, v_out = t_in[0], t_out[0], v_out[0]
    won = winners(cfg, t_out, v_out)
    lengths = state.lengths
    after = stdp(cfg, state, t_in, t_out, won)
    return TTFSStep(t_in=t_in, t_out=t_out, v_out=v_out, winners=won, state=after,
                    infer_cycles=ttfs_cycles.infer_cycles(cfg, lengths),
                    learn_cycles=ttfs_cycles.learn_cycles(cfg, lengths[won]))


def run_schedule(cfg, state: TTFSState, pixels, learn) -> tuple[list, TTFSState]:
    """The samples in order, as the core runs them: sample ``b`` trains (a
    :class:`TTFSStep`, the state moves on) where ``learn[b]``, else it is inferred (a
    one-sample :class:`TTFSRun` with the state as it is). Returns them and the last state."""
    out = []
    for row, flag in zip(pixels, learn, strict=True):
        if flag:
            out.append(learn_step(cfg, state, row))
            state = out[-1].state
        else:
            out.append(infer(cfg, state, np.asarray(row)[None]))
    return out, state
