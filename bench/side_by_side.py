"""Run a few measurements side by side, one process each, with their progress on stdout."""

from __future__ import annotations

import multiprocessing as mp
import sys
import time


def _worker(name, fn, args, queue, results):
    results[name] = fn(args, queue)
    queue.put(None)


def run_side_by_side(jobs: dict, args) -> dict | None:
    """``jobs`` maps a name to ``fn(args, queue) -> result`` (module-level or a partial of
    one); each runs in its own process and may ``queue.put(text)`` progress lines, printed
    with the wall time. Returns ``{name: result}``, or ``None`` if a worker failed."""
    t0 = time.perf_counter()
    with mp.Manager() as manager:
        queue, results = manager.Queue(), manager.dict()
        procs = [mp.Process(target=_worker, args=(name, fn, args, queue, results))
                 for name, fn in jobs.items()]
        for p in procs:
            p.start()
        running = len(procs)
        while running:
            msg = queue.get()
            if msg is None:
                running -= 1
            else:
                print(f"[{time.perf_counter() - t0:6.0f} s] {msg}", flush=True)
        for p in procs:
            p.join()
            if p.exitcode:
                print(f"a worker failed (exit {p.exitcode})", file=sys.stderr)
                return None
        return dict(results)
