"""cocotb testbench for ``spikeforge_top``: load weights and pixels, run samples, record spikes.

Driven by a job file (``SPIKEFORGE_JOB``, written by :func:`sim.rtl.run_rtl`) holding the
packed weight words, the pixels of every sample and the network's dimensions. For every
sample it records each spike of every population from the probe ports (step, neuron), the
hardware's cycle counter, the clock edges between ``start`` and ``done`` (measured by the
testbench itself) and the prediction, and writes them to ``SPIKEFORGE_RESULT``.

The readout stream (``events``) is drained all along by a coroutine that drops ``ready`` at
random (seeded, about half the cycles): every item received is recorded (``stream``, one row
``(end, step, neuron, count)`` per item) with the sticky ``readout_overflow``. After each
sample the testbench waits for that sample's end item.

Training jobs (``labels`` in the job) run every sample with ``learn`` high, its label and
the job's ``lr_shift``, and read every weight word back after each sample.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from spikeforge.timing import WEIGHT_READ_LATENCY

MAX_CYCLES_PER_SAMPLE = 50_000_000
STREAM_SEED = 2024

#: Inputs of every core top (:class:`hw.network.Network`), held at 0 from reset on.
INPUTS = ("start", "px_we", "w_we", "px_addr", "px_data", "w_addr", "w_wdata", "w_layer",
          "count_sel")
#: Inputs only some configs have: ``[learning]`` ones, and ``encoding.event_input`` ones
#: (the stored input raster; this testbench runs every sample from its pixels).
OPTIONAL_INPUTS = ("learn", "label", "lr_shift",
                   "from_raster", "raster_step", "raster_index", "raster_set", "raster_clear",
                   "decode", "score_sel")


async def drain_events(dut, items, steps, n_out):
    """Take every readout item, with random back-pressure, forever."""
    import random

    from spikeforge.hw.events import index_width

    rng = random.Random(STREAM_SEED)
    ws, wn = index_width(steps), index_width(n_out)
    while True:
        await FallingEdge(dut.clk)          # valid/payload are settled between the edges
        ready = rng.random() < 0.5
        dut.readout__ready.value = ready
        valid = bool(dut.readout__valid.value)
        word = int(dut.readout__payload.value) if valid else 0
        await RisingEdge(dut.clk)           # the handshake happens on this edge
        if valid and ready:
            items.append((word & 1, (word >> 1) & ((1 << ws) - 1),
                          (word >> (1 + ws)) & ((1 << wn) - 1), word >> (1 + ws + wn)))


async def reset(dut):
    """Hold reset for three edges with every input at 0 (the optional ones where the top
    has them)."""
    dut.rst.value = 1
    for name in INPUTS:
        getattr(dut, name).value = 0
    for name in OPTIONAL_INPUTS:
        if hasattr(dut, name):
            getattr(dut, name).value = 0
    dut.readout__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def write_port(dut, we, addr, data, values):
    """Write ``values`` to consecutive addresses through one (we, addr, data) port."""
    we.value = 1
    for a, value in enumerate(values):
        addr.value = a
        data.value = int(value)
        await RisingEdge(dut.clk)
    we.value = 0


async def load_words(dut, words_per_layer):
    for layer, words in enumerate(words_per_layer):
        dut.w_layer.value = layer
        await write_port(dut, dut.w_we, dut.w_addr, dut.w_wdata, words)


async def read_words(dut, layer, depth):
    """Read back one layer's weight words through the weight port."""
    dut.w_layer.value = layer
    words = []
    for addr in range(depth):
        dut.w_addr.value = addr
        for _ in range(WEIGHT_READ_LATENCY):    # address register, then the read port
            await RisingEdge(dut.clk)
        await ReadOnly()
        words.append(int(dut.w_rdata.value))
        await FallingEdge(dut.clk)
    return words


