"""The virtual board: the Verilated serial top behind a pseudo-terminal (``sim/tb_virtual_board``),
run in a background thread until :meth:`VirtualBoard.stop`."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from spikeforge.sim.rtl import DEFAULT_BUILD_ROOT, simulate
from spikeforge.sim.toolchain import ToolchainError

START_TIMEOUT_S = 900      # a first Verilator build of a large config takes minutes


class VirtualBoard:
    """Start with :meth:`start`; ``port`` is the terminal to open (``/dev/pts/N``)."""

    def __init__(self, cfg, *, build_root: Path = DEFAULT_BUILD_ROOT):
        self.cfg = cfg
        self._dir = tempfile.TemporaryDirectory(prefix="spikeforge-vboard-")
        folder = Path(self._dir.name)
        self._pty_file, self._stop_file = folder / "pty", folder / "stop"
        self._build_root = build_root
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port: str | None = None

    def _run(self) -> None:
        job = {"pty_file": np.array(str(self._pty_file)),
               "stop_file": np.array(str(self._stop_file))}
        try:
            simulate(self.cfg, job, "spikeforge.sim.tb_virtual_board", top="serial",
                     build_root=self._build_root)
        except BaseException as exc:       # reported by start() or stop()
            self._error = exc

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Build (once per config) and start the board; return its terminal's path."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._pty_file.exists():
            if not self._thread.is_alive():
                raise ToolchainError(f"the virtual board did not start: {self._error}")
            if time.monotonic() > deadline:
                self.stop()
                raise ToolchainError(f"the virtual board did not start in {timeout:.0f} s")
            time.sleep(0.1)
        time.sleep(0.05)                   # the path is written in one call, but be sure
        self.port = self._pty_file.read_text().strip()
        return self.port

    def stop(self) -> None:
        self._stop_file.touch()
        self._thread.join()
        self._dir.cleanup()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
