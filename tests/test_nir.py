"""NIR interop (issue 8): export, exact round trip, foreign graphs, refusals, float weights."""

import math

import nir
import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.config import ConfigError, DesireConfig, NetworkConfig, load_config
from spikeforge.sw.golden import run_network
from spikeforge.sw.nir_io import (
    DT,
    config_to_toml,
    export_graph,
    import_graph,
    load_float_weights,
    quantise_float,
    read_nir,
    write_nir,
)
from spikeforge.sw.weights import load_weights, random_weights


def random_config(rng, i) -> NetworkConfig:
    """A config none of the shipped profiles resembles: 1-3 LIF layers of odd sizes."""
    layers = tuple(int(x) for x in rng.integers(2, 40, size=rng.integers(2, 5)))
    weight_bits = int(rng.integers(2, 13))
    w_max = (1 << (weight_bits - 1)) - 1
    threshold = int(rng.integers(1, 4 * w_max + 2))
    membrane_bits = max(3, (threshold - 1 + w_max).bit_length() + 1) + int(rng.integers(0, 4))
    learning = None
    if i % 2:
        learning = DesireConfig(error_margin=int(rng.integers(0, 3)),
                                weight_frac_bits=int(rng.integers(0, 24 - weight_bits)),
                                lr_shift=int(rng.integers(0, 12)), desire_out=0.25,
                                rounding="floor")
    return NetworkConfig(name=f"rand-{i}", layers=layers, time_steps=int(rng.integers(3, 40)),
                         lanes=int(rng.integers(1, max(layers[1:]) + 1)),
                         weight_bits=weight_bits, membrane_bits=membrane_bits,
                         threshold=threshold, leak_shift=int(rng.integers(1, 17)),
                         pixel_bits=int(rng.integers(1, 17)), learning=learning,
                         event_input=bool(i % 3),
                         dataset=("digits", "mnist-t10k", "fashion-mnist")[i % 3])


@pytest.mark.parametrize("seed", range(8))
def test_round_trip_exact_on_random_networks(tmp_path, seed):
    rng = np.random.default_rng(1000 + seed)
    cfg = random_config(rng, seed)
    weights = random_weights(cfg, rng, scale=1.0)
    path = tmp_path / "net.nir"
    write_nir(path, cfg, weights)
    back = read_nir(path)
    assert back.exact
    assert back.cfg == cfg
    assert all(np.array_equal(a, b) and b.dtype == np.int64
               for a, b in zip(weights, back.weights, strict=True))
    # ... and through the TOML the importer writes
    toml = tmp_path / "net.toml"
    toml.write_text(config_to_toml(back.cfg))
    assert load_config(toml) == cfg


def test_exported_graph_structure_and_lif_mapping():
    cfg = load_config("digits-tiny")
    weights = random_weights(cfg, np.random.default_rng(0))
    g = export_graph(cfg, weights)
    assert [type(g.nodes[n]).__name__ for n in ("input", "fc0", "lif0", "fc1", "lif1",
                                                "output")] == \
        ["Input", "Linear", "LIF", "Linear", "LIF", "Output"]
    assert np.array_equal(g.nodes["fc0"].weight, weights[0].T)       # NIR: (out, in)
    lif = g.nodes["lif0"]
    # forward Euler: dt/tau = 2^-k, r = tau/dt, v_leak = 0, v_threshold = theta
    assert np.allclose(lif.tau, DT * 4) and np.allclose(lif.r, 4.0)
    assert np.all(lif.v_leak == 0) and np.all(lif.v_threshold == 64)
    assert lif.metadata["reset"] == "subtract" and lif.metadata["leak_shift"] == 2
    for key in ("weight_bits", "membrane_bits", "frac_bits", "leak_shift", "reset",
                "encoding", "pixel_bits", "time_steps", "lanes", "name", "spikeforge"):
        assert key in g.metadata
    assert g.metadata["frac_bits"] == 10 and g.metadata["name"] == "digits-tiny"


def test_cli_export_import_round_trip(tmp_path, capsys):
    nir_path, toml, w = tmp_path / "d.nir", tmp_path / "d.toml", tmp_path / "d.npz"
    assert main(["export", "--config", "digits-tiny", "--nir", str(nir_path)]) == 0
    assert main(["import", "--nir", str(nir_path), "--config-out", str(toml),
                 "--weights-out", str(w)]) == 0
    out = capsys.readouterr().out
    assert "exact round trip" in out
    cfg = load_config("digits-tiny")
    assert load_config(toml) == cfg
    from spikeforge.sw.nir_io import default_weights
    init, _ = default_weights(cfg, 0)
    assert all(np.array_equal(a, b) for a, b in zip(init, load_weights(w, cfg), strict=True))


