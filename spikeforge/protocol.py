"""The host-link protocol (docs/host_link.md), defined once for the gateware
(:mod:`spikeforge.hw.host_link` and its parts) and the host driver (:mod:`spikeforge.sw.host`).

* Codes are enums (:class:`Command`, :class:`ErrorCode`, the flag sets).
* Every header and payload is a :class:`~amaranth.lib.data.StructLayout`. Fields are
  little-endian and every layout is a whole number of bytes, so a field's bytes in a frame
  are ``field_bytes(layout, name)``.
* The gateware builds its registers and byte states from these layouts. The driver packs
  and parses with :func:`pack`, :func:`unpack` and :func:`wire_dtype`.
* No size or offset is written anywhere else.

A frame is ``FRAME_HEADER`` (start byte, command or status, payload length), the payload,
then ``CRC_BYTES`` of CRC-8 over everything after the start byte.
"""

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data, enum

from spikeforge.timing import CYCLE_COUNTER_BITS

REQUEST_START = 0xA5
RESPONSE_START = 0x5A
PROTOCOL_VERSION = 5            # 2: EVENTS, RUN on the stored raster, INFO feature flags;
                                # 3: INFO's T, P and word bytes are 2 bytes each;
                                # 4: the decoder on the chip, RUN's steps;
                                # 5: INFO's config hash
DEFAULT_BAUD = 1_000_000        # the UART rate a board top is built for unless told otherwise
MAGIC = b"SF"                   # the first bytes of the INFO payload
NO_COMMAND = 0xFF               # an error response's payload when the frame broke before its
                                # command byte
NO_PREDICTION = 0xFF            # RUN: no output neuron has the unique highest spike count
ERROR_STATUS = 0x80             # the status bit of an error response (status = 0x80 | code)


class Command(enum.IntEnum, shape=8):
    """A request's command byte, echoed as the status of its response."""
    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    RUN = 0x04
    COUNTERS = 0x05
    EVENTS = 0x06


class ErrorCode(enum.IntEnum, shape=8):
    """The status of an error response (``ERROR_STATUS`` set). Its payload is the command
    byte (``NO_COMMAND`` if the frame broke before it)."""
    CRC = 0x81
    COMMAND = 0x82
    LENGTH = 0x83
    TIMEOUT = 0x84
    ARGUMENT = 0x85
    FRAMING = 0x86


ERROR_NAMES = {ErrorCode.CRC: "checksum mismatch", ErrorCode.COMMAND: "unknown command",
               ErrorCode.LENGTH: "payload length wrong for the command",
               ErrorCode.TIMEOUT: "frame incomplete (inter-byte timeout)",
               ErrorCode.ARGUMENT: "argument out of range",
               ErrorCode.FRAMING: "UART framing error"}


class RunFlags(enum.IntFlag, shape=8):
    LEARN = 0x01                # a training sample (label, lr_shift)
    RASTER = 0x02               # input = the stored raster (no pixels follow)
    DECODE = 0x04               # decode on the chip, with its early exit (cores with a decoder)


class EventsFlags(enum.IntFlag, shape=8):
    CLEAR = 0x01                # zero the raster before storing the frame's events


class Features(enum.IntFlag, shape=8):
    """INFO's feature bits: what the core was built with."""
    LEARNING = 0x01
    EVENTS = 0x02               # the input raster: EVENTS and RUN with RunFlags.RASTER
    DECODER = 0x04              # the decoder on the chip: weight "layer" L, RunFlags.DECODE


# ---- frames ----
FRAME_HEADER = data.StructLayout({"start": 8, "code": 8, "length": 16})
CRC_BYTES = 1                   # the CRC-8 that ends every frame

# ---- request payloads: a header, then (WRITE) weight words, (RUN) pixels, (EVENTS) events
WEIGHTS_REQUEST = data.StructLayout({"layer": 8, "address": 16, "count": 16})   # WRITE, READ
RUN_REQUEST = data.StructLayout({"flags": RunFlags, "label": 8, "lr_shift": 8})
EVENTS_REQUEST = data.StructLayout({"flags": EventsFlags})
EVENT = data.StructLayout({"step": 8, "neuron": 16})             # one input spike

# ---- response payloads ----
RUN_RESPONSE = data.StructLayout({"cycles": CYCLE_COUNTER_BITS, "prediction": 8, "spikes": 16,
                                  "steps": 8})       # steps: the time steps the sample ran
READOUT_ITEM = data.StructLayout({"step": 8, "neuron": 8})       # each spike after RUN_RESPONSE
COUNTERS = data.StructLayout({
    "samples": 32, "frames": 32, "errors": 32,  # RUNs done, good frames, error responses
    "fifo_overflow": 1,         # an inter-layer FIFO overflowed
    "readout_overflow": 1,       # the readout stream overflowed
    "rx_overrun": 1,            # the UART receiver lost a byte
    "stream_error": 1,          # the readout's end item disagreed with the spike count
    "reserved": 4,
})
INFO_SIZE = 16                  # bits of each size INFO reports
INFO_HEAD = data.StructLayout({
    "magic": 8 * len(MAGIC), "version": 8, "populations": 8, "store_bits": 8,
    "features": Features, "lanes": INFO_SIZE, "time_steps": INFO_SIZE,
    "word_bytes": INFO_SIZE, "buffer_bytes": INFO_SIZE,
    "config_hash": 32,          # gateware_hash: what the sizes do not show (options, formats)
})                              # then the sizes of info_layout


