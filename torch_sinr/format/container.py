"""Format v2, layer 2b: entries to payload bytes and back, and the payload in a safetensors file.

The safetensors file is written here byte by byte (8-byte header length, compact JSON header
with sorted keys, space padding to 8 bytes, then the payload) rather than through
``safetensors.save_file``: the bytes must not depend on a hash map's order, and the header must
be as small as the format allows. Every file written is read back by ``safetensors.safe_open``
in the tests. Reading goes through ``safe_open`` (it checks offsets and sizes), then everything
the header and payload say is validated here before any segment is decompressed.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import SINRFormatError
from . import schema
from .codec.rangecoder import RangeDecoder
from .codec.wire import ByteReader, ByteWriter
from .kinds import KINDS_BY_NAME, PARTS, DecodeContext, Decoded, EncodeContext, Item, kind_for_id
from .schema import Entry

_MAX_METADATA_BYTES = 1 << 20  # user metadata strings, together
V1_KEYS = ("payload",)


# ----------------------------------------------------------------------------- byte accounting
@dataclass
class PayloadParts:
    """Payload bytes by part: coded segments and range-coded bytes per part, the side information
    (kind parameters: quantizer ranges, models, coding ids) and the framing (the rest)."""

    coded: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PARTS})
    side_info: int = 0
    entries: dict[str, dict[str, float]] = field(default_factory=dict)  # per entry: part -> bytes, side_info


def encode_payload(items: list[Item], *, names: bool, quality: int, index_policy: str = "auto",
                   symbol_policy: str = "auto") -> tuple[bytes, PayloadParts]:
    """The v2 payload of ``items`` (in order) and its bytes by part."""
    ctx = EncodeContext(quality=quality, index_policy=index_policy, symbol_policy=symbol_policy)
    record = ByteWriter()
    record.varint(len(items))
    schema.write_settings(record, index_policy, symbol_policy, quality)
    signature = [(it.name, it.dtype, tuple(it.shape)) for it in items]
    if names:
        schema.write_signature(record, signature)
    else:
        record.u32(schema.skeleton_fingerprint(signature))
    parts = PayloadParts()
    owners: list[tuple[str, int, int]] = []  # per item: name, first segment, first range stream
    for item in items:
        KINDS_BY_NAME[item.kind].prefetch(item, ctx)
    for item in items:
        kind = KINDS_BY_NAME[item.kind]
        record.u8(kind.id)
        start = len(record)
        owners.append((item.name, len(ctx.segments), len(ctx.range_parts)))
        kind.encode(item, record, ctx)
        parts.side_info += len(record) - start
        parts.entries[item.name] = {"side_info": float(len(record) - start)}
    ranged = ctx.ranges.finish()
    shares = ctx.ranges.attributed_bytes(len(ranged))
    bounds = owners[1:] + [("", len(ctx.segments), len(ctx.range_parts))]
    for (name, seg0, rng0), (_, seg1, rng1) in zip(owners, bounds):
        entry = parts.entries[name]
        for part, segment in zip(ctx.segment_parts[seg0:seg1], ctx.segments[seg0:seg1]):
            parts.coded[part] += len(segment)
            entry[part] = entry.get(part, 0.0) + len(segment)
        for part, share in zip(ctx.range_parts[rng0:rng1], shares[rng0:rng1]):
            parts.coded[part] += share
            entry[part] = entry.get(part, 0.0) + share
    for name, note in ctx.notes.items():
        parts.entries[name]["index_coding"] = note
    out = ByteWriter()
    out.u8(schema.VERSION)
    out.u8(schema.FLAG_NAMES if names else 0)
    out.raw(record.getvalue())
    for segment in ctx.segments:
        out.raw(segment)
    out.raw(ranged)
    payload = out.getvalue()
    return payload + struct.pack("<I", zlib.crc32(payload)), parts


# ----------------------------------------------------------------------------- the file
def _header(payload_size: int, metadata: dict[str, str] | None) -> bytes:
    # key order as safetensors writes it (a file without metadata is byte-identical to save_file's);
    # metadata sorted, so the bytes never depend on a dict's history
    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    header[schema.TENSOR] = {"dtype": "U8", "shape": [payload_size], "data_offsets": [0, payload_size]}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text


def safetensors_size(payload_size: int, metadata: dict[str, str] | None = None) -> int:
    """Bytes of the file that holds a payload of this size."""
    return len(_header(payload_size, metadata)) + payload_size


def write_file(path: str | os.PathLike, payload: bytes, metadata: dict[str, str] | None = None) -> int:
    """Write ``payload`` as a safetensors file (atomically); returns the file's size."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_header(len(payload), metadata))
        f.write(payload)
    os.replace(tmp, path)  # never leave a half-written file under the final name
    return path.stat().st_size


