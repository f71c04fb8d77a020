"""Hand-written pieces of format-2 records, for the tests of hostile and hand-built files."""

from __future__ import annotations

from torch_sinr.format.codec.wire import ByteWriter
from torch_sinr.format import decode_state_dict


def zigzag(value: int) -> int:
    return 2 * value if value >= 0 else -2 * value - 1


def integer_stream(w: ByteWriter, first: int, bits: int, coding: int | None, params, zigzagged: bool = True) -> None:
    """An integer stream's fields (kinds ``integers`` and ``stepped``): first, width, coding, params."""
    w.varint(zigzag(first) if zigzagged else first)
    w.u8(bits)
    if coding is not None:
        w.u8(coding)
        for p in params:
            w.varint(p)


def decode_bytes(tmp_path, data: bytes, **options):
    """``decode_state_dict`` of a file holding ``data``."""
    path = tmp_path / "h.safetensors"
    path.write_bytes(data)
    return decode_state_dict(path, **options)


def assert_refused(tmp_path, signature, entry: bytes, segments: list[bytes]) -> None:
    """A file of one hand-written entry is refused with SINRFormatError naming it (or the payload)."""
    import pytest

    from benchmarks import fuzz_format
    from torch_sinr import SINRFormatError

    with pytest.raises(SINRFormatError, match="'w'|payload|range-coded|integrity"):
        decode_bytes(tmp_path, fuzz_format.build(signature, [entry], segments))


def assert_budget_refuses_fast(tmp_path, data: bytes) -> None:
    """A file declaring far more values than it holds is refused by the decode budget, in under
    2 s and 64 MiB."""
    import time

    import pytest

    from benchmarks import fuzz_format
    from torch_sinr import SINRFormatError

    started = time.perf_counter()
    with fuzz_format.PeakMemory() as memory:
        with pytest.raises(SINRFormatError, match="budget"):
            decode_bytes(tmp_path, data)
    assert time.perf_counter() - started < 2.0 and memory.increase < 64 << 20


def payload_bounds(data: bytes) -> tuple[int, int]:
    """(start, end) of a file's payload: after the safetensors header, to the end."""
    import struct

    return 8 + struct.unpack("<Q", data[:8])[0], len(data)


def assert_every_flipped_payload_byte_refused(path, tmp_path) -> None:
    """Flipping any one payload byte of the file at ``path`` (CRC left as it was) is refused."""
    import pytest

    from torch_sinr import SINRFormatError

    data = path.read_bytes()
    start, end = payload_bounds(data)
    mutant = tmp_path / "m.safetensors"
    for position in range(start, end):
        flipped = bytearray(data)
        flipped[position] ^= 0x01 if position % 2 else 0x80
        mutant.write_bytes(flipped)
        with pytest.raises(SINRFormatError):
            decode_state_dict(mutant)


# Issue 23's bound for refusing a hostile file: 1 s and 64 MiB of peak resident-size increase.
FAST_SECONDS = 1.0
SMALL_BYTES = 64 << 20


def measured(call):
    """(result or the SINRFormatError raised, seconds, peak RSS increase) of ``call()``."""
    import time

    from benchmarks import fuzz_format
    from torch_sinr import SINRFormatError

    started = time.perf_counter()
    with fuzz_format.PeakMemory() as memory:
        try:
            result = call()
        except SINRFormatError as exc:
            result = exc
    return result, time.perf_counter() - started, memory.increase


def assert_refused_fast(call, match: str = ""):
    """``call()`` raises SINRFormatError (matching ``match``) within 1 s and 64 MiB; returns the
    error, the seconds and the peak RSS increase (printed, for the record of what was measured)."""
    import re

    from torch_sinr import SINRFormatError

    result, seconds, memory = measured(call)
    assert isinstance(result, SINRFormatError), f"not refused: {type(result).__name__}"
    assert re.search(match, str(result)), str(result)
    assert seconds < FAST_SECONDS and memory < SMALL_BYTES, (seconds, memory)
    print(f"refused in {seconds * 1000:.0f} ms, peak RSS +{memory / 2**20:.1f} MiB: {result}")
    return result, seconds, memory


def write_payload(tmp_path, payload_body: bytes, name: str = "h.safetensors"):
    """A file holding ``payload_body`` with its CRC appended (a hostile writer's well-formed file)."""
    import struct
    import zlib

    from torch_sinr.format import container

    path = tmp_path / name
    container.write_file(path, payload_body + struct.pack("<I", zlib.crc32(payload_body)))
    return path
