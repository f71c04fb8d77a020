"""Range coding of quantized symbols with a stored piecewise-uniform (histogram) model.

The coder is ``constriction``'s range coder (a maintained Rust implementation; writing our own
would be slower and unreviewed). What this module adds is the *model* and its bytes:

- A symbol stream is n integers in [first, last]. Its model cuts that range into ``n_bins``
  bins of equal width (the last may be shorter) and stores each bin's count; a symbol's
  probability is its bin's count divided by the bin's width. The model's parameters are written
  into the file and counted in its size (CompressAI's rule: an estimated rate is labelled, a
  real one includes the model).
- The encoder tries 1, 2, 4, ... bins and keeps the cheapest total (model + data).
- Probabilities are computed from stored integers with one IEEE division each, so encoder and
  decoder build bit-identical tables on any machine; constriction's fixed-point quantization of
  them is deterministic for a given constriction version, which setup.py pins and the golden
  files check.

All streams of a file share one range coder (one flush for the whole file instead of one per
tensor); per-stream sizes are attributed from each stream's information content.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import SINRFormatError
from .wire import ByteReader, ByteWriter

MAX_BINS = 4096
# Most symbols one range-coded stream may hold. The coder's output is an int32 array that
# constriction allocates itself: a count it cannot allocate aborts the process (SIGABRT) instead
# of raising, so nothing larger is ever passed to it (the decode budget is usually far smaller).
MAX_STREAM_SYMBOLS = 1 << 31
# Widest symbol range a model may span (16-bit symbols). constriction quantizes probabilities
# to 24-bit fixed point and gives every symbol of the range at least one unit, so a range
# must stay far below 2**24 symbols.
MAX_SPAN = 1 << 16
# Symbols the histogram check bins at a time: its temporaries stay a few MiB whatever the count.
CHECK_CHUNK = 1 << 18
# Bin counts tried by the encoder (1 = uniform over the used range).
_BIN_CHOICES = tuple(2**k for k in range(0, 9))


def _constriction():
    import constriction  # imported lazily: `import torch_sinr` stays light

    return constriction


@dataclass(frozen=True)
class HistogramModel:
    first: int  # smallest symbol of the modelled range
    last: int  # largest symbol (inclusive)
    counts: tuple[int, ...]  # symbols per bin; sums to the stream's length

    @property
    def span(self) -> int:
        return self.last - self.first + 1

    @property
    def bin_width(self) -> int:
        return -(-self.span // len(self.counts))

    def probabilities(self) -> np.ndarray:
        """Unnormalized probability of each symbol first..last (float64, one division each)."""
        width = self.bin_width
        widths = np.full(len(self.counts), width, dtype=np.int64)
        widths[-1] = self.span - width * (len(self.counts) - 1)
        per_bin = np.asarray(self.counts, dtype=np.float64) / widths.astype(np.float64)
        return np.repeat(per_bin, widths)

    def ideal_bits(self, symbols: np.ndarray) -> float:
        """Information content of ``symbols`` under this model (before fixed-point rounding)."""
        p = self.probabilities()
        p = p / p.sum()
        if self.span == 1:
            return 0.0
        with np.errstate(divide="ignore"):
            return float(-np.log2(p[symbols - self.first]).sum())

    def bin_counts(self, offsets: np.ndarray) -> np.ndarray:
        """How many of ``offsets`` (symbol - first, in 0..span-1) fall in each bin, binned
        ``CHECK_CHUNK`` at a time so the temporaries stay small."""
        width = self.bin_width
        counts = np.zeros(len(self.counts), dtype=np.int64)
        for start in range(0, offsets.size, CHECK_CHUNK):
            chunk = offsets[start:start + CHECK_CHUNK]
            binned = np.bincount(chunk // width if width > 1 else chunk, minlength=len(self.counts))
            if binned.size > counts.size:  # a symbol past the last bin: kept, so the check fails
                counts = np.concatenate([counts, np.zeros(binned.size - counts.size, dtype=np.int64)])
            counts[:binned.size] += binned
        return counts

    def information_bits(self) -> float:
        """``ideal_bits`` of a stream whose histogram is ``counts`` (the only streams the reader
        accepts), from the counts alone: no symbol needs decoding to know it."""
        if self.span == 1:
            return 0.0
        width = self.bin_width
        total = float(sum(self.counts))
        bits = 0.0
        for index, c in enumerate(self.counts):
            if c:
                w = width if index < len(self.counts) - 1 else self.span - width * (len(self.counts) - 1)
                bits += c * math.log2(total * w / c)
        return bits

    def write(self, out: ByteWriter) -> None:
        out.varint(self.first)
        out.varint(self.last - self.first)
        out.varint(len(self.counts))
        for c in self.counts:
            out.varint(c)

    @classmethod
    def read(cls, reader: ByteReader, alphabet: int, count: int, what: str) -> "HistogramModel":
        if alphabet > MAX_SPAN:
            raise SINRFormatError(f"{what}: range coding takes at most {MAX_SPAN} symbols, not {alphabet}")
        first = reader.varint(0, alphabet - 1, "model first symbol")
        span = reader.varint(0, alphabet - 1 - first, "model span") + 1
        n_bins = reader.varint(1, min(MAX_BINS, span), "model bins")
        counts = tuple(reader.varint(0, count, "model count") for _ in range(n_bins))
        if sum(counts) != count:
            raise SINRFormatError(f"{what}: model counts sum to {sum(counts)}, the stream has {count} symbols")
        if -(-span // n_bins) * (n_bins - 1) >= span:
            raise SINRFormatError(f"{what}: {n_bins} bins do not fit a span of {span} symbols")
        return cls(first, first + span - 1, counts)

    def entropy_model(self):
        return _constriction().stream.model.Categorical(self.probabilities(), perfect=False)


def fit_model(symbols: np.ndarray, n_bins: int) -> HistogramModel:
    first, last = int(symbols.min()), int(symbols.max())
    span = last - first + 1
    n_bins = max(1, min(n_bins, span))
    width = -(-span // n_bins)
    n_bins = -(-span // width)  # drop bins a rounded-up width leaves empty at the end
    counts = np.bincount((symbols - first) // width, minlength=n_bins)
    return HistogramModel(first, last, tuple(int(c) for c in counts))


def _varint_bytes(value: int) -> int:
    return max(1, math.ceil(value.bit_length() / 7))


def model_bytes(model: HistogramModel) -> int:
    return (_varint_bytes(model.first) + _varint_bytes(model.span - 1) + _varint_bytes(len(model.counts))
            + sum(_varint_bytes(c) for c in model.counts))


def best_model(symbols: np.ndarray) -> tuple[HistogramModel, float]:
    """The histogram model with the fewest model + data bits, and that total in bytes."""
    best, best_cost = None, math.inf
    for n_bins in _BIN_CHOICES:
        model = fit_model(symbols, n_bins)
        cost = model.ideal_bits(symbols) / 8 + model_bytes(model)
        if cost < best_cost:
            best, best_cost = model, cost
        # Stop once every symbol has its own bin. (Fewer bins than asked for is not that: a
        # rounded-up width drops empty bins at the end, e.g. 4 bins asked over 9 symbols give 3 of
        # width 3; stopping there missed the exact 9-bin model, 2.7x the bytes on peaked latents.)
        if model.bin_width == 1:
            break
    return best, best_cost


class RangeEncoder:
    """One range coder shared by every range-coded stream of a file, in order."""

    def __init__(self) -> None:
        self._encoder = _constriction().stream.queue.RangeEncoder()
        self.ideal_bits: list[float] = []  # per stream, for attributing the shared bytes

    def encode(self, symbols: np.ndarray, model: HistogramModel) -> int:
        """Append a stream; returns its position (for ``attributed_bytes``)."""
        if symbols.size and model.span > 1:  # a one-symbol range needs no bits
            self._encoder.encode(np.ascontiguousarray(symbols - model.first, dtype=np.int32), model.entropy_model())
        self.ideal_bits.append(model.ideal_bits(symbols) if symbols.size else 0.0)
        return len(self.ideal_bits) - 1

    def finish(self) -> bytes:
        if not self.ideal_bits:
            return b""
        return self._encoder.get_compressed().astype("<u4").tobytes()

    def attributed_bytes(self, total: int) -> list[float]:
        """The coded bytes split between the streams in proportion to their information content."""
        ideal = sum(self.ideal_bits)
        if ideal <= 0:
            return [0.0] * len(self.ideal_bits)
        return [total * b / ideal for b in self.ideal_bits]


class RangeDecoder:
    """Decodes the streams of one range-coded segment, in order, and checks that the segment is
    exactly what the encoder writes for what was decoded (``finish``).

    Nothing a file says reaches constriction unchecked: models come from ``HistogramModel.read``
    (span, bins and counts bounded, counts summing to the stream's length), counts are bounded
    by ``MAX_STREAM_SYMBOLS``, and the caller has checked the decode budget. Every decoded
    stream must have exactly its model's histogram: constriction gives the symbols of an empty
    bin a small non-zero probability (it must, to code anything), so data can decode to a symbol
    the model says is absent; such a file is refused, never read as a different tensor.
    """

    def __init__(self, data: bytes, what: str) -> None:
        if len(data) % 4:
            raise SINRFormatError(f"{what}: range-coded segment is not a whole number of 32-bit words")
        self.what = what
        self.data = bytes(data)
        self._decoder = _constriction().stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32)) \
            if data else None
        self._reencoder = _constriction().stream.queue.RangeEncoder() if data else None
        self._coded = 0  # streams that used the coder

    def decode(self, model: HistogramModel, count: int) -> np.ndarray:
        if count == 0 or model.span == 1:
            return np.full(count, model.first, dtype=np.int64)
        if self._decoder is None:
            raise SINRFormatError(f"{self.what}: a range-coded stream but no range-coded segment")
        if not 0 < count <= MAX_STREAM_SYMBOLS:
            raise SINRFormatError(f"{self.what}: a stream of {count} symbols; the coder takes at most "
                                  f"{MAX_STREAM_SYMBOLS} at a time")
        if sum(model.counts) != count or model.span > MAX_SPAN:
            raise SINRFormatError(f"{self.what}: a model of {sum(model.counts)} symbols over {model.span} values "
                                  f"for a stream of {count}")
        entropy_model = model.entropy_model()
        try:
            symbols = self._decoder.decode(entropy_model, count)
        except Exception as exc:  # constriction reports exhausted or invalid data as assorted errors
            raise SINRFormatError(f"{self.what}: corrupt range-coded data ({type(exc).__name__})") from None
        # constriction gives offsets in 0..span-1, so every bin index is below n_bins
        if symbols.size != count or not np.array_equal(model.bin_counts(symbols),
                                                       np.asarray(model.counts, dtype=np.int64)):
            raise SINRFormatError(f"{self.what}: the decoded symbols do not have the histogram the model stores "
                                  f"(a symbol of an empty bin, or corrupt data)")
        self._reencoder.encode(np.ascontiguousarray(symbols, dtype=np.int32), entropy_model)
        self._coded += 1
        out = symbols.astype(np.int64)  # the int32 offsets are freed on return: 12 bytes a symbol at most
        if model.first:
            out += model.first
        return out

    def finish(self) -> None:
        """Refuse bytes the decoder would ignore: the segment must be exactly the encoder's output
        for the symbols decoded (one meaning, one byte string)."""
        if self._reencoder is None:
            return
        expected = self._reencoder.get_compressed().astype("<u4").tobytes() if self._coded else b""
        if expected != self.data:
            raise SINRFormatError(f"{self.what}: {len(self.data)} bytes where the decoded streams code to "
                                  f"{len(expected)} (trailing or non-canonical data)")
