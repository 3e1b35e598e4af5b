"""One config, one source of truth.

A config is a TOML file (see ``configs/*.toml`` and ``docs/number_formats.md``) loaded into the
frozen, validated :class:`NetworkConfig`. The golden model (``sw``) and the gateware (``hw``)
are both built from it; nothing is duplicated by hand. Every invalid value fails at load time
with a :class:`ConfigError` that names the field and its legal range.

This module imports nothing from ``hw``, ``sw`` or ``sim``.
"""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path

from spikeforge import lfsr

__all__ = ["ConfigError", "DecoderConfig", "DesireConfig", "NetworkConfig", "TTFSConfig",
           "load_config", "profile_names", "CONFIG_DIR"]

#: The shipped profiles: ``configs/`` of the source tree, installed as ``spikeforge.configs``.
CONFIG_DIR = Path(str(resources.files("spikeforge.configs")))

ENCODINGS = ("rate",)        # "ttfs" configs load as TTFSConfig
TIE_BREAKS = ("none", "first_spike")
EARLY_EXITS = ("none", "settled")
#: Every dataset name, defined here once: what a config's ``dataset`` may be, what
#: :func:`spikeforge.sw.datasets.load_dataset` loads (its ``DATASET_NAMES``) and what the
#: CLI's ``--dataset`` takes.
DATASETS = ("digits", "mnist-t10k", "mnist", "fashion-mnist")

# Legal ranges, in one place so messages and checks cannot disagree.
MAX_NEURONS = 4096
SPRAM_BLOCKS = 4        # SB_SPRAM256KA of the iCE40UP5K (hw/spram.py) ...
SPRAM_DEPTH = 16384     # ... of this many words
SPRAM_WIDTH = 16        # ... of this many bits
WEIGHT_BITS = (2, 16)
MEMBRANE_BITS = (3, 32)
LEAK_SHIFT = (1, 16)
TIME_STEPS = (1, 1024)
PIXEL_BITS = (1, 16)
WEIGHT_FRAC_BITS = (0, 16)
TRACE_FRAC_BITS = (0, 12)
LR_SHIFT = (0, 40)
ROUNDINGS = ("nearest", "floor", "stochastic")
LFSR_SEED = (0, lfsr.PERIOD - 1)
ELIGIBILITIES = ("spike", "near")
HIDDEN_GATES = ("none", "error")
#: Dropout: a neuron is dropped iff the low DROPOUT_BITS bits of its lane's mask LFSR are
#: below ``p * DROPOUT_STEPS``; the LFSR moves DROPOUT_BITS steps per group (fresh bits).
DROPOUT_BITS = 8
DROPOUT_STEPS = 1 << DROPOUT_BITS
DECODER_KINDS = ("linear",)
DECODER_EXITS = ("fixed", "margin")
DECODER_WEIGHT_BITS = (2, 16)


class ConfigError(ValueError):
    """A config field is missing, unknown or outside its legal range."""


