"""``spikeforge sweep SPEC.toml``: a design-space sweep on Dask (:mod:`spikeforge.sweep`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spikeforge.commands.common import UsageError, int_at_least


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run every point of a sweep spec (axes x tasks) on a "
                       "Dask LocalCluster or a cluster's scheduler; table, Pareto plot, "
                       "summary",
                       epilog="Finished points are kept in OUT/records.jsonl, keyed by the "
                       "point's full config, settings, tasks and tool versions: running the "
                       "spec again skips them and retries failed ones. Workers on other "
                       "machines: `dask scheduler` on one, `dask worker ADDRESS` on each "
                       "(spikeforge installed), then --scheduler ADDRESS.")
    p.add_argument("spec", help="sweep spec (TOML): base, tasks, [axes], [run]")
    p.add_argument("--out", help="output folder (default: out/sweep/<spec name>)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786); default: a LocalCluster")
    p.add_argument("--workers", type=int_at_least(1),
                   help="LocalCluster worker processes (default: the CPU count)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from spikeforge.config import ConfigError
    from spikeforge.sweep import (
        load_spec,
        pending,
        plan,
        read_records,
        run_sweep,
        write_results,
    )

    try:
        spec = load_spec(args.spec)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    out = Path(args.out or Path("out/sweep") / Path(args.spec).stem)
    t0 = time.perf_counter()
    known = read_records(out / "records.jsonl")
    points = plan(spec)
    todo = len(pending(points, known))
    print(f"sweep: {spec.base}, {len(points)} points ({todo} to run), tasks "
          f"{', '.join(spec.tasks)}; records in {out / 'records.jsonl'}", flush=True)
    ran = []
    with tqdm(total=todo, desc="sweep", unit="point", dynamic_ncols=True,
              disable=not todo) as bar:
        def progress(done, total, record):
            if record["error"]:
                bar.write(f"sweep: point {record['point']} failed: {record['error']}")
            ran.append(record)
            bar.update()

        try:
            records = run_sweep(spec, out, scheduler=args.scheduler, workers=args.workers,
                                progress=progress)
        except KeyboardInterrupt:
            known = read_records(out / "records.jsonl")
            records = [known[key] for key, _, _ in points if key in known]
            write_results(spec, records, out)
            print(f"sweep: interrupted: {len(records)} of {len(points)} points recorded; "
                  f"the same command goes on from there")
            return 130
    wall = time.perf_counter() - t0
    files = write_results(spec, records, out)
    failed = sum(1 for r in records if r["error"])
    print(f"sweep: {len(records)} points, {failed} failed, {wall:.1f} s; "
          + ", ".join(str(p) for p in files.values()))
    busy = sum(r["metrics"].get("point_seconds", 0) for r in ran)
    if busy and args.scheduler is None:
        workers = args.workers or os.cpu_count() or 1
        print(f"sweep: {len(ran)} points ran: their own times sum to {busy:.1f} s; on "
              f"{workers} workers the wall time is {wall / (busy / workers):.2f} x that sum "
              f"/ workers (start-up, imports, idle workers at the end)")
    return 1 if failed else 0
