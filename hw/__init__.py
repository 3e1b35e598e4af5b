"""Gateware: Amaranth components built from a :class:`spikeforge.config.NetworkConfig`."""
