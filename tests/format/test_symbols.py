"""Symbol streams: the smallest coding wins, and every coding decodes to the same symbols."""

import numpy as np
import pytest

from torch_sinr import SINRFormatError
from torch_sinr.format.codec.rangecoder import RangeDecoder, RangeEncoder
from torch_sinr.format.codec.wire import ByteReader, ByteWriter
from torch_sinr.format import symbols as sym


def _round_trip(symbols, bits, policy):
    encoded = sym.encode_symbols(symbols, bits, 11, policy)
    out, segments, ranges = ByteWriter(), [], RangeEncoder()
    sym.write_params(encoded, out, segments, ranges)
    lengths: list[int] = []
    params = sym.read_params(ByteReader(out.getvalue()), bits, len(symbols), "t", lengths)
    assert lengths == [len(s) for s in segments]
    decoded = sym.decode_symbols(params, bits, len(symbols), segments, RangeDecoder(ranges.finish(), "t"), "t")
    return encoded, decoded


@pytest.mark.parametrize("bits", [4, 6, 8, 12, 16])
@pytest.mark.parametrize("shape", ["peaked", "uniform"])
def test_each_policy_round_trips_and_auto_is_smallest(bits, shape):
    rng = np.random.default_rng(bits)
    if shape == "peaked":
        symbols = np.clip(np.round(rng.laplace(2 ** (bits - 1), 2 ** (bits - 5) + 0.5, 3000)), 0, 2**bits - 1)
    else:
        symbols = rng.integers(0, 2**bits, 3000)
    symbols = symbols.astype(np.int64)
    sizes = {}
    for policy in ("auto", "brotli", "range"):
        encoded, decoded = _round_trip(symbols, bits, policy)
        assert np.array_equal(decoded, symbols)
        sizes[policy] = encoded.estimated_bytes
    assert sizes["auto"] <= min(sizes["brotli"], sizes["range"])
    if shape == "peaked" and bits >= 12:
        # a byte-oriented coder cannot model 12/16-bit symbols; the histogram model can
        assert sizes["range"] < sizes["brotli"]


def test_byte_plane_symbols_out_of_width_are_refused():
    import brotli

    segment = brotli.compress(bytes([200]) * 10)  # 8-bit bytes, but the stream says 6-bit symbols
    params = sym.SymbolParams(sym.BROTLI_BYTES, segment=0)
    with pytest.raises(SINRFormatError, match="6 bits"):
        sym.decode_symbols(params, 6, 10, [segment], RangeDecoder(b"", "t"), "t")


@pytest.mark.parametrize("bits", [6, 8, 10, 16])
def test_a_given_compressor_gives_the_same_choice_and_bytes(bits):
    """The writer passes its started compressions; the result equals compressing on the spot."""
    import brotli

    rng = np.random.default_rng(bits)
    symbols = np.clip(np.round(rng.normal(2 ** (bits - 1), 2 ** (bits - 3), 4000)), 0, 2**bits - 1).astype(np.int64)
    seen = []

    def compress(data):
        seen.append(data)
        return brotli.compress(data, quality=9)

    given = sym.encode_symbols(symbols, bits, 9, "brotli", compress=compress)
    plain = sym.encode_symbols(symbols, bits, 9, "brotli")
    assert (given.coding, given.segment) == (plain.coding, plain.segment)
    assert seen == [data for _, data in sym.brotli_inputs(symbols, bits, "brotli")]
    # at 8 bits the two layouts are the same bytes, compressed once
    assert len(seen) == (1 if bits == 8 else 2)
