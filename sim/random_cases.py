"""Randomized golden-vs-RTL equivalence: random legal configs, weights and inputs (issue 7).

Shared by ``tests/test_random_equivalence.py`` (quick and deep tiers) and the replay command
``python -m spikeforge.sim.replay FILE``:

* :func:`configs` / :func:`cases`: hypothesis strategies for legal rate-coded
  :class:`~spikeforge.config.NetworkConfig`\\ s (2-4 populations, lanes 1..N including
  non-divisors, every width, with and without a ``[learning]`` section) and whole cases:
  stored weights of one *kind* per layer (random, all max, all min, alternating, ...),
  inputs of one kind per sample (silent, saturating, random, ...), labels (training or
  inference samples), readout back-pressure and an optional reset in the first sample;
* :func:`run_case`: the golden model (:func:`sw.golden.run_network`,
  :func:`sw.desire.train_step`) against the Amaranth simulation of the Network
  (:func:`sim.amaranth_tb.simulate`): every spike of every population, predictions, cycle
  counts (the hardware's counter and the testbench's count), the readout stream and, for
  learning configs, every stored weight after every sample;
* :func:`check_case`: :func:`run_case`, and on a mismatch a reproducer file (``out/repro/
  <hash>.json``, config + weights + inputs; ``SPIKEFORGE_REPRO_DIR`` moves it) and an
  ``AssertionError`` naming the first divergence and the one-line replay command;
* :data:`COVERAGE`: what the runs exercised, counted from them (printed at the end of the
  pytest run by ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st

from spikeforge.config import (
    DROPOUT_STEPS,
    ELIGIBILITIES,
    LFSR_SEED,
    ROUNDINGS,
    ConfigError,
    DesireConfig,
    NetworkConfig,
    _from_dict,
)
from spikeforge.sim.amaranth_tb import simulate
from spikeforge.sim.compare import compare_runs, compare_training

FORMAT = "spikeforge-random-case/1"

WEIGHT_KINDS = ("random", "max", "min", "alternating", "extremes", "columns", "sparse", "small")
INPUT_KINDS = ("random", "silent", "saturating", "sparse", "low")
# what the strategies draw from (repeats weight the draw towards networks that spike; the
# first entry is what hypothesis shrinks towards)
_WEIGHT_DRAW = ("random", "random", "random", "columns", "columns", "extremes", "extremes",
                "alternating", "max", "min", "sparse", "small")
_INPUT_DRAW = ("random", "random", "random", "saturating", "saturating", "silent", "sparse",
               "low")

#: Case sizes of the tiers: (max neurons per population, max time steps, max samples).
SIZES = {"quick": (10, 10, 3), "deep": (16, 16, 4)}


# ---------------------------------------------------------------- strategies

@st.composite
def configs(draw, *, learning: bool | None = None, size: str = "quick") -> NetworkConfig:
    """A legal rate-coded config; ``learning``: force a ``[learning]`` section in or out."""
    max_neurons, max_steps, _ = SIZES[size]
    n_pop = draw(st.integers(2, 4))
    layers = tuple(draw(st.integers(2, max_neurons)) for _ in range(n_pop))
    lanes = draw(st.integers(1, max(layers[1:])))
    learn = draw(st.booleans()) if learning is None else learning
    # the learning unit needs T >= 3 (hw.desire_unit.DesireUnit); the smallest T (no or one
    # LIF step) now and then, mostly enough steps for spikes to reach the last layer
    t_lo = 3 if learn else 1
    busy = st.integers(min(max_steps, t_lo + 2), max_steps)
    steps = draw(st.one_of(busy, busy, st.integers(t_lo, max_steps)))
    weight_bits = draw(st.integers(2, 16))
    w_max = (1 << (weight_bits - 1)) - 1
    mb_lo = max(3, w_max.bit_length() + 1)          # threshold 1 fits
    membrane_bits = draw(st.integers(mb_lo, min(32, mb_lo + 4)) | st.integers(mb_lo, 32))
    th_hi = (1 << (membrane_bits - 1)) - 1 - w_max + 1   # threshold - 1 + w_max <= v_max
    # mostly thresholds a few weights reach (the network spikes), sometimes anything legal
    reachable = st.integers(1, min(th_hi, w_max + 1))
    threshold = draw(st.one_of(reachable, reachable, reachable, st.just(th_hi),
                               st.integers(1, th_hi)))
    leak_shift = draw(st.integers(1, 4) | st.integers(1, 16))
    pixel_bits = draw(st.integers(1, 8) | st.integers(1, 16))
    pixel_max = (1 << pixel_bits) - 1      # the encoder's threshold: full scale, now and then
    input_threshold = draw(st.one_of(st.none(), st.none(),          # up to 4x higher
                                     st.integers(pixel_max, 4 * pixel_max)))
    desire = None
    if learn:
        f_hi = min(16, 24 - weight_bits)
        desire = DesireConfig(
            error_margin=draw(st.integers(0, steps - 1)),
            desire_out=draw(st.sampled_from([0.3, 0.0, 0.05, 0.5, 1.0])
                            | st.integers(0, 20).map(lambda k: k / 20)),
            desire_hidden=draw(st.sampled_from([0.05, 0.0, 0.5, 2.0, 1000.0])),
            weight_frac_bits=draw(st.integers(0, min(4, f_hi)) | st.integers(0, f_hi)),
            trace_frac_bits=draw(st.integers(0, 12)),
            lr_shift=draw(st.integers(0, 10) | st.integers(0, 40)),
            rounding=draw(st.sampled_from(ROUNDINGS)),
            lfsr_seed=draw(st.integers(0, 3) | st.integers(0, LFSR_SEED[1])),
            # near eligibility about one config in three; fractions from theta_near = 1 up
            # to theta itself
            eligibility=draw(st.sampled_from(("spike", "spike", "near"))),
            near_fraction=draw(st.sampled_from([0.5, 1.0, 1e-6])
                               | st.integers(1, 20).map(lambda k: k / 20)),
            # hidden dropout now and then (a network without hidden layers has none)
            dropout_hidden=(draw(st.sampled_from([0, 0, 0.25, 0.5])
                                 | st.integers(1, DROPOUT_STEPS - 1).map(
                                     lambda k: k / DROPOUT_STEPS))
                            if n_pop >= 3 else 0),
            dropout_seed=draw(st.integers(0, 3) | st.integers(0, LFSR_SEED[1])),
            hidden_gate=draw(st.sampled_from(("none", "none", "error"))),
        )
    net = dict(name="rand", layers=layers, time_steps=steps, lanes=lanes,
               weight_bits=weight_bits, membrane_bits=membrane_bits, threshold=threshold,
               leak_shift=leak_shift, pixel_bits=pixel_bits, input_threshold=input_threshold,
               early_exit=draw(st.sampled_from(("none", "none", "settled"))))
    try:
        cfg = NetworkConfig(**net, learning=desire)
    except ConfigError:
        # stochastic rounding whose largest rounding shift outgrows the LFSR (long traces)
        cfg = NetworkConfig(**net, learning=dataclasses.replace(desire, rounding="nearest"))
    return dataclasses.replace(cfg, name=f"rand-{config_digest(cfg)}")


@dataclass
class Case:
    """One randomized run: config, *stored* weights (``weight_bits + F`` bits), pixels
    ``(B, N_in)``, labels (``None`` for inference configs; ``-1`` = an inference sample),
    readout ``ready`` probability (``None``: not drained), ``reset`` (percent of the first
    sample's golden cycles at which a reset hits, or ``None``), the testbench ``seed`` and the
    kinds the weights and inputs were drawn from (for reports)."""

    cfg: NetworkConfig
    stored: list[np.ndarray]
    pixels: np.ndarray
    labels: np.ndarray | None = None
    ready: float | None = 1.0
    reset: int | None = None
    seed: int = 0
    kinds: dict = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:      # one line, for reports and the replay command
        return (f"Case({self.cfg.summary()}; weights {self.kinds.get('weights')}, inputs "
                f"{self.kinds.get('inputs')}, labels "
                f"{None if self.labels is None else self.labels.tolist()}, ready {self.ready}, "
                f"reset {self.reset}, seed {self.seed})")


def make_weights(kind: str, shape, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Weights in ``[lo, hi]`` of one kind (:data:`WEIGHT_KINDS`)."""
    if kind == "random":
        return rng.integers(lo, hi + 1, size=shape)
    if kind == "max":
        return np.full(shape, hi, dtype=np.int64)
    if kind == "min":
        return np.full(shape, lo, dtype=np.int64)
    if kind == "alternating":
        i, j = np.indices(shape)
        return np.where((i + j) % 2 == 0, hi, lo).astype(np.int64)
    if kind == "extremes":
        return rng.choice(np.array(sorted({lo, lo + 1, 0, hi - 1, hi}), dtype=np.int64),
                          size=shape)
    if kind == "columns":       # excitatory and inhibitory columns: saturation both ways
        pos = rng.integers(hi // 2, hi + 1, size=shape)
        neg = rng.integers(lo, lo // 2 + 1, size=shape)
        return np.where(np.arange(shape[1]) % 2 == 0, pos, neg)
    if kind == "sparse":
        w = rng.integers(lo, hi + 1, size=shape)
        return np.where(rng.random(shape) < 0.2, w, 0)
    if kind == "small":
        return rng.integers(max(lo, -2), min(hi, 2) + 1, size=shape)
    raise ValueError(f"weight kind {kind!r}")


def make_pixels(kind: str, n: int, pixel_max: int, rng: np.random.Generator) -> np.ndarray:
    """One sample's pixels of one kind (:data:`INPUT_KINDS`)."""
    if kind == "random":
        return rng.integers(0, pixel_max + 1, size=n)
    if kind == "silent":
        return np.zeros(n, dtype=np.int64)
    if kind == "saturating":
        return np.full(n, pixel_max, dtype=np.int64)
    if kind == "sparse":
        return np.where(rng.random(n) < 0.25, rng.integers(0, pixel_max + 1, size=n), 0)
    if kind == "low":
        return rng.integers(0, pixel_max // 4 + 1, size=n)
    raise ValueError(f"input kind {kind!r}")


def _tune_threshold(cfg, stored, fraction: float):
    """``cfg`` with a threshold of ``fraction`` of what the weights can drive: the median
    over layers of the median column's sum of positive inference weights (clipped to the
    legal range), so that the network spikes but does not simply fire at every step."""
    drives = [np.median(np.maximum(np.asarray(w) >> cfg.frac_bits, 0).sum(axis=0))
              for w in stored]
    hi = cfg.v_max - cfg.w_max + 1
    threshold = int(min(hi, max(1, fraction * float(np.median(drives)))))
    cfg = dataclasses.replace(cfg, threshold=threshold)
    return dataclasses.replace(cfg, name=f"rand-{config_digest(cfg)}")


@st.composite
def cases(draw, *, learning: bool | None = None, size: str = "quick",
          resets: bool = True) -> Case:
    """A whole random case (see :class:`Case`) of a :func:`configs` config."""
    cfg = draw(configs(learning=learning, size=size))
    _, _, max_samples = SIZES[size]
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    lo, hi = cfg.store_min, cfg.store_max
    wkinds = [draw(st.sampled_from(_WEIGHT_DRAW)) for _ in range(cfg.n_layers)]
    stored = [make_weights(k, cfg.weight_shape(i), lo, hi, rng) for i, k in enumerate(wkinds)]
    threshold = "drawn"
    if draw(st.sampled_from([True, True, False])):
        fraction = draw(st.sampled_from([0.5, 0.25, 1.0, 2.0]))
        cfg = _tune_threshold(cfg, stored, fraction)
        threshold = f"{fraction} x drive"
    n = draw(st.integers(1, max_samples))
    ikinds = [draw(st.sampled_from(_INPUT_DRAW)) for _ in range(n)]
    pixels = np.stack([make_pixels(k, cfg.layers[0], cfg.pixel_max, rng) for k in ikinds])
    labels = None
    if cfg.learning is not None:
        # about three in four samples train (label >= 0), the others run inference
        train = st.sampled_from([True, True, True, False])
        labels = np.array([draw(st.integers(0, cfg.layers[-1] - 1)) if draw(train) else -1
                           for _ in range(n)], dtype=np.int64)
    ready = draw(st.sampled_from([1.0, 0.5, 0.15]))
    reset = draw(st.none() | st.integers(1, 99)) if resets else None
    return Case(cfg=cfg, stored=stored, pixels=pixels, labels=labels, ready=ready,
                reset=reset, seed=seed,
                kinds={"weights": wkinds, "inputs": ikinds, "threshold": threshold})


# ---------------------------------------------------------------- golden vs RTL

@dataclass
class Outcome:
    case: Case
    gold: list                  # per sample: .run (NetworkRun), .cycles, .weights
    rtl: object                 # sim.amaranth_tb.SimRun
    comparison: object          # sim.compare.Comparison
    reset_cycle: int | None
    reset_phase: str | None     # "inference" / "learning": where the reset was placed
    problems: list[str]         # checks beyond the comparison

    @property
    def ok(self) -> bool:
        return self.comparison.ok and not self.problems

    def first_divergence(self) -> str:
        if not self.comparison.ok:
            return self.comparison.first_divergence or self.comparison.summary_line()
        return self.problems[0] if self.problems else "none"


def golden(case: Case) -> list:
    """The golden model's sample-by-sample run: each with ``run`` (a one-sample
    :class:`sw.golden.NetworkRun`), ``cycles``, ``weights`` (stored, after the sample) and
    ``step`` (the :class:`sw.desire.TrainStep` of a training sample, else ``None``)."""
    from spikeforge.sw.desire import inference_weights, train_step
    from spikeforge.sw.golden import run_network

    cfg = case.cfg
    if cfg.learning is None:
        run = run_network(cfg, case.stored, case.pixels)
        return [SimpleNamespace(
            run=SimpleNamespace(rasters=[r[b:b + 1] for r in run.rasters],
                                predictions=run.predictions[b:b + 1]),
            cycles=int(run.cycles[b]), weights=case.stored, step=None, before=case.stored)
            for b in range(len(case.pixels))]
    out, weights = [], [np.asarray(w, dtype=np.int64) for w in case.stored]
    # the lane LFSRs (stochastic rounding) and the mask LFSRs (dropout): reset, then carried
    # along from training sample to training sample
    lfsr = masks = None
    for b, label in enumerate(case.labels):
        if label >= 0:
            step = train_step(cfg, weights, case.pixels[b], int(label), lfsr=lfsr,
                              mask_lfsr=masks)
            out.append(SimpleNamespace(run=step.run, cycles=step.cycles,
                                       infer_cycles=step.infer_cycles, weights=step.weights,
                                       step=step, before=weights))
            weights, lfsr, masks = step.weights, step.lfsr, step.mask_lfsr
        else:
            run = run_network(cfg, inference_weights(cfg, weights), case.pixels[b:b + 1])
            out.append(SimpleNamespace(run=run, cycles=int(run.cycles[0]),
                                       infer_cycles=int(run.cycles[0]), weights=weights,
                                       step=None, before=weights))
    return out


def run_case(case: Case) -> Outcome:
    """Golden model and Amaranth simulation of ``case``, compared (see module doc)."""
    cfg = case.cfg
    gold = golden(case)
    reset_cycle = phase = None
    if case.reset is not None:
        first = gold[0]
        reset_cycle = max(1, first.cycles * case.reset // 100)
        infer = getattr(first, "infer_cycles", first.cycles)
        phase = "inference" if reset_cycle < infer else "learning"
    rtl = simulate(cfg, case.stored, case.pixels, labels=case.labels,
                   readback=cfg.learning is not None, ready=case.ready, seed=case.seed,
                   reset_cycle=reset_cycle)
    if cfg.learning is None:
        gold_run = SimpleNamespace(
            rasters=[np.concatenate([g.run.rasters[p] for g in gold])
                     for p in range(len(cfg.layers))],
            predictions=np.concatenate([g.run.predictions for g in gold]),
            cycles=np.array([g.cycles for g in gold], dtype=np.int64))
        comparison = compare_runs(gold_run, rtl)
    else:
        comparison = compare_training(gold, rtl)
    problems = []
    if rtl.fifo_overflow:
        problems.append("fifo_overflow rose (a layer FIFO was too small)")
    if reset_cycle is not None and rtl.resets != 1:
        problems.append(f"the reset at cycle {reset_cycle} of sample 0 did not hit a busy "
                        f"network")
    return Outcome(case=case, gold=gold, rtl=rtl, comparison=comparison,
                   reset_cycle=reset_cycle, reset_phase=phase, problems=problems)


def _final_example() -> bool:
    """Whether this is hypothesis's last (reported, shrunk) run of a failing example, or no
    hypothesis run at all."""
    try:
        from hypothesis.control import current_build_context

        return bool(current_build_context().is_final)
    except Exception:               # not inside a hypothesis test
        return True


#: Set to False to keep runs out of :data:`COVERAGE` (the mutation tests).
RECORD = True


def check_case(case: Case) -> Outcome:
    """:func:`run_case`; on a mismatch write the reproducer (hypothesis's final, shrunk
    example only) and raise ``AssertionError`` with the first divergence and the replay
    command."""
    outcome = run_case(case)
    if RECORD:
        COVERAGE.record(outcome)
    if outcome.ok:
        return outcome
    message = (f"golden vs RTL mismatch on {case.cfg.summary()}: first divergence: "
               f"{outcome.first_divergence()}; {outcome.comparison.summary_line()}")
    if outcome.comparison.details:
        message += "; " + "; ".join(outcome.comparison.details[:3])
    if _final_example():
        path = save_case(case, note=outcome.first_divergence())
        message += f"\nreproducer: {path}\nreplay: {replay_command(path)}"
    raise AssertionError(message)


# ---------------------------------------------------------------- reproducer files

def config_digest(cfg) -> str:
    params = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("source", "name")}
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def config_sections(cfg) -> dict:
    """The config as the TOML file's tables (``spikeforge.config`` loads them back)."""
    data = {"name": cfg.name, "dataset": cfg.dataset,
            "network": {"layers": list(cfg.layers), "time_steps": cfg.time_steps,
                        "lanes": cfg.lanes, "early_exit": cfg.early_exit},
            "neuron": {"weight_bits": cfg.weight_bits, "membrane_bits": cfg.membrane_bits,
                       "threshold": cfg.threshold, "leak_shift": cfg.leak_shift},
            "encoding": {"kind": cfg.encoding, "pixel_bits": cfg.pixel_bits}}
    if cfg.input_threshold is not None:
        data["encoding"]["threshold"] = cfg.input_threshold
    if cfg.learning is not None:
        data["learning"] = dataclasses.asdict(cfg.learning)
    return data


def config_toml(cfg) -> str:
    """The config as a TOML file ``spikeforge --config`` reads."""
    data = config_sections(cfg)
    lines = [f'name = "{data.pop("name")}"', f'dataset = "{data.pop("dataset")}"']
    for section, table in data.items():
        lines.append(f"\n[{section}]")
        for key, value in table.items():
            if isinstance(value, str):
                value = f'"{value}"'
            elif isinstance(value, list):
                value = "[" + ", ".join(map(str, value)) + "]"
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def case_to_dict(case: Case) -> dict:
    return {"format": FORMAT, "config": config_sections(case.cfg),
            "stored": [np.asarray(w).tolist() for w in case.stored],
            "pixels": np.asarray(case.pixels).tolist(),
            "labels": None if case.labels is None else np.asarray(case.labels).tolist(),
            "ready": case.ready, "reset": case.reset, "seed": case.seed, "kinds": case.kinds}


def case_from_dict(data: dict, source: str = "<repro>") -> Case:
    if data.get("format") != FORMAT:
        raise ValueError(f"{source}: not a {FORMAT} file")
    cfg = _from_dict(data["config"], source)
    return Case(cfg=cfg, stored=[np.array(w, dtype=np.int64).reshape(cfg.weight_shape(i))
                                 for i, w in enumerate(data["stored"])],
                pixels=np.array(data["pixels"], dtype=np.int64).reshape(-1, cfg.layers[0]),
                labels=None if data["labels"] is None else np.array(data["labels"],
                                                                      dtype=np.int64),
                ready=data["ready"], reset=data["reset"], seed=data["seed"],
                kinds=data.get("kinds", {}))


def repro_dir() -> Path:
    return Path(os.environ.get("SPIKEFORGE_REPRO_DIR", Path("out") / "repro"))


def save_case(case: Case, note: str | None = None, directory: Path | None = None) -> Path:
    """Write ``<dir>/<hash>.json`` (everything) and ``<hash>.toml`` (the config alone)."""
    data = case_to_dict(case)
    digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
    if note is not None:
        data["first_divergence"] = note
    directory = Path(directory) if directory is not None else repro_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{digest}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    path.with_suffix(".toml").write_text(config_toml(case.cfg))
    return path


def load_case(path) -> Case:
    path = Path(path)
    return case_from_dict(json.loads(path.read_text()), str(path))


def replay_command(path) -> str:
    """The one-line command that re-runs golden vs RTL on a reproducer (from the repo root)."""
    path = Path(path).resolve()
    with contextlib.suppress(ValueError):
        path = path.relative_to(Path.cwd())
    venv = Path.cwd() / ".venv" / "bin" / "python"
    python = ".venv/bin/python" if Path(sys.executable) == venv else sys.executable
    return f"{python} -m spikeforge.sim.replay {path}"


# ---------------------------------------------------------------- coverage

def saturation_hits(cfg, weights, rasters) -> tuple[int, int]:
    """Saturating adds of one sample's run, ``(clipped at v_max, clipped at v_min)``: every
    layer replayed one presynaptic spike at a time in ascending index (the hardware's order,
    :func:`sw.lif.lif_step`) on the golden rasters ``(T, N)`` of the populations."""
    from spikeforge.sw.lif import fire

    hi = lo = 0
    for layer, w in enumerate(weights):
        w = np.asarray(w, dtype=np.int64)
        v = np.zeros(w.shape[1], dtype=np.int64)
        for t in range(1, cfg.time_steps):
            for j in np.flatnonzero(rasters[layer][t - 1]):
                raw = v + w[j]
                hi += int((raw > cfg.v_max).sum())
                lo += int((raw < cfg.v_min).sum())
                v = np.clip(raw, cfg.v_min, cfg.v_max)
            v, _ = fire(v, cfg.threshold, cfg.leak_shift)
    return hi, lo


def weight_clamps(cfg, before, step) -> tuple[int, int, int]:
    """``(updates, clamped at store_max, clamped at store_min)`` of one training sample:
    the unclamped update ``W + sign * round(acc / 2**lr_shift)`` of every active synapse with
    a non-zero step, recomputed from the golden traces and post terms (spikes or near
    rasters; stochastic rounding is counted as floor: a lower bound)."""
    from spikeforge.sw.desire import eligibility, traces

    lr = cfg.learning.lr_shift
    half = (1 << lr) >> 1 if cfg.learning.rounding == "nearest" else 0
    rasters = [r[0] for r in step.run.rasters]
    posts = rasters if step.run.near is None else [None, *(n[0] for n in step.run.near[1:])]
    updates = up = down = 0
    for layer, d in enumerate(step.desires):
        acc = eligibility(traces(cfg, rasters[layer]), posts[layer + 1])
        mag = (acc + half) >> lr
        moving = (mag > 0) & d.active[None, :]
        raw = np.asarray(before[layer], dtype=np.int64) + np.where(d.sign[None, :], mag, -mag)
        updates += int(moving.sum())
        up += int((moving & (raw > cfg.store_max)).sum())
        down += int((moving & (raw < cfg.store_min)).sum())
    return updates, up, down


class Coverage:
    """Counters and ranges of what the randomized runs exercised (merged across pytest-xdist
    workers by ``tests/conftest.py``)."""

    RANGES = ("populations", "neurons", "lanes", "time_steps", "weight_bits",
              "membrane_bits", "pixel_bits", "leak_shift", "threshold", "weight_frac_bits",
              "lr_shift")

    def __init__(self):
        self.counts: Counter = Counter()
        self.ranges: dict[str, list[int]] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += int(n)

    def span(self, name: str, value: int) -> None:
        lo, hi = self.ranges.get(name, (value, value))
        self.ranges[name] = [min(lo, int(value)), max(hi, int(value))]

    def record(self, outcome: Outcome) -> None:
        case, cfg = outcome.case, outcome.case.cfg
        c = self.count
        c("configs")
        c("learning configs" if cfg.learning is not None else "inference configs")
        c("mismatches", not outcome.ok)
        c("samples", len(case.pixels))
        self.span("populations", len(cfg.layers))
        for n in cfg.layers:
            self.span("neurons", n)
        for name in ("lanes", "time_steps", "weight_bits", "membrane_bits", "pixel_bits",
                     "leak_shift", "threshold"):
            self.span(name, getattr(cfg, name))
        c("encoder threshold above full scale", cfg.input_threshold is not None)
        c("early exit once settled", cfg.early_exit == "settled")
        c("non-divisor lanes", any(n % cfg.lanes for n in cfg.layers[1:]))
        c("lanes = 1", cfg.lanes == 1)
        c("lanes = widest layer", cfg.lanes == max(cfg.layers[1:]))
        for kind in case.kinds.get("weights", []):
            c(f"weights {kind}")
        for kind in case.kinds.get("inputs", []):
            c(f"inputs {kind}")
        if case.ready is not None and case.ready < 1:
            c("back-pressured readouts")
        c("readout stall cycles", outcome.rtl.stall_cycles)
        if outcome.reset_phase is not None and outcome.rtl.resets:
            c(f"resets mid-sample ({outcome.reset_phase})", outcome.rtl.resets)
        rtl_spikes = sum(int(r.sum()) for r in outcome.rtl.rasters[1:])
        c("LIF spikes", rtl_spikes)
        c("silent runs (no LIF spike)", rtl_spikes == 0)
        c("runs with output spikes", bool(outcome.rtl.rasters[-1].any()))
        sat_configs = [0, 0]
        for g in outcome.gold:
            if cfg.learning is not None:
                from spikeforge.sw.desire import inference_weights
                w_inf = inference_weights(cfg, g.before)
            else:
                w_inf = case.stored
            hi, lo = saturation_hits(cfg, w_inf, [r[0] for r in g.run.rasters])
            c("saturating adds at v_max", hi)
            c("saturating adds at v_min", lo)
            sat_configs[0] |= hi > 0
            sat_configs[1] |= lo > 0
            if g.step is not None:
                updates, up, down = weight_clamps(cfg, g.before, g.step)
                c("training samples")
                c("weight updates", updates)
                c("weight clamps at store_max", up)
                c("weight clamps at store_min", down)
                if g.step.keeps is not None:
                    c("dropped neurons", sum(int((~k).sum()) for k in g.step.keeps
                                             if k is not None))
        c("configs saturating at v_max", sat_configs[0])
        c("configs saturating at v_min", sat_configs[1])
        if cfg.learning is not None:
            self.span("weight_frac_bits", cfg.frac_bits)
            self.span("lr_shift", cfg.learning.lr_shift)
            c(f"{cfg.learning.rounding} rounding configs")
            c(f"{cfg.learning.eligibility} eligibility configs")
            if cfg.near_eligibility:
                c("near-only bits (near, no spike)",
                  sum(int((n & ~r).sum()) for g in outcome.gold if g.step is not None
                      for n, r in zip(g.run.near[1:], g.run.rasters[1:], strict=True)))
            if cfg.dropout_threshold:
                c("dropout configs")
            c("hidden gate configs", cfg.learning.hidden_gate == "error")

    def as_dict(self) -> dict:
        return {"counts": dict(self.counts), "ranges": self.ranges}

    def merge(self, data: dict) -> None:
        self.counts.update(data.get("counts", {}))
        for name, (lo, hi) in data.get("ranges", {}).items():
            self.span(name, lo)
            self.span(name, hi)

    def report(self) -> list[str]:
        """A few lines for the end of the pytest run ([] when nothing was recorded)."""
        k, r = self.counts, self.ranges
        if not k:
            return []

        def rng(name):
            return f"{r[name][0]}-{r[name][1]}" if name in r else "-"

        lines = []
        if k["configs"]:
            lines += [
                f"configs: {k['configs']} ({k['inference configs']} inference, "
                f"{k['learning configs']} learning), {k['samples']} samples "
                f"({k['training samples']} training), mismatches: {k['mismatches']}",
                f"ranges hit: populations {rng('populations')}, neurons {rng('neurons')}, "
                f"lanes {rng('lanes')} (non-divisor in {k['non-divisor lanes']} configs, "
                f"P=1 in {k['lanes = 1']}, P=widest in {k['lanes = widest layer']}), "
                f"T {rng('time_steps')}, weight_bits {rng('weight_bits')}, membrane_bits "
                f"{rng('membrane_bits')}, pixel_bits {rng('pixel_bits')}, leak_shift "
                f"{rng('leak_shift')}, threshold {rng('threshold')} (encoder threshold above "
                f"full scale in {k['encoder threshold above full scale']} configs, early exit "
                f"once settled in {k['early exit once settled']}); learning: F "
                f"{rng('weight_frac_bits')}, lr_shift {rng('lr_shift')}",
                "weights: " + ", ".join(f"{w} {k['weights ' + w]}" for w in WEIGHT_KINDS)
                + "; inputs: " + ", ".join(f"{i} {k['inputs ' + i]}" for i in INPUT_KINDS),
                f"membrane saturation: {k['saturating adds at v_max']} adds clipped at v_max "
                f"({k['configs saturating at v_max']} configs), "
                f"{k['saturating adds at v_min']} at v_min "
                f"({k['configs saturating at v_min']} configs); LIF spikes "
                f"{k['LIF spikes']}; configs without any LIF spike "
                f"{k['silent runs (no LIF spike)']}, with output spikes "
                f"{k['runs with output spikes']}",
                f"learning: {k['weight updates']} weight updates, clamped "
                f"{k['weight clamps at store_max']} at store_max, "
                f"{k['weight clamps at store_min']} at store_min; rounding: "
                + ", ".join(f"{mode} {k[mode + ' rounding configs']}" for mode in ROUNDINGS)
                + "; eligibility: "
                + ", ".join(f"{e} {k[e + ' eligibility configs']}" for e in ELIGIBILITIES)
                + f" ({k['near-only bits (near, no spike)']} near bits without a spike)"
                + f"; dropout {k['dropout configs']} configs, {k['dropped neurons']} "
                f"neurons dropped; hidden error gate {k['hidden gate configs']} configs",
                f"readout back-pressure: {k['back-pressured readouts']} configs, "
                f"{k['readout stall cycles']} stall cycles; resets mid-sample: "
                f"{k['resets mid-sample (inference)']} in inference, "
                f"{k['resets mid-sample (learning)']} in learning",
            ]
        if k["lif runs"]:
            lines.append(
                f"LIFLayer streams: {k['lif runs']} runs, {k['lif steps']} steps, "
                f"{k['lif events in']} events in, {k['lif events out']} out; "
                f"{k['lif input gap cycles']} input gap cycles, "
                f"{k['lif output stall cycles']} output back-pressure cycles; saturating adds "
                f"{k['lif saturating adds at v_max']} at v_max, "
                f"{k['lif saturating adds at v_min']} at v_min")
        if k["verilator configs"]:
            lines.append(f"generated Verilog (cocotb/Verilator): {k['verilator configs']} random "
                         f"configs")
        if k["reset runs"]:
            lines.append(f"reset tests: {k['reset runs']} runs, {k['reset hits']} resets "
                         f"of a busy network, each followed by a golden-exact fresh run")
        return lines


COVERAGE = Coverage()
