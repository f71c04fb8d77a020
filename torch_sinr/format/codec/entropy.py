"""Entropy coding of byte streams with Brotli, the paper's coder.

Each stream starts with one tag byte: 0 = stored raw (when Brotli would not shrink it, as for
packed 16-bit values), 1 = Brotli. Decoding is bounded by the size the metadata promises, so a
hostile stream cannot expand into gigabytes.
"""

from __future__ import annotations

import brotli

from ...errors import SINRFormatError

_RAW, _BROTLI = 0, 1
# Format 1's streams: Brotli's densest setting. Brotli carried every stream there, and quality 11
# saved ~1-2% of packed code values against quality 9 at ~20x the time.
DEFAULT_QUALITY = 11
# Format 2's default (SINRConfig.brotli_quality, the baselines' files): there the range coder
# carries most streams and Brotli only those it shrinks more, so quality 11's slow search buys
# almost nothing. Chosen on the tuning half of Kodak and benchmarks.core's 8x256 MLP by
# `python -m benchmarks.format_bytes` (its "Brotli quality" table: bytes and save time per quality).
# The quality is recorded in each file, so a file re-saves to its own bytes whatever this is.
FILE_QUALITY = 8


def compress(data: bytes, quality: int = DEFAULT_QUALITY) -> bytes:
    packed = brotli.compress(data, quality=quality)
    if len(packed) < len(data):
        return bytes([_BROTLI]) + packed
    return bytes([_RAW]) + data


def brotli_exact(data: bytes, expected_size: int, what: str) -> bytes:
    """Decode Brotli data that must expand to exactly ``expected_size`` bytes, never decoding more
    than one byte past it: a hostile stream cannot expand into gigabytes."""
    decoder = brotli.Decompressor()
    try:
        out = decoder.process(data, output_buffer_limit=expected_size + 1)
        finished = decoder.is_finished()
    except brotli.error as exc:
        raise SINRFormatError(f"{what}: corrupt Brotli stream ({exc})") from None
    if len(out) > expected_size:
        raise SINRFormatError(f"{what}: Brotli stream expands past the {expected_size} bytes its shape implies")
    if not finished or len(out) != expected_size:
        raise SINRFormatError(f"{what}: truncated Brotli stream ({len(out)} of {expected_size} bytes)")
    return out


def decompress(stream: bytes, expected_size: int, what: str) -> bytes:
    """Decode one tagged stream that must expand to exactly ``expected_size`` bytes."""
    if len(stream) < 1:
        raise SINRFormatError(f"{what}: empty stream")
    tag, body = stream[0], stream[1:]
    if tag == _BROTLI:
        return brotli_exact(body, expected_size, what)
    if tag != _RAW:
        raise SINRFormatError(f"{what}: unknown stream tag {tag}")
    if len(body) != expected_size:
        raise SINRFormatError(f"{what}: decodes to {len(body)} bytes, metadata says {expected_size}")
    return bytes(body)