def spram_count(depth: int, width: int) -> int:
    """SPRAMs a ``depth`` x ``width``-bit memory takes: ``ceil(width / SPRAM_WIDTH)`` side by
    side times ``ceil(depth / SPRAM_DEPTH)`` deep."""
    return -(-depth // SPRAM_DEPTH) * -(-width // SPRAM_WIDTH)


def _check_range(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: {value} is out of range, legal range is [{lo}, {hi}]")
    return value


def _check_fraction(name: str, value, lo: float, hi: float) -> Fraction:
    """A decimal given in TOML as an exact fraction (``0.3`` is 3/10, not the nearest double)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: expected a number in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: {value} is out of range, legal range is [{lo}, {hi}]")
    return Fraction(str(value))


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder on the chip and its early exit (``[decoder]``, ``docs/decoder.md``).

    Attributes
    ----------
    kind : str
        ``"linear"``: one affine map of the binary readout raster of the first ``steps``
        steps to one score per output neuron (class).
    steps : int
        ``T_dec``: the raster steps the decoder reads, ``1 .. T``; a decoded sample runs at
        most this many steps.
    weight_bits : int
        Signed width of the decoder's weights and biases (``2 .. 16``).
    exit : str
        ``"fixed"``: decide after ``steps`` steps; ``"margin"``: also after any earlier step,
        from ``min_steps`` on, whose top score leads the second by at least ``margin``.
    margin : int
        The lead, in score units (the integer weights' scale), ``1 .. 2**(score_bits - 1)``;
        unused with ``"fixed"``.
    min_steps : int
        ``"margin"``: the first check comes after this many steps, ``1 .. steps``.
    """

    kind: str = "linear"
    steps: int = 6
    weight_bits: int = 8
    exit: str = "fixed"
    margin: int = 0
    min_steps: int = 1

    def validate(self, time_steps: int, n_out: int):
        if self.kind not in DECODER_KINDS:
            raise ConfigError(f"decoder.kind: {self.kind!r} is not one of {DECODER_KINDS}")
        _check_range("decoder.steps", self.steps, 1, time_steps)
        _check_range("decoder.weight_bits", self.weight_bits, *DECODER_WEIGHT_BITS)
        if self.exit not in DECODER_EXITS:
            raise ConfigError(f"decoder.exit: {self.exit!r} is not one of {DECODER_EXITS}")
        if self.exit == "margin":
            _check_range("decoder.margin", self.margin, 1,
                         1 << (self.score_bits(n_out) - 1))
            _check_range("decoder.min_steps", self.min_steps, 1, self.steps)

    @property
    def first_check(self) -> int:
        """Steps run before the first decision check: ``min_steps`` (``"margin"``) or
        ``steps`` (``"fixed"``)."""
        return self.min_steps if self.exit == "margin" else self.steps

    def score_bits(self, n_out: int) -> int:
        """Signed width of a score: the bias and ``steps * n_out`` weights of
        ``weight_bits`` each, summed without overflow."""
        return self.weight_bits + max(1, (self.steps * n_out).bit_length())


@dataclass(frozen=True)
class DesireConfig:
    """Settings of on-chip desire backpropagation (``[learning]``, ``docs/learning.md``).

    Attributes
    ----------
    error_margin : int
        The label neuron's spike-count target is ``C* = T - error_margin``.
    desire_out, desire_hidden : float
        Ternarisation thresholds of the published algorithm (0.30 and 0.05), as given; the
        integer thresholds the hardware compares with are derived exactly from them.
    weight_frac_bits : int
        ``F``: extra fractional weight bits kept in the weight memory for learning; the
        stored weight is ``weight_bits + F`` bits and inference reads ``W_store >> F``.
    trace_frac_bits : int
        Presynaptic traces count in units of ``2**-trace_frac_bits`` spikes.
    lr_shift : int
        Learning rate as a shift: ``|dW_store| = round(acc / 2**lr_shift)``.
    lr_decay : float
        Host-side schedule: epoch ``e`` trains with ``lr_shift + floor(e * lr_decay / ln 2)``
        (the published ``lr * exp(-lr_decay * e)`` in halvings).
    rounding : str
        ``"nearest"`` (half up, on the magnitude), ``"floor"`` (truncate the magnitude) or
        ``"stochastic"`` (``(acc + r) >> shift``, ``r`` the low ``shift`` bits of a per-lane
        LFSR: unbiased; :mod:`spikeforge.lfsr`, ``docs/learning.md``).
    lfsr_seed : int
        Stochastic rounding: where the ``P`` lane LFSRs start (their reset states,
        :func:`spikeforge.lfsr.lane_seeds`), ``0 .. 2^20 - 2``; unused by the other modes.
    eligibility : str
        What the presynaptic trace pairs with in the eligibility: ``"spike"`` (the
        postsynaptic spikes, as published) or ``"near"`` (the steps whose membrane, before
        the threshold test, reached ``ceil(near_fraction * threshold)``; ``docs/learning.md``).
    near_fraction : float
        ``"near"`` eligibility: the fraction of the threshold, in ``(0, 1]``, a membrane must
        reach (default 0.5); unused with ``"spike"``.
    dropout_hidden : float
        ``p``: while training, each neuron of every hidden LIF population is dropped (never
        fires in that sample) with probability ``p``, from per-lane mask LFSRs; kept spikes
        are not rescaled. A multiple of 1/256 in ``[0, 1)``, taken exactly
        (``Fraction(str(p))``); 0 (the default) is off. ``docs/learning.md`` (Dropout).
    dropout_seed : int
        Where the mask LFSRs start (:attr:`NetworkConfig.dropout_seeds`), ``0 .. 2^20 - 2``;
        unused without dropout.
    hidden_gate : str
        Which hidden neurons learn: ``"none"`` (as published: every one whose backward sum
        reaches the hidden threshold) or ``"error"`` (of those, only the ones whose own spike
        count is not yet where the desire wants it: fewer than ``C*`` spikes for a desire to
        fire more, at least one for a desire to fire less; ``docs/learning.md``).
    """

    error_margin: int = 4
    desire_out: float = 0.30
    desire_hidden: float = 0.05
    weight_frac_bits: int = 6
    trace_frac_bits: int = 4
    lr_shift: int = 8
    lr_decay: float = 0.04
    rounding: str = "nearest"
    lfsr_seed: int = 0
    eligibility: str = "spike"
    near_fraction: float = 0.5
    dropout_hidden: float = 0
    dropout_seed: int = 0
    hidden_gate: str = "none"
    rule: str = "desire"

    def validate(self, time_steps: int):
        if self.rule != "desire":
            raise ConfigError(f"learning.rule: {self.rule!r} is not one of ('desire',)")
        if time_steps < 3:      # the traces need steps 0 .. T-2 and a step after them
            raise ConfigError(f"network.time_steps: {time_steps} is out of range for "
                              f"[learning], legal range is [3, {TIME_STEPS[1]}]")
        _check_range("learning.error_margin", self.error_margin, 0, time_steps - 1)
        _check_fraction("learning.desire_out", self.desire_out, 0.0, 1.0)
        _check_fraction("learning.desire_hidden", self.desire_hidden, 0.0, 1000.0)
        _check_range("learning.weight_frac_bits", self.weight_frac_bits, *WEIGHT_FRAC_BITS)
        _check_range("learning.trace_frac_bits", self.trace_frac_bits, *TRACE_FRAC_BITS)
        _check_range("learning.lr_shift", self.lr_shift, *LR_SHIFT)
        _check_fraction("learning.lr_decay", self.lr_decay, 0.0, 10.0)
        if self.rounding not in ROUNDINGS:
            raise ConfigError(f"learning.rounding: {self.rounding!r} is not one of {ROUNDINGS}")
        _check_range("learning.lfsr_seed", self.lfsr_seed, *LFSR_SEED)
        if self.eligibility not in ELIGIBILITIES:
            raise ConfigError(f"learning.eligibility: {self.eligibility!r} is not one of "
                              f"{ELIGIBILITIES}")
        frac = self.near_fraction
        if isinstance(frac, bool) or not isinstance(frac, (int, float)):
            raise ConfigError(f"learning.near_fraction: expected a number in (0, 1], got "
                              f"{frac!r}")
        if not 0 < frac <= 1:
            raise ConfigError(f"learning.near_fraction: {frac} is out of range, legal range "
                              f"is (0, 1]")
        self.dropout_steps()
        _check_range("learning.dropout_seed", self.dropout_seed, *LFSR_SEED)
        if self.hidden_gate not in HIDDEN_GATES:
            raise ConfigError(f"learning.hidden_gate: {self.hidden_gate!r} is not one of "
                              f"{HIDDEN_GATES}")

    def dropout_steps(self) -> int:
        """``dropout_hidden * 256``, exactly: the integer a mask LFSR's low 8 bits are
        compared with (0: no dropout). Raises :class:`ConfigError` unless ``dropout_hidden``
        is a multiple of 1/256 in ``[0, 1)``."""
        p, n = self.dropout_hidden, DROPOUT_STEPS
        legal = f"legal values are k/{n} for k = 0 .. {n - 1} (e.g. 0, 0.125, 0.25, 0.5)"
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise ConfigError(f"learning.dropout_hidden: expected a number, got {p!r}; {legal}")
        steps = Fraction(str(p)) * n
        if not 0 <= steps < n:
            raise ConfigError(f"learning.dropout_hidden: {p} is out of range [0, 1); {legal}")
        if steps.denominator != 1:
            near = [f"{float(Fraction(k, n))} ({k}/{n})"
                    for k in (math.floor(steps), math.ceil(steps)) if k < n]
            raise ConfigError(f"learning.dropout_hidden: {p} is not a multiple of 1/{n}; "
                              f"{legal}; the nearest: {' and '.join(near)}")
        return int(steps)

    def lr_shift_at(self, epoch: int) -> int:
        """Learning-rate shift of epoch ``epoch`` (0-based) under the exponential schedule."""
        return min(LR_SHIFT[1], self.lr_shift + math.floor(epoch * self.lr_decay / math.log(2)))


@dataclass(frozen=True)
class NetworkConfig:
    """A validated SNN configuration.

    Attributes
    ----------
    name : str
        Profile name (for reports and build directories).
    layers : tuple of int
        Neuron counts, input first: ``(n_in, n_hidden..., n_out)``; at least two entries.
    time_steps : int
        ``T``, simulation steps per sample.
    lanes : int
        ``P``, postsynaptic neurons updated per cycle in every layer engine.
    weight_bits : int
        Signed two's-complement weight width; weights lie in ``[-2**(b-1), 2**(b-1)-1]``.
    membrane_bits : int
        Signed membrane width; every membrane update saturates to this range.
    threshold : int
        Firing threshold, ``1 <= threshold``; a neuron fires when ``V >= threshold`` and
        subtracts it (subtract-reset).
    leak_shift : int
        ``k`` in ``V <- V - (V >> k)`` (arithmetic shift, floors).
    encoding : str
        Input encoding; ``"rate"``: deterministic non-leaky integrate-and-fire rate code.
    pixel_bits : int
        Unsigned pixel width fed to the rate encoder.
    input_threshold : int or None
        The rate encoder's threshold ``theta_in`` (TOML: ``encoding.threshold``); ``None``
        (the default) is ``2**pixel_bits - 1``, so a full-scale pixel spikes at every step.
        A higher one lowers every pixel's rate to ``p / theta_in``: fewer input spikes, so
        fewer cycles (layer 0 costs ``E * G`` per step). Legal range ``[2**pixel_bits - 1,
        4 * (2**pixel_bits - 1)]``.
    tie_break : str
        How the output decides between neurons with the same largest spike count:
        ``"none"`` (no decision, the prediction is ``-1``; the default) or ``"first_spike"``
        (the one whose first spike came at the earliest step; still tied: no decision).
        :func:`sw.golden.decide`, ``docs/number_formats.md``.
    early_exit : str
        ``"none"`` (the default): an inference sample runs all ``T`` steps. ``"settled"``:
        it ends after the first step at which the output counts' decision can no longer
        change (the top count leads every other by more than the steps left): the same
        predictions in fewer steps (:func:`sw.golden.settled_steps`; training samples run
        all ``T``), for a scan of the ``C`` counts (``C + 1`` cycles) after each step from
        ``T // 2`` on. Not with ``[decoder]``.
    event_input : bool
        Build the stored-raster input (``hw/raster_source.py``) next to the rate encoder, so
        the host can send input spike events instead of pixels (the host link's EVENTS
        command, ``docs/host_link.md``); default true. It costs a ``T * 2**ceil(log2 N_in)``
        bit block RAM and some logic (1 EBR and about 210 logic cells on the iCE40UP5K).
    spram_layers : tuple of int
        LIF layers whose weight memory lives in the iCE40UP5K's single-port SPRAMs
        (``hw/spram.py``) instead of block RAM: ``ceil(G * n_pre / 16384) * ceil(P *
        store_bits / 16)`` of the four 16K x 16-bit SPRAMs each. Default none. Same cycles
        and results; the gateware reads no word in the cycle after a write.
    dataset : str
        Default dataset for ``compare``/``train``.
    learning : DesireConfig or None
        On-chip learning settings; ``None`` builds an inference-only network.
    decoder : DecoderConfig or None
        The decoder on the chip and its early exit (``docs/decoder.md``); ``None``: the
        output spike counts decide, after all ``T`` steps.
    """

    name: str
    layers: tuple[int, ...]
    time_steps: int
    lanes: int
    weight_bits: int
    membrane_bits: int
    threshold: int
    leak_shift: int
    encoding: str = "rate"
    pixel_bits: int = 8
    event_input: bool = True
    input_threshold: int | None = None
    dataset: str = "digits"
    learning: DesireConfig | None = None
    tie_break: str = "none"
    early_exit: str = "none"
    decoder: DecoderConfig | None = None
    spram_layers: tuple[int, ...] = ()
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name: expected a non-empty string")
        layers = self.layers
        if not isinstance(layers, (list, tuple)) or len(layers) < 2:
            raise ConfigError(
                f"network.layers: expected a list of at least 2 sizes (input, ..., output), "
                f"got {layers!r}")
        for i, n in enumerate(layers):
            _check_range(f"network.layers[{i}]", n, 2, MAX_NEURONS)
        object.__setattr__(self, "layers", tuple(layers))
        _check_range("network.time_steps", self.time_steps, *TIME_STEPS)
        _check_range("network.lanes", self.lanes, 1, max(layers[1:]))
        _check_range("neuron.weight_bits", self.weight_bits, *WEIGHT_BITS)
        _check_range("neuron.membrane_bits", self.membrane_bits, *MEMBRANE_BITS)
        _check_range("neuron.leak_shift", self.leak_shift, *LEAK_SHIFT)
        _check_range("encoding.pixel_bits", self.pixel_bits, *PIXEL_BITS)
        if not isinstance(self.event_input, bool):
            raise ConfigError(f"encoding.event_input: expected true or false, got "
                              f"{self.event_input!r}")
        if self.input_threshold is not None:
            _check_range("encoding.threshold", self.input_threshold, self.pixel_max,
                         4 * self.pixel_max)
        vmax = self.v_max
        _check_range("neuron.threshold", self.threshold, 1, vmax)
        # Worst case that must be representable: a membrane just below threshold receiving the
        # largest positive weight (it has to stay distinguishable from "saturated").
        if self.threshold - 1 + self.w_max > vmax:
            if self.min_membrane_bits > MEMBRANE_BITS[1]:
                # No legal membrane width exists: the threshold is what is out of range.
                hi = (1 << (MEMBRANE_BITS[1] - 1)) - self.w_max
                raise ConfigError(
                    f"neuron.threshold: {self.threshold} - 1 + max weight {self.w_max} does not "
                    f"fit even {MEMBRANE_BITS[1]}-bit membranes; legal range is [1, {hi}]")
            raise ConfigError(
                f"neuron.membrane_bits: {self.membrane_bits} bits (max {vmax}) cannot hold "
                f"threshold - 1 + max weight = {self.threshold - 1 + self.w_max}; legal range "
                f"is [{self.min_membrane_bits}, {MEMBRANE_BITS[1]}]")
        if self.tie_break not in TIE_BREAKS:
            raise ConfigError(f"network.tie_break: {self.tie_break!r} is not one of "
                              f"{TIE_BREAKS}")
        if self.early_exit not in EARLY_EXITS:
            raise ConfigError(f"network.early_exit: {self.early_exit!r} is not one of "
                              f"{EARLY_EXITS}")
        if self.early_exit != "none" and self.decoder is not None:
            raise ConfigError("network.early_exit: the [decoder] has an exit of its own; set "
                              "one of the two")
        self._check_spram_layers()
        if self.decoder is not None:
            self.decoder.validate(self.time_steps, self.layers[-1])
            word = self.lanes * self.store_bits
            if self.decoder.weight_bits > word:
                raise ConfigError(f"decoder.weight_bits: {self.decoder.weight_bits} is wider "
                                  f"than the weight port's word (lanes x stored bits = "
                                  f"{word}); legal range is [{DECODER_WEIGHT_BITS[0]}, "
                                  f"{min(word, DECODER_WEIGHT_BITS[1])}]")
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding.kind: {self.encoding!r} is not one of "
                              f"{(*ENCODINGS, 'ttfs')}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset: {self.dataset!r} is not one of {DATASETS}")
        if self.learning is not None:
            self.learning.validate(self.time_steps)
            if self.store_bits > 24:
                raise ConfigError(
                    f"learning.weight_frac_bits: weight_bits + weight_frac_bits = "
                    f"{self.store_bits} exceeds 24; legal range is "
                    f"[0, {24 - self.weight_bits}]")
            if not 1 <= self.near_threshold <= self.threshold:   # (0, 1] guarantees it
                raise ConfigError(
                    f"learning.near_fraction: {self.learning.near_fraction} gives the near "
                    f"threshold {self.near_threshold}, outside [1, {self.threshold}]; legal "
                    f"range is (0, 1]")
            if self.dropout_threshold and len(self.layers) < 3:
                raise ConfigError(f"learning.dropout_hidden: {self.learning.dropout_hidden} "
                                  f"needs a hidden layer (network.layers {list(self.layers)} "
                                  f"has none); legal value here is 0")

    # ---- derived quantities (never stored, always computed from the fields) ----
    @property
    def n_layers(self) -> int:
        """Number of LIF layers (the input layer is the encoder, not counted)."""
        return len(self.layers) - 1

    @property
    def w_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def w_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def v_min(self) -> int:
        return -(1 << (self.membrane_bits - 1))

    @property
    def v_max(self) -> int:
        return (1 << (self.membrane_bits - 1)) - 1

    @property
    def min_membrane_bits(self) -> int:
        return max(MEMBRANE_BITS[0], (self.threshold - 1 + self.w_max).bit_length() + 1)

    @property
    def pixel_max(self) -> int:
        return (1 << self.pixel_bits) - 1

    @property
    def encoder_threshold(self) -> int:
        """``theta_in`` of the rate encoder (``encoding.threshold``, default ``pixel_max``)."""
        return self.pixel_max if self.input_threshold is None else self.input_threshold

    def live_input_steps(self, decoding: bool = False) -> int:
        """Input steps an output spike can depend on in an inference sample of ``T_run``
        steps (``T``, or ``decoder.steps`` when ``decoding``): the output at step ``t``
        reads population 0's step ``t - L`` at the latest, so the input spikes of the steps
        from ``T_run - L`` on are dead work; the gateware drops them (a training sample
        keeps them: the learning unit reads every input step)."""
        steps = self.decoder.steps if decoding and self.decoder is not None else self.time_steps
        return max(0, steps - self.n_layers)

    def groups(self, layer: int) -> int:
        """``G = ceil(N/P)``: weight words per presynaptic neuron of LIF layer ``layer``."""
        return math.ceil(self.layers[layer + 1] / self.lanes)

    def weight_shape(self, layer: int) -> tuple[int, int]:
        """``(n_pre, n_post)`` of LIF layer ``layer`` (0-based)."""
        return (self.layers[layer], self.layers[layer + 1])

    @property
    def n_synapses(self) -> int:
        return sum(a * b for a, b in zip(self.layers[:-1], self.layers[1:], strict=False))

    # ---- learning (desire backpropagation, docs/learning.md) ----
    @property
    def frac_bits(self) -> int:
        """``F``, extra fractional weight bits (0 without learning)."""
        return self.learning.weight_frac_bits if self.learning else 0

    @property
    def store_bits(self) -> int:
        """Width of a stored weight: ``weight_bits + F``."""
        return self.weight_bits + self.frac_bits

    @property
    def store_dtype(self) -> str:
        """The narrowest numpy integer type of a stored weight: ``"int16"`` up to 16 bits
        (the golden model then integrates in ``int32``, :func:`sw.golden.membrane_type`),
        ``"int32"`` up to 32, else ``"int64"``."""
        return next(f"int{bits}" for bits in (16, 32, 64) if self.store_bits <= bits)

    @property
    def store_min(self) -> int:
        return -(1 << (self.store_bits - 1))

    @property
    def store_max(self) -> int:
        return (1 << (self.store_bits - 1)) - 1

    @property
    def target_count(self) -> int:
        """``C* = T - error_margin``: the label neuron's spike-count target."""
        return self.time_steps - self.learning.error_margin

    @property
    def out_desire_threshold(self) -> int:
        """Output neuron ``i`` is active iff its error ``E_i > floor(desire_out * C*)``."""
        return math.floor(Fraction(str(self.learning.desire_out)) * self.target_count)

    @property
    def hidden_desire_threshold(self) -> int:
        """Hidden neuron ``j`` is active iff ``|S_j| >= ceil(desire_hidden * C* * theta)``."""
        return math.ceil(Fraction(str(self.learning.desire_hidden)) * self.target_count
                         * self.threshold)

    @property
    def near_eligibility(self) -> bool:
        """The eligibility pairs the traces with the near raster (``eligibility = "near"``)."""
        return self.learning is not None and self.learning.eligibility == "near"

    @functools.cached_property
    def near_threshold(self) -> int:
        """``theta_near = ceil(near_fraction * theta)``, in ``[1, theta]``: a neuron is *near*
        at a step whose membrane, after the integration and before the threshold test,
        is at least this (``docs/learning.md``). Derived exactly, like the desire thresholds."""
        return math.ceil(Fraction(str(self.learning.near_fraction)) * self.threshold)

    @property
    def trace_one(self) -> int:
        return 1 << self.learning.trace_frac_bits

    @property
    def trace_max(self) -> int:
        """Largest trace value: a presynaptic neuron spiking at every one of ``T`` steps."""
        return _trace_max(self.time_steps, self.leak_shift, self.learning.trace_frac_bits)

    @property
    def acc_max(self) -> int:
        """Largest eligibility ``acc = sum_t s_post[t] * x[t]`` (``T - 1`` steps can fire)."""
        return (self.time_steps - 1) * self.trace_max

    @property
    def max_rounding_shift(self) -> int:
        """The update clamps ``lr_shift`` to this. ``nearest`` and ``floor``: ``acc_bits +
        1`` (with ``acc <= acc_max < 2**acc_bits`` they give 0 at any larger shift, as at
        this one). ``stochastic``: the LFSR's width, 20, whatever ``acc_bits`` is: a draw
        has that many bits, and at shifts beyond ``acc_bits + 1`` the update still moves a
        weight by 1 with probability ``acc / 2**s``, so a falling rate keeps falling."""
        if self.learning is not None and self.learning.rounding == "stochastic":
            return lfsr.WIDTH
        return self.acc_max.bit_length() + 1

    @property
    def lfsr_seeds(self) -> tuple[int, ...]:
        """The reset states of the ``P`` lane LFSRs of stochastic rounding (lane ``p``:
        ``lfsr_seeds[p]``, :func:`spikeforge.lfsr.lane_seeds`); ``()`` for the other
        rounding modes, which have none."""
        if self.learning is None or self.learning.rounding != "stochastic":
            return ()
        return lfsr.lane_seeds(self.learning.lfsr_seed, self.lanes)

    @functools.cached_property
    def dropout_threshold(self) -> int:
        """``k = dropout_hidden * 256``: neuron ``gP + p`` of a hidden population is dropped
        in a training sample iff the low 8 bits of lane ``p``'s mask LFSR state for group
        ``g`` are below ``k``; 0 without dropout (``docs/learning.md``, Dropout)."""
        return self.learning.dropout_steps() if self.learning is not None else 0

    @functools.cached_property
    def dropout_layers(self) -> tuple[int, ...]:
        """The LIF layers whose neurons dropout drops: every one but the output layer (their
        populations are the hidden ones); ``()`` without dropout."""
        return tuple(range(self.n_layers - 1)) if self.dropout_threshold else ()

    @functools.cached_property
    def dropout_seeds(self) -> tuple[tuple[int, ...], ...]:
        """The reset states of the mask LFSRs: for each of :attr:`dropout_layers` ``l``
        (population ``h = l + 1`` of the ``H = L - 1`` hidden ones) the ``P`` lane states
        :func:`spikeforge.lfsr.lane_seeds` ``((dropout_seed + floor(h * D / (2H + 2))) mod
        (2^20 - 1), P)``, ``D = floor((2^20 - 1) / P)``: lane ``p`` of population ``h`` at
        position ``dropout_seed + D/2 + p*D + floor(h*D / (2H + 2))`` of the sequence from
        state 1. Between a rounding lane (``D/2 + p*D`` at ``lfsr_seed = dropout_seed``) and
        the next lane's interval, ``D / (2H + 2)`` apart from each other, from it and from
        state 1's neighbourhood at seed 0. ``()`` without dropout."""
        layers = self.dropout_layers
        spacing = lfsr.PERIOD // self.lanes
        return tuple(lfsr.lane_seeds((self.learning.dropout_seed
                                      + (layer + 1) * spacing // (2 * len(layers) + 2))
                                     % lfsr.PERIOD, self.lanes) for layer in layers)

    def _check_spram_layers(self) -> None:
        layers = self.spram_layers
        if not isinstance(layers, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in layers):
            raise ConfigError(f"network.spram_layers: expected a list of LIF layer indices, "
                              f"got {layers!r}")
        for i in layers:
            _check_range("network.spram_layers[]", i, 0, self.n_layers - 1)
        if len(set(layers)) != len(layers):
            raise ConfigError(f"network.spram_layers: {list(layers)} names a layer twice")
        object.__setattr__(self, "spram_layers", tuple(sorted(layers)))
        used = sum(self.spram_blocks(i) for i in self.spram_layers)
        if used > SPRAM_BLOCKS:
            per = ", ".join(f"layer {i}: {self.spram_blocks(i)}" for i in self.spram_layers)
            raise ConfigError(
                f"network.spram_layers: the weights take {used} SPRAMs ({per}; each is "
                f"{SPRAM_DEPTH} x {SPRAM_WIDTH} bits), the iCE40UP5K has {SPRAM_BLOCKS}; "
                f"legal range is [0, {SPRAM_BLOCKS}]: fewer lanes, stored bits or neurons")

    def spram_blocks(self, layer: int) -> int:
        """SPRAMs LIF layer ``layer``'s weight memory takes when it lives in SPRAM."""
        return spram_count(self.layers[layer] * self.groups(layer), self.lanes * self.store_bits)

    @property
    def coef_max(self) -> int:
        """Largest ``|E|`` of a neuron's error (a count or ``C*`` minus a count)."""
        return max(self.time_steps, self.target_count)

    def summary(self) -> str:
        sizes = "-".join(str(n) for n in self.layers)
        text = (f"{self.name}: {sizes}, T={self.time_steps}, P={self.lanes}, "
                f"w{self.weight_bits}/v{self.membrane_bits}, theta={self.threshold}, "
                f"k={self.leak_shift}, {self.encoding}/{self.pixel_bits}b"
                + (f" theta_in={self.input_threshold}" if self.input_threshold else "")
                + f", {self.n_synapses} synapses")
        if self.tie_break != "none":
            text += f", ties to the {self.tie_break.replace('_', ' ')}"
        if self.early_exit == "settled":
            text += ", exits once the counts have settled"
        if self.spram_layers:
            text += ", weights of layer " + ", ".join(map(str, self.spram_layers)) + " in SPRAM"
        if self.decoder:
            d = self.decoder
            text += (f"; on-chip {d.kind} decoder of {d.steps} steps, w{d.weight_bits}, "
                     + ("fixed exit" if d.exit == "fixed" else
                        f"exit at a lead >= {d.margin} from step {d.min_steps}"))
        if self.learning:
            lr = self.learning
            text += (f"; desire backprop: C*={self.target_count}, "
                     f"E_out>{self.out_desire_threshold}, |S|>={self.hidden_desire_threshold}, "
                     f"w{self.store_bits} stored (F={self.frac_bits}), trace 2^-"
                     f"{lr.trace_frac_bits}, lr 2^-{lr.lr_shift}, {lr.rounding}")
            if lr.rounding == "stochastic":
                text += (f" ({lfsr.DESCRIPTION} per lane, {lfsr.WIDTH} bits, seed "
                         f"{lr.lfsr_seed})")
            if lr.eligibility == "near":
                text += (f", near eligibility V>={self.near_threshold} "
                         f"({lr.near_fraction} theta)")
            if lr.hidden_gate == "error":
                text += ", hidden neurons learn until their count meets the desire"
            if self.dropout_threshold:
                text += (f"; hidden dropout {lr.dropout_hidden} = "
                         f"{self.dropout_threshold}/{DROPOUT_STEPS}, unscaled (mask "
                         f"{lfsr.DESCRIPTION} per lane and hidden layer, seed "
                         f"{lr.dropout_seed})")
        return text


def _trace_max(time_steps: int, leak_shift: int, trace_frac_bits: int) -> int:
    x = 0
    for _ in range(time_steps):
        x = x - (x >> leak_shift) + (1 << trace_frac_bits)
    return x


_SCHEMA = {
    "name": None,
    "dataset": None,
    "network": {"layers", "time_steps", "lanes", "tie_break", "spram_layers", "early_exit"},
    "neuron": {"weight_bits", "membrane_bits", "threshold", "leak_shift"},
    "encoding": {"kind", "pixel_bits", "event_input", "threshold"},
    "learning": {"rule", "error_margin", "desire_out", "desire_hidden", "weight_frac_bits",
                 "trace_frac_bits", "lr_shift", "lr_decay", "rounding", "lfsr_seed",
                 "eligibility", "near_fraction", "dropout_hidden", "dropout_seed",
                 "hidden_gate"},
    "decoder": {"kind", "steps", "weight_bits", "exit", "margin", "min_steps"},
}


#: Keys of the sections above a config may leave out (their defaults apply).
_OPTIONAL = {("encoding", "pixel_bits"), ("encoding", "event_input"), ("encoding", "threshold"),
             ("network", "tie_break"), ("network", "spram_layers"), ("network", "early_exit")}


def _from_dict(data: dict, source: str) -> NetworkConfig | TTFSConfig:
    encoding = data.get("encoding")
    if isinstance(encoding, dict) and encoding.get("kind") == "ttfs":
        return _ttfs_from_dict(data, source)
    for key in data:
        if key not in _SCHEMA:
            raise ConfigError(f"{key}: unknown section or key; known: {sorted(_SCHEMA)}")
    flat = {}
    for section in ("network", "neuron", "encoding"):
        table = data.get(section)
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}]: missing table with keys {sorted(_SCHEMA[section])}")
        for key in table:
            if key not in _SCHEMA[section]:
                raise ConfigError(
                    f"{section}.{key}: unknown key; known: {sorted(_SCHEMA[section])}")
        for key in sorted(_SCHEMA[section]):
            if key not in table and (section, key) not in _OPTIONAL:
                raise ConfigError(f"{section}.{key}: missing")
        renamed = {("encoding", "kind"): "encoding", ("encoding", "threshold"): "input_threshold"}
        flat.update({renamed.get((section, key), key): v for key, v in table.items()})
    for section, cls in (("learning", DesireConfig), ("decoder", DecoderConfig)):
        table = data.get(section)
        if table is None:
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}]: expected a table")
        for key in table:
            if key not in _SCHEMA[section]:
                raise ConfigError(
                    f"{section}.{key}: unknown key; known: {sorted(_SCHEMA[section])}")
        flat[section] = cls(**table)
    return NetworkConfig(
        name=data.get("name", Path(source).stem),
        dataset=data.get("dataset", "digits"),
        source=source,
        **flat,
    )


