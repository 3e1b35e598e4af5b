"""One config, one source of truth.

A config is a TOML file (see ``configs/*.toml`` and ``docs/number_formats.md``) loaded into the
frozen, validated :class:`NetworkConfig`. The golden model (``sw``) and the gateware (``hw``)
are both built from it; nothing is duplicated by hand. Every invalid value fails at load time
with a :class:`ConfigError` that names the field and its legal range.

This module imports nothing from ``hw``, ``sw`` or ``sim``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ConfigError", "NetworkConfig", "load_config", "profile_names", "CONFIG_DIR"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

ENCODINGS = ("rate",)
DATASETS = ("digits", "mnist-t10k", "fashion-mnist")

# Legal ranges, in one place so messages and checks cannot disagree.
MAX_NEURONS = 4096
WEIGHT_BITS = (2, 16)
MEMBRANE_BITS = (3, 32)
LEAK_SHIFT = (1, 16)
TIME_STEPS = (1, 1024)
PIXEL_BITS = (1, 16)


class ConfigError(ValueError):
    """A config field is missing, unknown or outside its legal range."""


def _check_range(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: {value} is out of range, legal range is [{lo}, {hi}]")
    return value


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
        Unsigned pixel width fed to the rate encoder; its threshold is ``2**pixel_bits - 1``,
        so a full-scale pixel spikes at every step.
    dataset : str
        Default dataset for ``compare``/``train``.
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
    dataset: str = "digits"
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
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding.kind: {self.encoding!r} is not one of {ENCODINGS}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset: {self.dataset!r} is not one of {DATASETS}")

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
        return self.pixel_max

    def groups(self, layer: int) -> int:
        """``G = ceil(N/P)``: weight words per presynaptic neuron of LIF layer ``layer``."""
        return math.ceil(self.layers[layer + 1] / self.lanes)

    def weight_shape(self, layer: int) -> tuple[int, int]:
        """``(n_pre, n_post)`` of LIF layer ``layer`` (0-based)."""
        return (self.layers[layer], self.layers[layer + 1])

    @property
    def n_synapses(self) -> int:
        return sum(a * b for a, b in zip(self.layers[:-1], self.layers[1:], strict=False))

    def summary(self) -> str:
        sizes = "-".join(str(n) for n in self.layers)
        return (f"{self.name}: {sizes}, T={self.time_steps}, P={self.lanes}, "
                f"w{self.weight_bits}/v{self.membrane_bits}, theta={self.threshold}, "
                f"k={self.leak_shift}, {self.encoding}/{self.pixel_bits}b, "
                f"{self.n_synapses} synapses")


_SCHEMA = {
    "name": None,
    "dataset": None,
    "network": {"layers", "time_steps", "lanes"},
    "neuron": {"weight_bits", "membrane_bits", "threshold", "leak_shift"},
    "encoding": {"kind", "pixel_bits"},
}


def _from_dict(data: dict, source: str) -> NetworkConfig:
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
            if key not in table and not (section == "encoding" and key == "pixel_bits"):
                raise ConfigError(f"{section}.{key}: missing")
        flat.update({("encoding" if key == "kind" else key): v for key, v in table.items()})
    return NetworkConfig(
        name=data.get("name", Path(source).stem),
        dataset=data.get("dataset", "digits"),
        source=source,
        **flat,
    )


def profile_names() -> list[str]:
    """Names of the profiles shipped in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_config(name_or_path: str | Path) -> NetworkConfig:
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