@dataclass
class RawFile:
    version: int
    payload: bytes
    metadata: dict[str, str]
    file_bytes: int


def read_file(path: str | os.PathLike) -> RawFile:
    """Open a torch_sinr file of any version; validate the safetensors layer."""
    path = Path(path)
    if not path.is_file():
        raise SINRFormatError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            if keys == [schema.TENSOR]:
                version = schema.VERSION
            elif keys == list(V1_KEYS) and metadata.get("format") == "torch_sinr":
                version = 1
            else:
                raise SINRFormatError(f"{path}: not a torch_sinr file (tensors {keys[:5]}, "
                                      f"format={metadata.get('format')!r})")
            tensor = f.get_tensor(keys[0])
    except SafetensorError as exc:
        raise SINRFormatError(f"{path}: not a valid safetensors file ({exc})") from None
    except SINRFormatError:
        raise
    except Exception as exc:  # safetensors raises assorted errors on garbage headers
        raise SINRFormatError(f"{path}: not a valid safetensors file ({type(exc).__name__}: {exc})") from None
    if tensor.dtype != torch.uint8 or tensor.ndim != 1:
        raise SINRFormatError(f"{path}: the payload must be a 1-D uint8 tensor, not {tensor.dtype} {list(tensor.shape)}")
    if sum(len(k) + len(v) for k, v in metadata.items()) > _MAX_METADATA_BYTES:
        raise SINRFormatError(f"{path}: metadata over {_MAX_METADATA_BYTES} bytes")
    return RawFile(version, tensor.numpy().tobytes(), metadata, path.stat().st_size)


# ----------------------------------------------------------------------------- parsing
class BareFileError(SINRFormatError):
    """A bare file (no tensor names, dtypes or shapes) read without its model's signature.

    Its record cannot be parsed without them (each kind's fields are sized by the tensor's
    shape), but what precedes the entries can be shown: ``torch-sinr info`` prints it."""

    def __init__(self, message: str, entries: int, index_policy: str, symbol_policy: str, quality: int,
                 fingerprint: int) -> None:
        super().__init__(message)
        self.entries, self.fingerprint = entries, fingerprint
        self.index_policy, self.symbol_policy, self.quality = index_policy, symbol_policy, quality


@dataclass
class ParsedPayload:
    names_stored: bool
    fingerprint: int | None
    index_policy: str
    symbol_policy: str
    quality: int
    entries: list[Entry]
    segments: list[list[bytes]]  # per entry
    ranged: bytes

    def decoded_bytes(self) -> int:
        return sum(KINDS_BY_NAME[e.kind].decoded_bytes(e) for e in self.entries)


def parse_payload(payload: bytes, signature: list[tuple[str, torch.dtype, tuple[int, ...]]] | None = None,
                  what: str = "file", budget: int | None = None) -> ParsedPayload:
    """Check the CRC, parse and validate the record; nothing is decompressed yet.

    ``signature`` (names, dtypes, shapes of the skeleton) is required for a bare file and, for a
    self-describing one, must match it exactly. Parsing is under ``budget`` bytes too: the entry
    count is checked against it (``schema.ENTRY_COST`` each) and against the record bytes left
    before any entry is read, the names' total size as they are read (``schema.read_signature``).
    """
    if len(payload) < 7:
        raise SINRFormatError(f"{what}: payload of {len(payload)} bytes is too short")
    body, (crc,) = payload[:-4], struct.unpack("<I", payload[-4:])
    if zlib.crc32(body) != crc:
        raise SINRFormatError(f"{what}: integrity check failed (CRC-32 mismatch): the file is corrupt")
    reader = ByteReader(body, f"{what} payload")
    version = reader.u8()
    if version != schema.VERSION:
        raise SINRFormatError(f"{what}: payload version {version} is not supported (this reader knows 1 and 2)")
    flags = reader.u8()
    if flags & ~schema.FLAG_NAMES:
        raise SINRFormatError(f"{what}: unknown flags {flags:#x}")
    record = reader  # the record is self-delimiting; the segments follow it
    count = record.varint(0, schema.MAX_ENTRIES, "entry count")
    index_policy, symbol_policy, quality = schema.read_settings(record)
    names_stored = bool(flags & schema.FLAG_NAMES)
    if count * schema.MIN_ENTRY_BYTES[names_stored] > record.remaining:
        raise SINRFormatError(f"{what}: {count} entries cannot fit in the {record.remaining} bytes left")
    if budget is not None and count * schema.ENTRY_COST > budget:
        raise SINRFormatError(f"{what}: parsing {count} entries needs about {count * schema.ENTRY_COST} bytes, "
                              f"over the budget of {budget}")
    fingerprint = None
    if names_stored:
        entries = schema.read_signature(record, count, budget)
        if signature is not None:
            _match_signature(entries, signature)
    else:
        fingerprint = record.u32()
        if signature is None:
            raise BareFileError(f"{what}: a bare file (no tensor names); decode it with the model it was "
                                f"saved from (load_compressed, or decode_state_dict(..., skeleton=model))",
                                count, index_policy, symbol_policy, quality, fingerprint)
        if len(signature) != count or schema.skeleton_fingerprint(signature) != fingerprint:
            raise SINRFormatError(f"{what}: the model does not match the file (names, dtypes or shapes differ)")
        entries = [Entry(name, dtype, tuple(shape)) for name, dtype, shape in signature]
    for index, entry in enumerate(entries):
        kind_id = record.u8()
        kind = kind_for_id(kind_id)
        if kind is None:
            raise SINRFormatError(f"{entry.where}: unknown coding kind {kind_id}")
        entry.kind = kind.name
        start = record.position
        entry.params = kind.parse(record, entry, index, entries)
        entry.side_bytes = record.position - start
    segments = []
    for entry in entries:
        segments.append([reader.raw(n) for n in entry.segment_lengths])
    ranged = reader.raw(reader.remaining)  # the range-coded segment: whatever is left
    from .symbols import RANGE

    coded = any(params.coding == RANGE and count and params.model.span > 1
                for entry in entries for params, _, count in KINDS_BY_NAME[entry.kind].symbol_streams(entry))
    if ranged and not coded:
        raise SINRFormatError(f"{what}: {len(ranged)} bytes after the segments, but no range-coded stream uses them")
    if len(ranged) % 4:
        raise SINRFormatError(f"{what}: the range-coded segment is not a whole number of 32-bit words")
    return ParsedPayload(names_stored, fingerprint, index_policy, symbol_policy, quality, entries, segments, ranged)


