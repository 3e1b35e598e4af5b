"""``spikeforge`` command line: demo, generate, lint, compare, qat, train, export, import,
configs."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from spikeforge.config import ConfigError, load_config, profile_names


def _add_config(p, default=None):
    p.add_argument("--config", "-c", default=default, required=default is None,
                   help=f"profile name ({', '.join(profile_names())}) or path to a .toml file"
                        + (f" (default: {default})" if default else ""))


def cmd_configs(args) -> int:
    for name in profile_names():
        print(load_config(name).summary())
    return 0


def cmd_generate(args) -> int:
    from spikeforge.hw.generate import generate_verilog

    cfg = load_config(args.config)
    path = generate_verilog(cfg, args.output)
    print(f"generate: {cfg.summary()}")
    print(f"generate: wrote {path}")
    if args.lint:
        return _lint(path)
    return 0


def _lint(path: Path) -> int:
    from spikeforge.sim.toolchain import LINT_WAIVERS, lint_verilog

    rc, out = lint_verilog(path)
    warnings = [line for line in out.splitlines() if line.startswith("%")]
    for line in warnings:
        print(line)
    print(f"lint: verilator --lint-only -Wall {LINT_WAIVERS.name} {path.name}: "
          f"{len(warnings)} warnings/errors, exit {rc}")
    return 1 if rc or warnings else 0


def cmd_lint(args) -> int:
    import tempfile

    from spikeforge.hw.generate import generate_verilog

    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        return _lint(generate_verilog(cfg, tmp))


def _pick_samples(cfg, args, rng):
    """Pixels and labels (labels None for random inputs) of ``args.samples`` samples: that
    many drawn at random from the ``--split`` of the dataset, or (``all``) the whole split in
    its order."""
    import numpy as np

    if args.random:
        if args.samples == "all":
            raise SystemExit("--samples all: needs a dataset, not --random")
        # Random intensities, with some samples pushed to the extremes (silent/saturating).
        pixels = rng.integers(0, cfg.pixel_max + 1, size=(args.samples, cfg.layers[0]))
        density = rng.uniform(0.05, 1.0, size=(args.samples, 1))
        pixels = np.where(rng.random(pixels.shape) < density, pixels, 0)
        return pixels, None
    from spikeforge.sw.datasets import load_dataset

    data = load_dataset(args.dataset or cfg.dataset, cfg.pixel_bits)
    if data.n_inputs != cfg.layers[0]:
        raise ConfigError(f"dataset {data.name!r} has {data.n_inputs} inputs but the config's "
                          f"network.layers[0] is {cfg.layers[0]}")
    split = getattr(args, "split", "test")
    parts = {"test": [(data.test_pixels, data.test_labels)],
             "train": [(data.train_pixels, data.train_labels)],
             "all": [(data.train_pixels, data.train_labels),
                     (data.test_pixels, data.test_labels)]}[split]
    pool_px = np.concatenate([p for p, _ in parts])
    pool_labels = np.concatenate([lab for _, lab in parts])
    if args.samples == "all":
        return pool_px, pool_labels
    if args.samples > len(pool_labels):
        raise SystemExit(f"--samples: {args.samples} exceeds the {len(pool_labels)} "
                         f"{split} samples of {data.name}")
    idx = rng.choice(len(pool_labels), size=args.samples, replace=False)
    return pool_px[idx], pool_labels[idx]


def _source(cfg, args) -> str:
    """Where ``compare``'s samples come from, for its first line."""
    return "random" if args.random else f"{args.dataset or cfg.dataset} {args.split}"


@contextlib.contextmanager
def _rtl_bar(n: int, desc: str, quiet: bool):
    """A progress bar over ``n`` RTL samples; yields the ``progress(done)`` callback the RTL
    runners take, and fills the bar when the run returns."""
    from tqdm import tqdm

    with tqdm(total=n, desc=desc, unit="sample", disable=quiet, dynamic_ncols=True) as bar:
        yield lambda done: bar.update(done - bar.n)
        bar.update(n - bar.n)


#: ``compare --engine auto`` runs more samples than this through the bulk harness.
BULK_AUTO_SAMPLES = 100


def _use_bulk(cfg, args) -> bool:
    """Whether ``compare`` runs the Verilator C++ harness (:mod:`sim.bulk`) or cocotb."""
    cocotb_only = [why for why, on in (("--learn", args.learn), ("--waves", args.waves),
                                       ("--sim icarus", args.sim == "icarus"),
                                       ("a TTFS config", cfg.encoding == "ttfs")) if on]
    if args.engine == "bulk":
        if cocotb_only:
            raise ConfigError(f"--engine bulk: not with {', '.join(cocotb_only)} (cocotb only)")
        return True
    many = args.samples == "all" or args.samples > BULK_AUTO_SAMPLES
    return args.engine == "auto" and many and not cocotb_only


