"""cocotb testbench for the TTFS core (``hw.ttfs_network.TTFSNetwork``).

Driven by a job file (``SPIKEFORGE_JOB``, written by :func:`sim.ttfs_rtl.run_ttfs_rtl`):
the fan-in list words and lengths of every lane, the pixels of every sample and whether
they train. Per sample it records the input and output spike times, the winners, the
hardware's cycle counter and the clock edges from ``start`` to ``done`` (counted here), and
after training samples every lane's list lengths and list entries; all go to
``SPIKEFORGE_RESULT``.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from spikeforge.sim.tb_network import write_port

MAX_CYCLES_PER_SAMPLE = 50_000_000


async def reset(dut):
    dut.rst.value = 1
    for name in ("start", "learn", "px_we", "syn_we", "len_we", "px_addr", "px_data",
                 "syn_addr", "syn_wdata", "len_addr", "len_wdata", "host_lane", "out_addr",
                 "in_addr", "win_sel"):
        getattr(dut, name).value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def read_port(dut, addr, data, addresses):
    """Values of ``data`` one cycle after each address (synchronous read ports)."""
    values = []
    for a in addresses:
        addr.value = int(a)
        await RisingEdge(dut.clk)
        await ReadOnly()
        values.append(int(data.value))
        await FallingEdge(dut.clk)
    return values


async def load_lists(dut, lanes, words, lengths):
    for p in range(lanes):
        dut.host_lane.value = p
        await write_port(dut, dut.syn_we, dut.syn_addr, dut.syn_wdata, words[p])
        await write_port(dut, dut.len_we, dut.len_addr, dut.len_wdata, lengths[p])


async def read_lists(dut, lanes, n_in, n_local):
    """Every lane's list lengths and the entries inside them (flat, as stored)."""
    lengths, entries = [], []
    await FallingEdge(dut.clk)
    for p in range(lanes):
        dut.host_lane.value = p
        lens = await read_port(dut, dut.len_addr, dut.len_rdata, range(n_local[p]))
        addrs = [n * n_in + s for n in range(n_local[p]) for s in range(lens[n])]
        lengths.append(lens)
        entries.append(await read_port(dut, dut.syn_addr, dut.syn_rdata, addrs))
    return lengths, entries


@cocotb.test()
async def run_job(dut):
    job = np.load(os.environ["SPIKEFORGE_JOB"], allow_pickle=False)
    n_in, n_out, lanes, winners = (int(x) for x in job["dims"])
    n_local = [len(range(p, n_out, lanes)) for p in range(lanes)]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)
    await load_lists(dut, lanes, [[int(w) for w in job[f"words{p}"]] for p in range(lanes)],
                     [[int(n) for n in job[f"lengths{p}"]] for p in range(lanes)])
    pixels, learn = job["pixels"], job["learn"]
    batch = len(pixels)
    t_in = np.zeros((batch, n_in), dtype=np.int64)
    t_out = np.zeros((batch, n_out), dtype=np.int64)
    won = np.full((batch, winners), -1, dtype=np.int64)
    edges = np.zeros(batch, dtype=np.int64)
    cycles = np.zeros(batch, dtype=np.int64)
    after = {}
    for b in range(batch):
        await RisingEdge(dut.clk)
        await write_port(dut, dut.px_we, dut.px_addr, dut.px_data, pixels[b])
        dut.learn.value = int(learn[b])
        dut.start.value = 1
        await RisingEdge(dut.clk)             # this edge samples start
        dut.start.value = 0
        dut.learn.value = 0
        while True:
            await ReadOnly()
            if dut.done.value:
                break
            await RisingEdge(dut.clk)
            edges[b] += 1
            if edges[b] > MAX_CYCLES_PER_SAMPLE:
                raise TimeoutError("done never rose")
        cycles[b] = int(dut.cycles.value)
        await FallingEdge(dut.clk)
        t_in[b] = await read_port(dut, dut.in_addr, dut.in_time, range(n_in))
        for p in range(lanes):
            dut.host_lane.value = p
            t_out[b, p::lanes] = await read_port(dut, dut.out_addr, dut.out_time,
                                                 range(n_local[p]))
        for q in range(winners):
            dut.win_sel.value = q
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.win_valid.value:
                won[b, q] = int(dut.win_index.value)
            await FallingEdge(dut.clk)
        if learn[b]:
            lengths, entries = await read_lists(dut, lanes, n_in, n_local)
            for p in range(lanes):
                after[f"after{b}_len{p}"] = np.array(lengths[p], dtype=np.int64)
                after[f"after{b}_words{p}"] = np.array(entries[p], dtype=np.int64)
        if "SPIKEFORGE_PROGRESS" in os.environ:
            with open(os.environ["SPIKEFORGE_PROGRESS"], "w") as f:
                f.write(str(b + 1))
    np.savez(os.environ["SPIKEFORGE_RESULT"], t_in=t_in, t_out=t_out, winners=won,
             edges=edges, cycles=cycles, **after)