def _match_signature(entries: list[Entry], signature) -> None:
    file_names = [e.name for e in entries]
    model_names = [name for name, _, _ in signature]
    if file_names != model_names:
        missing = sorted(set(model_names) - set(file_names))
        extra = sorted(set(file_names) - set(model_names))
        raise SINRFormatError(f"the file does not match the model: missing from file {missing[:10]}, "
                              f"not in model {extra[:10]}" + ("" if missing or extra else " (order differs)"))
    for entry, (name, dtype, shape) in zip(entries, signature):
        if entry.shape != tuple(shape) or entry.dtype != dtype:
            raise SINRFormatError(f"tensor {name!r}: file has {entry.dtype} {list(entry.shape)}, "
                                  f"model has {dtype} {list(shape)}")


def decode_payload(parsed: ParsedPayload, budget: int, what: str = "file") -> list[Decoded]:
    """Decode every entry, after checking what that will allocate against ``budget`` bytes."""
    need = parsed.decoded_bytes()
    if need > budget:
        raise SINRFormatError(f"{what}: decoding needs {need} bytes, over the budget of {budget} "
                              f"(pass a larger budget if the file is trusted)")
    ranges = RangeDecoder(parsed.ranged, f"{what} range-coded segment")
    decoded: list[Decoded] = []
    for entry, segments in zip(parsed.entries, parsed.segments):
        kind = KINDS_BY_NAME[entry.kind]
        decoded.append(kind.decode(entry, DecodeContext(segments, ranges, decoded)))
    ranges.finish()  # no trailing or non-canonical range-coded bytes
    return decoded


def bytes_by_entry(parsed: ParsedPayload, what: str = "file") -> dict[str, dict[str, float]]:
    """Each entry's bytes in the payload: its segments (the lengths the record declares), its side
    info, and its share of the range-coded segment, in proportion to its streams' information
    content. That content is computed from each stored model's counts (``information_bits``):
    the decoder accepts only streams whose histogram is exactly the model's, so it is the
    streams' own, and nothing is decoded (``read_compressed`` and ``torch-sinr info`` cost a
    parse of the record, no more)."""
    from .symbols import RANGE

    ideal: dict[int, float] = {}
    for index, entry in enumerate(parsed.entries):
        for params, _bits, count in KINDS_BY_NAME[entry.kind].symbol_streams(entry):
            if params is not None and params.coding == RANGE and count:
                ideal[index] = ideal.get(index, 0.0) + params.model.information_bits()
    total_ideal = sum(ideal.values())
    out = {}
    for index, entry in enumerate(parsed.entries):
        share = len(parsed.ranged) * ideal.get(index, 0.0) / total_ideal if total_ideal > 0 else 0.0
        out[entry.name] = {"segments": float(sum(entry.segment_lengths)), "range": share,
                           "side_info": float(entry.side_bytes)}
    return out