def cmd_compare(args) -> int:
    import time

    import numpy as np

    from spikeforge.sim.compare import compare_runs
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.weights import load_weights, random_weights

    cfg = load_config(args.config)
    bulk = _use_bulk(cfg, args)
    if cfg.encoding == "ttfs":
        return _compare_ttfs(cfg, args)
    if args.learn:
        return _compare_learning(cfg, args)
    rng = np.random.default_rng(args.seed)
    weights = (load_weights(args.weights, cfg) if args.weights
               else random_weights(cfg, rng, scale=args.weight_scale or 0.5))
    pixels, labels = _pick_samples(cfg, args, rng)
    n = len(pixels)
    engine = (f"bulk Verilator harness, {args.jobs} process{'es' if args.jobs > 1 else ''}"
              if bulk else f"cocotb, {args.sim}")
    print(f"compare: {cfg.summary()}; {n} samples ({_source(cfg, args)}), seed {args.seed}, "
          f"{'weights ' + str(args.weights) if args.weights else 'random weights'}, {engine}")
    t0 = time.perf_counter()
    gold = run_network(cfg, weights, pixels)
    gold_s = time.perf_counter() - t0
    with _rtl_bar(n, "RTL (bulk)" if bulk else f"RTL ({args.sim})", args.quiet) as progress:
        t0 = time.perf_counter()
        if bulk:
            from spikeforge.sim.bulk import run_bulk

            rtl = run_bulk(cfg, weights, pixels, jobs=args.jobs, progress=progress)
        else:
            from spikeforge.sim.rtl import run_rtl

            rtl = run_rtl(cfg, weights, pixels, sim=args.sim, waves=args.waves,
                          progress=progress)
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
    extra = [f"compare: mismatches: {result.spike_mismatches} spikes, "
             f"{result.cycle_mismatches} cycle counts, {result.prediction_mismatches} "
             f"predictions, {result.stream_mismatches} readout stream"]
    trace_errors = int(rtl.trace_errors.sum()) if bulk else 0
    if trace_errors:
        first = int(np.flatnonzero(rtl.trace_errors)[0])
        extra.append(f"compare: {trace_errors} trace events out of range or repeated "
                     f"(first in sample {first})")
    extra += _timing_lines(n, gold_s, rtl_s, rtl, bulk)
    rc = _report(result, args.waves, extra)
    return rc or (1 if trace_errors else 0)


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


def _compare_learning(cfg, args) -> int:
    """``compare --learn``: train golden model and RTL on the same samples, compare all."""
    import numpy as np

    from spikeforge.sim.compare import compare_training
    from spikeforge.sim.rtl import run_rtl
    from spikeforge.sw.desire import train_step
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import load_weights, to_stored

    if cfg.learning is None:
        raise ConfigError(f"compare --learn: config {cfg.name!r} has no [learning] section")
    rng = np.random.default_rng(args.seed)
    if args.weights:
        stored, init = to_stored(cfg, load_weights(args.weights, cfg)), str(args.weights)
    elif args.weight_scale is not None:
        hi = max(1, int(round(cfg.store_max * args.weight_scale)))
        stored = [rng.integers(max(cfg.store_min, -hi), hi + 1, size=cfg.weight_shape(i))
                  for i in range(cfg.n_layers)]
        init = f"uniform random stored weights, scale {args.weight_scale}"
    else:
        stored, init = initial_weights(cfg, args.seed), "Kaiming-normal init"
    pixels, labels = _pick_samples(cfg, args, rng)
    n = len(pixels)
    if labels is None:
        labels = rng.integers(0, cfg.layers[-1], size=n)
    lr_shift = cfg.learning.lr_shift if args.lr_shift is None else args.lr_shift
    print(f"compare --learn: {cfg.summary()}; {n} training samples "
          f"({_source(cfg, args)}), seed {args.seed}, {init}, lr_shift {lr_shift}, {args.sim}")
    steps, weights = [], stored
    for b in range(len(pixels)):
        steps.append(train_step(cfg, weights, pixels[b], int(labels[b]), lr_shift))
        weights = steps[-1].weights
    with _rtl_bar(n, f"RTL training ({args.sim})", args.quiet) as progress:
        rtl = run_rtl(cfg, stored, pixels, sim=args.sim, waves=args.waves, labels=labels,
                      lr_shift=lr_shift, stored=True, progress=progress)
    result = compare_training(steps, rtl)
    moved = sum(int((a != b).sum()) for a, b in zip(stored, weights, strict=True))
    infer = np.array([s.infer_cycles for s in steps])
    learn = np.array([s.learn_cycles for s in steps])
    print(f"compare --learn: {moved} of {cfg.n_synapses} stored weights moved over the run; "
          f"cycles per training sample median {int(np.median(infer + learn))} (inference "
          f"{int(np.median(infer))} + learning {int(np.median(learn))})")
    return _report(result)


