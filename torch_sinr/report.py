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
    seconds: float
    tied_to: str | None = None

    @property
    def ratio(self) -> float:
        return self.dense_bytes / max(1, self.coded_bytes)


@dataclass
class CompressionReport:
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
        return self.total_dense_bytes / max(1, self.total_coded_bytes)

    def table(self) -> str:
        head = ("| layer | shape | mode | s | k2 | bits (values/indices/bias) | bytes | ratio | rel. error | time (s) |\n"
                "|---|---|---|---|---|---|---|---|---|---|")
        rows = [head]
        for l in self.layers:
            tied = f" (tied to {l.tied_to})" if l.tied_to else ""
            rows.append(f"| {l.name}{tied} | {l.shape[0]}x{l.shape[1]} | {l.mode} | {l.s} | {l.k2} | "
                        f"{l.bits_values}/{l.bits_indices}/{l.bits_bias} | {l.coded_bytes} | {l.ratio:.2f}x | "
                        f"{l.rel_error:.4f} | {l.seconds:.2f} |")
        if self.dense_names:
            rows.append(f"| other ({len(self.dense_names)} tensors, not SINR-coded) | | | | | | {self.coded_bytes_other} | "
                        f"{self.dense_bytes_other / max(1, self.coded_bytes_other):.2f}x | | |")
        rows.append(f"| container (header, names, CRC) | | | | | | {self.container_bytes} | | | |")
        rows.append(f"| **file** | | | | | | **{self.total_coded_bytes}** | **{self.ratio:.2f}x** | | "
                    f"{self.seconds:.2f} |")
        return "\n".join(rows)

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
    kept_dense: list[str]  # input layers (fan-in <= input_fan_in_max)
    unmatched: list[str]  # linears the targets did not name

    def __str__(self) -> str:
        def block(title, names):
            return f"{title} ({len(names)}):" + "".join(f"\n  {n}" for n in names)
        return "\n".join([block("matched", self.matched), block("excluded", self.excluded),
                          block("kept dense (input layers)", self.kept_dense), block("unmatched", self.unmatched)])
