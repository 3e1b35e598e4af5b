"""``spikeforge virtual-board`` and ``spikeforge run``: the board in the loop.

``run`` talks to a board's serial port (or a virtual board's terminal) through the host link:
it checks INFO against the config, loads the weights, streams samples, reads back the
predictions, cycle counters and output spikes, and reports accuracy and speed; with
``--check-golden`` it also runs the golden model on the same samples and reports the first
divergence the way ``spikeforge compare`` does.
"""

from __future__ import annotations

import signal
import time

import numpy as np

from spikeforge.commands.common import UsageError, add_config, bounded_float, int_at_least
from spikeforge.hw.boards import BOARDS
from spikeforge.sw.datasets import DATASET_NAMES

LOST_EXIT = 3                   # run: every answer matched, but some samples were lost
LINK_DOWN_AFTER = 3             # run: consecutive lost samples that end the run early


def register(sub) -> None:
    p = sub.add_parser("virtual-board", help="run the Verilated board top (UART, host link, "
                       "network) behind a pseudo-terminal for spikeforge run --port")
    add_config(p)
    p.add_argument("--weights", help="weights (.npz) to load before the terminal opens, as "
                   "if the board had been programmed with them")
    p.add_argument("--faults", metavar="SPEC", default="", help="a faulty line, per byte and "
                   "both ways: drop=P,corrupt=P,unplug=P,unplug_s=S,seed=N (any subset; "
                   "e.g. drop=0.002,corrupt=0.002,unplug=0.0005); counts printed at the end")
    p.set_defaults(func=run_virtual_board)

    p = sub.add_parser("run", help="run a test set on a board (or a virtual board) over its "
                       "serial port: accuracy, speed, optional check against the golden model",
                       epilog="A frame without a valid answer is sent again (--retries) once "
                       "the line is quiet; a RUN the board may have run is not: the board's "
                       "sample counter decides, and a sample whose answer is lost is reported "
                       f"as lost. Exit status: 0 all answered (and matching), 1 a mismatch, "
                       f"{LOST_EXIT} samples lost, 2 usage.")
    p.add_argument("--port", required=True, help="serial port (/dev/ttyUSB1, or the "
                   "terminal spikeforge virtual-board printed)")
    add_config(p)
    p.add_argument("--weights", required=True, help="weights (.npz) to load")
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="dataset (default: the config's); its test split")
    p.add_argument("--samples", default="100", help="test samples to run, in order, or 'all' "
                   "(default 100)")
    p.add_argument("--learn", action="store_true", help="train on the samples (labels sent) "
                   "and read the weights back at the end (saved next to --weights as "
                   "<name>.board.npz)")
    p.add_argument("--check-golden", action="store_true", help="run the golden model on the "
                   "same samples and report every mismatch")
    p.add_argument("--baud", type=int_at_least(1), default=None,
                   help="serial baud (default: the board top's, 1000000)")
    p.add_argument("--board", choices=BOARDS, default="icebreaker", metavar="BOARD",
                   help=f"the board ({' or '.join(BOARDS)}; default icebreaker): its core "
                        "clock turns the cycle counter into µs")
    p.add_argument("--clock-mhz", type=bounded_float("> 0", lambda v: v > 0), default=None,
                   help="the core's clock if not the board's target (24 / 75 MHz)")
    p.add_argument("--retries", type=int_at_least(0), default=3,
                   help="resends of a frame without a valid answer (default 3)")
    p.add_argument("--timeout", type=bounded_float("> 0", lambda v: v > 0), default=30.0,
                   help="seconds to wait for an answer (default 30: a virtual board runs at "
                        "Verilator speed; raise it for large configs there)")
    p.set_defaults(func=run_samples)