def _lif(n, tau, th, dt=DT, v_reset=0.0):
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n),
                   v_threshold=np.full(n, th), v_reset=np.full(n, v_reset))


def test_foreign_float_graph_is_quantised_with_per_layer_scales():
    rng = np.random.default_rng(7)
    w0 = rng.normal(0, 0.3, (12, 20)).astype(np.float32)     # NIR layout (out, in)
    w1 = rng.normal(0, 0.3, (5, 12)).astype(np.float32)
    tau = DT / (1 - 0.875)                                   # snnTorch beta = 0.875
    g = nir.NIRGraph.from_list(nir.Affine(weight=w0, bias=np.zeros(12, np.float32)),
                               _lif(12, tau, 1.0), nir.Linear(weight=w1), _lif(5, tau, 0.5))
    r = import_graph(g, weight_bits=6)
    assert not r.exact
    cfg = r.cfg
    assert cfg.layers == (20, 12, 5) and cfg.leak_shift == 3 and cfg.weight_bits == 6
    # threshold units u = w / v_threshold; theta = floor(w_max / max|u|); nothing clips
    u0, u1 = w0.T.astype(np.float64) / 1.0, w1.T.astype(np.float64) / 0.5
    theta = math.floor(31 / max(np.abs(u0).max(), np.abs(u1).max()))
    assert cfg.threshold == theta
    assert np.array_equal(r.weights[0], np.rint(u0 * theta))
    assert np.array_equal(r.weights[1], np.rint(u1 * theta))
    assert [m.scale for m in r.layers] == pytest.approx([theta / 1.0, theta / 0.5])
    assert any("threshold" in line and "scale" in line for line in r.lines)
    # percentile: a larger threshold, some weights clip
    p = import_graph(g, weight_bits=6, quantise="percentile")
    assert p.cfg.threshold >= theta
    assert all(w.min() >= -32 and w.max() <= 31 for w in p.weights)


def test_if_and_cubalif_reduce():
    w = np.ones((3, 4), np.float32)
    g = nir.NIRGraph.from_list(nir.Linear(weight=w),
                               nir.IF(r=np.full(3, 2.0), v_threshold=np.full(3, 4.0)))
    r = import_graph(g, threshold=8)
    assert r.cfg.leak_shift == 16 and np.all(r.weights[0] == 4)   # 1 * r / v_thr * 8
    g = nir.NIRGraph.from_list(nir.Linear(weight=w), nir.CubaLIF(
        tau_syn=np.full(3, DT), tau_mem=np.full(3, 2 * DT), r=np.full(3, 2.0),
        v_leak=np.zeros(3), v_threshold=np.ones(3)))
    r = import_graph(g, threshold=10)
    assert r.cfg.leak_shift == 1 and np.all(r.weights[0] == 10)


def _check_refused(graph, kind, name):
    with pytest.raises(ConfigError) as err:
        import_graph(graph)
    msg = str(err.value)
    assert kind in msg and repr(name) in msg and "supported node types" in msg, msg


def test_unsupported_nodes_are_refused():
    w = np.ones((4, 4), np.float32)
    conv = nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 1, 3, 3)), stride=1, padding=0,
                      dilation=1, groups=1, bias=np.zeros(2))
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([1, 8, 8])}),
                            "conv1": conv,
                            "out": nir.Output(output_type={"output": np.array([2, 6, 6])})},
                     edges=[("in", "conv1"), ("conv1", "out")], type_check=False)
    _check_refused(g, "Conv2d", "conv1")
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([2, 2])}),
                            "flat": nir.Flatten(input_type={"input": np.array([2, 2])}),
                            "out": nir.Output(output_type={"output": np.array([4])})},
                     edges=[("in", "flat"), ("flat", "out")], type_check=False)
    _check_refused(g, "Flatten", "flat")
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                         padding=np.array([0, 0]))
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([1, 4, 4])}),
                            "pool": pool,
                            "out": nir.Output(output_type={"output": np.array([1, 2, 2])})},
                     edges=[("in", "pool"), ("pool", "out")], type_check=False)
    _check_refused(g, "SumPool2d", "pool")
    li = nir.CubaLI(tau_syn=np.ones(4), tau_mem=np.ones(4), r=np.ones(4), v_leak=np.zeros(4))
    _check_refused(nir.NIRGraph.from_list(nir.Linear(weight=w), li), "CubaLI", "cubali")
    # recurrent edge: lif -> fc
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Linear(weight=w), "lif": _lif(4, 4 * DT, 1.0),
             "output": nir.Output(output_type={"output": np.array([4])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "fc"),
                                         ("lif", "output")], type_check=False)
    with pytest.raises(ConfigError, match="'lif'.*LIF.*branching|recurrent"):
        import_graph(g)
    # branching: fc feeds two neurons
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Linear(weight=w), "a": _lif(4, 4 * DT, 1.0), "b": _lif(4, 4 * DT, 1.0),
             "output": nir.Output(output_type={"output": np.array([4])})}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "a"), ("fc", "b"),
                                         ("a", "output")], type_check=False)
    _check_refused(g, "Linear", "fc")
    # a CubaLIF with a real synaptic time constant, and a biased Affine
    g = nir.NIRGraph.from_list(nir.Linear(weight=w), nir.CubaLIF(
        tau_syn=np.full(4, 10 * DT), tau_mem=np.full(4, 4 * DT), r=np.ones(4),
        v_leak=np.zeros(4), v_threshold=np.ones(4)))
    _check_refused(g, "CubaLIF", "cubalif")
    g = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.ones(4, np.float32)),
                               _lif(4, 4 * DT, 1.0))
    _check_refused(g, "Affine", "affine")


