"""The shipped network profiles (``*.toml``), read through ``importlib.resources``."""