def nbytes(layout: data.Layout) -> int:
    """Bytes of ``layout`` on the wire."""
    return layout.size // 8


def field_bytes(layout: data.StructLayout, name: str) -> slice:
    """Where field ``name`` of ``layout`` lies in its bytes."""
    field = layout[name]
    return slice(field.offset // 8, (field.offset + field.width) // 8)


MAX_PAYLOAD = (1 << FRAME_HEADER["length"].width) - 1
CRC_FROM = field_bytes(FRAME_HEADER, "start").stop   # the CRC covers the frame from here on

for _layout in (FRAME_HEADER, WEIGHTS_REQUEST, RUN_REQUEST, EVENTS_REQUEST, EVENT,
                RUN_RESPONSE, READOUT_ITEM, COUNTERS, INFO_HEAD):
    assert _layout.size % 8 == 0, _layout     # whole bytes on the wire


def _bits(shape, value, name: str) -> int:
    if isinstance(shape, data.StructLayout):
        unknown = set(value) - {n for n, _ in shape}
        if unknown:
            raise ValueError(f"{name}: no field {sorted(unknown)[0]!r}")
        return sum(_bits(f.shape, value[n], f"{name}.{n}") << f.offset
                   for n, f in shape if n in value)
    if isinstance(shape, data.ArrayLayout):
        if len(value) != shape.length:
            raise ValueError(f"{name}: {len(value)} items, expected {shape.length}")
        width = Shape.cast(shape.elem_shape).width
        return sum(_bits(shape.elem_shape, v, f"{name}[{i}]") << (i * width)
                   for i, v in enumerate(value))
    width, v = Shape.cast(shape).width, int(value)
    if not 0 <= v < 1 << width:
        raise ValueError(f"{name} = {v} does not fit its {width} bits")
    return v


def pack(layout: data.Layout, fields: dict) -> bytes:
    """The bytes of ``layout`` with ``fields`` (a dict; nested layouts as dicts, arrays as
    lists; missing fields 0). Raises :class:`ValueError` if a value does not fit its field."""
    return _bits(layout, fields, "fields").to_bytes(nbytes(layout), "little")


def unpack(layout: data.Layout, raw: bytes) -> data.Const:
    """``raw`` (exactly :func:`nbytes` of ``layout``) as a constant of ``layout``: its fields
    are attributes (``unpack(RUN_RESPONSE, raw).cycles``)."""
    if len(raw) != nbytes(layout):
        raise ValueError(f"{len(raw)} bytes for a layout of {nbytes(layout)}")
    return data.Const(layout, int.from_bytes(raw, "little"))


def wire_dtype(layout: data.StructLayout) -> np.dtype:
    """The numpy dtype of an array of ``layout`` items on the wire (fields of 8, 16 or 32
    whole bits), for :func:`numpy.frombuffer` and :meth:`numpy.ndarray.tobytes`."""
    fields = list(layout)
    for name, f in fields:
        if f.offset % 8 or f.width not in (8, 16, 32):
            raise ValueError(f"field {name!r}: {f.width} bits at bit {f.offset} has no dtype")
    return np.dtype({"names": [n for n, _ in fields],
                     "formats": [f"<u{f.width // 8}" for _, f in fields],
                     "offsets": [f.offset // 8 for _, f in fields],
                     "itemsize": nbytes(layout)})


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


def port_depths(cfg) -> list[int]:
    """Addresses of every "layer" WRITE and READ take: the LIF layers', then with a
    ``[decoder]`` the decoder's (:func:`decoder_depth`) as layer ``L``."""
    return weight_depths(cfg) + ([decoder_depth(cfg)] if cfg.decoder is not None else [])


def buffer_depth(cfg) -> int:
    """Payload buffer bytes: a RUN payload (its header and N_in pixels) or a WRITE of 4 words,
    rounded up to a power of two, >= 256."""
    need = max(nbytes(RUN_REQUEST) + cfg.layers[0],
               nbytes(WEIGHTS_REQUEST) + 4 * word_bytes(cfg), 256)
    return 1 << (need - 1).bit_length()


def events_per_frame(cfg) -> int:
    """Input spike events one EVENTS frame carries: its header and the events fill at most
    the payload buffer."""
    return (buffer_depth(cfg) - nbytes(EVENTS_REQUEST)) // nbytes(EVENT)


def info_layout(cfg) -> data.StructLayout:
    """The INFO payload: :data:`INFO_HEAD`, the size of each population, the weight words of
    each LIF layer."""
    return data.StructLayout({
        **INFO_HEAD.members,
        "population_sizes": data.ArrayLayout(INFO_SIZE, len(cfg.layers)),
        "weight_words": data.ArrayLayout(INFO_SIZE, cfg.n_layers),
    })


def info_bytes(cfg) -> bytes:
    """Payload of the INFO response: what the host checks before it talks to the core."""
    features = ((Features.LEARNING if cfg.learning is not None else 0)
                | (Features.EVENTS if cfg.event_input else 0)
                | (Features.DECODER if cfg.decoder is not None else 0))
    return pack(info_layout(cfg), {
        "magic": int.from_bytes(MAGIC, "little"), "version": PROTOCOL_VERSION,
        "populations": len(cfg.layers), "store_bits": cfg.store_bits, "features": features,
        "lanes": cfg.lanes, "time_steps": cfg.time_steps, "word_bytes": word_bytes(cfg),
        "buffer_bytes": buffer_depth(cfg), "config_hash": gateware_hash(cfg),
        "population_sizes": list(cfg.layers),
        "weight_words": weight_depths(cfg)})


HOST_SIDE = {"name", "source", "dataset"}            # config fields no gateware depends on
HOST_SIDE_LEARNING = {"lr_shift", "lr_decay"}        # sent with each RUN; the host's schedule


def gateware_hash(cfg) -> int:
    """32 bits of SHA-256 over every config field the gateware is built from: all but the
    name, file, dataset, and the learning rate and its decay (the host sends the rate with
    each RUN). Two configs with the same hash build the same core; a learning option, a
    neuron format or a decoder width changes it."""
    import dataclasses
    import hashlib
    import json

    data = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in HOST_SIDE}
    if data.get("input_threshold") is None:      # the defaults hash as before they existed
        data.pop("input_threshold", None)
    if data.get("early_exit") == "none":
        data.pop("early_exit", None)
    for name, value in list(data.items()):
        if dataclasses.is_dataclass(value):
            data[name] = {k: v for k, v in dataclasses.asdict(value).items()
                          if not (name == "learning" and (k in HOST_SIDE_LEARNING or (
                              k == "hidden_gate" and v == "none")))}
    text = json.dumps(data, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def check_link_config(cfg) -> None:
    if cfg.encoding == "ttfs":
        raise ValueError("host link: TTFS configs are not supported yet (rate-coded configs "
                         "only)")
    steps, neurons = (1 << READOUT_ITEM[name].width for name in ("step", "neuron"))
    if cfg.time_steps > steps or cfg.layers[-1] > neurons:
        raise ValueError(f"host link: spike events are sent as (step, neuron) bytes: T and "
                         f"the output layer must be <= {steps}, got T={cfg.time_steps}, "
                         f"n_out={cfg.layers[-1]}")
    if cfg.pixel_bits > 8:
        raise ValueError(f"host link: pixels are sent as bytes: pixel_bits must be <= 8, got "
                         f"{cfg.pixel_bits}")
    if (max(port_depths(cfg)) >= 1 << WEIGHTS_REQUEST["address"].width
            or buffer_depth(cfg) > MAX_PAYLOAD + 1):
        raise ValueError("host link: weight addresses and payloads are 16-bit: the network "
                         "is too large for this protocol")


# ---- the decoder on the chip: its weights as weight "layer" L (docs/decoder.md) ----

def row_bits(cfg) -> int:
    """Address bits of a decoder step within a neuron's rows: ``ceil(log2 T_dec)``."""
    return max(0, (cfg.decoder.steps - 1).bit_length())


def class_bits(cfg) -> int:
    """Address bits of a class within a row: ``ceil(log2 C)``."""
    return max(1, (cfg.layers[-1] - 1).bit_length())


def decoder_depth(cfg) -> int:
    """Addresses of the decoder's write port: ``(N_out + 1) * 2**row_bits`` rows (the bias
    is row ``N_out << row_bits``) of ``2**class_bits`` classes."""
    return ((cfg.layers[-1] << row_bits(cfg)) + 1) << class_bits(cfg)


def decoder_address(cfg, step: int, neuron: int, cls: int) -> int:
    """Write-port address of weight ``W[step, neuron, cls]``; ``neuron = N_out`` (``step``
    0) addresses the bias of ``cls``."""
    return (((neuron << row_bits(cfg)) | step) << class_bits(cfg)) | cls


def decoder_rows(cfg) -> list[tuple[int, int, int]]:
    """``(address, step, neuron)`` of every row of decoder weights: the ``C`` classes of a
    row are consecutive addresses from ``address``; ``neuron = N_out`` is the bias row."""
    n_out = cfg.layers[-1]
    return [(decoder_address(cfg, t, j, 0), t, j) for j in range(n_out)
            for t in range(cfg.decoder.steps)] + [(decoder_address(cfg, 0, n_out, 0), 0, n_out)]


def decoder_words(cfg, dec) -> list[tuple[int, int]]:
    """``(address, value)`` writes that load a :class:`sw.exit_decoder.DecoderWeights`
    (values as unsigned ``weight_bits`` fields), row by row (:func:`decoder_rows`)."""
    n_out, mask = cfg.layers[-1], (1 << cfg.decoder.weight_bits) - 1
    return [(addr + c, int(dec.w[t, j, c] if j < n_out else dec.b[c]) & mask)
            for addr, t, j in decoder_rows(cfg) for c in range(n_out)]