def _compare_ttfs(cfg, args) -> int:
    """``compare [--learn]`` of a TTFS config: spikes, winners, weights, prune masks, cycles."""
    import numpy as np

    from spikeforge.sim.compare import compare_ttfs
    from spikeforge.sim.ttfs_rtl import run_ttfs_rtl
    from spikeforge.sw import ttfs

    if args.weight_scale is not None or args.lr_shift is not None:
        raise ConfigError("--weight-scale/--lr-shift: not used by TTFS configs (initial weights "
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
    with _rtl_bar(n, f"RTL {mode} ({args.sim})", args.quiet) as progress:
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


def cmd_qat(args) -> int:
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.qat import evaluate_integer, train_qat
    from spikeforge.sw.weights import save_weights

    cfg = load_config(args.config)
    data = load_dataset(args.dataset or cfg.dataset, cfg.pixel_bits)
    weights = train_qat(cfg, data.train_pixels, data.train_labels, epochs=args.epochs,
                        seed=args.seed)
    acc = evaluate_integer(cfg, weights, data.test_pixels, data.test_labels)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_weights(args.output, cfg, weights)
    print(f"qat: {cfg.name} on {data.name}: golden-model test accuracy {100 * acc:.2f}% "
          f"({len(data.test_labels)} samples); weights in {args.output}")
    return 0


def cmd_demo(args) -> int:
    from spikeforge.demo import run_demo

    return run_demo(load_config(args.config), out_dir=Path(args.out), sim=args.sim,
                    epochs=args.epochs, samples=args.samples, seed=args.seed)


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {lo}, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"{value} is out of range, must be >= {lo}")
        return value
    return parse


def _samples_arg(text: str):
    """``--samples``: a count >= 1 or ``all``."""
    return text if text == "all" else _int_at_least(1)(text)


def _default_jobs() -> int:
    import os

    return max(1, min(2, os.cpu_count() or 1))


def _run_training(train_fn, cfg, data, args, out: Path, checkpoint: Path, monitor,
                  outputs: tuple[str, ...]):
    """Run ``train_fn(cfg, data, ...the train options of args...)``.

    Returns ``(result, 0)`` when it completed (the ``outputs`` files are printed); otherwise
    ``(None, exit code)``: a :class:`sw.train.TrainError` or Ctrl-C becomes a message, and a
    ``--max-samples`` stop says where the checkpoint is. The progress bar is closed either way.
    """
    from spikeforge.sw.train import TrainError

    try:
        result = train_fn(cfg, data, epochs=args.epochs, seed=args.seed, out_dir=out,
                          train_samples=args.train_samples, test_samples=args.test_samples,
                          resume=args.resume, checkpoint_every=args.checkpoint_every,
                          max_samples=args.max_samples, monitor=monitor)
    except TrainError as exc:
        print(f"spikeforge train: error: {exc}", file=sys.stderr)
        return None, 2
    except KeyboardInterrupt:
        print(f"\ntrain: interrupted; {checkpoint} holds the last checkpoint, continue with "
              f"--resume", file=sys.stderr)
        return None, 130
    finally:
        if monitor.bar is not None:
            monitor.bar.close()
    if not result.complete:
        print(f"train: stopped after {result.samples_done} samples (--max-samples); "
              f"checkpoint {result.files['checkpoint']}; continue with --resume")
        return None, 0
    for key in outputs:
        print(f"train: {key} in {result.files[key]}")
    return result, 0


