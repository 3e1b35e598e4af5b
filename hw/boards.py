"""Board tops: oscillator -> PLL -> the serial top (network + host link), reset, LEDs.

Pin names of each top are the names its constraint file in ``constraints/`` locates; the
pin numbers there agree with amaranth-boards' descriptions of the same boards (tested).
"""

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from amaranth.hdl import ClockDomain, ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from spikeforge.protocol import DEFAULT_BAUD

#: ``constraints/`` of the source tree, installed as ``spikeforge.constraints``.
CONSTRAINTS = Path(str(resources.files("spikeforge.constraints")))
RESET_CYCLES = 1 << 10          # the core is held in reset this long after the PLL locks


@dataclass(frozen=True)
class Board:
    name: str
    family: str             # "ice40" or "ecp5"
    device: str             # nextpnr's device option (without dashes)
    package: str
    osc_mhz: float
    constraints: str        # file in constraints/
    target_mhz: float       # default clock of the core (the timing target)
    leds: int
    active_low: bool        # button and LEDs

    @property
    def constraint_file(self) -> Path:
        return CONSTRAINTS / self.constraints


BOARDS = {
    "icebreaker": Board("icebreaker", "ice40", "up5k", "sg48", 12.0, "icebreaker.pcf", 24.0, 2,
                        True),
    "ulx3s-85f": Board("ulx3s-85f", "ecp5", "85k", "CABGA381", 25.0, "ulx3s-85f.lpf", 75.0, 8,
                       False),
}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise ValueError(f"board {name!r}: expected one of {', '.join(sorted(BOARDS))}")
    return BOARDS[name]


def ice40_pll(f_in: float, f_out: float) -> dict:
    """SB_PLL40 divider settings (SIMPLE feedback) whose output is nearest ``f_out`` MHz:
    PFD ``f_in / (DIVR + 1)`` in [10, 133] MHz, VCO ``PFD * (DIVF + 1)`` in [533, 1066] MHz,
    output ``VCO / 2**DIVQ`` (iCE40 sysCLOCK PLL guide; the search icepll does)."""
    best = None
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if best is None or abs(out - f_out) < abs(best["f_out"] - f_out):
                    filt = next(i for i, hi in enumerate((17, 26, 44, 66, 101, 1e9), 1)
                                if pfd < hi)
                    best = {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt,
                            "f_out": out}
    if best is None:
        raise ValueError(f"no iCE40 PLL setting for {f_in} MHz in")
    return best


def ecp5_pll(f_in: float, f_out: float) -> dict:
    """EHXPLLL settings (feedback from CLKOP) nearest ``f_out`` MHz: PFD ``f_in / CLKI_DIV``
    in [3.125, 400] MHz, output ``PFD * CLKFB_DIV``, VCO ``output * CLKOP_DIV`` in
    [400, 800] MHz (the search ecppll does)."""
    best = None
    for clki in range(1, 129):
        pfd = f_in / clki
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            for clkop in range(1, 129):
                if not 400 <= out * clkop <= 800:
                    continue
                if best is None or abs(out - f_out) < abs(best["f_out"] - f_out):
                    best = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                            "f_out": out}
                break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting for {f_in} MHz in")
    return best


class BoardTop(wiring.Component):
    """The serial top on a board: the oscillator ``clk_in`` through the board's PLL makes the
    core clock (``f_mhz``, nearest the PLL can make); the core stays in reset until the PLL
    has locked, then :data:`RESET_CYCLES` + 1 more (the reset is registered), and while
    ``button`` is pressed. LED 0 shows ``busy``, LED 1 ``error`` (sticky); on boards with more
    LEDs the rest stay off. The UART runs at ``baud`` (divisor ``round(f_out / baud)``).
    """

    def __init__(self, cfg, board: Board, f_mhz: float | None = None, baud: int = DEFAULT_BAUD):
        self.cfg, self.board = cfg, board
        pll = (ice40_pll if board.family == "ice40" else ecp5_pll)(
            board.osc_mhz, f_mhz or board.target_mhz)
        self.pll = pll
        self.f_mhz = pll["f_out"]
        self.divisor = round(self.f_mhz * 1e6 / baud)
        self.baud_error = abs(self.f_mhz * 1e6 / self.divisor - baud) / baud
        if self.baud_error > 0.02:
            raise ValueError(f"{baud} baud at {self.f_mhz:.3f} MHz: the nearest divisor "
                             f"{self.divisor} is {100 * self.baud_error:.1f}% off (at most "
                             f"2%); choose another --baud or --freq")
        # imported here: the board table above is read by the CLI's parser, which should
        # not need the gateware (nor fail with it)
        from spikeforge.hw.serial_top import SerialTop

        self.core = SerialTop(cfg, self.divisor)
        super().__init__({"clk_in": In(1), "button": In(1), "uart_rx": In(1, init=1),
                          "uart_tx": Out(1, init=1), "led": Out(board.leds)})

    def _pll(self, m, clk, lock):
        p = self.pll
        if self.board.family == "ice40":
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
                p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"], i_PACKAGEPIN=self.clk_in,
                i_RESETB=1, i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=lock)
        else:
            m.submodules.pll = Instance(
                "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1,
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                a_FREQUENCY_PIN_CLKI=f"{self.board.osc_mhz:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.f_mhz:g}", a_ICP_CURRENT="12",
                a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                i_CLKI=self.clk_in, i_CLKFB=clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0,
                i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0, o_CLKOP=clk, o_LOCK=lock)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain()
        m.domains.por = ClockDomain(reset_less=True)
        clk, lock = Signal(), Signal()
        self._pll(m, clk, lock)
        m.d.comb += [ClockSignal("sync").eq(clk), ClockSignal("por").eq(clk)]
        hold = Signal(range(RESET_CYCLES + 1))
        pressed = ~self.button if self.board.active_low else self.button
        with m.If(~lock | pressed):
            m.d.por += hold.eq(0)
        with m.Elif(hold != RESET_CYCLES):
            m.d.por += hold.eq(hold + 1)
        # the reset fans out to every flip-flop of the core: it leaves a flip-flop, not a
        # comparator (one cycle later than the count, on and off)
        in_reset = Signal(init=1)
        m.d.por += in_reset.eq(hold != RESET_CYCLES)
        m.d.comb += ResetSignal("sync").eq(in_reset)

        m.submodules.core = core = self.core
        leds = Signal(self.board.leds)
        m.d.comb += [core.uart_rx.eq(self.uart_rx), self.uart_tx.eq(core.uart_tx),
                     leds[0].eq(core.busy), leds[1].eq(core.error),
                     self.led.eq(~leds if self.board.active_low else leds)]
        return m