@dataclass(frozen=True)
class TTFSConfig:
    """A validated single-layer TTFS network that learns with on-chip STDP and prunes.

    ``docs/ttfs.md`` is the spec. Inputs spike at most once (``t_j = ((pixel_max - p) * T)
    >> pixel_bits`` for pixels ``p >= floor``, never below); ``n_out`` integrate-and-fire
    neurons with unsigned weights fire at most once, at the first step their membrane
    ``V(t) = sum of w_ij over alive synapses with t_j <= t`` reaches ``threshold``; while
    learning, the ``winners`` earliest (k-WTA) apply multiplicative STDP and synapses whose
    weight falls under ``prune_threshold`` are removed for good.

    Attributes
    ----------
    layers : (n_in, n_out)
    time_steps : int
        ``T``; a time of ``T`` means "no spike".
    lanes : int
        ``P`` neuron engines in parallel; lane ``p`` owns neurons ``i = p (mod P)``.
    weight_bits : int
        Unsigned weights ``w`` in ``[0, 2**b - 1]``, standing for ``w / (2**b - 1)``.
    threshold : int
        Firing threshold in weight units, ``[1, n_in * w_max]``.
    pixel_bits, floor : int
        Unsigned pixels; pixels below ``floor`` never spike (``1 <= floor <= pixel_max``).
    winners : int
        ``k`` of k-WTA while learning.
    a_plus, a_minus, stdp_shift : int
        ``dw = (w * (w_max - w) * a) >> stdp_shift`` (floor), added (pre no later than post)
        or subtracted (pre later or silent), then clamped to ``[0, w_max]``.
    prune_threshold : int
        A synapse whose updated weight is below it is removed; 0 disables pruning (and
        builds the gateware without the pruning logic: dense fan-in lists).
    init_weights : (lo, hi)
        The host's initial weights are uniform integers in ``[lo, hi]`` (seeded).
    """

    name: str
    layers: tuple[int, ...]
    time_steps: int
    lanes: int
    weight_bits: int
    threshold: int
    pixel_bits: int = 8
    floor: int = 1
    winners: int = 1
    a_plus: int = 1
    a_minus: int = 1
    stdp_shift: int = 8
    prune_threshold: int = 0
    init_weights: tuple[int, int] = (0, 0)
    dataset: str = "digits"
    source: str = field(default="<memory>", compare=False)
    encoding = "ttfs"
    learning = None          # no desire backpropagation: STDP is always on

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name: expected a non-empty string")
        layers = self.layers
        if not isinstance(layers, (list, tuple)) or len(layers) != 2:
            raise ConfigError(f"network.layers: a TTFS network has one learning layer: "
                              f"expected [n_in, n_out], got {layers!r}")
        for i, n in enumerate(layers):
            _check_range(f"network.layers[{i}]", n, 2, MAX_NEURONS)
        object.__setattr__(self, "layers", tuple(layers))
        _check_range("network.time_steps", self.time_steps, *TTFS_TIME_STEPS)
        _check_range("network.lanes", self.lanes, 1, layers[1])
        _check_range("neuron.weight_bits", self.weight_bits, *TTFS_WEIGHT_BITS)
        _check_range("neuron.threshold", self.threshold, 1, layers[0] * self.w_max)
        _check_range("encoding.pixel_bits", self.pixel_bits, *PIXEL_BITS)
        _check_range("encoding.floor", self.floor, 1, self.pixel_max)
        _check_range("learning.winners", self.winners, 1, min(layers[1], MAX_WINNERS))
        _check_range("learning.a_plus", self.a_plus, 0, 1 << 16)
        _check_range("learning.a_minus", self.a_minus, 0, 1 << 16)
        _check_range("learning.stdp_shift", self.stdp_shift, 0, 2 * self.weight_bits + 16)
        _check_range("learning.prune_threshold", self.prune_threshold, 0, self.w_max)
        init = self.init_weights
        if not isinstance(init, (list, tuple)) or len(init) != 2:
            raise ConfigError(f"learning.init_weights: expected [lo, hi], got {init!r}")
        lo = _check_range("learning.init_weights[0]", init[0], 0, self.w_max)
        _check_range("learning.init_weights[1]", init[1], lo, self.w_max)
        object.__setattr__(self, "init_weights", (init[0], init[1]))
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset: {self.dataset!r} is not one of {DATASETS}")

    @property
    def n_in(self) -> int:
        return self.layers[0]

    @property
    def n_out(self) -> int:
        return self.layers[1]

    @property
    def n_layers(self) -> int:
        return 1

    @property
    def w_max(self) -> int:
        return (1 << self.weight_bits) - 1

    @property
    def pixel_max(self) -> int:
        return (1 << self.pixel_bits) - 1

    @property
    def never(self) -> int:
        """The time value that means "no spike": ``T``."""
        return self.time_steps

    @property
    def time_bits(self) -> int:
        return self.time_steps.bit_length()

    @property
    def membrane_bits(self) -> int:
        """Unsigned membranes wide enough for ``n_in * w_max``: they cannot overflow."""
        return (self.n_in * self.w_max).bit_length()

    @property
    def pruning(self) -> bool:
        return self.prune_threshold > 0

    @property
    def n_synapses(self) -> int:
        return self.n_in * self.n_out

    def lane_neurons(self, lane: int) -> int:
        """Neurons of lane ``lane``: ``i = lane, lane + P, ...``."""
        return len(range(lane, self.n_out, self.lanes))

    def summary(self) -> str:
        prune = (f"prune w < {self.prune_threshold}" if self.pruning else "no pruning")
        return (f"{self.name}: {self.n_in}-{self.n_out} TTFS, T={self.time_steps}, "
                f"P={self.lanes}, w{self.weight_bits} unsigned, v{self.membrane_bits}, "
                f"theta={self.threshold}, floor {self.floor}/{self.pixel_bits}b, "
                f"{self.n_synapses} synapses; STDP {self.winners}-WTA, a+={self.a_plus}, "
                f"a-={self.a_minus} >> {self.stdp_shift}, {prune}")