def cmd_train(args) -> int:
    """On-chip desire-backpropagation training, sample by sample, with the golden model."""
    from tqdm import tqdm

    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.train import CHECKPOINT_NAME, TrainMonitor, train

    cfg = load_config(args.config)
    if cfg.encoding == "ttfs":
        return _train_ttfs(cfg, args)
    if cfg.learning is None:
        raise ConfigError(f"config {cfg.name!r} has no [learning] section; on-chip training "
                          f"needs one (see configs/digits-tiny.toml)")
    dataset = args.dataset or cfg.dataset
    out = Path(args.out) if args.out else Path("out") / "train" / f"{cfg.name}-{dataset}"
    if args.resume and not (out / CHECKPOINT_NAME).is_file():
        print(f"spikeforge train: error: --resume: no checkpoint {out / CHECKPOINT_NAME} "
              f"(run without --resume to start, or give the --out of the run to continue)",
              file=sys.stderr)
        return 2
    data = load_dataset(dataset, cfg.pixel_bits)
    print(f"train: {cfg.summary()}")
    print(f"train: {data.summary()}; seed {args.seed}, output {out}")

    class Bar(TrainMonitor):
        def __init__(self):
            self.bar = None

        def start(self, total, done):
            self.bar = tqdm(total=total, initial=done, unit="sample", desc="train",
                            disable=args.quiet, dynamic_ncols=True, smoothing=0.05)

        def sample(self, epoch, position, size, correct):
            self.bar.update(1)
            if position % 50 == 0 or position == size:
                self.bar.set_postfix_str(f"epoch {epoch + 1}/{args.epochs} train "
                                         f"{100 * correct / position:.1f}%", refresh=False)

        def evaluating(self, epoch, samples):
            self.bar.set_postfix_str(f"epoch {epoch + 1}/{args.epochs} testing "
                                     f"{samples} samples")

        def epoch_end(self, r):
            tqdm.write(f"train: epoch {r.epoch}/{args.epochs} lr_shift {r.lr_shift}: train "
                       f"{100 * r.train_accuracy:.2f}%, test {100 * r.test_accuracy:.2f}%, "
                       f"median {r.median_cycles:.0f} cycles/sample, {r.seconds:.1f} s")

    monitor = Bar()
    result, rc = _run_training(train, cfg, data, args, out, out / CHECKPOINT_NAME, monitor,
                               ("weights", "history", "plot"))
    if result is None:
        return rc
    print(f"train: {cfg.name} {data.name} epochs {len(result.history)} test accuracy "
          f"{100 * result.test_accuracy:.2f}%")
    return 0


def _train_ttfs(cfg, args) -> int:
    """``train`` of a TTFS config: unsupervised on-chip STDP with pruning (golden model)."""
    from tqdm import tqdm

    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.stdp_train import CHECKPOINT_NAME, train_stdp
    from spikeforge.sw.train import TrainMonitor

    dataset = args.dataset or cfg.dataset
    out = Path(args.out) if args.out else Path("out") / "train" / f"{cfg.name}-{dataset}"
    data = load_dataset(dataset, cfg.pixel_bits)
    print(f"train: {cfg.summary()}")
    print(f"train: {data.summary()}; seed {args.seed}, output {out}")

    class Bar(TrainMonitor):
        bar = None

        def start(self, total, done):
            self.bar = tqdm(total=total, initial=done, unit="sample", desc="stdp",
                            disable=args.quiet, dynamic_ncols=True, smoothing=0.05)

        def sample(self, epoch, position, size, with_winner):
            self.bar.update(1)
            if position % 200 == 0 or position == size:
                self.bar.set_postfix_str(f"epoch {epoch + 1}/{args.epochs}", refresh=False)

        def evaluating(self, epoch, samples):
            self.bar.set_postfix_str(f"epoch {epoch + 1}/{args.epochs} readout")

        def epoch_end(self, r):
            tqdm.write(f"train: epoch {r.epoch}/{args.epochs}: readout train "
                       f"{100 * r.readout_train:.2f}%, test {100 * r.readout_test:.2f}%, "
                       f"connectivity {100 * r.connectivity:.2f}%, median cycles inference "
                       f"{r.median_infer_cycles:.0f} + learning {r.median_learn_cycles:.0f}, "
                       f"{r.seconds:.1f} s")

    monitor = Bar()
    run, rc = _run_training(train_stdp, cfg, data, args, out, out / CHECKPOINT_NAME, monitor,
                            ("state", "history", "receptive_fields", "connectivity", "cycles"))
    if run is None:
        return rc
    last = run.history[-1]
    print(f"train: {cfg.name} {data.name} epochs {len(run.history)} readout test accuracy "
          f"{100 * last.readout_test:.2f}%, connectivity {100 * last.connectivity:.2f}%")
    return 0