async def run_sample(dut, pixels, sizes, steps, label=None, lr_shift=0, decode=False):
    await write_port(dut, dut.px_we, dut.px_addr, dut.px_data, pixels)
    if hasattr(dut, "decode"):
        dut.decode.value = int(decode)
    if label is not None:
        dut.learn.value = 1
        dut.label.value = int(label)
        dut.lr_shift.value = int(lr_shift)
    spikes = [[] for _ in sizes]
    valid = [getattr(dut, f"probe{pop}_valid") for pop in range(len(sizes))]
    index = [getattr(dut, f"probe{pop}_index") for pop in range(len(sizes))]
    dut.start.value = 1
    await RisingEdge(dut.clk)               # this edge samples start
    dut.start.value = 0
    if label is not None:
        dut.learn.value = 0
    edges = 0
    while True:
        await ReadOnly()                    # settled values of the cycle after the edge
        if dut.done.value:
            break
        step = int(dut.probe_step.value)
        for pop, v in enumerate(valid):
            if v.value:
                spikes[pop].append((step, int(index[pop].value)))
        await RisingEdge(dut.clk)
        edges += 1
        if edges > MAX_CYCLES_PER_SAMPLE:
            raise TimeoutError("done never rose")
    assert not dut.fifo_overflow.value, "inter-layer FIFO overflowed"
    prediction = int(dut.prediction.value) if dut.prediction_valid.value else -1
    scores = []
    if decode:
        for c in range(sizes[-1]):
            await FallingEdge(dut.clk)
            dut.score_sel.value = c
            await ReadOnly()
            scores.append(dut.score.value.to_signed())
    return spikes, edges, int(dut.cycles.value), prediction, int(dut.steps_run.value), scores


@cocotb.test()
async def run_job(dut):
    job = np.load(os.environ["SPIKEFORGE_JOB"], allow_pickle=False)
    sizes = [int(n) for n in job["sizes"]]
    steps = int(job["steps"])
    n_layers = len(sizes) - 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)
    words = [job[f"words{i}"] for i in range(n_layers)]
    await load_words(dut, [[int(w) for w in ws] for ws in words])
    decode = "decoder_writes" in job.files
    if decode:
        dut.w_layer.value = n_layers
        dut.w_we.value = 1
        for addr, value in job["decoder_writes"]:
            dut.w_addr.value = int(addr)
            dut.w_wdata.value = int(value)
            await RisingEdge(dut.clk)
        dut.w_we.value = 0
    readback_ok = True
    if int(job["readback"]):
        for layer in range(n_layers):
            got = await read_words(dut, layer, len(words[layer]))
            readback_ok &= got == [int(w) for w in words[layer]]
    await RisingEdge(dut.clk)
    pixels = job["pixels"]
    batch = pixels.shape[0]
    rasters = [np.zeros((batch, steps, n), dtype=bool) for n in sizes]
    edges = np.zeros(batch, dtype=np.int64)
    cycles = np.zeros(batch, dtype=np.int64)
    predictions = np.zeros(batch, dtype=np.int64)
    ran = np.zeros(batch, dtype=np.int64)
    scores = np.zeros((batch, sizes[-1]), dtype=np.int64)
    labels = job["labels"] if "labels" in job.files else None
    after = {}                              # training: words of every layer after each sample
    items = []
    cocotb.start_soon(drain_events(dut, items, steps, sizes[-1]))
    for b in range(batch):
        await RisingEdge(dut.clk)
        label = None if labels is None else int(labels[b])
        spikes, edges[b], cycles[b], predictions[b], ran[b], score = await run_sample(
            dut, pixels[b], sizes, steps, label, int(job["lr_shift"]), decode and label is None)
        scores[b, :len(score)] = score
        waited = 0
        while sum(item[0] for item in items) < b + 1:       # this sample's end item
            await RisingEdge(dut.clk)
            waited += 1
            if waited > 100 * steps * sizes[-1] + 1000:
                raise TimeoutError(f"sample {b}: no end item on the readout stream")
        if labels is not None:
            await FallingEdge(dut.clk)
            for layer in range(n_layers):
                got = await read_words(dut, layer, len(words[layer]))
                after[f"after{b}_{layer}"] = np.array([str(w) for w in got])
        if "SPIKEFORGE_PROGRESS" in os.environ:
            with open(os.environ["SPIKEFORGE_PROGRESS"], "w") as f:
                f.write(str(b + 1))
        for pop, events in enumerate(spikes):
            for t, n in events:
                rasters[pop][b, t, n] = True
    np.savez(os.environ["SPIKEFORGE_RESULT"], edges=edges, cycles=cycles,
             predictions=predictions, readback_ok=readback_ok, **after, steps=ran,
             scores=scores,
             stream=np.array(items, dtype=np.int64).reshape(-1, 4),
             readout_overflow=int(dut.readout_overflow.value),
             **{f"raster{pop}": r for pop, r in enumerate(rasters)})
