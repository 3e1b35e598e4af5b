"""The wheel, installed as a user would install it: one ``spikeforge`` namespace, its data
inside, and the CLI working from a folder outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# What the code reads at run time: it must travel in the wheel.
PACKAGE_DATA = ["spikeforge/configs/digits-tiny.toml", "spikeforge/configs/mnist-ecp5.toml",
                "spikeforge/constraints/icebreaker.pcf", "spikeforge/constraints/ulx3s-85f.lpf",
                "spikeforge/hw/lint.vlt", "spikeforge/sim/bulk_harness.cpp"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree (setuptools writes build/ and
    *.egg-info where it builds; a copy keeps the checkout clean)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "out", "*.egg-info", "__pycache__", ".pytest_cache",
        ".hypothesis", ".ruff_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(source)], check=True, cwd=out)
    (path,) = out.glob("spikeforge-*.whl")
    return path


def test_wheel_holds_one_namespace_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"spikeforge", f"{wheel.name.split('-py3')[0]}.dist-info"}, top
    for path in PACKAGE_DATA:
        assert path in names, f"{path} is not in the wheel"
    for package in ("hw", "sw", "sim"):
        assert f"spikeforge/{package}/__init__.py" in names


def _run(args, cwd, env, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}")
    return proc


def test_installed_wheel_runs_outside_the_source_tree(wheel, tmp_path):
    """A fresh virtual environment gets the wheel (no editable install, no source tree on
    its path); its dependencies come from this environment's site-packages through a
    ``.pth`` line (the heavy ones, torch and the tool wheels, are not installed twice)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([python, "-c", "import spikeforge.hw, spikeforge.sim, spikeforge.sw; "
                  "print(spikeforge.hw.__file__)"], work, env).stdout.strip()
    assert Path(where).is_relative_to(venv), f"spikeforge.hw imported from {where}"
    for generic in ("hw", "sw", "sim", "configs", "constraints"):
        proc = subprocess.run([python, "-c", f"import {generic}"], cwd=work, env=env,
                              capture_output=True, text=True)
        assert proc.returncode != 0, f"'import {generic}' works: a generic top-level name"

    spikeforge = venv / "bin" / "spikeforge"
    assert "digits-tiny:" in _run([spikeforge, "configs"], work, env).stdout
    _run([spikeforge, "generate", "--config", "digits-tiny", "-o", "gen"], work, env)
    assert (work / "gen" / "spikeforge_top.v").stat().st_size > 0
    # the bulk engine compiles the packaged C++ harness: the package data is used for real
    last = _run([spikeforge, "compare", "--config", "digits-tiny", "--samples", "2",
                 "--seed", "1", "--engine", "bulk", "--quiet"], work, env).stdout
    assert last.strip().splitlines()[-1] == \
        "compare: 2 samples, 0 spike mismatches, 0 cycle mismatches", last
    assert (work / "build" / "sim").is_dir()     # built under the working folder
