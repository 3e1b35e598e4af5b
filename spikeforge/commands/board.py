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


def register(sub) -> None:
    p = sub.add_parser("virtual-board", help="run the Verilated board top (UART, host link, "
                       "network) behind a pseudo-terminal for spikeforge run --port")
    add_config(p)
    p.set_defaults(func=run_virtual_board)

    p = sub.add_parser("run", help="run a test set on a board (or a virtual board) over its "
                       "serial port: accuracy, speed, optional check against the golden model")
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
    p.set_defaults(func=run_samples)


def run_virtual_board(args) -> int:
    from spikeforge.config import load_config
    from spikeforge.sim.virtual_board import VirtualBoard

    cfg = load_config(args.config)
    board = VirtualBoard(cfg)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)     # kill stops it as cleanly as Ctrl-C
    print(f"virtual-board: {cfg.summary()}: building and starting (Verilator) ...",
          flush=True)
    port = board.start()
    print(f"virtual-board: {port}", flush=True)
    print(f"virtual-board: spikeforge run --port {port} -c {args.config} --weights W ...; "
          f"Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
    return 0


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
    from spikeforge.sw.host import DEFAULT_BAUD, HostLink, LinkError, SerialTransport
    from spikeforge.sw.weights import load_weights, to_stored

    cfg = load_config(args.config)
    if args.learn and cfg.learning is None:
        raise UsageError(f"--learn: {cfg.name} has no [learning] section")
    data = load_for_config(cfg, args.dataset)
    n = _sample_count(args.samples, len(data.test_labels))
    pixels, labels = data.test_pixels[:n], data.test_labels[:n]
    weights = load_weights(args.weights, cfg)
    stored = to_stored(cfg, weights)
    if args.learn:
        offset = (1 << cfg.frac_bits) >> 1
        stored = [w + offset for w in stored]
    try:
        transport = SerialTransport(args.port, args.baud or DEFAULT_BAUD, timeout=30.0)
    except Exception as exc:            # serial.SerialException: no such port, no access
        raise UsageError(f"--port {args.port}: cannot open it ({exc})") from None
    link = HostLink(transport, cfg)
    lr_shift = cfg.learning.lr_shift if args.learn else 0
    results, t0 = [], time.perf_counter()
    try:
        try:
            link.check_info()
        except LinkError as exc:
            raise UsageError(f"--port {args.port}: {exc}") from None
        link.load_weights(stored)
        t0 = time.perf_counter()
        with tqdm(total=n, desc="run", unit="sample", dynamic_ncols=True) as bar:
            for x, y in zip(pixels, labels, strict=True):
                results.append(link.run(x, label=int(y) if args.learn else None,
                                        lr_shift=lr_shift))
                bar.update()
    except KeyboardInterrupt:
        print(f"run: interrupted after {len(results)} of {n} samples; the report covers them")
    finally:
        seconds = time.perf_counter() - t0
    after = link.read_weights() if args.learn and len(results) == n else None
    transport.close()
    return _report(args, cfg, pixels[:len(results)], labels[:len(results)], stored, results,
                   seconds, after)


def _report(args, cfg, pixels, labels, stored, results, seconds, after) -> int:
    from pathlib import Path

    from spikeforge.sw.weights import save_weights

    done = len(results)
    if done == 0:
        print("run: no sample answered")
        return 1
    cycles = np.array([r.cycles for r in results])
    preds = np.array([r.prediction for r in results])
    mhz = args.clock_mhz or BOARDS[args.board].target_mhz
    print(f"run: {cfg.name} on {args.port}: {done} samples, accuracy "
          f"{100 * float(np.mean(preds == labels)):.2f}%")
    print(f"run: over the link {done / seconds:.2f} samples/s, {1e6 * seconds / done:.0f} µs "
          f"per sample; the core's own median {int(np.median(cycles))} cycles = "
          f"{np.median(cycles) / mhz:.1f} µs at {mhz:g} MHz")
    if args.learn and after is not None:
        out = Path(args.weights).with_suffix(".board.npz")
        save_weights(out, cfg, [w >> cfg.frac_bits for w in after])
        print(f"run: learned weights read back, inference part saved in {out}")
    if not args.check_golden:
        return 0
    result = _check_golden(cfg, stored, pixels, labels, results, after, args.learn)
    print(result.summary_line())
    if not result.ok:
        for line in [result.first_divergence, *result.details[:20]]:
            print(f"run: mismatch: {line}")
    mismatches = (result.spike_mismatches + result.cycle_mismatches
                  + result.prediction_mismatches + (result.weight_mismatches or 0))
    print(f"run: check against the golden model: {done} samples, {mismatches} mismatches")
    return 0 if result.ok else 1


def _check_golden(cfg, stored, pixels, labels, results, after, learn):
    """The board's answers against the golden model, by :mod:`sim.compare` (the form of
    ``spikeforge compare``). The board shows the output population and, after training, the
    last weights only: the other populations and the weights after the earlier samples are
    not observed and enter as the golden ones."""
    from types import SimpleNamespace

    from spikeforge.sim.compare import compare_runs, compare_training
    from spikeforge.sw.desire import inference_weights, train_steps
    from spikeforge.sw.golden import run_network

    cycles = np.array([r.cycles for r in results], dtype=np.int64)
    board = SimpleNamespace(
        cycles=cycles, edges=cycles, predictions=np.array([r.prediction for r in results]),
        rasters=np.stack([r.raster(cfg.time_steps, cfg.layers[-1]) for r in results]))
    if not learn:
        gold = run_network(cfg, inference_weights(cfg, stored), pixels)
        board.rasters = [*gold.rasters[:-1], board.rasters]
        return compare_runs(gold, board)
    steps = train_steps(cfg, stored, pixels, labels)
    board.rasters = [*(np.concatenate([s.run.rasters[p] for s in steps])
                       for p in range(cfg.n_layers)), board.rasters]
    last = steps[-1].weights if after is None else after     # not read back: interrupted
    board.weights_after = [s.weights for s in steps[:-1]] + [last]
    return compare_training(steps, board)
