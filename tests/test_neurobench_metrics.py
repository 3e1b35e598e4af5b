"""NeuroBench's metrics (the neurobench package, on a torch module wrapping the golden model)
against the project's own counts: the same accuracy and activation and connection sparsity;
NeuroBench's effective ACs equal the synaptic operations on non-zero weights, and with no
zero weight the SOPs of sw.throughput."""

import numpy as np
import pytest

from spikeforge import cli
from spikeforge.config import load_config
from spikeforge.sw.datasets import load_for_config
from spikeforge.sw.desire import inference_weights
from spikeforge.sw.golden import run_network
from spikeforge.sw.neurobench_metrics import measure
from spikeforge.sw.train import initial_weights
from spikeforge.sw.weights import save_weights

CFG = load_config("digits-tiny")


@pytest.fixture(scope="module")
def data():
    return load_for_config(CFG, None)


def test_neurobench_agrees_with_the_golden_model_counts(data):
    weights = inference_weights(CFG, initial_weights(CFG, 4))
    weights[0][:20] = 0                        # some zero weights: the SOP definitions part
    pixels, labels = data.test_pixels[:90], data.test_labels[:90]
    got = measure(CFG, weights, pixels, labels, batch_size=32)
    nb, own = got["neurobench"], got["own"]
    run = run_network(CFG, weights, pixels)
    assert nb["accuracy"] == pytest.approx(np.mean(run.predictions == labels), abs=1e-6)
    assert own["accuracy"] == np.mean(run.predictions == labels)
    assert nb["effective_acs"] == own["nonzero_acs"] < own["sops"]
    assert nb["effective_macs"] == 0                   # every input is spikes
    assert nb["activation_sparsity"] == pytest.approx(own["activation_sparsity"], abs=1e-12)
    assert nb["connection_sparsity"] == pytest.approx(own["connection_sparsity"], abs=1e-4)
    assert own["connection_sparsity"] > 20 * 32 / (64 * 32 + 32 * 10) - 1e-9
    assert nb["footprint_bytes"] == 4 * (64 * 32 + 32 * 10)         # float32 parameters
    assert own["footprint_bytes"] == (64 * 32 + 32 * 10) * CFG.store_bits / 8
    spikes = sum(int(r.sum()) for r in run.rasters[1:])
    assert own["activation_sparsity"] == pytest.approx(1 - spikes / (90 * 20 * 42))

    dense = [np.where(w == 0, 1, w) for w in weights]     # no zero weight: ACs = SOPs
    got = measure(CFG, dense, pixels, labels)
    assert got["neurobench"]["effective_acs"] == got["own"]["sops"]


def test_metrics_command_prints_both_columns(tmp_path, capsys):
    path = tmp_path / "w.npz"
    save_weights(path, CFG, inference_weights(CFG, initial_weights(CFG, 1)))
    assert cli.main(["metrics", "-c", "digits-tiny", "--weights", str(path),
                     "--samples", "50"]) == 0
    out = capsys.readouterr().out
    assert "| metric | NeuroBench | spikeforge |" in out
    assert "| activation sparsity |" in out and "50 test samples of digits" in out
