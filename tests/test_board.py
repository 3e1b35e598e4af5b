"""spikeforge virtual-board and spikeforge run: the Verilated board top behind a pseudo-terminal
answers the very commands a board does; run checks INFO, loads the weights, streams samples
(inference and training) and finds 0 mismatches against the golden model; a port of another
config's board or no port at all is one clear error line."""

import numpy as np
import pytest

from spikeforge import cli
from spikeforge.config import load_config
from spikeforge.sw.desire import inference_weights
from spikeforge.sw.train import initial_weights
from spikeforge.sw.weights import load_weights, save_weights


@pytest.fixture(scope="module")
def board():
    from spikeforge.sim.virtual_board import VirtualBoard

    with VirtualBoard(load_config("digits-tiny")) as vb:
        yield vb


def run_line(capsys, argv):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_run_on_the_virtual_board_matches_the_golden_model(board, tmp_path, capsys):
    cfg = load_config("digits-tiny")
    path = tmp_path / "w.npz"
    save_weights(path, cfg, inference_weights(cfg, initial_weights(cfg, 2)))
    rc, out, _ = run_line(capsys, ["run", "--port", board.port, "-c", "digits-tiny",
                                   "--weights", str(path), "--dataset", "digits",
                                   "--samples", "4", "--check-golden"])
    assert rc == 0, out
    assert "check against the golden model: 4 samples answered, 0 mismatches" in out
    assert "digits-tiny on " in out and "samples/s" in out
    # training on the board: every output spike, cycle count and learned weight
    rc, out, _ = run_line(capsys, ["run", "--port", board.port, "-c", "digits-tiny",
                                   "--weights", str(path), "--dataset", "digits",
                                   "--samples", "2", "--check-golden", "--learn"])
    assert rc == 0, out
    assert "2 samples answered, 0 mismatches" in out
    learned = load_weights(tmp_path / "w.board.npz", cfg)
    assert any((a != b).any() for a, b in zip(learned, load_weights(path, cfg), strict=True))


def test_run_refuses_another_configs_board(board, tmp_path, capsys):
    cfg = load_config("digits-up5k")             # the same network at P = 1: INFO differs
    path = tmp_path / "w.npz"
    save_weights(path, cfg, inference_weights(cfg, initial_weights(cfg, 2)))
    rc, _, err = run_line(capsys, ["run", "--port", board.port, "-c", "digits-up5k",
                                   "--weights", str(path), "--samples", "1"])
    assert rc == 2 and len(err.splitlines()) == 1
    assert "the core was built for another config" in err and "digits-up5k" in err


def test_run_without_a_port_is_one_line(tmp_path, capsys):
    cfg = load_config("digits-tiny")
    path = tmp_path / "w.npz"
    save_weights(path, cfg, [np.zeros(cfg.weight_shape(i), dtype=np.int64)
                             for i in range(cfg.n_layers)])
    rc, _, err = run_line(capsys, ["run", "--port", str(tmp_path / "nosuch"), "-c",
                                   "digits-tiny", "--weights", str(path)])
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot open it" in err


def test_virtual_board_starts_with_weights_loaded(board):
    """virtual-board --weights: the weights are written through the board's own link and
    read back over the terminal as a host would see them."""
    from spikeforge.sw.host import HostLink, SerialTransport
    from spikeforge.sw.weights import to_stored

    cfg = load_config("digits-tiny")
    stored = to_stored(cfg, inference_weights(cfg, initial_weights(cfg, 5)))
    board.load_weights(stored)
    transport = SerialTransport(board.port, timeout=30.0)
    try:
        back = HostLink(transport, cfg).read_weights()
    finally:
        transport.close()
    assert all((a == b).all() for a, b in zip(back, stored, strict=True))
