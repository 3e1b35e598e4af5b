"""NeuroBench metrics of a network, computed by the ``neurobench`` package (optional extra
``.[neurobench]``) on a torch module that wraps the golden model's integer forward pass,
next to the project's own counts of the same things.

:class:`GoldenSNN` runs :func:`sw.golden.run_network` and shows NeuroBench what the network
did, step by step: each LIF layer is an ``nn.Linear`` (the integer weights, as floats) fed
the input spikes that layer integrates, and a :class:`GoldenLIF` activation that returns
the layer's spikes. The prediction is the golden model's (ties as the config decides them).

Where the definitions differ (``own`` against ``neurobench`` in :func:`measure`):

* **Synaptic operations.** NeuroBench's effective ACs count, per input spike, the *non-zero*
  weights of its row; ``sw.throughput.synaptic_ops`` counts every weight the layer engine
  adds (``N_post`` per input spike, zero or not). Both skip the last step of each input
  population, which the one-step delay never integrates. The two agree when no weight is 0.
* **Footprint.** NeuroBench counts the torch parameters: 4 bytes per weight (float32). The
  core stores ``store_bits`` per weight (inference bits plus the learning fraction).
* **Activation sparsity.** Both: 1 - spikes / (neurons x steps) over the LIF populations
  (hidden and output), every step.
* **Connection sparsity.** Both: the fraction of weights that are 0.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spikeforge.sw.golden import run_network


class GoldenLIF(nn.Module):
    """A LIF population as NeuroBench sees it: returns the spikes the golden model made at
    this step (set by :class:`GoldenSNN` just before the call)."""

    def __init__(self):
        super().__init__()
        self.spikes: torch.Tensor | None = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        return self.spikes


class GoldenSNN(nn.Module):
    """The network of ``cfg`` with integer ``weights`` (inference weights, one ``(N_pre,
    N_post)`` array per LIF layer). ``forward(pixels)``: ``(B, N_in)`` pixels -> ``(B,)``
    predictions (-1: no decision)."""

    def __init__(self, cfg, weights):
        super().__init__()
        self.cfg, self.weights = cfg, [np.asarray(w) for w in weights]
        self.fc = nn.ModuleList()
        self.lif = nn.ModuleList()
        for w in self.weights:
            linear = nn.Linear(w.shape[0], w.shape[1], bias=False)
            linear.weight.data = torch.tensor(w.T, dtype=torch.float32)
            self.fc.append(linear)
            self.lif.append(GoldenLIF())
        self.runs = []                  # the golden model's run of every batch, in order

    @torch.no_grad()
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        run = run_network(self.cfg, self.weights, pixels.numpy().astype(np.int64))
        self.runs.append(run)
        steps = self.cfg.time_steps
        for t in range(steps):
            for layer, (fc, lif) in enumerate(zip(self.fc, self.lif, strict=True)):
                current = None
                if t < steps - 1:            # step t of the input is integrated in phase t+1
                    current = fc(torch.from_numpy(run.rasters[layer][:, t].astype(np.float32)))
                lif.spikes = torch.from_numpy(run.rasters[layer + 1][:, t].astype(np.float32))
                lif(current)
        return torch.from_numpy(np.asarray(run.predictions, dtype=np.int64))


def measure(cfg, weights, pixels: np.ndarray, labels: np.ndarray, *,
            batch_size: int = 100) -> dict:
    """NeuroBench's footprint, connection sparsity, activation sparsity, synaptic operations
    and classification accuracy (``neurobench``), and the project's own counts of the same
    (``own``), over ``pixels`` / ``labels``."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        SynapticOperations,
    )
    from neurobench.models import TorchModel
    from torch.utils.data import DataLoader, TensorDataset

    from spikeforge.sw.throughput import synaptic_ops

    net = GoldenSNN(cfg, weights)
    model = TorchModel(net)
    model.add_activation_module(GoldenLIF)
    data = TensorDataset(torch.tensor(np.asarray(pixels, dtype=np.int64)),
                         torch.tensor(np.asarray(labels, dtype=np.int64)))
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    bench = Benchmark(model, loader, [], [], [[Footprint, ConnectionSparsity],
                                               [ActivationSparsity, SynapticOperations,
                                                ClassificationAccuracy]])
    got = bench.run(quiet=True)
    nb = {"footprint_bytes": got["Footprint"],
          "connection_sparsity": got["ConnectionSparsity"],
          "activation_sparsity": got["ActivationSparsity"],
          "effective_acs": got["SynapticOperations"]["Effective_ACs"],
          "effective_macs": got["SynapticOperations"]["Effective_MACs"],
          "dense_synops": got["SynapticOperations"]["Dense"],
          "accuracy": got["ClassificationAccuracy"]}

    # the same golden runs NeuroBench saw, batch after batch
    rasters = [np.concatenate([run.rasters[pop] for run in net.runs])
               for pop in range(len(cfg.layers))]
    predictions = np.concatenate([np.asarray(run.predictions) for run in net.runs])
    sops = synaptic_ops(cfg, rasters)
    nonzero_acs = np.zeros(len(pixels))
    for layer, w in enumerate(weights):          # non-zero weights of each integrated spike
        fan = (np.asarray(w) != 0).sum(axis=1)           # (N_pre,)
        nonzero_acs += (rasters[layer][:, :-1] @ fan).sum(axis=1)
    spikes = sum(int(r.sum()) for r in rasters[1:])
    slots = sum(r[0].size for r in rasters[1:]) * len(pixels)
    synapses = sum(np.asarray(w).size for w in weights)
    own = {"footprint_bytes": synapses * cfg.store_bits / 8,
           "connection_sparsity": float(sum(int((np.asarray(w) == 0).sum()) for w in weights)
                                        / synapses),
           "activation_sparsity": 1 - spikes / slots,
           "sops": float(sops.mean()), "nonzero_acs": float(nonzero_acs.mean()),
           "accuracy": float(np.mean(predictions == np.asarray(labels)))}
    return {"neurobench": nb, "own": own, "samples": int(len(pixels))}
