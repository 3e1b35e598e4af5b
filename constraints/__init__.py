"""Board pin and clock constraints (``*.pcf``, ``*.lpf``), read by nextpnr as they are."""
