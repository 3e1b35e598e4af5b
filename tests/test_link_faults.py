"""A faulty link: the driver sends a frame again when no valid answer came back, never runs a
sample twice (the core's sample counter decides), and `spikeforge run` against a virtual
board with dropped and corrupted bytes and a pulled cable ends with every sample answered
(and equal to the golden model) or reported as lost."""

import re

import numpy as np
import pytest

from spikeforge import cli
from spikeforge.config import load_config
from spikeforge.protocol import (
    COUNTERS,
    FRAME_HEADER,
    RUN_RESPONSE,
    Command,
    ErrorCode,
    nbytes,
    pack,
    unpack,
)
from spikeforge.sim.virtual_board import FaultSpec
from spikeforge.sw.host import CoreError, HostLink, LinkError, SampleLost, crc

CFG = load_config("digits-tiny")


def response(status, payload=b""):
    body = bytes([status]) + len(payload).to_bytes(2, "little") + payload
    return bytes([0x5A]) + body + bytes([crc(body)])


class FaultyCore:
    """A core behind a scripted line. Each request frame takes the next action of
    ``script`` (then "ok"): "ok" answers; "lose_answer" runs it and the answer is lost;
    "lose_request" never reaches the core; "crc" reaches it broken (a checksum error
    response); "argument" is refused as out of range; "dead": the line is down for good."""

    def __init__(self, script, samples=41):
        self.script, self.samples = list(script), samples
        self.pending, self.runs, self.drains, self.dead = b"", [], 0, False
        self.frames = []                             # (command, payload) of every request

    def write(self, data):
        head = unpack(FRAME_HEADER, data[:nbytes(FRAME_HEADER)])
        self.frames.append((head.code, data[nbytes(FRAME_HEADER):-1]))
        action = self.script.pop(0) if self.script else "ok"
        self.dead = self.dead or action == "dead"
        if self.dead or action == "lose_request":
            return
        if action in ("crc", "argument"):
            code = ErrorCode.CRC if action == "crc" else ErrorCode.ARGUMENT
            self.pending += response(code, bytes([head.code]))
            return
        if head.code == Command.RUN:
            self.samples += 1
            self.runs.append(data)
            answer = response(Command.RUN, pack(RUN_RESPONSE, {"cycles": 100 + self.samples,
                                                               "prediction": 3}))
        elif head.code == Command.COUNTERS:
            answer = response(Command.COUNTERS, pack(COUNTERS, {"samples": self.samples}))
        else:
            answer = response(head.code)
        if action != "lose_answer":
            self.pending += answer

    def read(self, n):
        data, self.pending = self.pending[:n], self.pending[n:]
        if len(data) < n:
            raise LinkError(f"timeout: {len(data)} of {n} response bytes arrived")
        return data

    def drain(self, quiet):
        self.drains += 1
        self.pending = b""
        return 0


def run_on(core, retries=3):
    link = HostLink(core, CFG, retries=retries)
    return link, link.run(np.zeros(CFG.layers[0], dtype=np.uint8), label=1, lr_shift=0)


def test_a_run_whose_answer_was_lost_is_not_sent_again():
    core = FaultyCore(["ok", "lose_answer"])          # COUNTERS (the baseline), then RUN
    with pytest.raises(SampleLost, match="ran the sample but its answer was lost") as lost:
        run_on(core)
    assert lost.value.applied is True
    assert len(core.runs) == 1 and core.samples == 42


def test_a_run_the_core_never_saw_or_refused_is_sent_again_once_applied():
    for script in (["ok", "lose_request"], ["ok", "crc"], ["ok", "crc", "lose_request"]):
        core = FaultyCore(script)
        link, result = run_on(core)
        assert result.cycles == 142 and result.prediction == 3
        assert len(core.runs) == 1 and core.samples == 42 == link.samples
        assert link.resends == len(script) - 1 and core.drains >= link.resends


def test_idempotent_commands_are_resent_and_refusals_are_not():
    core = FaultyCore(["lose_answer", "crc"])
    link = HostLink(core, CFG, retries=2)
    link.write_words(0, 0, [0])                      # third try answers
    assert link.resends == 2
    core = FaultyCore(["lose_answer", "crc"])
    with pytest.raises(LinkError, match="checksum mismatch"):
        HostLink(core, CFG, retries=1).write_words(0, 0, [0])
    core = FaultyCore(["argument"])
    link = HostLink(core, CFG, retries=3)
    with pytest.raises(CoreError, match="argument out of range"):
        link.write_words(0, 0, [0])
    assert link.resends == 0 and core.drains == 0
    core = FaultyCore(["ok", "argument"])            # a refused RUN is raised, not lost
    with pytest.raises(CoreError, match="argument out of range"):
        run_on(core)


