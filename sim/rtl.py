"""Run samples through the generated Verilog with cocotb (Verilator or Icarus)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from spikeforge.hw.generate import TOP_NAME, generate_verilog
from spikeforge.sim.toolchain import ToolchainError, require_simulator
from spikeforge.sw.weights import pack_words, to_stored, unpack_words

#: Verilator/Icarus builds, one folder per parameter set: ``build/sim`` under the working
#: directory (the repository root in a checkout), or ``$SPIKEFORGE_BUILD_DIR``.
DEFAULT_BUILD_ROOT = Path(os.environ.get("SPIKEFORGE_BUILD_DIR", "build")) / "sim"


@dataclass
class RtlRun:
    """What the RTL did, in the shapes of :class:`sw.golden.NetworkRun`."""

    rasters: list[np.ndarray]
    predictions: np.ndarray
    cycles: np.ndarray          # the hardware's own cycle counter
    edges: np.ndarray           # clock edges from start to done, counted by the testbench
    readback_ok: bool
    weights_after: list[list[np.ndarray]] | None = None   # training: stored weights per sample
    stream: np.ndarray | None = None   # readout stream items (end, step, neuron, count)
    readout_overflow: bool = False
    steps: np.ndarray | None = None    # time steps each sample ran
    scores: np.ndarray | None = None   # decoded runs: the decoder's scores at the exit (B, C)


def build_dir_for(cfg, sim: str, waves: str | None, root: Path = DEFAULT_BUILD_ROOT,
                  top: str = "core") -> Path:
    """One build directory per parameter set (config contents, top, simulator, tracing)."""
    params = {k: v for k, v in asdict(cfg).items() if k != "source"}
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    dump = "" if waves is None else ("-fst" if str(waves).endswith(".fst") else "-vcd")
    kind = "" if top == "core" else f"-{top}"
    return Path(root).absolute() / f"{cfg.name}-{digest}{kind}-{sim}{dump}"


def run_rtl(cfg, weights, pixels, *, sim: str = "verilator", waves: str | None = None,
            build_root: Path = DEFAULT_BUILD_ROOT, readback: bool = False,
            verbose: bool = False, progress=None, labels=None, lr_shift: int | None = None,
            stored: bool = False, decoder=None) -> RtlRun:
    """Generate, build (once per parameter set) and simulate; return every spike and cycle.

    ``waves``: path of an FST (``.fst``) or VCD file to write.
    ``progress``: called with the number of samples finished so far, while it runs.
    ``labels``: train on the samples in order (on-chip desire backpropagation, ``lr_shift``
    defaults to the config's) and read all stored weights back after each one.
    ``stored``: ``weights`` are stored weights (``weight_bits + F`` bits), not inference ones.
    ``decoder``: a :class:`sw.exit_decoder.DecoderWeights` to load into the decoder on the
    chip; the inference samples then run decoded (with its early exit).
    """
    if stored:
        stored_w = [np.asarray(w, dtype=np.int64) for w in weights]
    else:
        stored_w = to_stored(cfg, weights)
    learn = {}
    if labels is not None:
        if cfg.learning is None:
            raise ValueError(f"config {cfg.name!r} has no [learning] section to train with")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(pixels),) or labels.min(initial=0) < 0 \
                or labels.max(initial=0) >= cfg.layers[-1]:
            raise ValueError(f"labels: expected {len(pixels)} labels in "
                             f"[0, {cfg.layers[-1] - 1}]")
        learn = {"labels": labels,
                 "lr_shift": cfg.learning.lr_shift if lr_shift is None else lr_shift}
    pixels = np.asarray(pixels, dtype=np.int64)
    if pixels.ndim != 2 or pixels.shape[1] != cfg.layers[0]:
        raise ValueError(f"pixels: expected shape (B, {cfg.layers[0]}), got {pixels.shape}")
    # words can be wider than 64 bits: stored as decimal strings
    words = {f"words{i}": np.array([str(x) for x in pack_words(cfg, i, w)])
             for i, w in enumerate(stored_w)}
    job = dict(sizes=np.array(cfg.layers), steps=cfg.time_steps, pixels=pixels,
               readback=int(readback), **{"lr_shift": 0, **learn}, **words)
    if decoder is not None:
        from spikeforge.protocol import decoder_words

        job["decoder_writes"] = np.array(decoder_words(cfg, decoder), dtype=np.int64)
    data = simulate(cfg, job, "spikeforge.sim.tb_network", sim=sim, waves=waves,
                    build_root=build_root, verbose=verbose, progress=progress)
    after = None
    if labels is not None:
        after = [[unpack_words(cfg, i, [int(w) for w in data[f"after{b}_{i}"]])
                  for i in range(cfg.n_layers)] for b in range(len(pixels))]
    return RtlRun(rasters=[data[f"raster{p}"] for p in range(len(cfg.layers))],
                  predictions=data["predictions"], cycles=data["cycles"],
                  edges=data["edges"], readback_ok=bool(data["readback_ok"]),
                  weights_after=after, stream=data["stream"],
                  readout_overflow=bool(data["readout_overflow"]), steps=data["steps"],
                  scores=data["scores"] if decoder is not None else None)


def _icarus_runner(fmt: str):
    """cocotb's Icarus runner, made to compile the generated Verilog as the Verilog-2005 it
    is and to dump waveforms to ``dump.<fmt>`` (``vcd`` or ``fst``) in the build directory.

    The stock runner compiles with ``-g2012``. Under SystemVerilog rules a declaration
    initialiser (``reg x = 0;``) takes effect before time 0 without an event, so the trigger
    Yosys adds to every ``always @*`` block for Verilog-2001 simulators (``reg
    \\$auto$verilog_backend...dump_module$N = 0;`` read in the block) never fires: a
    combinational block whose inputs keep their initial values is never evaluated and its
    outputs stay X (an FSM's decoded outputs while its state stays at its initial 0, and
    from there the probe ports). Compiled with ``-g2005`` instead, the initialiser is an
    event at time 0 and every block runs once. The stock waveform module is SystemVerilog
    (``string``) and the stock ``vvp`` flags write FST whatever the file is named; this
    one is plain Verilog and honours ``fmt``.
    """
    from cocotb_tools.runner import Icarus

    class IcarusVerilog2005(Icarus):
        def _build_command(self):
            return [[cmd[0], "-g2005"] + [a for a in cmd[1:] if not a.startswith("-g20")]
                    if cmd and cmd[0] == "iverilog" else cmd
                    for cmd in super()._build_command()]

        def _create_iverilog_dump_file(self):
            dump = str(self.build_dir / f"dump.{fmt}").replace("\\", "\\\\")
            self.iverilog_dump_file.write_text(
                "module cocotb_iverilog_dump();\n"
                f'initial begin $dumpfile("{dump}"); $dumpvars(0, {self.hdl_toplevel}); end\n'
                "endmodule\n")

        def _test_command(self):
            return [[f"-{fmt}" if arg == "-fst" else arg for arg in cmd]
                    for cmd in super()._test_command()]

    return IcarusVerilog2005()


@contextlib.contextmanager
def _exclusive(build_dir: Path):
    """Hold the build directory's lock: runs of the same parameter set (pytest workers,
    two shells) share one directory, its Verilog, binary, job and result files."""
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def simulate(cfg, job: dict, test_module: str, *, sim: str = "verilator",
             waves: str | None = None, build_root: Path = DEFAULT_BUILD_ROOT,
             verbose: bool = False, progress=None, top: str = "core") -> dict:
    """Generate and build (once per parameter set) the config's top, run the cocotb
    ``test_module`` on the arrays ``job`` and return the arrays it wrote.

    ``waves``: path of an FST (``.fst``) or VCD file to write.
    ``progress``: called with the number of samples finished so far, while it runs.
    ``top``: ``core`` or ``serial`` (:func:`hw.generate.core_top`).
    Concurrent calls on the same parameter set take turns (:func:`_exclusive`).
    """
    require_simulator(sim)
    build_dir = build_dir_for(cfg, sim, waves, build_root, top)
    with _exclusive(build_dir):
        return _build_and_run(cfg, job, test_module, sim, waves, build_dir, verbose, progress,
                              top)


def _build_and_run(cfg, job, test_module, sim, waves, build_dir, verbose, progress,
                   top) -> dict:
    from cocotb_tools.runner import get_runner

    verilog = generate_verilog(cfg, build_dir / "rtl", top)
    fst = waves is not None and str(waves).endswith(".fst")
    if fst and sim == "verilator" and not Path("/usr/include/lz4.h").exists():
        raise ToolchainError("--waves *.fst: Verilator's FST writer needs the lz4 headers "
                             "(apt-get install liblz4-dev); or write a .vcd file instead")

    runner = _icarus_runner("fst" if fst else "vcd") if sim == "icarus" else get_runner(sim)
    build_args = []
    if sim == "verilator":
        build_args = ["-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "fast"]
        if fst:
            build_args.append("--trace-fst")
    runner.build(sources=[verilog], hdl_toplevel=TOP_NAME, build_dir=build_dir,
                 waves=waves is not None, build_args=build_args,
                 timescale=("1ns", "1ps") if sim == "icarus" else None,
                 log_file=build_dir / "build.log", verbose=verbose)

    job_file = build_dir / "job.npz"
    result = build_dir / "result.npz"
    result.unlink(missing_ok=True)
    np.savez(job_file, **job)
    done_file = build_dir / "progress"
    done_file.unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(
            runner.test, test_module=test_module, hdl_toplevel=TOP_NAME,
            build_dir=build_dir, test_dir=build_dir, waves=waves is not None,
            extra_env={"SPIKEFORGE_JOB": str(job_file), "SPIKEFORGE_RESULT": str(result),
                       "SPIKEFORGE_PROGRESS": str(done_file)},
            results_xml=str(build_dir / "results.xml"),
            log_file=build_dir / "test.log", verbose=verbose)
        while progress is not None and not running.done():
            time.sleep(0.2)
            if done_file.exists():
                text = done_file.read_text().strip()
                if text.isdigit():
                    progress(int(text))
        running.result()
    if not result.exists():
        log = (build_dir / "test.log")
        tail = log.read_text()[-3000:] if log.exists() else "(no log)"
        raise RuntimeError(f"cocotb run produced no result; see {log}:\n{tail}")
    if waves is not None:
        dump = build_dir / ("dump.fst" if fst else "dump.vcd")
        shutil.copyfile(dump, waves)
    with np.load(result) as data:
        return {key: data[key] for key in data.files}