def cmd_decode(args) -> int:
    """Decode the readout raster of a trained network: fixed rules vs learned ANN decoders;
    or train the SNN and its decoder end to end through the information bottleneck."""
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.decode_sweep import golden_rasters, plot_sweep, rtl_check, sweep
    from spikeforge.sw.decoders import predictor
    from spikeforge.sw.weights import load_weights, save_weights

    cfg = load_config(args.config)
    if cfg.encoding == "ttfs":
        raise ConfigError("decode: TTFS configs have no rate readout; use a rate-coded config")
    data = load_dataset(args.dataset or cfg.dataset, cfg.pixel_bits)
    if not 1 <= args.steps <= cfg.time_steps:
        raise SystemExit(f"--steps: {args.steps} is out of range, legal range is "
                         f"[1, {cfg.time_steps}]")
    if args.train_snn:
        from spikeforge.sw.ib import train_end_to_end

        if args.decoder in ("rate", "first-spike"):
            raise SystemExit("--train-snn: needs a learned --decoder (linear, mlp or conv)")
        weights, dec = train_end_to_end(
            cfg, data.train_pixels, data.train_labels, decoder=args.decoder, steps=args.steps,
            beta=args.beta, rate=args.prior_rate, epochs=args.snn_epochs, seed=args.seed)
        out = Path(args.output or f"out/decode/{cfg.name}-{data.name}-ib-{args.decoder}"
                                  f"-T{args.steps}.npz")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_weights(out, cfg, weights)
        print(f"decode: end-to-end (beta {args.beta}, prior rate {args.prior_rate}) SNN "
              f"weights in {out}")

        def predict(r):
            return dec.predict(r[:, :args.steps])
    elif not args.weights:
        raise ConfigError("decode: --weights W.npz is required (a trained network, e.g. "
                          "out/train/<config>-<dataset>/weights.npz from spikeforge train, "
                          "or spikeforge qat -o W.npz), or --train-snn")
    else:
        weights = load_weights(args.weights, cfg)
    print(f"decode: {cfg.summary()}; {data.summary()}")
    train_r, test_r = golden_rasters(cfg, weights, data)
    if args.reconstruct:
        from spikeforge.sw.decode_sweep import reconstruction_quality

        if args.decoder in ("rate", "first-spike"):
            raise SystemExit("--reconstruct: needs a learned --decoder (linear, mlp or conv)")
        out = Path(args.out or f"out/decode/{cfg.name}-{data.name}")
        out.mkdir(parents=True, exist_ok=True)
        q = reconstruction_quality(args.decoder, train_r, test_r, data, steps=args.steps,
                                   epochs=args.epochs, seed=args.seed, out_dir=out,
                                   title=f"{cfg.name} {args.decoder} T={args.steps}")
        print(f"decode: reconstructions in {q['plot']}")
        print(f"decode: reconstruct {args.decoder} T={args.steps} held-out classifier "
              f"accuracy {100 * q['reconstructed']:.2f}% (originals {100 * q['originals']:.2f}%)")
        return 0
    if args.sweep:
        out = Path(args.out or f"out/decode/{cfg.name}-{data.name}")
        out.mkdir(parents=True, exist_ok=True)
        table = sweep(train_r, data.train_labels, test_r, data.test_labels,
                      steps_list=args.steps_list, epochs=args.epochs, seed=args.seed)
        print("\n".join(plot_sweep(table, out, f"{cfg.name} on {data.name}")))
        return 0
    if not args.train_snn:
        predict = predictor(args.decoder, train_r, data.train_labels, steps=args.steps,
                            epochs=args.epochs, seed=args.seed)
    if args.rtl_samples:
        n = args.rtl_samples
        gold_acc, rtl_acc, same = rtl_check(cfg, weights, data.test_pixels[:n],
                                            data.test_labels[:n], test_r[:n], predict)
        print(f"decode: {n} test samples through the RTL: readout stream rasters and "
              f"decisions {'identical to' if same else 'DIFFERENT from'} the golden model's; "
              f"{args.decoder} T={args.steps} accuracy golden {100 * gold_acc:.2f}%, RTL "
              f"{100 * rtl_acc:.2f}%")
        if not same:
            return 1
    acc = float((predict(test_r) == data.test_labels).mean())
    print(f"decode: {args.decoder} T={args.steps} accuracy {100 * acc:.2f}%")
    return 0


def _synth_workload(cfg, args) -> tuple[dict, str]:
    """Cycles and SOPs of the config on its dataset's test samples (sw.throughput)."""
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.throughput import measure
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import load_weights, to_stored

    data = load_dataset(cfg.dataset, cfg.pixel_bits)
    if args.weights:
        stored, note = to_stored(cfg, load_weights(args.weights, cfg)), f"weights {args.weights}"
    else:
        stored, note = initial_weights(cfg, 0), "initial (Kaiming, seed 0) weights"
    n = min(args.samples, len(data.test_labels))
    perf = measure(cfg, stored, data.test_pixels[:n], data.test_labels[:n],
                   train_samples=min(20, n))
    return perf, f"{note}, first {n} {data.name} test samples"


def _seed_list(text: str) -> list[int]:
    """``1,2,5`` or ``1-4``: nextpnr seeds, at least one, each >= 1."""
    try:
        seeds = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected distinct seeds >= 1 such as "
                                         "1,2,3 or 1-4")
    return seeds