def test_a_broken_weight_frame_is_sent_again_in_halves():
    link = HostLink(FaultyCore(["ok", "crc", "lose_answer"]), CFG, retries=2)
    words = list(range(2 * link.max_words + 3))
    link.write_words(1, 5, words)
    counts = [int.from_bytes(p[3:5], "little") for _, p in link.transport.frames]
    m = link.max_words
    rest, q = len(words) - m, (m // 2) // 2       # after two failures: a quarter buffer
    assert counts == [m, m, m // 2] + [min(q, rest - i) for i in range(0, rest, q)]
    sent = [int.from_bytes(p[1:3], "little") for _, p in link.transport.frames]
    assert sent[:4] == [5, 5 + m, 5 + m, 5 + m] and link.resends == 2


def test_a_dead_link_loses_the_sample_without_guessing_whether_it_ran():
    core = FaultyCore(["ok", "dead"])
    with pytest.raises(SampleLost, match="could not be read either") as lost:
        run_on(core)
    assert lost.value.applied is None
    core = FaultyCore(["ok", "lose_request", "ok", "lose_request", "ok"])   # RUN, COUNTERS, ..
    with pytest.raises(SampleLost, match="no valid answer in 2 tries, the core did not run"):
        run_on(core, retries=1)
    assert core.runs == []


def test_fault_spec_parses_and_names_bad_values():
    spec = FaultSpec.parse("drop=0.01, corrupt=0.002,unplug_at=900,seed=4")
    assert (spec.drop, spec.corrupt, spec.unplug, spec.unplug_at, spec.seed) == (
        0.01, 0.002, 0, 900, 4)
    assert spec.any() and not FaultSpec.parse("").any()
    with pytest.raises(ValueError, match=r"fault drop = 0.7 is out of range, legal range "
                                         r"\[0, 0.5\]"):
        FaultSpec.parse("drop=0.7")
    with pytest.raises(ValueError, match="expected KEY=VALUE with KEY one of drop, corrupt"):
        FaultSpec.parse("loss=0.1")
    with pytest.raises(ValueError, match="fault seed: 'x' is not a number"):
        FaultSpec.parse("seed=x")


FAULTS = "drop=0.0003,corrupt=0.0003,unplug_at=8500,unplug_s=1,seed=5"


def run_line(capsys, argv):
    rc = cli.main(argv)
    return rc, capsys.readouterr().out


def test_run_over_a_faulty_line_loses_nothing_silently(tmp_path, capsys):
    """Inference, then training, on one virtual board whose line drops and corrupts bytes
    and is unplugged for a second in the first run's samples: every sample is answered and
    equal to the golden model (spikes, cycles, and for training the weights read back) or
    listed as lost, and the exit status says so."""
    from spikeforge.sim.virtual_board import VirtualBoard
    from spikeforge.sw.desire import inference_weights
    from spikeforge.sw.train import initial_weights
    from spikeforge.sw.weights import save_weights

    path = tmp_path / "w.npz"
    save_weights(path, CFG, inference_weights(CFG, initial_weights(CFG, 3)))
    n, resent = 12, 0
    with VirtualBoard(CFG, faults=FaultSpec.parse(FAULTS)) as board:
        for learn in (False, True):
            rc, out = run_line(capsys, [
                "run", "--port", board.port, "-c", "digits-tiny", "--weights", str(path),
                "--dataset", "digits", "--samples", str(n), "--check-golden", "--retries", "6",
                "--timeout", "1.5"] + (["--learn"] if learn else []))
            answered = int(re.search(r"(\d+) samples answered", out).group(1))
            link = re.search(r"(\d+) frames sent again; (\d+) samples lost", out)
            lost = int(link.group(2)) if link else 0
            resent += int(link.group(1)) if link else 0
            assert answered + lost == n, out
            assert rc == (3 if lost else 0), out
            assert re.search(r"check against the golden model: \d+ samples answered.*, "
                             r"0 mismatches", out), out
            if learn:
                assert "learned weights read back" in out, out
    got = board.injected
    assert got["dropped"] > 0 and got["corrupted"] > 0 and got["unplugs"] == 1, got
    assert resent > 0
