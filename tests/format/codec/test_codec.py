"""Quantization, index coding and entropy coding define the bitstream: round trips and golden bytes."""

import math

import numpy as np
import pytest
import torch

from torch_sinr import SINRConfigError, SINRFormatError
from torch_sinr.format.codec.bitpack import byte_planes, byte_planes_size, from_byte_planes, pack_uint, unpack_uint
from torch_sinr.format.codec.entropy import compress, decompress
from torch_sinr.format.codec.indices import decode_indices, encode_indices
from torch_sinr.core.quantization import UniformQuantizer


def random_supports(rows, s, k2, seed=0):
    rng = np.random.default_rng(seed)
    return np.sort(np.stack([rng.choice(k2, s, replace=False) for _ in range(rows)]), axis=1)


@pytest.mark.parametrize("width", [1, 3, 8, 13, 16, 31])
def test_bitpack_round_trip(width):
    values = np.random.default_rng(width).integers(0, 2**width, size=1001)
    assert np.array_equal(unpack_uint(pack_uint(values, width), width, values.size), values)


def test_bitpack_golden():
    # 001 010 011 100 101 + zero pad -> 00101001 11001010
    assert pack_uint(np.array([1, 2, 3, 4, 5]), 3).hex() == "29ca"


@pytest.mark.parametrize("width", [1, 5, 8, 9, 12, 16])
def test_byte_planes_round_trip(width):
    values = np.random.default_rng(width).integers(0, 2**width, size=777)
    data = byte_planes(values, width)
    assert len(data) == byte_planes_size(width, values.size)
    assert np.array_equal(from_byte_planes(data, width, values.size), values)


def test_byte_planes_golden_and_bad_width():
    assert byte_planes(np.array([5, 255]), 8).hex() == "05ff"
    assert byte_planes(np.array([0x1234, 0x00FF]), 12).hex() == "1200" + "34ff"  # high plane, then low plane
    with pytest.raises(ValueError, match="1..16"):
        byte_planes(np.array([1]), 17)


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16, 32])
def test_quantizer_round_trip_is_idempotent_and_bounded(bits):
    v = torch.randn(5000) * 0.3
    q = UniformQuantizer.fit(v, bits)
    r = q.round_trip(v)
    assert torch.equal(q.round_trip(r), r)  # values on the grid stay put: memory == file
    if bits == 32:
        assert torch.equal(r, v)
    else:
        assert (r - v).abs().max() <= q.step / 2 * (1 + 1e-6) + 1e-7
        assert q.quantize(v).max() < 2**bits


def test_quantizer_constant_values_and_bad_bits():
    q = UniformQuantizer.fit(torch.full((10,), 0.25), 8)
    assert torch.equal(q.round_trip(torch.full((10,), 0.25)), torch.full((10,), 0.25))
    for bad in (1, 17, 24):
        with pytest.raises(SINRConfigError):
            UniformQuantizer(bad)


def test_quantizer_golden():
    q = UniformQuantizer(16, -0.5, 0.75)
    codes = q.quantize(torch.tensor([-0.5, 0.0, 0.1234567, 0.75]))
    assert codes.tolist() == [0, 26214, 32687, 65535]  # 0.6234567 / 1.25 * 65535 = 32686.59
    assert q.dequantize(codes).tolist() == [-0.5, 0.0, 0.12346456199884415, 0.75]


@pytest.mark.parametrize("coding", ["auto", "fixed", "rice", "bitmask"])
@pytest.mark.parametrize("rows, s, k2", [(64, 29, 1024), (3, 460, 16384), (10, 30, 64), (5, 1, 8)])
def test_index_codings_round_trip(coding, rows, s, k2):
    idx = random_supports(rows, s, k2)
    name, param, data = encode_indices(idx, k2, coding)
    assert np.array_equal(decode_indices(name, param, data, rows, s, k2), idx)


def test_auto_index_coding_is_smallest_and_near_entropy():
    idx = random_supports(64, 29, 1024)
    sizes = {c: len(encode_indices(idx, 1024, c)[2]) for c in ("fixed", "rice", "bitmask")}
    name, _, data = encode_indices(idx, 1024, "auto")
    assert len(data) == min(sizes.values()) and name == min(sizes, key=sizes.get)
    entropy_bits = (math.lgamma(1025) - math.lgamma(30) - math.lgamma(1024 - 29 + 1)) / math.log(2)
    assert len(data) * 8 < 1.1 * 64 * entropy_bits


def test_index_coding_golden():
    idx = np.array([[1, 5, 6, 20], [0, 2, 30, 31]])
    name, param, data = encode_indices(idx, 32, "rice")
    # gaps 1,3,0,13 | 0,1,27,0 at k=2: unary quotients 0,0,0,3,0,0,6,0 -> 1c 7e 00 (17 bits),
    # remainders 1,3,0,1,0,1,3,0 -> 71 1c; prefixed by the unary length (3, little endian).
    assert (name, param, data.hex()) == ("rice", 2, "030000001c7e00711c")


@pytest.mark.parametrize("tamper", ["out_of_range", "unsorted", "short"])
def test_index_decoding_rejects_bad_streams(tamper):
    if tamper == "out_of_range":
        _, param, data = encode_indices(np.array([[1, 60]]), 64, "fixed")
        with pytest.raises(SINRFormatError, match="out of range"):
            decode_indices("fixed", param, data, 1, 2, 40)  # same 6-bit width, but 60 >= 40
    elif tamper == "unsorted":
        with pytest.raises(SINRFormatError, match="increasing"):
            decode_indices("fixed", 6, pack_uint(np.array([9, 3]), 6), 1, 2, 64)
    else:
        with pytest.raises(SINRFormatError):
            decode_indices("rice", 2, b"\x01\x00", 4, 4, 64)


def test_entropy_round_trip_raw_and_brotli():
    for data in (bytes(5000), np.random.default_rng(0).bytes(300)):
        assert decompress(compress(data), len(data), "x") == data


def test_entropy_refuses_bombs_and_garbage():
    bomb = compress(bytes(10_000_000))
    assert len(bomb) < 1000
    with pytest.raises(SINRFormatError, match="expands past the 100 bytes"):
        decompress(bomb, 100, "bomb")
    with pytest.raises(SINRFormatError):
        decompress(b"\x01garbage", 10, "garbage")
    with pytest.raises(SINRFormatError):
        decompress(b"\x07", 0, "tag")
    with pytest.raises(SINRFormatError):
        decompress(compress(bytes(5000))[:-3], 5000, "truncated")