def test_cli_import_error_is_clean(tmp_path, capsys):
    w = np.ones((4, 4), np.float32)
    li = nir.CubaLI(tau_syn=np.ones(4), tau_mem=np.ones(4), r=np.ones(4), v_leak=np.zeros(4))
    path = tmp_path / "li.nir"
    nir.write(str(path), nir.NIRGraph.from_list(nir.Linear(weight=w), li))
    assert main(["import", "--nir", str(path), "--config-out", str(tmp_path / "x.toml")]) == 2
    err = capsys.readouterr().err
    assert "spikeforge import: error: NIR node 'cubali' (CubaLI)" in err


def _float_net(cfg, weights):
    """A float network that is exactly an integer one: weights in threshold units."""
    return [w / cfg.threshold for w in weights]


def test_float_npz_and_torch_state_dict(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    cfg = NetworkConfig(name="f", layers=(64, 24, 10), time_steps=12, lanes=3, weight_bits=7,
                        membrane_bits=12, threshold=40, leak_shift=3)
    weights = random_weights(cfg, np.random.default_rng(3), scale=0.8)
    floats = _float_net(cfg, weights)
    np.savez(tmp_path / "f.npz", **{f"w{i}": w for i, w in enumerate(floats)})
    net = torch.nn.Sequential(torch.nn.Linear(64, 24, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(24, 10, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(floats[0].T))
        net[2].weight.copy_(torch.tensor(floats[1].T))
    torch.save(net.state_dict(), tmp_path / "f.pt")
    for path in (tmp_path / "f.npz", tmp_path / "f.pt"):
        mats = load_float_weights(path)
        q = quantise_float(mats, threshold=40, weight_bits=7, membrane_bits=12, time_steps=12,
                           lanes=3, leak_shift=3, name="f")
        assert q.cfg == cfg
        assert all(np.array_equal(a, b) for a, b in zip(weights, q.weights, strict=True))
    # the CLI: quantise, write config + weights, evaluate through the golden model
    toml, w = tmp_path / "f.toml", tmp_path / "fw.npz"
    assert main(["import", "--float", str(tmp_path / "f.pt"), "--config-out", str(toml),
                 "--weights-out", str(w), "--threshold", "40", "--weight-bits", "7",
                 "--membrane-bits", "12", "--time-steps", "12", "--lanes", "3",
                 "--leak-shift", "3", "--evaluate", "50", "--min-agreement", "80",
                 "--input-delay", "1"]) == 0      # the float twin of our own network
    out = capsys.readouterr().out
    assert "golden model accuracy" in out
    got = load_config(toml)
    assert got.layers == cfg.layers and got.threshold == 40
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 64))
    a = run_network(cfg, weights, pixels)
    b = run_network(got, load_weights(w, got), pixels)
    assert np.array_equal(a.counts, b.counts)


def test_float_bias_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(4, 3).state_dict(), tmp_path / "b.pt")
    with pytest.raises(ConfigError, match="nonzero bias"):
        load_float_weights(tmp_path / "b.pt")


def test_imported_float_network_golden_vs_rtl(tmp_path, capsys):
    """A foreign float network, quantised by import, runs bit-exact on the RTL (~20 s)."""
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "fl.npz", w0=rng.normal(0, 0.35, (64, 12)),
             w1=rng.normal(0, 0.5, (12, 10)))
    toml, w = tmp_path / "fl.toml", tmp_path / "flw.npz"
    assert main(["import", "--float", str(tmp_path / "fl.npz"), "--config-out", str(toml),
                 "--weights-out", str(w), "--lanes", "3", "--time-steps", "8"]) == 0
    assert main(["compare", "--config", str(toml), "--weights", str(w), "--samples", "2",
                 "--quiet"]) == 0
    assert "2 samples, 0 spike mismatches, 0 cycle mismatches" in capsys.readouterr().out
