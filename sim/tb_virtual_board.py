"""cocotb testbench of ``spikeforge virtual-board``: the Verilated serial top (UART, host link,
network: the RTL the bitstream is built from) behind a pseudo-terminal.

The testbench opens a pty pair in raw mode, writes the path of its slave side to the file
named by the job (``pty_file``) and then, every byte time of the simulated UART, moves the
bytes a program wrote to that terminal into the UART receiver model and the bytes the RTL's
UART sent back to the terminal. The board runs at Verilator speed, not at the UART's real
time. It stops when the file ``stop_file`` appears.

With the job's ``fault_*`` entries (:class:`sim.virtual_board.FaultSpec`) the bytes pass a
faulty line on the way, each direction drawing from one seeded generator: dropped, corrupted,
or swallowed while the cable is out. The result counts what was injected.
"""

from __future__ import annotations

import os
import pty
import signal
import time
import tty
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Timer

from spikeforge.sim.tb_host_link import BYTE_NS, start_serial_top

POLL_BYTES = 4                 # bytes of UART time between two looks at the terminal
STOP_CHECK = 100               # polls between two looks for the stop file


def open_terminal() -> tuple[int, str]:
    """A raw pty pair: the master's descriptor (non-blocking) and the slave's path."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, os.ttyname(slave)


class FaultyLine:
    """What reaches the far end of the line, byte by byte (see the module docstring)."""

    def __init__(self, job):
        self.drop, self.corrupt, self.unplug = (float(job[f"fault_{k}"])
                                                for k in ("drop", "corrupt", "unplug"))
        self.unplug_s = float(job["fault_unplug_s"])
        self.unplug_at = int(job["fault_unplug_at"])
        self.rng = np.random.default_rng(int(job["fault_seed"]))
        self.plugged_at = 0.0                    # monotonic time the cable is back in
        self.seen = 0                            # bytes that reached the line, both ways
        self.counts = {"dropped": 0, "corrupted": 0, "unplugs": 0, "unplugged_bytes": 0}

    def pass_bytes(self, data: bytes) -> bytes:
        if not (self.drop or self.corrupt or self.unplug or self.unplug_at):
            return data
        out = bytearray()
        for byte in data:
            now = time.monotonic()
            self.seen += 1
            if now >= self.plugged_at and (self.seen == self.unplug_at
                                           or self.rng.random() < self.unplug):
                self.plugged_at = now + self.unplug_s
                self.counts["unplugs"] += 1
            if now < self.plugged_at:
                self.counts["unplugged_bytes"] += 1
                continue
            draw = self.rng.random()
            if draw < self.drop:
                self.counts["dropped"] += 1
            elif draw < self.drop + self.corrupt:
                self.counts["corrupted"] += 1
                out.append(byte ^ int(self.rng.integers(1, 256)))
            else:
                out.append(byte)
        return bytes(out)


def read_available(master: int) -> bytes:
    try:
        return os.read(master, 4096)
    except (BlockingIOError, OSError):    # nothing written, or no program has it open
        return b""


@cocotb.test()
async def virtual_board(dut):
    job = np.load(os.environ["SPIKEFORGE_JOB"], allow_pickle=False)
    # Ctrl-C in a shell reaches the whole process group: the board stops through its stop
    # file (spikeforge virtual-board catches the Ctrl-C), so that its result comes back
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    source, sink = await start_serial_top(dut)

    master, path = open_terminal()
    Path(str(job["pty_file"])).write_text(path)
    stop = Path(str(job["stop_file"]))
    line = FaultyLine(job)
    polls = 0
    while True:
        await Timer(POLL_BYTES * BYTE_NS, unit="ns")
        data = line.pass_bytes(read_available(master))
        if data:
            await source.write(data)
        if sink.count():
            data = line.pass_bytes(bytes(sink.read_nowait(sink.count())))
            if data:
                os.write(master, data)
        polls += 1
        if polls % STOP_CHECK == 0 and stop.exists():
            break
    os.close(master)
    np.savez(os.environ["SPIKEFORGE_RESULT"], polls=polls, **line.counts)