TTFS_TIME_STEPS = (2, 256)
TTFS_WEIGHT_BITS = (2, 16)
MAX_WINNERS = 8

_TTFS_SCHEMA = {
    "network": ({"layers", "time_steps", "lanes"}, set()),
    "neuron": ({"weight_bits", "threshold"}, set()),
    "encoding": ({"kind"}, {"pixel_bits", "floor"}),
    "learning": ({"rule"}, {"winners", "a_plus", "a_minus", "stdp_shift", "prune_threshold",
                            "init_weights"}),
}


def _ttfs_from_dict(data: dict, source: str) -> TTFSConfig:
    flat = {}
    for key in data:
        if key not in ("name", "dataset", *_TTFS_SCHEMA):
            raise ConfigError(f"{key}: unknown section or key for a TTFS config; known: "
                              f"{sorted(['name', 'dataset', *_TTFS_SCHEMA])}")
    for section, (required, optional) in _TTFS_SCHEMA.items():
        table = data.get(section)
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}]: missing table with keys {sorted(required)}")
        for key in table:
            if key not in required | optional:
                raise ConfigError(f"{section}.{key}: unknown key for a TTFS config; known: "
                                  f"{sorted(required | optional)}")
        for key in sorted(required - set(table)):
            raise ConfigError(f"{section}.{key}: missing")
        flat.update({k: v for k, v in table.items() if k not in ("kind", "rule")})
    if data["learning"]["rule"] != "stdp":
        raise ConfigError(f"learning.rule: {data['learning']['rule']!r}: a TTFS config learns "
                          f"with 'stdp'")
    return TTFSConfig(name=data.get("name", Path(source).stem),
                      dataset=data.get("dataset", "digits"), source=source, **flat)


def profile_names() -> list[str]:
    """Names of the profiles shipped in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_config(name_or_path: str | Path) -> NetworkConfig | TTFSConfig:
    """Load a shipped profile by name (``digits-tiny``) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ConfigError(
                f"config {str(name_or_path)!r}: no such profile; shipped profiles are "
                f"{profile_names()} (or give a path to a .toml file)")
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r}: no such file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {str(path)!r}: not valid TOML: {exc}") from exc
    return _from_dict(data, str(path))