def run_virtual_board(args) -> int:
    from spikeforge.config import load_config
    from spikeforge.sim.virtual_board import FaultSpec, VirtualBoard

    cfg = load_config(args.config)
    try:
        faults = FaultSpec.parse(args.faults)
    except ValueError as exc:
        raise UsageError(f"--faults: {exc}") from None
    stored = _stored_weights(cfg, args.weights, learn=False) if args.weights else None
    board = VirtualBoard(cfg, faults=faults)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)     # kill stops it as cleanly as Ctrl-C
    print(f"virtual-board: {cfg.summary()}: building and starting (Verilator) ...",
          flush=True)
    port = board.start()
    if stored is not None:
        board.load_weights(stored)
        print(f"virtual-board: weights of {args.weights} loaded", flush=True)
    if faults.any():
        print(f"virtual-board: faulty line: {faults.describe()}", flush=True)
    print(f"virtual-board: {port}", flush=True)
    print(f"virtual-board: spikeforge run --port {port} -c {args.config} --weights W ...; "
          f"Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a second Ctrl-C: still stop cleanly
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        board.stop()
    if faults.any():
        print("virtual-board: injected " + ", ".join(
            f"{v} {k.replace('_', ' ')}" for k, v in board.injected.items()), flush=True)
    return 0


def _stored_weights(cfg, path, learn: bool):
    """The stored weight images of ``path``; for learning the fraction bits start at half a
    step (:func:`sw.train.stored_from_inference`, what ``spikeforge train --init`` does)."""
    from spikeforge.sw.train import stored_from_inference
    from spikeforge.sw.weights import load_weights, to_stored

    weights = load_weights(path, cfg)
    return stored_from_inference(cfg, weights) if learn else to_stored(cfg, weights)


def _sample_count(text: str, available: int) -> int:
    if text == "all":
        return available
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= available:
        raise UsageError(f"--samples: {text!r} is out of range, legal: 1 .. {available} or "
                         f"'all'")
    return n


def run_samples(args) -> int:
    from tqdm import tqdm

    from spikeforge.config import load_config
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.host import DEFAULT_BAUD, HostLink, LinkError, SampleLost, SerialTransport

    cfg = load_config(args.config)
    if args.learn and cfg.learning is None:
        raise UsageError(f"--learn: {cfg.name} has no [learning] section")
    data = load_for_config(cfg, args.dataset)
    n = _sample_count(args.samples, len(data.test_labels))
    pixels, labels = data.test_pixels[:n], data.test_labels[:n]
    stored = _stored_weights(cfg, args.weights, args.learn)
    try:
        transport = SerialTransport(args.port, args.baud or DEFAULT_BAUD, timeout=args.timeout)
    except Exception as exc:            # serial.SerialException: no such port, no access
        raise UsageError(f"--port {args.port}: cannot open it ({exc})") from None
    link = HostLink(transport, cfg, retries=args.retries, quiet=min(0.5, args.timeout / 10))
    lr_shift = cfg.learning.lr_shift if args.learn else 0
    results: list = []                  # a RunResult, or the SampleLost, per sample sent
    t0, stop = time.perf_counter(), None
    try:
        try:
            link.check_info()
        except LinkError as exc:
            raise UsageError(f"--port {args.port}: {exc}") from None
        link.load_weights(stored)
        t0 = time.perf_counter()
        with tqdm(total=n, desc="run", unit="sample", dynamic_ncols=True) as bar:
            for x, y in zip(pixels, labels, strict=True):
                try:
                    results.append(link.run(x, label=int(y) if args.learn else None,
                                            lr_shift=lr_shift))
                except SampleLost as lost:
                    results.append(lost)
                    bar.write(f"run: sample {len(results) - 1} lost: {lost}")
                    if all(isinstance(r, SampleLost) for r in results[-LINK_DOWN_AFTER:]) \
                            and len(results) >= LINK_DOWN_AFTER:
                        stop = f"{LINK_DOWN_AFTER} samples lost in a row: the link is down"
                        break
                bar.update()
    except KeyboardInterrupt:
        stop = "interrupted"
    except LinkError as exc:            # a frame other than RUN failed after its retries
        stop = f"link error: {exc}"
    finally:
        seconds = time.perf_counter() - t0
    if stop:
        print(f"run: {stop} after {len(results)} of {n} samples; the report covers them")
    after = None
    if args.learn and stop is None:
        try:
            after = link.read_weights()
        except LinkError as exc:
            print(f"run: the learned weights could not be read back: {exc}")
    outcome = _unknown_outcomes(link, results) if args.learn else None
    transport.close()
    return _report(args, cfg, pixels[:len(results)], labels[:len(results)], stored, results,
                   seconds, after, link.resends, outcome)


def _unknown_outcomes(link, results):
    """For lost training samples the core may or may not have run (``applied`` None): ask
    the sample counter how many did. Returns the list of applied flags per sample (True for
    answered ones), or None when they cannot be told apart."""
    from spikeforge.sw.host import SAMPLE_COUNTER, LinkError, SampleLost

    applied = [True if not isinstance(r, SampleLost) else r.applied for r in results]
    unknown = [i for i, a in enumerate(applied) if a is None]
    if not unknown:
        return applied
    try:
        ran = (link.counters().samples - link.first_samples) % SAMPLE_COUNTER
    except (LinkError, TypeError):          # link down, or no count was ever read
        return None
    extra = ran - sum(1 for a in applied if a)
    if extra not in (0, len(unknown)):
        return None                          # some of them ran, which ones is not known
    for i in unknown:
        applied[i] = extra > 0
    return applied


def _report(args, cfg, pixels, labels, stored, results, seconds, after, resends,
            outcome) -> int:
    from pathlib import Path

    from spikeforge.sw.host import SampleLost
    from spikeforge.sw.weights import save_weights

    answered = [i for i, r in enumerate(results) if not isinstance(r, SampleLost)]
    lost = [i for i, r in enumerate(results) if isinstance(r, SampleLost)]
    if not answered:
        print(f"run: no sample answered ({len(lost)} lost)")
        return LOST_EXIT if lost else 1
    cycles = np.array([results[i].cycles for i in answered])
    preds = np.array([results[i].prediction for i in answered])
    mhz = args.clock_mhz or BOARDS[args.board].target_mhz
    print(f"run: {cfg.name} on {args.port}: {len(answered)} samples answered, accuracy "
          f"{100 * float(np.mean(preds == labels[answered])):.2f}%")
    print(f"run: over the link {len(results) / seconds:.2f} samples/s, "
          f"{1e6 * seconds / len(results):.0f} µs per sample; the core's own median "
          f"{int(np.median(cycles))} cycles = {np.median(cycles) / mhz:.1f} µs at {mhz:g} MHz")
    fate = {True: "ran, answer lost", False: "not run", None: "unknown whether it ran"}
    if resends or lost:
        print(f"run: link: {resends} frames sent again; {len(lost)} samples lost"
              + (": " + ", ".join(f"{i} ({fate[results[i].applied]})" for i in lost)
                 if lost else ""))
    if args.learn and after is not None:
        out = Path(args.weights).with_suffix(".board.npz")
        save_weights(out, cfg, [w >> cfg.frac_bits for w in after])
        print(f"run: learned weights read back, inference part saved in {out}")
    status = LOST_EXIT if lost or (args.learn and after is None) else 0
    if args.learn and after is None:
        print("run: the learned weights were not read back: they are not compared")
    if not args.check_golden:
        return status
    if args.learn and outcome is None:
        print("run: check against the golden model: not possible, it is not known which of "
              "the lost training samples ran")
        return LOST_EXIT
    result = _check_golden(cfg, stored, pixels, labels, results, after, outcome)
    print(result.summary_line())
    if not result.ok:
        for line in [result.first_divergence, *result.details[:20]]:
            print(f"run: mismatch: {line}")
    mismatches = (result.spike_mismatches + result.cycle_mismatches
                  + result.prediction_mismatches + (result.weight_mismatches or 0))
    print(f"run: check against the golden model: {len(answered)} samples answered"
          + (f" ({len(lost)} lost, not compared)" if lost else "")
          + f", {mismatches} mismatches")
    return 1 if not result.ok else status


def _check_golden(cfg, stored, pixels, labels, results, after, applied):
    """The board's answers against the golden model, by :mod:`sim.compare` (the form of
    ``spikeforge compare``). The board shows the output population and, after training, the
    last weights only: the other populations, the weights after the earlier samples and the
    lost samples' answers are not observed and enter as the golden ones. ``applied``: per
    sample, whether the core ran it (training; None for inference, where lost samples are
    left out): the golden model trains on exactly the samples the core ran."""
    from types import SimpleNamespace

    from spikeforge.sim.compare import compare_runs, compare_training
    from spikeforge.sw.desire import inference_weights, train_steps
    from spikeforge.sw.golden import run_network
    from spikeforge.sw.host import SampleLost

    def board_view(kept, gold_cycles, gold_predictions, gold_rasters):
        """The board's answers for the samples ``kept``; a lost one's are the golden ones."""
        cycles = np.array(gold_cycles, dtype=np.int64)
        predictions = np.array(gold_predictions)
        out = gold_rasters[-1].copy()
        for b, i in enumerate(kept):
            if not isinstance(results[i], SampleLost):
                cycles[b], predictions[b] = results[i].cycles, results[i].prediction
                out[b] = results[i].raster(cfg.time_steps, cfg.layers[-1])
        return SimpleNamespace(cycles=cycles, edges=cycles, predictions=predictions,
                               rasters=[*gold_rasters[:-1], out])

    if applied is None:                      # inference: the answered samples
        kept = [i for i, r in enumerate(results) if not isinstance(r, SampleLost)]
        gold = run_network(cfg, inference_weights(cfg, stored), pixels[kept])
        return compare_runs(gold, board_view(kept, gold.cycles, gold.predictions,
                                             gold.rasters))
    kept = [i for i, a in enumerate(applied) if a]
    steps = train_steps(cfg, stored, pixels[kept], labels[kept])
    gold = SimpleNamespace(
        rasters=[np.concatenate([s.run.rasters[p] for s in steps])
                 for p in range(cfg.n_layers + 1)],
        predictions=np.concatenate([s.run.predictions for s in steps]),
        cycles=np.array([s.cycles for s in steps], dtype=np.int64))
    board = board_view(kept, gold.cycles, gold.predictions, gold.rasters)
    if after is None:                        # not read back: spikes and cycles only
        return compare_runs(gold, board)
    board.weights_after = [s.weights for s in steps[:-1]] + [after]
    return compare_training(steps, board)
