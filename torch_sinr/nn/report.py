"""What compression did, per layer and in total, printable as a table and savable as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]
    mode: str
    s: int
    k2: int
    value_bits: int
    index_coding: str
    params: int  # dense weight + bias parameters (bias only for a tied layer)
    dense_bytes: int  # in-memory weight + bias
    coded_bytes: int  # this layer's bytes in the file: values, indices, bias and their side info
    bits_values: int
    bits_indices: int
    bits_bias: int
    rel_error: float  # ||W - W_hat||_F / ||W||_F, after quantization
    seconds: float  # coding time: this layer's own, or its share of a batch (see seconds_measured)
    tied_to: str | None = None
    # True when ``seconds`` was timed for this layer alone. Layers coded together in one batched
    # call get the batch's average, which says nothing about any one layer: the table leaves it out.
    seconds_measured: bool = False

    @property
    def ratio(self) -> float:
        return self.dense_bytes / max(1, self.coded_bytes)


def _ratio(dense: int, coded: int) -> str:
    """``dense / coded`` as a table cell; empty where either side is zero (a tied layer without
    bias, an empty row), never a meaningless 0.00x or a division by one byte."""
    return f"{dense / coded:.2f}x" if dense > 0 and coded > 0 else ""


RATIO_NOTE = ("ratio = bytes of the dense tensors in memory (each tensor once) / bytes in the file. "
              "The file's ratio counts every byte of the file, container included (the ratio "
              "`torch-sinr compress` prints); a row's ratio counts only that row's own bytes.")


@dataclass
class CompressionReport:
    """Per-layer and total bytes, errors and time of one ``compress_model`` call.

    One ratio definition throughout: in-memory bytes of the dense tensors (a shared tensor
    once) over the bytes of the file ``save_compressed`` writes, safetensors container and all.
    The rows (layers, other tensors, container) add up to the file.
    """

    layers: list[LayerReport] = field(default_factory=list)
    dense_names: list[str] = field(default_factory=list)  # parameters/buffers left uncoded
    dense_bytes_other: int = 0  # in-memory bytes of those
    coded_bytes_other: int = 0  # their coded bytes in the file (side info included)
    seconds: float = 0.0
    file_bytes: int = 0  # the whole file save_compressed writes, container included
    file_parts: dict = field(default_factory=dict)  # its bytes by part (FileReport.parts())

    @property
    def total_dense_bytes(self) -> int:
        return sum(l.dense_bytes for l in self.layers) + self.dense_bytes_other

    @property
    def container_bytes(self) -> int:
        """File bytes that belong to no tensor: safetensors header, framing, names, CRC."""
        return self.file_bytes - sum(l.coded_bytes for l in self.layers) - self.coded_bytes_other

    @property
    def total_coded_bytes(self) -> int:
        """The file's size: every byte counts, the container's too."""
        return self.file_bytes

    @property
    def ratio(self) -> float:
        """The file's compression ratio: ``total_dense_bytes / file_bytes`` (container included)."""
        return self.total_dense_bytes / max(1, self.total_coded_bytes)

    def table(self) -> str:
        # A time column only where some layer's time was measured on its own; a batch average
        # repeated on every row would read as per-layer timings that were never taken.
        timed = any(l.seconds_measured for l in self.layers)
        columns = ["layer", "shape", "mode", "s", "k2", "bits (values/indices/bias)", "bytes", "ratio", "rel. error"]
        columns += ["time (s)"] if timed else []

        def row(*cells) -> str:
            cells = list(cells) + [""] * (len(columns) - len(cells))
            return "|" + "|".join(f" {c} " if c != "" else " " for c in cells[: len(columns)]) + "|"

        rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for l in self.layers:
            tied = f" (tied to {l.tied_to})" if l.tied_to else ""
            time_cell = [f"{l.seconds:.2f}" if l.seconds_measured else ""] if timed else []
            rows.append(row(f"{l.name}{tied}", f"{l.shape[0]}x{l.shape[1]}", l.mode, l.s, l.k2,
                            f"{l.bits_values}/{l.bits_indices}/{l.bits_bias}", l.coded_bytes,
                            _ratio(l.dense_bytes, l.coded_bytes), f"{l.rel_error:.4f}", *time_cell))
        if self.dense_names and self.coded_bytes_other > 0:
            n = len(self.dense_names)
            rows.append(row(f"other ({n} tensor{'s' if n > 1 else ''}, not SINR-coded)", "", "", "", "", "",
                            self.coded_bytes_other, _ratio(self.dense_bytes_other, self.coded_bytes_other)))
        if self.file_bytes > 0:
            rows.append(row("container (header, names, CRC)", "", "", "", "", "", self.container_bytes))
        label = "**file**" if timed else f"**file** (compressed in {self.seconds:.2f} s)"
        ratio = _ratio(self.total_dense_bytes, self.total_coded_bytes)
        rows.append(row(label, "", "", "", "", "", f"**{self.total_coded_bytes}**", f"**{ratio}**" if ratio else "",
                        "", *([f"{self.seconds:.2f}"] if timed else [])))
        return "\n".join(rows) + "\n\n" + RATIO_NOTE

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(total_dense_bytes=self.total_dense_bytes, total_coded_bytes=self.total_coded_bytes,
                    ratio=self.ratio)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


@dataclass
class TargetPlan:
    """The dry-run answer: which modules would be coded, and why the others are not."""

    matched: list[str]
    excluded: list[str]  # matched exclude_modules
    kept_dense: list[str]  # input layers: fan-in <= input_fan_in_max, or the first linear (keep_first_linear)
    unmatched: list[str]  # linears the targets did not name
    already_compressed: list[str] = field(default_factory=list)  # SINR layers from an earlier compress_model

    def __str__(self) -> str:
        def block(title, names):
            return f"{title} ({len(names)}):" + "".join(f"\n  {n}" for n in names)
        return "\n".join([block("matched", self.matched), block("excluded", self.excluded),
                          block("kept dense (input layers)", self.kept_dense), block("unmatched", self.unmatched),
                          block("already compressed (SINR layers)", self.already_compressed)])
