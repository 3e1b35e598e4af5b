"""spikeforge: on-chip-learning SNN hardware/software co-design."""

__version__ = "0.1.0"
