"""spikeforge sweep: a spec's points on a 2-worker Dask LocalCluster, each recorded as it
finishes; a re-run skips finished points and retries failed ones; a worker killed mid-point
costs only that point's time (the scheduler gives it to another worker)."""

import json
import os
import signal
import threading
import time

import pytest

from spikeforge import cli
from spikeforge.config import ConfigError
from spikeforge.sweep import load_spec, pareto, plan, read_records, run_sweep, spec_from_dict

SPEC = """
base = "digits-tiny"
tasks = ["cycles", "neurobench", "compare"]
[axes]
lanes = [4, 2]
seed = [0, 1]
[run]
samples = 40
compare_samples = 2
"""


def test_spec_errors_name_the_key_and_the_point(tmp_path):
    with pytest.raises(ConfigError, match="tasks: a non-empty list of train, qat, cycles, com"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["fly"]})
    with pytest.raises(ConfigError, match="unknown key 'axis'"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["cycles"], "axis": {}})
    with pytest.raises(ConfigError, match=r"point \{\"lanes\": 0\}: .*lanes"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["cycles"], "axes": {"lanes": [4, 0]}})
    with pytest.raises(ConfigError, match="axis 'colour' is not a config field"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["cycles"], "axes": {"colour": [1]}})
    with pytest.raises(ConfigError, match=r"point \{\"seed\": -1\}: seed = -1: an integer >= 0"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["cycles"], "axes": {"seed": [0, -1]}})
    with pytest.raises(ConfigError, match="family = 'gowin': one of ecp5, ice40"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["area"], "run": {"family": "gowin"}})
    with pytest.raises(ConfigError, match="run: unknown setting 'epoch'"):
        spec_from_dict({"base": "digits-tiny", "tasks": ["train"], "run": {"epoch": 3}})
    bad = tmp_path / "bad.toml"
    bad.write_text("base = [")
    with pytest.raises(ConfigError, match="not a readable TOML sweep spec"):
        load_spec(bad)
    spec = spec_from_dict({"base": "digits-tiny", "tasks": ["cycles"],
                           "axes": {"learning.lr_shift": [0, 2], "time_steps": [10]}})
    assert spec.points() == [{"learning.lr_shift": 0, "time_steps": 10},
                             {"learning.lr_shift": 2, "time_steps": 10}]
    keys = [key for key, _, _ in plan(spec)]
    assert len(set(keys)) == 2                     # the learning option is in the key


def test_pareto_front():
    def rec(acc, lat, lut):
        return {"error": None, "metrics": {"accuracy": acc, "latency_us": lat, "lut": lut}}

    a, b, c, d = rec(0.9, 10, 100), rec(0.8, 5, 100), rec(0.8, 10, 100), rec(0.9, 10, 50)
    assert pareto([a, b, c, d]) == [b, d]         # c is beaten by b, a by d


def test_sweep_on_two_workers_then_skip_and_retry(tmp_path, capsys):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(spec_file), "--out", str(out), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "4 points (4 to run)" in text and "4 points, 0 failed" in text
    lines = (out / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 4 and all(r["error"] is None for r in records)
    assert all(r["metrics"]["mismatches"] == 0 and r["metrics"]["compare_samples"] == 2
               for r in records)
    by_point = {(r["point"]["lanes"], r["point"]["seed"]): r["metrics"] for r in records}
    # the same spikes at P = 4 and P = 2 (the same weights), fewer cycles with more lanes
    assert by_point[4, 0]["sops"] == by_point[2, 0]["sops"]
    assert by_point[4, 0]["cycles_median"] < by_point[2, 0]["cycles_median"]
    assert by_point[4, 0]["sops"] != by_point[4, 1]["sops"]      # another seed's weights
    assert all(m["nb_effective_acs"] <= m["sops"] and 0 < m["nb_activation_sparsity"] < 1
               for m in by_point.values())
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("lanes,seed,cycles_median") and len(csv_lines) == 5
    assert "Pareto front" in (out / "summary.md").read_text()

    # a finished sweep: nothing runs, and it is quick
    t0 = time.perf_counter()
    assert cli.main(["sweep", str(spec_file), "--out", str(out), "--workers", "2"]) == 0
    assert time.perf_counter() - t0 < 5
    assert "4 points (0 to run)" in capsys.readouterr().out
    assert (out / "records.jsonl").read_text().splitlines() == lines



def test_a_failing_point_is_recorded_and_run_again(tmp_path, monkeypatch):
    """In-process workers (threads), so that a task can be made to fail for one point: the
    sweep records the error and goes on; a re-run runs that point only."""
    from distributed import LocalCluster

    from spikeforge import sweep

    spec = spec_from_dict({"base": "digits-tiny", "tasks": ["cycles"],
                           "axes": {"lanes": [1, 2, 4], "seed": [0]}, "run": {"samples": 10}})
    cycles = sweep.TASK_FUNCTIONS["cycles"]

    def failing(cfg, *args):
        if cfg.lanes == 2:
            raise RuntimeError("the P = 2 point broke")
        return cycles(cfg, *args)

    out = tmp_path / "sweep"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster:
        monkeypatch.setitem(sweep.TASK_FUNCTIONS, "cycles", failing)
        first = run_sweep(spec, out, scheduler=cluster.scheduler_address)
        assert [r["error"] for r in first] == [None, "RuntimeError: the P = 2 point broke", None]
        monkeypatch.setitem(sweep.TASK_FUNCTIONS, "cycles", cycles)
        again = run_sweep(spec, out, scheduler=cluster.scheduler_address)
    assert [r["error"] for r in again] == [None] * 3
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["point"] == {"lanes": 2, "seed": 0}
    assert read_records(out / "records.jsonl")[first[1]["key"]]["metrics"]["cycles_median"] > 0


def test_a_worker_killed_mid_point_loses_only_that_point(tmp_path):
    from distributed import Client, LocalCluster

    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC.replace("lanes = [4, 2]", "lanes = [4]")
                         .replace("seed = [0, 1]", "seed = [2, 3, 4, 5]"))
    spec, out = load_spec(spec_file), tmp_path / "sweep"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        result = {}
        thread = threading.Thread(target=lambda: result.update(
            records=run_sweep(spec, out, scheduler=cluster.scheduler_address)))
        thread.start()
        killed = None
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and thread.is_alive():
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed = busy[0]
            time.sleep(0.05)
        thread.join(600)
    assert killed is not None, "no point was seen running"
    records = result["records"]
    assert len(records) == 4 and all(r["error"] is None for r in records), records
    keys = [json.loads(line)["key"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(r["key"] for r in records)          # each point once
