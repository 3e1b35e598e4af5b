"""cocotb testbench of ``spikeforge virtual-board``: the Verilated serial top (UART, host link,
network: the RTL the bitstream is built from) behind a pseudo-terminal.

The testbench opens a pty pair in raw mode, writes the path of its slave side to the file
named by the job (``pty_file``) and then, every byte time of the simulated UART, moves the
bytes a program wrote to that terminal into the UART receiver model and the bytes the RTL's
UART sent back to the terminal. The board runs at Verilator speed, not at the UART's real
time. It stops when the file ``stop_file`` appears.
"""

from __future__ import annotations

import os
import pty
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


def read_available(master: int) -> bytes:
    try:
        return os.read(master, 4096)
    except (BlockingIOError, OSError):    # nothing written, or no program has it open
        return b""


@cocotb.test()
async def virtual_board(dut):
    job = np.load(os.environ["SPIKEFORGE_JOB"], allow_pickle=False)
    source, sink = await start_serial_top(dut)

    master, path = open_terminal()
    Path(str(job["pty_file"])).write_text(path)
    stop = Path(str(job["stop_file"]))
    polls = 0
    while True:
        await Timer(POLL_BYTES * BYTE_NS, unit="ns")
        data = read_available(master)
        if data:
            await source.write(data)
        if sink.count():
            os.write(master, bytes(sink.read_nowait(sink.count())))
        polls += 1
        if polls % STOP_CHECK == 0 and stop.exists():
            break
    os.close(master)
    np.savez(os.environ["SPIKEFORGE_RESULT"], polls=polls)
