"""Board tops: PLL settings, constraint files against amaranth-boards, and the UP5K build
(Yosys + nextpnr, run in the default test run so that a change breaking synthesis or
timing fails CI)."""

import argparse
import json
import re

import pytest
from amaranth.back import rtlil

from spikeforge.config import load_config
from spikeforge.hw.boards import BOARDS, BoardTop, board, ecp5_pll, ice40_pll


@pytest.mark.parametrize("f_out", [18.0, 24.0, 30.0, 48.0])
def test_ice40_pll_settings_are_legal_and_exact(f_out):
    p = ice40_pll(12.0, f_out)
    pfd = 12.0 / (p["DIVR"] + 1)
    vco = pfd * (p["DIVF"] + 1)
    assert 10 <= pfd <= 133 and 533 <= vco <= 1066
    assert vco / 2 ** p["DIVQ"] == p["f_out"] == pytest.approx(f_out)


@pytest.mark.parametrize("f_out", [50.0, 75.0, 100.0])
def test_ecp5_pll_settings_are_legal_and_exact(f_out):
    p = ecp5_pll(25.0, f_out)
    out = 25.0 / p["CLKI_DIV"] * p["CLKFB_DIV"]
    assert 400 <= out * p["CLKOP_DIV"] <= 800
    assert out == p["f_out"] == pytest.approx(f_out)


def constraint_pins(b) -> dict[str, str]:
    text = b.constraint_file.read_text()
    if b.family == "ice40":
        return dict(re.findall(r"^set_io\s+(\S+)\s+(\S+)", text, re.M))
    return dict(re.findall(r'^LOCATE COMP "([^"]+)" SITE "([^"]+)"', text, re.M))


def test_constraint_files_agree_with_amaranth_boards():
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    for b, platform, leds in ((board("icebreaker"), ICEBreakerPlatform(), (0, 1)),
                              (board("ulx3s-85f"), ULX3S_85F_Platform(), range(8))):
        res = {(r.name, r.number): r for r in platform.resources.values()}

        def pin(name, number=0, sub=None, res=res):
            r = res[(name, number)]
            io = r.ios[0] if sub is None else next(s for s in r.ios if s.name == sub).ios[0]
            return io.names[0]

        want = {"clk_in": pin(platform.default_clk), "button": pin("button"),
                "uart_rx": pin("uart", sub="rx"), "uart_tx": pin("uart", sub="tx"),
                **{f"led[{i}]": pin("led", i) for i in leds}}
        assert constraint_pins(b) == want, b.name


def test_board_top_ports_match_its_constraints():
    for name, b in BOARDS.items():
        cfg = load_config("digits-up5k")
        text = rtlil.convert(BoardTop(cfg, b), name="top")
        top = next(mod for mod in text.split("\nmodule ") if mod.startswith("\\top\n"))
        ports = set(re.findall(r"wire width \d+ (?:input|output) \d+\s+\\(\S+)", top))
        pins = {p.split("[")[0] for p in constraint_pins(b)}
        assert ports == pins, name


def test_board_errors_name_the_legal_choices():
    with pytest.raises(ValueError, match="board 'de0': expected one of icebreaker, ulx3s-85f"):
        board("de0")
    with pytest.raises(ValueError, match=r"2500000 baud at 24\.000 MHz.*4\.0% off \(at most "
                                         r"2%\)"):
        BoardTop(load_config("digits-up5k"), board("icebreaker"), 24.0, baud=2_500_000)


def test_up5k_build_meets_timing(tmp_path):
    """The CI synthesis: digits-up5k on the iCEBreaker through Yosys + nextpnr + icepack,
    placed and routed for two seeds (``--seeds``: one netlist, each seed in its own folder;
    the report and bitstream in the output folder are the fastest seed's, and every seed's
    Fmax is listed, matching that seed's own nextpnr JSON). The report's numbers are
    nextpnr's own JSON; timing at the 24 MHz target must be met and the design must fit."""
    from spikeforge.commands.synth import seed_list
    from spikeforge.synth import build, core_clock, lut_usage, summary_line

    report = build(load_config("digits-up5k"), "icebreaker", tmp_path, seeds=[2, 3],
                   progress=lambda s: None)
    raw = json.loads((tmp_path / "nextpnr_report.json").read_text())
    assert report["utilization"]["ICESTORM_LC"] == {
        k: raw["utilization"]["ICESTORM_LC"][k] for k in ("used", "available")}
    clock = core_clock(report)
    assert clock["constraint_mhz"] == pytest.approx(24.0, abs=0.01)
    assert clock["met"], summary_line(report)
    used, avail = lut_usage(report)
    assert 0 < used <= avail == 5280
    assert (tmp_path / "top.bin").stat().st_size > 100_000
    # nextpnr read the board's own pins, from a copy it could reach wherever the clone lies
    # (YoWASP shadows /tmp with a scratch directory of its own)
    pcf = board("icebreaker").constraint_file
    assert (tmp_path / pcf.name).read_text() == pcf.read_text()
    assert re.fullmatch(r"synth: icebreaker digits-up5k Fmax [\d.]+ MHz \(constraint 24\.00 "
                        r"MHz\), LUT \d+/5280", summary_line(report))
    # the seeds
    fmax = {}
    for seed in (2, 3):
        raw = json.loads((tmp_path / f"seed{seed}" / "nextpnr_report.json").read_text())
        fmax[str(seed)] = round(max(raw["fmax"].values(),
                                    key=lambda c: c["constraint"])["achieved"], 2)
    assert report["seed_fmax_mhz"] == fmax
    best = max(fmax, key=fmax.get)
    assert report["seed"] == int(best) and clock["achieved_mhz"] == fmax[best]
    assert (tmp_path / "top.bin").read_bytes() == (tmp_path / f"seed{best}" / "top.bin") \
        .read_bytes()
    assert f"kept seed {best}" in (tmp_path / "report.md").read_text()
    assert seed_list("1-3,7") == [1, 2, 3, 7]
    for bad in ("0", "2,2", "x", "3-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected distinct seeds"):
            seed_list(bad)


def test_generic_flow_writes_verilog_constraints_and_script(tmp_path):
    from spikeforge.cli import main

    assert main(["synth", "-c", "digits-up5k", "--board", "icebreaker", "--generic",
                 "--out", str(tmp_path)]) == 0
    verilog = (tmp_path / "top.v").read_text()
    assert "SB_PLL40_PAD" in verilog and "module top(" in verilog
    assert (tmp_path / "icebreaker.pcf").read_text() == board("icebreaker").constraint_file \
        .read_text()
    script = (tmp_path / "build.sh").read_text()
    assert "nextpnr-ice40 --up5k --package sg48" in script and "--pcf icebreaker.pcf" in script