def cmd_synth(args) -> int:
    """Board top -> Yosys -> nextpnr -> bitstream, with the merged utilization/timing report;
    or, with --generic, the board top's Verilog and constraints for other flows."""
    from spikeforge import synth
    from spikeforge.hw.boards import BOARDS

    cfg = load_config(args.config)
    if args.board not in BOARDS:
        raise ConfigError(f"--board {args.board!r}: expected one of {', '.join(BOARDS)}")
    out = Path(args.out or f"out/synth/{cfg.name}-{args.board}")
    try:
        if args.generic:
            for path in synth.generic(cfg, args.board, out, f_mhz=args.freq, baud=args.baud):
                print(f"synth: wrote {path}")
            return 0
        report = synth.build(cfg, args.board, out, f_mhz=args.freq, baud=args.baud,
                             seed=args.seed, seeds=args.seeds)
        synth.add_performance(report, *_synth_workload(cfg, args), out)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    except synth.SynthError as exc:
        print(f"spikeforge synth: error: {exc}", file=sys.stderr)
        return 1
    print(f"synth: report {out / 'report.md'}, bitstream {report['bitstream']}")
    print(synth.summary_line(report))
    return 0


def cmd_export(args) -> int:
    """A config and its integer weights as a NIR graph (``docs/nir.md``)."""
    from spikeforge.sw.nir_io import default_weights, write_nir
    from spikeforge.sw.weights import load_weights

    cfg = load_config(args.config)
    if args.weights:
        weights, note = load_weights(args.weights, cfg), f"weights {args.weights}"
    else:
        weights, note = default_weights(cfg, args.seed)
    write_nir(args.nir, cfg, weights, dt=args.dt)
    print(f"export: {cfg.summary()}")
    print(f"export: {note}")
    print(f"export: wrote {args.nir}: Input -> (Linear -> LIF) x {cfg.n_layers} -> Output, "
          f"dt {args.dt:g}, tau {args.dt * (1 << cfg.leak_shift):g}, "
          f"v_threshold {cfg.threshold}; formats in the graph metadata")
    return 0


