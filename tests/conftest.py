"""pytest set-up: the hypothesis profile of the randomized tests, the ``deep`` tier's option,
and the coverage report of the randomized runs at the end of the run.

* Hypothesis runs derandomized (the same examples in every run, CI reproducible) unless a
  seed is given: ``--hypothesis-seed=N`` or ``SPIKEFORGE_SEED=N``; no example database.
* ``-m deep`` selects the deep tier (hundreds of random configs; deselected by default, see
  pyproject's ``addopts``).
* ``--sim icarus`` runs the cocotb regressions (``sim`` fixture) on Icarus Verilog instead of
  Verilator.
* The randomized runs count what they exercised (:data:`sim.random_cases.COVERAGE`); pytest
  -xdist workers hand their counts to the controller, which prints the report.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

from spikeforge.sim.random_cases import COVERAGE

COVERAGE_KEY = "spikeforge_random_coverage"


def pytest_addoption(parser):
    parser.addoption("--sim", choices=("verilator", "icarus"), default="verilator",
                     help="simulator of the cocotb regressions (default: verilator)")


@pytest.fixture
def sim(request):
    """The simulator the cocotb regressions run on (``--sim``)."""
    name = request.config.getoption("--sim")
    if name == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog (iverilog) is not installed")
    return name


def pytest_configure(config):
    seeded = (config.getoption("hypothesis_seed", None) is not None
              or os.environ.get("SPIKEFORGE_SEED"))
    settings.register_profile(
        "spikeforge", derandomize=not seeded, deadline=None, database=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("spikeforge")


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:                 # an xdist worker: hand the counts over
        workeroutput[COVERAGE_KEY] = json.dumps(COVERAGE.as_dict())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    data = getattr(node, "workeroutput", {}).get(COVERAGE_KEY)
    if data:
        COVERAGE.merge(json.loads(data))


def pytest_terminal_summary(terminalreporter):
    lines = COVERAGE.report()
    if lines:
        terminalreporter.section("randomized equivalence coverage (counted from the runs)")
        for line in lines:
            terminalreporter.write_line(line)
