"""``spikeforge compare``: golden model vs RTL, every spike, weight and cycle count: inference
runs, on-chip learning (``--learn``) and TTFS cores."""

from __future__ import annotations

from spikeforge.commands.common import (
    UsageError,
    add_config,
    bounded_float,
    int_at_least,
    rtl_bar,
)
from spikeforge.config import load_config
from spikeforge.sim.compare import (
    BULK_AUTO_SAMPLES,
    ENGINES,
    SIMULATORS,
    choose_engine,
    default_jobs,
)
from spikeforge.sw.datasets import DATASET_NAMES, SPLITS
from spikeforge.sw.weights import DEFAULT_SCALE


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="golden model vs RTL: every spike and cycle count",
        description="Run samples through the golden model and the generated Verilog and "
                    "compare every spike of every population, every cycle count, every "
                    "prediction and the readout stream. Inference runs of more than "
                    f"{BULK_AUTO_SAMPLES} samples (or --samples all) go through a Verilator "
                    "C++ harness (sim/bulk.py, built once per config, split over --jobs "
                    "processes: whole test sets in minutes); fewer, and --learn, --waves, "
                    "--sim icarus and TTFS configs, through the cocotb testbenches.")
    add_config(p)
    p.add_argument("--samples", "-n", type=samples_arg, default=10,
                   help="samples to run (default 10), drawn at random from --split; 'all': "
                        "the whole split in order")
    p.add_argument("--split", choices=SPLITS, default=SPLITS[0],
                   help="which part of the dataset samples come from (default test; 'all': "
                        "train then test, e.g. all 10,000 images of mnist-t10k)")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help=f"RTL runner: bulk (Verilator C++ harness, inference only), cocotb "
                        f"(testbenches in sim/), or auto (default: bulk above "
                        f"{BULK_AUTO_SAMPLES} samples where it applies)")
    p.add_argument("--jobs", "-j", type=int_at_least(1), default=default_jobs(),
                   help=f"bulk harness processes, each a share of the samples (default "
                        f"{default_jobs()}: the CPU cores, at most 2)")
    p.add_argument("--seed", type=int, default=0, help="picks samples and random weights")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=DATASET_NAMES,
                     help="test samples from this dataset (default: the config's)")
    src.add_argument("--random", action="store_true", help="random inputs instead of data")
    p.add_argument("--weights", help=".npz weight file (TTFS: state file with weights and "
                                     "prune mask; default: random weights from --seed)")
    p.add_argument("--weight-scale", type=bounded_float("> 0", lambda v: v > 0), default=None,
                   help=f"random weights span this share of the signed range (1.0 = full, "
                        f"saturation-heavy; default {DEFAULT_SCALE:g}; with --learn: uniform "
                        f"stored weights instead of the Kaiming init)")
    p.add_argument("--learn", action="store_true",
                   help="train golden model and RTL on the samples (on-chip desire "
                        "backpropagation, or STDP with pruning for TTFS configs) and compare "
                        "spikes, every weight (and prune mask) after every sample, and cycles")
    p.add_argument("--lr-shift", type=int, default=None,
                   help="with --learn: learning-rate shift (default: the config's)")
    p.add_argument("--sim", choices=SIMULATORS, default=SIMULATORS[0])
    p.add_argument("--waves", help="write waveforms to this .fst or .vcd file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def samples_arg(text: str) -> int | str:
    """``--samples``: a count >= 1 or ``all``."""
    return text if text == "all" else int_at_least(1)(text)


def run(args) -> int:
    cfg = load_config(args.config)
    engine = choose_engine(args.engine, None if args.samples == "all" else args.samples,
                           learn=args.learn, waves=args.waves, sim=args.sim,
                           ttfs=cfg.encoding == "ttfs",
                           decoder=getattr(cfg, "decoder", None) is not None and not args.learn)
    if cfg.encoding == "ttfs":
        return _compare_ttfs(cfg, args)
    if args.learn:
        return _compare_learning(cfg, args)
    return _compare_inference(cfg, args, engine == "bulk")


def _pick_samples(cfg, args, rng):
    """Pixels and labels (labels None for random inputs) of ``args.samples`` samples: that
    many drawn at random from the ``--split`` of the dataset, or (``all``) the whole split in
    its order."""
    from spikeforge.sw.datasets import load_for_config, random_pixels, select_samples

    count = None if args.samples == "all" else args.samples
    if args.random:
        if count is None:
            raise UsageError("--samples all: needs a dataset, not --random (give a count "
                             "with --random, or drop --random)")
        return random_pixels(rng, count, cfg.layers[0], cfg.pixel_max), None
    return select_samples(load_for_config(cfg, args.dataset), args.split, count, rng)


def _source(cfg, args) -> str:
    """Where ``compare``'s samples come from, for its first line."""
    return "random" if args.random else f"{args.dataset or cfg.dataset} {args.split}"


def _compare_inference(cfg, args, bulk: bool) -> int:
    """Inference: the same samples through golden model and RTL (cocotb or bulk harness)."""
    import time

    import numpy as np

    from spikeforge.sim.compare import compare_runs, run_engine
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.weights import load_weights, random_weights

    rng = np.random.default_rng(args.seed)
    weights = (load_weights(args.weights, cfg) if args.weights
               else random_weights(cfg, rng, scale=args.weight_scale or DEFAULT_SCALE))
    decoder, decoder_note = _decoder(cfg, args, rng)
    pixels, labels = _pick_samples(cfg, args, rng)
    n = len(pixels)
    engine = (f"bulk Verilator harness, {args.jobs} process{'es' if args.jobs > 1 else ''}"
              if bulk else f"cocotb, {args.sim}")
    print(f"compare: {cfg.summary()}; {n} samples ({_source(cfg, args)}), seed {args.seed}, "
          f"{'weights ' + str(args.weights) if args.weights else 'random weights'}, {engine}"
          + decoder_note)
    t0 = time.perf_counter()
    gold = run_network(cfg, weights, pixels, decoder)
    gold_s = time.perf_counter() - t0
    with rtl_bar(n, "RTL (bulk)" if bulk else f"RTL ({args.sim})", args.quiet) as progress:
        t0 = time.perf_counter()
        rtl = run_engine(cfg, weights, pixels, bulk=bulk, jobs=args.jobs, sim=args.sim,
                         waves=args.waves, progress=progress, decoder=decoder)
        rtl_s = time.perf_counter() - t0
    result = compare_runs(gold, rtl)
    if labels is not None:
        acc_g = float((gold.predictions == labels).mean())
        acc_r = float((rtl.predictions == labels).mean())
        print(f"compare: accuracy golden {100 * acc_g:.2f}%, RTL {100 * acc_r:.2f}%")
    print(f"compare: cycles per sample min {gold.cycles.min()}, median "
          f"{int(np.median(gold.cycles))}, max {gold.cycles.max()}")
    print(f"compare: readout stream (random back-pressure) {len(rtl.stream)} items, "
          f"{result.stream_mismatches} mismatches against the golden output raster")
    if decoder is not None:
        print(f"compare: decoder on the chip: steps run mean {gold.decoder.steps.mean():.2f} "
              f"(min {gold.decoder.steps.min()}, max {gold.decoder.steps.max()}); "
              f"{result.decoder_mismatches} samples with another exit step or score")
    extra = [f"compare: mismatches: {result.spike_mismatches} spikes, "
             f"{result.cycle_mismatches} cycle counts, {result.prediction_mismatches} "
             f"predictions, {result.stream_mismatches} readout stream"
             + (f", {result.decoder_mismatches} decoder exits/scores" if decoder is not None
                else "")]
    probe_errors = int(rtl.probe_errors.sum()) if bulk else 0
    if probe_errors:
        first = int(np.flatnonzero(rtl.probe_errors)[0])
        extra.append(f"compare: {probe_errors} probe events out of range or repeated "
                     f"(first in sample {first})")
    extra += _timing_lines(n, gold_s, rtl_s, rtl, bulk)
    rc = _report(result, args.waves, extra)
    return rc or (1 if probe_errors else 0)


def _decoder(cfg, args, rng):
    """The decoder on the chip a comparison runs (``None``: the config has none, or its
    weight file has none) and a note for the first line: the decoder in ``--weights``, else
    a random one from the seed."""
    from spikeforge.sw.exit_decoder import random_decoder
    from spikeforge.sw.weights import load_decoder

    if cfg.decoder is None:
        return None, ""
    if args.weights:
        decoder = load_decoder(args.weights, cfg)
        if decoder is None:
            return None, (f"; {args.weights} has no decoder (spikeforge decode "
                          f"--export-decoder): not decoded on the chip")
        return decoder, "; decoded on the chip by the file's decoder"
    return random_decoder(cfg, rng), "; decoded on the chip by a random decoder"


def _timing_lines(n, gold_s, rtl_s, rtl, bulk) -> list[str]:
    """Wall time and speed of the RTL simulation and of the golden model; the ratio is
    taken against the simulation alone (the bulk harness's run, without Verilog generation
    and build)."""
    gold_rate = n / max(gold_s, 1e-9)
    if bulk:
        sim_s = max(rtl.seconds, 1e-9)
        setup = "Verilog generation + Verilator build" if rtl.built else "Verilog generation"
        what = (f"harness {rtl.seconds:.1f} s: {rtl.sim_cycles:,} clock cycles simulated "
                f"(loading included), {rtl.sim_cycles / sim_s / 1e6:.2f} M cycles/s, "
                f"{n / sim_s:.1f} samples/s; {setup} {rtl.build_seconds:.1f} s")
    else:
        sim_s = max(rtl_s, 1e-9)
        edges = int(rtl.edges.sum())
        what = (f"{edges:,} inference cycles, {edges / sim_s:,.0f} cycles/s (cocotb; Verilog "
                f"generation and build included)")
    return [f"compare: RTL wall {rtl_s:.1f} s, {n / max(rtl_s, 1e-9):.1f} samples/s; {what}",
            f"compare: golden model {gold_s:.2f} s, {gold_rate:.1f} samples/s: "
            f"{gold_rate * sim_s / n:.0f}x the RTL simulation's samples/s"]


def _report(result, waves=None, extra=()) -> int:
    """The end of every compare: the waveform file, the first divergence and its details,
    ``extra`` lines, then the summary line; the exit code (1 on any mismatch)."""
    if waves:
        print(f"compare: waveforms in {waves}")
    if result.first_divergence:
        print(f"compare: first divergence: {result.first_divergence}")
        for line in result.details:
            print(f"compare:   {line}")
    for line in extra:
        print(line)
    print(result.summary_line())
    return 0 if result.ok else 1


def _initial_stored(cfg, args, rng) -> tuple[list, str]:
    """The stored weights ``compare --learn`` starts from, and their description."""
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import load_weights, random_stored_weights, to_stored

    if args.weights:
        return to_stored(cfg, load_weights(args.weights, cfg)), str(args.weights)
    if args.weight_scale is not None:
        return (random_stored_weights(cfg, rng, scale=args.weight_scale),
                f"uniform random stored weights, scale {args.weight_scale}")
    return initial_weights(cfg, args.seed), "Kaiming-normal init"


def _compare_learning(cfg, args) -> int:
    """``compare --learn``: train golden model and RTL on the same samples, compare all."""
    import numpy as np

    from spikeforge.config import ConfigError
    from spikeforge.sim.compare import compare_training
    from spikeforge.sim.rtl import run_rtl
    from spikeforge.sw.desire import train_steps

    if cfg.learning is None:
        raise ConfigError(f"compare --learn: config {cfg.name!r} has no [learning] section")
    rng = np.random.default_rng(args.seed)
    stored, init = _initial_stored(cfg, args, rng)
    pixels, labels = _pick_samples(cfg, args, rng)
    n = len(pixels)
    if labels is None:
        labels = rng.integers(0, cfg.layers[-1], size=n)
    lr_shift = cfg.learning.lr_shift if args.lr_shift is None else args.lr_shift
    print(f"compare --learn: {cfg.summary()}; {n} training samples "
          f"({_source(cfg, args)}), seed {args.seed}, {init}, lr_shift {lr_shift}, {args.sim}")
    steps = train_steps(cfg, stored, pixels, labels, lr_shift)
    weights = steps[-1].weights
    with rtl_bar(n, f"RTL training ({args.sim})", args.quiet) as progress:
        rtl = run_rtl(cfg, stored, pixels, sim=args.sim, waves=args.waves, labels=labels,
                      lr_shift=lr_shift, stored=True, progress=progress)
    result = compare_training(steps, rtl)
    moved = sum(int((a != b).sum()) for a, b in zip(stored, weights, strict=True))
    infer = np.array([s.infer_cycles for s in steps])
    learn = np.array([s.learn_cycles for s in steps])
    print(f"compare --learn: {moved} of {cfg.n_synapses} stored weights moved over the run; "
          f"cycles per training sample median {int(np.median(infer + learn))} (inference "
          f"{int(np.median(infer))} + learning {int(np.median(learn))})")
    if cfg.dropout_threshold:
        dropped = sum(int((~k).sum()) for s in steps for k in s.keeps if k is not None)
        hidden = n * sum(cfg.layers[layer + 1] for layer in cfg.dropout_layers)
        print(f"compare --learn: dropout dropped {dropped} of {hidden} hidden neurons over the "
              f"samples ({100 * dropped / hidden:.1f}%, dropout_hidden "
              f"{cfg.learning.dropout_hidden})")
    return _report(result)


def _compare_ttfs(cfg, args) -> int:
    """``compare [--learn]`` of a TTFS config: spikes, winners, weights, prune masks, cycles."""
    import numpy as np

    from spikeforge.sim.compare import compare_ttfs
    from spikeforge.sim.ttfs_rtl import run_ttfs_rtl
    from spikeforge.sw import ttfs

    if args.weight_scale is not None or args.lr_shift is not None:
        raise UsageError("--weight-scale/--lr-shift: not used by TTFS configs (initial weights "
                         "come from [learning] init_weights, rates from a_plus/a_minus)")
    rng = np.random.default_rng(args.seed)
    if args.weights:
        state, init = ttfs.load_state(args.weights, cfg), str(args.weights)
    else:
        lo, hi = cfg.init_weights
        state, init = ttfs.initial_state(cfg, args.seed), f"uniform [{lo}, {hi}] init"
    pixels, _ = _pick_samples(cfg, args, rng)
    n = len(pixels)
    mode = "training" if args.learn else "inference"
    print(f"compare{' --learn' if args.learn else ''}: {cfg.summary()}; {n} "
          f"{mode} samples ({_source(cfg, args)}), seed {args.seed}, {init}, {args.sim}")
    gold, s = ttfs.run_schedule(cfg, state, pixels, [args.learn] * n)
    with rtl_bar(n, f"RTL {mode} ({args.sim})", args.quiet) as progress:
        rtl = run_ttfs_rtl(cfg, state, pixels, learn=args.learn, sim=args.sim,
                           waves=args.waves, progress=progress)
    result = compare_ttfs(gold, rtl, cfg.time_steps)
    cycles = np.array([int(np.ravel(g.cycles)[0]) for g in gold])
    print(f"compare: connectivity {100 * state.connectivity:.2f}% -> {100 * s.connectivity:.2f}% "
          f"of {cfg.n_synapses} synapses; cycles per sample min {cycles.min()}, median "
          f"{int(np.median(cycles))}, max {cycles.max()}")
    extra = ([f"compare: {result.mask_mismatches} prune-mask mismatches, "
              f"{result.winner_mismatches} winner mismatches"] if args.learn else [])
    return _report(result, args.waves, extra)
