"""NIR interop: export a config + integer weights as a NIR graph, import NIR graphs and float
weights into a config + integer weights (``docs/nir.md`` is the spec of the mapping).

* :func:`export_graph` / :func:`write_nir`: ``Input -> (Linear -> LIF) per layer -> Output``,
  weights in integer units (a NIR weight equals the integer weight, exact in float32), LIF
  parameters by the forward-Euler convention ``dt / tau = 2**-leak_shift``, ``r = tau / dt``
  with ``dt = 1e-4`` (snnTorch's), and everything NIR cannot say (formats, subtract-reset,
  shift leak, saturation, encoding, T, lanes, learning) in the graph's ``metadata``.
* :func:`import_graph` / :func:`read_nir`: the inverse. With the exporter's metadata the round
  trip is exact (same config, same integer weights); a foreign float graph is reduced to our
  neuron and quantised by :func:`quantise_float`.
* :func:`quantise_float`: float weight matrices ``(n_pre, n_post)`` in threshold units (or
  with per-layer float thresholds) -> integer weights and a config.
* :func:`read_float`: a float weight file -> config + integer weights (:func:`load_float_layers`,
  then :func:`quantise_float`).
* :func:`load_float_layers`: ``.npz`` with ``w0, w1, ...`` of shape ``(n_pre, n_post)``, or a
  torch state dict's 2-D float tensors (any names; ``keys`` to choose), oriented to chain.

``sw.import_fidelity`` checks an import against the float network and searches its formats.

This module imports ``nir`` (and ``torch`` for ``.pt`` files) lazily.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spikeforge.config import ConfigError, DecoderConfig, DesireConfig, NetworkConfig

#: The time step the exported LIF parameters assume (snnTorch's NIR converter uses 1e-4).
DT = 1e-4
#: Version of the metadata layout written under ``graph.metadata["spikeforge"]``.
FORMAT = 1
SUPPORTED = ("Input", "Linear", "Affine", "LIF", "IF", "CubaLIF (tau_syn <= dt, w_in = 1)",
             "Output")
QUANTISE = ("max", "percentile")
PERCENTILE = 99.0


# ---------------------------------------------------------------- config <-> dict / TOML
def config_to_dict(cfg: NetworkConfig) -> dict:
    """Every field of a rate config, as plain JSON types (``source`` left out)."""
    if cfg.encoding != "rate":
        raise ConfigError(f"config {cfg.name!r}: NIR export supports rate-coded configs only "
                          f"(encoding {cfg.encoding!r}); TTFS cores have no NIR equivalent")
    d = {k: v for k, v in asdict(cfg).items() if k != "source"}
    d["layers"] = list(cfg.layers)
    return d


def config_from_dict(d: dict) -> NetworkConfig:
    d = dict(d)
    learning = d.pop("learning", None)
    decoder = d.pop("decoder", None)
    d["layers"] = tuple(d["layers"])
    return NetworkConfig(**d, learning=DesireConfig(**learning) if learning else None,
                         decoder=DecoderConfig(**decoder) if decoder else None)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def config_to_toml(cfg: NetworkConfig, header: str = "") -> str:
    """The TOML text ``spikeforge.config.load_config`` reads back as an equal config."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"name = {_toml_value(cfg.name)}", f"dataset = {_toml_value(cfg.dataset)}", "",
              "[network]", f"layers = {_toml_value(list(cfg.layers))}",
              f"time_steps = {cfg.time_steps}", f"lanes = {cfg.lanes}",
              f"tie_break = {_toml_value(cfg.tie_break)}",
              f"early_exit = {_toml_value(cfg.early_exit)}",
              f"spram_layers = {_toml_value(list(cfg.spram_layers))}", "",
              "[neuron]", f"weight_bits = {cfg.weight_bits}",
              f"membrane_bits = {cfg.membrane_bits}", f"threshold = {cfg.threshold}",
              f"leak_shift = {cfg.leak_shift}", "",
              "[encoding]", f"kind = {_toml_value(cfg.encoding)}",
              f"pixel_bits = {cfg.pixel_bits}",
              f"event_input = {_toml_value(cfg.event_input)}"]
    if cfg.input_threshold is not None:
        lines.append(f"threshold = {cfg.input_threshold}")
    if cfg.learning is not None:
        lines += ["", "[learning]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in asdict(cfg.learning).items()]
    if cfg.decoder is not None:
        lines += ["", "[decoder]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in asdict(cfg.decoder).items()]
    return "\n".join(lines) + "\n"


def default_weights(cfg: NetworkConfig, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """The inference weights other commands start from without ``--weights``: the Kaiming
    init of ``spikeforge train`` (``W_store >> F``) for learning configs, else ``compare``'s
    uniform random weights from the seed."""
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import DEFAULT_SCALE, random_weights

    if cfg.learning is not None:
        return ([w >> cfg.frac_bits for w in initial_weights(cfg, seed)],
                f"initial (Kaiming, seed {seed}) weights as spikeforge train starts from")
    return (random_weights(cfg, np.random.default_rng(seed)),
            f"random weights (seed {seed}, scale {DEFAULT_SCALE:g}) as spikeforge compare uses")


# ---------------------------------------------------------------- export
def lif_parameters(cfg: NetworkConfig, dt: float = DT) -> dict:
    """NIR LIF parameters of our neuron (forward Euler: ``v += dt/tau * (v_leak - v + r*I)``).

    ``dt / tau = 2**-k`` gives the per-step decay ``1 - 2**-k`` of ``v - (v >> k)`` (up to the
    floor), ``r = tau / dt`` makes one unit of input current add one unit of membrane per
    step, ``v_leak = 0``, ``v_threshold = threshold`` (integer membrane units), ``v_reset = 0``
    (NIR resets to a value; ours subtracts the threshold: metadata ``reset = "subtract"``).
    """
    tau = dt * (1 << cfg.leak_shift)
    return {"tau": tau, "r": tau / dt, "v_leak": 0.0, "v_threshold": float(cfg.threshold),
            "v_reset": 0.0}


def export_graph(cfg: NetworkConfig, weights, *, dt: float = DT):
    """The NIR graph of ``cfg`` with inference ``weights`` (a list of ``(n_pre, n_post)``)."""
    import nir

    from spikeforge.sw.weights import check_weights

    weights = check_weights(cfg, weights)
    meta = {"format": FORMAT, "config": config_to_dict(cfg), "dt": dt,
            "weight_units": "integer: NIR weight = spikeforge inference weight (W_store >> F)",
            "reset": "subtract", "fire": "v >= threshold",
            "leak": "v <- v - (v >> leak_shift) (arithmetic shift, floors)",
            "saturation": "every synaptic add saturates to the signed membrane_bits range",
            "order": "integrate (ascending presynaptic index), fire, subtract-reset, leak",
            "delay": "LIF layer l at step t integrates layer l-1's spikes of step t-1",
            "encoding": f"rate: non-leaky IF per pixel, threshold {cfg.encoder_threshold}",
            "readout": "unique argmax of output spike counts, -1 on a tie"}
    p = lif_parameters(cfg, dt)
    nodes = {"input": nir.Input(input_type={"input": np.array([cfg.layers[0]])},
                                metadata={"encoding": cfg.encoding,
                                          "pixel_bits": cfg.pixel_bits,
                                          "threshold": cfg.encoder_threshold,
                                          "time_steps": cfg.time_steps})}
    edges, prev = [], "input"
    for layer, w in enumerate(weights):
        n = cfg.layers[layer + 1]
        fc, lif = f"fc{layer}", f"lif{layer}"
        nodes[fc] = nir.Linear(weight=w.T.astype(np.float32), metadata={
            "weight_bits": cfg.weight_bits, "frac_bits": cfg.frac_bits,
            "store_bits": cfg.store_bits, "integer_weights": 1})
        nodes[lif] = nir.LIF(
            tau=np.full(n, p["tau"]), r=np.full(n, p["r"]), v_leak=np.zeros(n),
            v_threshold=np.full(n, p["v_threshold"]), v_reset=np.zeros(n),
            metadata={"reset": "subtract", "leak_shift": cfg.leak_shift,
                      "membrane_bits": cfg.membrane_bits, "threshold": cfg.threshold,
                      "fire": "v >= threshold", "dt": dt})
        edges += [(prev, fc), (fc, lif)]
        prev = lif
    nodes["output"] = nir.Output(output_type={"output": np.array([cfg.layers[-1]])})
    edges.append((prev, "output"))
    graph_meta = {"spikeforge": json.dumps(meta, sort_keys=True), "name": cfg.name,
                  "lanes": cfg.lanes, "time_steps": cfg.time_steps,
                  "weight_bits": cfg.weight_bits, "membrane_bits": cfg.membrane_bits,
                  "frac_bits": cfg.frac_bits, "leak_shift": cfg.leak_shift,
                  "reset": "subtract", "encoding": cfg.encoding, "pixel_bits": cfg.pixel_bits,
                  "dt": dt}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph_meta)


def write_nir(path, cfg: NetworkConfig, weights, *, dt: float = DT) -> None:
    import nir

    nir.write(str(path), export_graph(cfg, weights, dt=dt))


# ---------------------------------------------------------------- import
@dataclass
class LayerMap:
    """How one foreign layer became ours (printed by ``spikeforge import``)."""

    node: str
    neuron: str
    n_pre: int
    n_post: int
    v_threshold: float
    gain: float               # membrane units added per unit of NIR weight and input spike
    leak_shift: int | None    # None: no leak (IF)
    decay: float = 1.0        # the source's membrane factor per step (1 - dt/tau; IF: 1)
    scale: float = 0.0        # integer weight per float weight unit
    clipped: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class Imported:
    cfg: NetworkConfig
    weights: list[np.ndarray]
    exact: bool               # True: read back from our own exporter's metadata
    layers: list[LayerMap]
    lines: list[str]          # the report
    units: list[np.ndarray] | None = None   # the source in threshold units (foreign only)
    decays: list[float] | None = None       # the source's membrane decay per step and layer


def _text(v):
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v[()])
    return v


def _unsupported(kind: str, name: str, why: str = "") -> ConfigError:
    return ConfigError(
        f"NIR node {name!r} ({kind}): not supported{': ' + why if why else ''}; spikeforge "
        f"imports a chain Input -> (Linear|Affine -> LIF|IF|CubaLIF)+ -> Output; supported "
        f"node types: {', '.join(SUPPORTED)}")


def _chain(graph) -> list[str]:
    """Node names from the Input to the Output, or a ConfigError for anything else."""
    nodes, edges = graph.nodes, [(_text(a), _text(b)) for a, b in graph.edges]
    known = ("Input", "Output", "Linear", "Affine", "LIF", "IF", "CubaLIF")
    for name, node in nodes.items():
        if type(node).__name__ not in known:
            raise _unsupported(type(node).__name__, name)
    succ, pred = {}, {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    for name in nodes:
        kind = type(nodes[name]).__name__
        if len(succ.get(name, [])) > 1:
            raise _unsupported(kind, name, f"branching graph: edges to {succ[name]}")
        if len(pred.get(name, [])) > 1:
            raise _unsupported(kind, name, f"merging or recurrent edges from {pred[name]}")
    inputs = [n for n, v in nodes.items() if type(v).__name__ == "Input"]
    outputs = [n for n, v in nodes.items() if type(v).__name__ == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConfigError(f"NIR graph: expected one Input and one Output node, got inputs "
                          f"{inputs} and outputs {outputs}")
    order, seen, cur = [inputs[0]], {inputs[0]}, inputs[0]
    while cur != outputs[0]:
        nxt = succ.get(cur, [])
        if not nxt:
            raise ConfigError(f"NIR graph: node {cur!r} ({type(nodes[cur]).__name__}) has no "
                              f"outgoing edge; the chain does not reach the Output")
        cur = nxt[0]
        if cur in seen:
            raise _unsupported(type(nodes[cur]).__name__, cur, "recurrent edge (a cycle)")
        seen.add(cur)
        order.append(cur)
    if len(order) != len(nodes):
        rest = sorted(set(nodes) - seen)
        raise ConfigError(f"NIR graph: nodes {rest} are not on the Input -> Output chain")
    return order


def _uniform(name: str, kind: str, param: str, arr) -> float:
    arr = np.asarray(arr, dtype=np.float64).ravel()
    if arr.size == 0:
        raise _unsupported(kind, name, f"empty {param}")
    if not np.allclose(arr, arr[0], rtol=1e-6, atol=0):
        raise _unsupported(kind, name, f"{param} differs between neurons "
                                       f"([{arr.min():g}, {arr.max():g}]); spikeforge has one "
                                       f"value per network")
    return float(arr[0])


def _neuron(name: str, node, dt: float) -> LayerMap:
    """Reduce a NIR neuron to (threshold, input gain, leak shift)."""
    kind = type(node).__name__
    notes = []
    if kind == "IF":
        r = _uniform(name, kind, "r", node.r)
        vth = _uniform(name, kind, "v_threshold", node.v_threshold)
        return LayerMap(name, kind, 0, 0, vth, r, None, notes=notes)
    if kind == "LIF":
        tau = _uniform(name, kind, "tau", node.tau)
        r = _uniform(name, kind, "r", node.r)
        v_leak = _uniform(name, kind, "v_leak", node.v_leak)
        vth = _uniform(name, kind, "v_threshold", node.v_threshold)
    else:  # CubaLIF
        tau = _uniform(name, kind, "tau_mem", node.tau_mem)
        tau_syn = _uniform(name, kind, "tau_syn", node.tau_syn)
        r = _uniform(name, kind, "r", node.r)
        v_leak = _uniform(name, kind, "v_leak", node.v_leak)
        vth = _uniform(name, kind, "v_threshold", node.v_threshold)
        w_in = _uniform(name, kind, "w_in", node.w_in)
        if tau_syn > dt * (1 + 1e-6) or w_in != 1.0:
            raise _unsupported(kind, name, f"a synaptic current with tau_syn = {tau_syn:g} > "
                                           f"dt = {dt:g} (or w_in = {w_in:g} != 1) does not "
                                           f"reduce to a LIF neuron")
        notes.append(f"CubaLIF with tau_syn = {tau_syn:g} <= dt: synaptic current passes "
                     f"straight through (reduced to LIF)")
    if v_leak != 0.0:
        raise _unsupported(kind, name, f"v_leak = {v_leak:g}: spikeforge neurons leak to 0")
    if tau <= dt:
        raise _unsupported(kind, name, f"tau = {tau:g} <= dt = {dt:g} (no memory at all)")
    decay = dt / tau                         # forward Euler: v <- v + dt/tau (-v + r I)
    k = min(16, max(1, round(-math.log2(decay))))
    notes.append(f"tau/dt = {tau / dt:g}: decay dt/tau = {decay:.4g} per step -> leak_shift "
                 f"{k} (decay 2^-{k} = {2.0 ** -k:.4g})")
    return LayerMap(name, kind, 0, 0, vth, r * decay, k, 1.0 - decay, notes=notes)


def _own_metadata(graph) -> dict | None:
    meta = getattr(graph, "metadata", None) or {}
    text = _text(meta.get("spikeforge")) if isinstance(meta, dict) else None
    if not text:
        return None
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if data.get("format") == FORMAT and "config" in data else None


def import_graph(graph, *, quantise: str = "max", dt: float | None = None,
                 **options) -> Imported:
    """A NIR graph -> config + integer weights (see the module docstring).

    ``options`` (foreign graphs only) go to :func:`quantise_float`: ``weight_bits``,
    ``membrane_bits``, ``time_steps``, ``lanes``, ``pixel_bits``, ``threshold``,
    ``leak_shift``, ``name``, ``dataset``.
    """
    order = _chain(graph)
    nodes = graph.nodes
    own = _own_metadata(graph)
    if dt is None:
        dt = float(own["dt"]) if own else DT
    n_in = _n_inputs(graph, order)
    mats, maps = [], []
    body = order[1:-1]
    if len(body) % 2 or not body:
        raise ConfigError(f"NIR graph: expected (Linear|Affine, neuron) pairs between Input and "
                          f"Output, got {[type(nodes[n]).__name__ for n in body]}")
    for i in range(0, len(body), 2):
        fc, neu = body[i], body[i + 1]
        kind_fc, kind_n = type(nodes[fc]).__name__, type(nodes[neu]).__name__
        if kind_fc not in ("Linear", "Affine"):
            raise _unsupported(kind_fc, fc, "expected a Linear or Affine node here")
        if kind_n not in ("LIF", "IF", "CubaLIF"):
            raise _unsupported(kind_n, neu, "expected a LIF, IF or CubaLIF node here")
        w = np.asarray(nodes[fc].weight, dtype=np.float64)
        if w.ndim != 2:
            raise _unsupported(kind_fc, fc, f"weight of shape {w.shape} is not 2-D")
        if kind_fc == "Affine" and np.any(np.asarray(nodes[fc].bias) != 0):
            raise _unsupported(kind_fc, fc, "nonzero bias: spikeforge neurons have no bias "
                                            "input")
        n_pre = mats[-1].shape[1] if mats else n_in
        if w.shape[1] != n_pre:
            raise ConfigError(f"NIR node {fc!r} ({kind_fc}): weight has {w.shape[1]} inputs, "
                              f"the previous layer has {n_pre}")
        m = _neuron(neu, nodes[neu], dt)
        m.n_pre, m.n_post = w.shape[1], w.shape[0]
        mats.append(w.T)                       # ours: (n_pre, n_post)
        maps.append(m)
    if own is not None:
        exact = _exact(own, mats)
        if exact is not None:
            cfg, weights = exact
            lines = [f"import: spikeforge metadata (format {FORMAT}): exact round trip of "
                     f"config {cfg.name!r}", f"import: {cfg.summary()}"]
            return Imported(cfg, weights, True, maps, lines)
    if own is not None:
        options.setdefault("name", own["config"]["name"])
    return _from_float(mats, maps, quantise=quantise, **options)


def _exact(own: dict, mats) -> tuple[NetworkConfig, list[np.ndarray]] | None:
    """Config and integer weights from our metadata, or None where the graph's weights are no
    longer integers of the config's format (edited after export: quantised instead)."""
    cfg = config_from_dict(own["config"])
    if [m.shape for m in mats] != [cfg.weight_shape(i) for i in range(cfg.n_layers)]:
        return None
    weights = []
    for m in mats:
        if not np.all(np.isfinite(m)) or np.any(m != np.rint(m)):
            return None
        w = np.rint(m).astype(np.int64)
        if w.size and (w.min() < cfg.w_min or w.max() > cfg.w_max):
            return None
        weights.append(w)
    return cfg, weights


def _from_float(mats, maps, *, quantise="max", weight_bits=8, membrane_bits: int | None = 16,
                time_steps=20, lanes=1, pixel_bits=8, threshold=None, leak_shift=None,
                name="imported", dataset="digits", percentile=None) -> Imported:
    shifts = {m.leak_shift for m in maps if m.leak_shift is not None}
    lines = []
    if leak_shift is None:
        if len(shifts) > 1:
            raise ConfigError(f"NIR graph: layers map to different leak shifts {sorted(shifts)}"
                              f" and spikeforge has one per network; pick one with "
                              f"--leak-shift")
        if shifts:
            leak_shift = shifts.pop()
        else:
            leak_shift = 16
            lines.append("import: IF neurons (no leak): leak_shift 16, the weakest leak "
                         "(v >> 16 is 0 for 0 <= v < 65536)")
    units = [m / (layer.v_threshold / layer.gain) for m, layer in zip(mats, maps, strict=True)]
    q = quantise_float(units, quantise=quantise, weight_bits=weight_bits,
                       membrane_bits=membrane_bits, time_steps=time_steps, lanes=lanes,
                       pixel_bits=pixel_bits, threshold=threshold, leak_shift=leak_shift,
                       name=name, dataset=dataset, percentile=percentile)
    for layer, m, clipped in zip(maps, q.layers, [x.clipped for x in q.layers], strict=True):
        layer.scale = m.scale * layer.gain / layer.v_threshold
        layer.clipped = clipped
        lines.append(f"import: {layer.node} ({layer.neuron}, {layer.n_pre}->{layer.n_post}): "
                     f"v_threshold {layer.v_threshold:g} -> threshold {q.cfg.threshold}; "
                     f"input gain r*dt/tau {layer.gain:g}; weight scale {layer.scale:.6g} "
                     f"integer per NIR weight unit; {clipped} weights clipped")
        lines += [f"import:   {note}" for note in layer.notes]
    lines += q.lines
    return Imported(q.cfg, q.weights, False, maps, lines, units, [m.decay for m in maps])


def quantise_float(units, *, quantise: str = "max", weight_bits: int = 8,
                   membrane_bits: int | None = 16, time_steps: int = 20, lanes: int = 1,
                   pixel_bits: int = 8, threshold: int | None = None, leak_shift: int = 2,
                   name: str = "imported", dataset: str = "digits",
                   percentile: float | None = None, decay: float | None = None) -> Imported:
    """Float weights in *threshold units* (a weight of 1.0 alone lifts a membrane from 0 to
    the firing threshold), one ``(n_pre, n_post)`` array per layer -> integer weights.

    Our threshold ``theta`` is one integer for the whole network, so layer ``l``'s scale is
    ``theta`` integers per threshold unit for every layer: ``W = clip(round(u * theta))``.
    Without ``threshold``, ``theta = floor(w_max / a)`` where ``a`` is the largest ``|u|``
    over all layers (``quantise="max"``: nothing clips) or the largest per-layer
    ``PERCENTILE``-th percentile of ``|u|`` (``"percentile"``: outliers clip, the rest keeps
    more resolution). ``membrane_bits`` is raised to the least legal width if needed.
    """
    if quantise not in QUANTISE:
        raise ConfigError(f"--quantise: {quantise!r} is not one of {QUANTISE}")
    units = [np.asarray(u, dtype=np.float64) for u in units]
    if not units:
        raise ConfigError("float weights: no layers")
    for i, u in enumerate(units):
        if u.ndim != 2:
            raise ConfigError(f"float weights w{i}: shape {u.shape} is not (n_pre, n_post)")
        if i and u.shape[0] != units[i - 1].shape[1]:
            raise ConfigError(f"float weights w{i}: {u.shape[0]} inputs, but w{i - 1} has "
                              f"{units[i - 1].shape[1]} outputs")
        if not np.all(np.isfinite(u)):
            raise ConfigError(f"float weights w{i}: not all finite")
    w_max = (1 << (weight_bits - 1)) - 1
    w_min = -(1 << (weight_bits - 1))
    if threshold is None:
        if percentile is None and quantise == "percentile":
            percentile = PERCENTILE
        if percentile is None:
            a = max(float(np.abs(u).max(initial=0)) for u in units)
        else:
            a = max(float(np.percentile(np.abs(u), percentile)) if u.size else 0.0
                    for u in units)
        threshold = max(1, math.floor(w_max / a)) if a > 0 else 1
    threshold = int(threshold)
    need = max(3, (threshold - 1 + w_max).bit_length() + 1)
    if membrane_bits is None:
        membrane_bits = min(32, need + 8)
    cfg = NetworkConfig(name=name, layers=(units[0].shape[0], *(u.shape[1] for u in units)),
                        time_steps=time_steps, lanes=min(lanes, max(u.shape[1] for u in units)),
                        weight_bits=weight_bits, membrane_bits=max(membrane_bits, need),
                        threshold=threshold, leak_shift=leak_shift, pixel_bits=pixel_bits,
                        dataset=dataset)
    weights, maps, lines = [], [], []
    for i, u in enumerate(units):
        raw = np.rint(u * threshold)
        clipped = int(((raw < w_min) | (raw > w_max)).sum())
        weights.append(np.clip(raw, w_min, w_max).astype(np.int64))
        maps.append(LayerMap(f"w{i}", "float", *u.shape, 1.0, 1.0, leak_shift,
                             scale=float(threshold), clipped=clipped))
        lines.append(f"quantise: w{i} {u.shape[0]}x{u.shape[1]}: scale {threshold} per "
                     f"threshold unit, |u| max {np.abs(u).max(initial=0):.4g}, {clipped} "
                     f"clipped to [{w_min}, {w_max}], {int((weights[-1] == 0).sum())} zero")
    lines.append(f"quantise ({quantise if percentile is None else f'{percentile:g}th percentile'})"
                 f": threshold 1.0 -> {threshold}, {cfg.summary()}")
    decay = 1.0 - 2.0 ** -leak_shift if decay is None else float(decay)
    return Imported(cfg, weights, False, maps, lines, units, [decay] * len(units))


def _n_inputs(graph, order: list[str]) -> int:
    return int(np.prod(np.asarray(graph.nodes[order[0]].input_type["input"])))


def chain_shape(graph) -> tuple[int, int]:
    """``(LIF layers, inputs)`` of a NIR chain (:func:`import_graph` refuses other graphs)."""
    order = _chain(graph)
    return max(1, (len(order) - 2) // 2), _n_inputs(graph, order)


def load_nir(path):
    """The NIR graph in file ``path``, or a ConfigError naming the file and the problem."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--nir {str(path)!r}: no such file")
    try:
        return nir.read(str(path))
    except Exception as exc:      # h5py/nir raise many types on a bad file
        raise ConfigError(f"--nir {str(path)!r}: not a readable NIR file: {exc}") from exc


def read_nir(path, **kwargs) -> Imported:
    return import_graph(load_nir(path), **kwargs)


# ---------------------------------------------------------------- float weight files
def read_float(path, *, name: str | None = None, keys=None, n_inputs: int | None = None,
               **kwargs) -> Imported:
    """Float weights from ``path`` (see :func:`load_float_layers`) -> config + integer
    weights by :func:`quantise_float`; the config is named after the file unless ``name``."""
    mats, lines = load_float_layers(path, keys=keys, n_inputs=n_inputs)
    imp = quantise_float(mats, name=name or Path(path).stem, **kwargs)
    imp.lines[:0] = lines
    return imp


def load_float_weights(path) -> list[np.ndarray]:
    """:func:`load_float_layers` without the report."""
    return load_float_layers(path)[0]


def load_float_layers(path, keys=None, n_inputs: int | None = None
                      ) -> tuple[list[np.ndarray], list[str]]:
    """Float weights ``(n_pre, n_post)`` per layer and a report of what was taken.

    ``.npz``: arrays ``w0, w1, ...`` of shape ``(n_pre, n_post)``. A torch state dict
    (``.pt``/``.pth``, or a saved module): its 2-D floating-point tensors in the dict's order
    (``keys``: these names, in this order, instead), each oriented so that consecutive
    layers chain and the first reads ``n_inputs`` (when given); where both orientations
    chain, ``*.weight`` (``nn.Linear``, ``(out, in)``) is transposed and any other name is
    taken as ``(n_pre, n_post)``. A nonzero 1-D ``*bias*`` is refused; other tensors are
    listed and skipped."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--float {str(path)!r}: no such file")
    if path.suffix not in (".pt", ".pth"):
        if keys:
            raise ConfigError("--keys: only for torch state dicts (.pt/.pth); an .npz file "
                              "gives its layers as w0, w1, ...")
        return _load_npz(path), [f"import: {path}: arrays w0, w1, ... (n_pre, n_post)"]
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:          # pickle, zip and torch raise many types on a bad file
        raise ConfigError(f"--float {path}: not a readable torch file: {exc}") from exc
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if not isinstance(state, dict):
        raise ConfigError(f"--float {path}: holds a {type(state).__name__}, not a state dict")
    found = {k: t for k, t in state.items() if hasattr(t, "detach")}
    listing = ", ".join(f"{k} {tuple(t.shape)}" for k, t in found.items())
    if keys:
        missing = [k for k in keys if k not in found]
        if missing:
            raise ConfigError(f"--keys: {missing} not in {path}; it holds: {listing}")
        chosen = list(keys)
    else:
        chosen = [k for k, t in found.items() if t.ndim == 2 and t.is_floating_point()]
        for k, t in found.items():
            if t.ndim == 1 and "bias" in k and bool((t != 0).any()):
                raise ConfigError(f"--float {path}: {k} is a nonzero bias; spikeforge neurons "
                                  f"have no bias input (train with bias=False)")
    if not chosen:
        raise ConfigError(f"--float {path}: no 2-D floating-point tensors (one weight matrix "
                          f"per layer); it holds: {listing or 'nothing'}")
    raw = [found[k].detach().cpu().double().numpy() for k in chosen]
    for k, a in zip(chosen, raw, strict=True):
        if a.ndim != 2:
            raise ConfigError(f"--keys: {k} has shape {a.shape}, not a 2-D weight matrix")
    mats, how = _orient(chosen, raw, n_inputs, path)
    lines = [f"import: {path}: tensors {listing}",
             f"import: took {len(mats)} layers: " + ", ".join(
                 f"{k} as {m.shape[0]}x{m.shape[1]} ({h})"
                 for k, m, h in zip(chosen, mats, how, strict=True))]
    skipped = [k for k in found if k not in chosen]
    if skipped:
        lines.append(f"import: skipped {', '.join(skipped)} (--keys to choose)")
    return mats, lines


def _orient(names, raw, n_inputs, path):
    """Each matrix as stored or transposed so that the chain holds (see
    :func:`load_float_layers`); ConfigError when no orientation does."""
    import itertools

    def chains(flips):
        mats = [a.T if f else a for a, f in zip(raw, flips, strict=True)]
        ok = all(a.shape[1] == b.shape[0] for a, b in itertools.pairwise(mats))
        return ok and (n_inputs is None or mats[0].shape[0] == n_inputs)

    if len(raw) > 12:
        raise ConfigError(f"--float {path}: {len(raw)} weight matrices; choose the layers "
                          f"with --keys")
    options = [f for f in itertools.product((False, True), repeat=len(raw)) if chains(f)]
    if not options:
        shapes = ", ".join(f"{k} {a.shape}" for k, a in zip(names, raw, strict=True))
        raise ConfigError(f"--float {path}: the matrices {shapes} do not chain into layers "
                          f"in either orientation" + (f" from {n_inputs} inputs" if n_inputs
                                                      else "") + "; choose them with --keys")
    convention = tuple(k.endswith(".weight") for k in names)
    flips = convention if convention in options else options[0]
    how = ["(out, in) transposed" if f else "(in, out) as stored" for f in flips]
    if len(options) > 1 and convention not in options:
        how = [h + ", ambiguous" for h in how]
    return [np.ascontiguousarray(a.T if f else a) for a, f in zip(raw, flips, strict=True)], how


def _load_npz(path) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = [f"w{i}" for i in range(len(data.files)) if f"w{i}" in data]
            if not keys:
                raise ConfigError(f"--float {path}: no arrays w0, w1, ... of shape "
                                  f"(n_pre, n_post); it holds {sorted(data.files)}")
            return [np.asarray(data[k], dtype=np.float64) for k in keys]
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--float {path}: not a readable .npz file: {exc}") from exc


def evaluate(cfg: NetworkConfig, weights, samples: int | None = None,
             progress=None) -> tuple[float, int]:
    """Golden-model accuracy on the first ``samples`` test samples of the config's dataset,
    in batches of 500 (``progress(n)`` after each: a progress bar's update)."""
    from spikeforge.sw.datasets import load_dataset
    from spikeforge.sw.golden import run_network

    data = load_dataset(cfg.dataset, cfg.pixel_bits)
    if data.n_inputs != cfg.layers[0]:
        raise ConfigError(f"evaluate: dataset {data.name} has {data.n_inputs} inputs, the "
                          f"network {cfg.layers[0]}")
    n = len(data.test_labels) if samples is None else min(samples, len(data.test_labels))
    right = 0
    for b0 in range(0, n, 500):
        b1 = min(n, b0 + 500)
        run = run_network(cfg, weights, data.test_pixels[b0:b1])
        right += int((run.predictions == data.test_labels[b0:b1]).sum())
        if progress is not None:
            progress(b1 - b0)
    return right / max(n, 1), n
