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
