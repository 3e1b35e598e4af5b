"""The host-link protocol (docs/host_link.md), shared by the gateware (hw.host_link) and the
host driver (sw.host): framing constants, the CRC, and what a config puts on the wire."""

REQUEST_START = 0xA5
RESPONSE_START = 0x5A
PROTOCOL_VERSION = 3            # 2: EVENTS, RUN on the stored raster, INFO feature flags;
                                # 3: INFO's T, P and word bytes are 2 bytes each

CMD_INFO, CMD_WRITE, CMD_READ, CMD_RUN, CMD_COUNTERS = 0x01, 0x02, 0x03, 0x04, 0x05
CMD_EVENTS = 0x06
ERR_CRC, ERR_COMMAND, ERR_LENGTH, ERR_TIMEOUT, ERR_ARGUMENT, ERR_FRAMING = range(0x81, 0x87)
ERROR_NAMES = {ERR_CRC: "checksum mismatch", ERR_COMMAND: "unknown command",
               ERR_LENGTH: "payload length wrong for the command",
               ERR_TIMEOUT: "frame incomplete (inter-byte timeout)",
               ERR_ARGUMENT: "argument out of range", ERR_FRAMING: "UART framing error"}
COUNTERS_BYTES = 13
RUN_HEADER_BYTES = 7
RUN_LEARN, RUN_RASTER = 0x01, 0x02          # RUN flags: train on it; input = stored raster
EVENTS_CLEAR = 0x01                          # EVENTS flag: zero the raster first
EVENT_BYTES = 3                              # an event on the wire: step, index (2)
INFO_LEARNING, INFO_EVENTS = 0x01, 0x02      # INFO feature flags
INFO_FEATURES_BYTE = 5                       # their offset in the INFO payload


def crc8(crc: int, byte: int) -> int:
    """One byte of CRC-8: polynomial 0x07, MSB first (CRC-8/SMBUS with initial value 0)."""
    c = crc ^ byte
    for _ in range(8):
        c = ((c << 1) & 0xFF) ^ (0x07 if c & 0x80 else 0)
    return c


def word_bytes(cfg) -> int:
    """Bytes per weight word on the link: ``ceil(lanes * store_bits / 8)``."""
    return (cfg.lanes * cfg.store_bits + 7) // 8


def weight_depths(cfg) -> list[int]:
    """Weight words per LIF layer (``N_pre * groups``)."""
    return [cfg.layers[i] * cfg.groups(i) for i in range(cfg.n_layers)]


def buffer_depth(cfg) -> int:
    """Payload buffer bytes: a RUN payload (3 + N_in) rounded up to a power of two, >= 256."""
    need = max(3 + cfg.layers[0], 5 + 4 * word_bytes(cfg), 256)
    return 1 << (need - 1).bit_length()


def events_per_frame(cfg) -> int:
    """Input spike events one EVENTS frame carries: its flags byte and 3 bytes per event
    fill at most the payload buffer."""
    return (buffer_depth(cfg) - 1) // EVENT_BYTES


def info_bytes(cfg) -> bytes:
    """Payload of the INFO response: what the host checks before it talks to the core."""
    features = ((INFO_LEARNING if cfg.learning is not None else 0)
                | (INFO_EVENTS if cfg.event_input else 0))
    head = bytes([ord("S"), ord("F"), PROTOCOL_VERSION, len(cfg.layers), cfg.store_bits,
                  features])
    sizes = (cfg.lanes, cfg.time_steps, word_bytes(cfg), buffer_depth(cfg), *cfg.layers,
             *weight_depths(cfg))
    return head + b"".join(n.to_bytes(2, "little") for n in sizes)


def check_link_config(cfg) -> None:
    if cfg.encoding == "ttfs":
        raise ValueError("host link: TTFS configs are not supported yet (rate-coded configs "
                         "only)")
    if cfg.time_steps > 256 or cfg.layers[-1] > 256:
        raise ValueError(f"host link: spike events are sent as (step, neuron) bytes: T and "
                         f"the output layer must be <= 256, got T={cfg.time_steps}, "
                         f"n_out={cfg.layers[-1]}")
    if cfg.pixel_bits > 8:
        raise ValueError(f"host link: pixels are sent as bytes: pixel_bits must be <= 8, got "
                         f"{cfg.pixel_bits}")
    if max(weight_depths(cfg)) >= 1 << 16 or buffer_depth(cfg) > 1 << 16:
        raise ValueError("host link: weight addresses and payloads are 16-bit: the network "
                         "is too large for this protocol")