def cmd_import(args) -> int:
    """A NIR graph or float weights -> config TOML + integer weights (``docs/nir.md``)."""
    from spikeforge.sw.nir_io import (
        config_to_toml,
        evaluate,
        load_float_weights,
        quantise_float,
        read_nir,
    )
    from spikeforge.sw.weights import save_weights

    options = {k: v for k, v in (("weight_bits", args.weight_bits),
                                 ("membrane_bits", args.membrane_bits),
                                 ("time_steps", args.time_steps), ("lanes", args.lanes),
                                 ("pixel_bits", args.pixel_bits), ("threshold", args.threshold),
                                 ("leak_shift", args.leak_shift), ("name", args.name),
                                 ("dataset", args.dataset)) if v is not None}
    if args.nir:
        result = read_nir(args.nir, quantise=args.quantise, dt=args.dt, **options)
        source = f"NIR graph {args.nir}"
    else:
        options.setdefault("leak_shift", 2)
        options.setdefault("name", Path(args.float).stem)
        result = quantise_float(load_float_weights(args.float), quantise=args.quantise,
                                **options)
        source = f"float weights {args.float} (threshold units)"
    for line in result.lines:
        print(line)
    cfg = result.cfg
    out = Path(args.config_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(config_to_toml(cfg, header=f"imported by spikeforge import from {source}"))
    load_config(out)          # what was written loads back as a legal config
    print(f"import: wrote {out}")
    if args.weights_out:
        Path(args.weights_out).parent.mkdir(parents=True, exist_ok=True)
        save_weights(args.weights_out, cfg, result.weights)
        print(f"import: wrote {args.weights_out}")
    if args.evaluate:
        acc, n = evaluate(cfg, result.weights, args.evaluate)
        print(f"import: golden model accuracy {100 * acc:.2f}% on the first {n} {cfg.dataset} "
              f"test samples")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeforge",
        description="On-chip-learning SNN co-design: Amaranth gateware, bit-exact golden "
                    "model, cocotb/Verilator regressions.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train on digits, run golden model and RTL, plot rasters")
    _add_config(p, "digits-tiny")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--epochs", type=int, default=None, help="QAT epochs (default: trainer's)")
    p.add_argument("--samples", type=int, default=None,
                   help="held-out samples to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("generate", help="write the top-level Verilog of a config")
    _add_config(p)
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("lint", help="generate a config's Verilog and lint it with Verilator")
    _add_config(p)
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser(
        "compare", help="golden model vs RTL: every spike and cycle count",
        description="Run samples through the golden model and the generated Verilog and "
                    "compare every spike of every population, every cycle count, every "
                    "prediction and the readout stream. Inference runs of more than "
                    f"{BULK_AUTO_SAMPLES} samples (or --samples all) go through a Verilator "
                    "C++ harness (sim/bulk.py, built once per config, split over --jobs "
                    "processes: whole test sets in minutes); fewer, and --learn, --waves, "
                    "--sim icarus and TTFS configs, through the cocotb testbenches.")
    _add_config(p)
    p.add_argument("--samples", "-n", type=_samples_arg, default=10,
                   help="samples to run (default 10), drawn at random from --split; 'all': "
                        "the whole split in order")
    p.add_argument("--split", choices=("test", "train", "all"), default="test",
                   help="which part of the dataset samples come from (default test; 'all': "
                        "train then test, e.g. all 10,000 images of mnist-t10k)")
    p.add_argument("--engine", choices=("auto", "bulk", "cocotb"), default="auto",
                   help=f"RTL runner: bulk (Verilator C++ harness, inference only), cocotb "
                        f"(testbenches in sim/), or auto (default: bulk above "
                        f"{BULK_AUTO_SAMPLES} samples where it applies)")
    p.add_argument("--jobs", "-j", type=_int_at_least(1), default=_default_jobs(),
                   help=f"bulk harness processes, each a share of the samples (default "
                        f"{_default_jobs()}: the CPU cores, at most 2)")
    p.add_argument("--seed", type=int, default=0, help="picks samples and random weights")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", choices=("digits", "mnist-t10k", "mnist", "fashion-mnist"),
                     help="test samples from this dataset (default: the config's)")
    src.add_argument("--random", action="store_true", help="random inputs instead of data")
    p.add_argument("--weights", help=".npz weight file (TTFS: state file with weights and "
                                     "prune mask; default: random weights from --seed)")
    p.add_argument("--weight-scale", type=float, default=None,
                   help="random weights span this share of the signed range (1.0 = full, "
                        "saturation-heavy; default 0.5; with --learn: uniform stored "
                        "weights instead of the Kaiming init)")
    p.add_argument("--learn", action="store_true",
                   help="train golden model and RTL on the samples (on-chip desire "
                        "backpropagation, or STDP with pruning for TTFS configs) and compare "
                        "spikes, every weight (and prune mask) after every sample, and cycles")
    p.add_argument("--lr-shift", type=int, default=None,
                   help="with --learn: learning-rate shift (default: the config's)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator")
    p.add_argument("--waves", help="write waveforms to this .fst or .vcd file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("qat", help="offline quantisation-aware surrogate-gradient training")
    _add_config(p)
    p.add_argument("--dataset", choices=("digits", "mnist-t10k", "mnist", "fashion-mnist"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="weight file to write (.npz)")
    p.set_defaults(func=cmd_qat)

    p = sub.add_parser("train", help="on-chip training with the golden model: desire "
                                     "backpropagation, or STDP + pruning (TTFS configs)")
    _add_config(p)
    p.add_argument("--dataset", choices=("digits", "mnist-t10k", "fashion-mnist", "mnist"),
                   help="dataset (default: the config's)")
    p.add_argument("--epochs", type=_int_at_least(1), required=True)
    p.add_argument("--out", help="output folder: checkpoint, weights, history, accuracy plot "
                                 "(default: out/train/<config>-<dataset>)")
    p.add_argument("--seed", type=_int_at_least(0), default=0,
                   help="initial weights and sample order (default 0)")
    p.add_argument("--train-samples", type=_int_at_least(1),
                   help="train on the first N training samples (default: all)")
    p.add_argument("--test-samples", type=_int_at_least(1),
                   help="test on the first N test samples (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out (same config, dataset, seed, "
                        "sample counts); the result is bit-identical to an uninterrupted run")
    p.add_argument("--checkpoint-every", type=_int_at_least(0), default=2000,
                   help="also checkpoint every N samples within an epoch (default 2000, "
                        "0: only at epoch ends)")
    p.add_argument("--max-samples", type=_int_at_least(0),
                   help="stop after N samples in this call (checkpointed; go on with --resume)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("decode", help="decode the readout spike raster: rate / first-spike "
                                      "rules vs learned ANN decoders (torch)")
    _add_config(p)
    p.add_argument("--dataset", choices=("digits", "mnist-t10k", "fashion-mnist", "mnist"),
                   help="dataset (default: the config's)")
    p.add_argument("--weights", help="trained network (.npz from spikeforge train or qat)")
    p.add_argument("--decoder", choices=("rate", "first-spike", "linear", "mlp", "conv"),
                   default="conv")
    p.add_argument("--steps", type=_int_at_least(1), default=8,
                   help="decode from the first T time steps (default 8)")
    p.add_argument("--sweep", action="store_true",
                   help="every decoder at every T of --steps-list: Markdown table + plot")
    p.add_argument("--steps-list", type=lambda t: [int(x) for x in t.split(",")],
                   default=[2, 4, 8, 12, 20], help="T values of --sweep (default 2,4,8,12,20)")
    p.add_argument("--epochs", type=_int_at_least(1), default=15,
                   help="training epochs of the learned decoders (default 15)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--rtl-samples", type=_int_at_least(0), default=0,
                   help="also run N test samples through the RTL and check that the decoder "
                        "reads identical rasters from its readout stream")
    p.add_argument("--out", help="sweep output folder (default out/decode/<config>-<dataset>)")
    p.add_argument("--reconstruct", action="store_true",
                   help="train the decoder to reconstruct the image (binary cross-entropy) and "
                        "score it with a classifier trained on the original images")
    p.add_argument("--train-snn", action="store_true",
                   help="train the SNN and the decoder end to end through the information "
                        "bottleneck (cross-entropy + beta * KL(spike rate || Bernoulli(r)))")
    p.add_argument("--beta", type=float, default=0.01, help="with --train-snn (default 0.01)")
    p.add_argument("--prior-rate", type=float, default=0.2,
                   help="with --train-snn: r of the Bernoulli prior (default 0.2)")
    p.add_argument("--snn-epochs", type=_int_at_least(1), default=10,
                   help="with --train-snn: epochs (default 10)")
    p.add_argument("-o", "--output", help="with --train-snn: weight file to write (.npz)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("synth", help="FPGA build of a board top (network + UART host link): "
                       "Yosys + nextpnr -> bitstream + utilization/Fmax report")
    _add_config(p, "digits-up5k")
    p.add_argument("--board", default="icebreaker", help="icebreaker (iCE40UP5K) or "
                   "ulx3s-85f (ECP5-85F) (default: icebreaker)")
    p.add_argument("--freq", type=float, default=None,
                   help="core clock in MHz (default: the board's target, 24 / 75)")
    p.add_argument("--baud", type=int, default=1_000_000, help="UART baud (default 1000000)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--seeds", type=_seed_list, default=None, metavar="LIST",
                   help="place and route once per seed (e.g. 1,2,3 or 1-4) and keep the "
                        "fastest; every seed's Fmax goes into the report")
    p.add_argument("--weights", default=None, help="trained network (.npz) for the cycle "
                   "counts in the report (default: initial Kaiming weights)")
    p.add_argument("--samples", type=int, default=200,
                   help="test samples the cycle counts are measured on (default 200)")
    p.add_argument("--generic", action="store_true",
                   help="write the board top's Verilog, its constraint file and a build "
                        "script, for other Verilog flows; no synthesis")
    p.add_argument("--out", default=None, help="output folder (default "
                   "out/synth/<config>-<board>)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("export", help="write a config and its weights as a NIR graph "
                                      "(Neuromorphic Intermediate Representation, docs/nir.md)")
    _add_config(p)
    p.add_argument("--weights", help=".npz weight file (default: the initial weights "
                                     "spikeforge train starts from; random ones from --seed "
                                     "without [learning])")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--nir", required=True, help="NIR file to write (HDF5, .nir)")
    p.add_argument("--dt", type=float, default=1e-4,
                   help="time step the LIF time constants assume (default 1e-4, snnTorch's)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="a NIR graph or float weights -> config TOML + integer "
                                      "weights (docs/nir.md)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--nir", help="NIR file: Input -> (Linear|Affine -> LIF|IF|CubaLIF)+ -> "
                                   "Output")
    src.add_argument("--float", help="float weights: .npz with w0, w1, ... of shape (n_pre, "
                                     "n_post) in threshold units, or a torch state dict "
                                     "(.pt) of bias-free nn.Linear layers")
    p.add_argument("--config-out", required=True, help="config TOML to write")
    p.add_argument("--weights-out", help="integer weights to write (.npz, for --weights)")
    p.add_argument("--quantise", choices=("max", "percentile"), default="max",
                   help="foreign weights: threshold from the largest |w| (max, default) or "
                        "the 99th percentile per layer (outliers clip)")
    p.add_argument("--dt", type=float, default=None,
                   help="time step of the graph's time constants (default: the exporter's "
                        "metadata, else 1e-4, snnTorch's)")
    p.add_argument("--weight-bits", type=int)
    p.add_argument("--membrane-bits", type=int, help="raised to the least legal width")
    p.add_argument("--time-steps", type=int)
    p.add_argument("--lanes", type=int)
    p.add_argument("--pixel-bits", type=int)
    p.add_argument("--threshold", type=int, help="integer threshold (default: from --quantise)")
    p.add_argument("--leak-shift", type=int, help="default: from the graph's tau (2 for --float)")
    p.add_argument("--name", help="config name (default: the file's)")
    p.add_argument("--dataset", choices=("digits", "mnist-t10k", "fashion-mnist"))
    p.add_argument("--evaluate", type=_int_at_least(1), default=None, metavar="N",
                   help="also run the golden model on the first N test samples of the dataset")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("configs", help="list the shipped profiles")
    p.set_defaults(func=cmd_configs)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from spikeforge.sim.toolchain import ToolchainError
    from spikeforge.sw.datasets import DatasetError
    from spikeforge.sw.weights import WeightError

    try:
        return args.func(args)
    except (ConfigError, DatasetError, WeightError, ToolchainError) as exc:
        print(f"spikeforge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
