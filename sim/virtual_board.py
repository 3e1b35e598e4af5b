"""The virtual board: the Verilated serial top behind a pseudo-terminal (``sim/tb_virtual_board``),
run in a background thread until :meth:`VirtualBoard.stop`; optionally a faulty line between
the terminal and the UART (:class:`FaultSpec`)."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeforge.sim.rtl import DEFAULT_BUILD_ROOT, simulate
from spikeforge.sim.toolchain import ToolchainError

START_TIMEOUT_S = 900      # a first Verilator build of a large config takes minutes


@dataclass(frozen=True)
class FaultSpec:
    """A faulty line between the terminal and the board's UART, both directions, seeded.

    Per byte: with probability ``drop`` it is lost, with ``corrupt`` it arrives XORed with a
    random non-zero byte, and with ``unplug`` the cable is pulled: for ``unplug_s`` seconds
    (wall clock) no byte passes either way, while the board runs on. ``unplug_at = N > 0``
    also pulls it when the N-th byte (both ways counted) reaches the line. Written as
    ``drop=0.002,corrupt=0.002,unplug=0.0005,unplug_s=1,seed=1`` (any subset).
    """
    drop: float = 0.0
    corrupt: float = 0.0
    unplug: float = 0.0
    unplug_s: float = 1.0
    unplug_at: int = 0
    seed: int = 0

    RANGES = {"drop": "[0, 0.5]", "corrupt": "[0, 0.5]", "unplug": "[0, 0.5]",
              "unplug_s": "(0, 60]", "unplug_at": "[0, 2**40)", "seed": "[0, 2**32)"}

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """``key=value`` pairs joined by commas; a clear :class:`ValueError` naming the key
        and its legal range otherwise."""
        values, names = {}, [f.name for f in dataclasses.fields(cls)]
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise ValueError(f"fault {item!r}: expected KEY=VALUE with KEY one of "
                                 f"{', '.join(names)}")
            try:
                values[key] = int(value) if key in ("seed", "unplug_at") else float(value)
            except ValueError:
                raise ValueError(f"fault {key}: {value!r} is not a number, legal range "
                                 f"{cls.RANGES[key]}") from None
        spec = cls(**values)
        legal = {"drop": 0 <= spec.drop <= 0.5, "corrupt": 0 <= spec.corrupt <= 0.5,
                 "unplug": 0 <= spec.unplug <= 0.5, "unplug_s": 0 < spec.unplug_s <= 60,
                 "unplug_at": 0 <= spec.unplug_at < 1 << 40, "seed": 0 <= spec.seed < 1 << 32}
        for key, ok in legal.items():
            if not ok:
                raise ValueError(f"fault {key} = {getattr(spec, key)} is out of range, legal "
                                 f"range {cls.RANGES[key]}")
        return spec

    def any(self) -> bool:
        return bool(self.drop or self.corrupt or self.unplug or self.unplug_at)

    def describe(self) -> str:
        at = f" and at byte {self.unplug_at}" if self.unplug_at else ""
        return (f"drop {self.drop:g}, corrupt {self.corrupt:g}, unplug {self.unplug:g} per "
                f"byte{at} for {self.unplug_s:g} s, seed {self.seed}")


class VirtualBoard:
    """Start with :meth:`start`; ``port`` is the terminal to open (``/dev/pts/N``).
    ``faults``: a faulty line (:class:`FaultSpec`); after :meth:`stop`, ``injected`` counts
    what it did (``dropped``, ``corrupted``, ``unplugs``, ``unplugged_bytes``)."""

    def __init__(self, cfg, *, faults: FaultSpec | None = None,
                 build_root: Path = DEFAULT_BUILD_ROOT):
        self.cfg = cfg
        self.faults = faults or FaultSpec()
        self.injected: dict[str, int] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="spikeforge-vboard-")
        folder = Path(self._dir.name)
        self._pty_file, self._stop_file = folder / "pty", folder / "stop"
        self._build_root = build_root
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port: str | None = None

    def _run(self) -> None:
        job = {"pty_file": np.array(str(self._pty_file)),
               "stop_file": np.array(str(self._stop_file)),
               **{f"fault_{k}": np.array(v) for k, v in dataclasses.asdict(self.faults).items()}}
        try:
            result = simulate(self.cfg, job, "spikeforge.sim.tb_virtual_board", top="serial",
                              build_root=self._build_root)
            self.injected = {k: int(v) for k, v in result.items() if k != "polls"}
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

    def load_weights(self, stored) -> None:
        """Write the stored weight images through the board's own link (resending what a
        faulty line breaks), as a host would before its first sample."""
        from spikeforge.sw.host import HostLink, SerialTransport

        transport = SerialTransport(self.port, timeout=30.0)
        try:
            HostLink(transport, self.cfg, retries=10).load_weights(stored)
        finally:
            transport.close()

    def stop(self) -> None:
        self._stop_file.touch()
        self._thread.join()
        self._dir.cleanup()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
