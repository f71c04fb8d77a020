"""What a file holds (``FileSummary``) and its bytes by part (``FileReport``: every byte of the file is
in exactly one part)."""

from __future__ import annotations

from dataclasses import dataclass, field

PART_LABELS = (("values", "values (SINR non-zeros)"), ("indices", "indices (SINR supports)"),
               ("biases", "biases"), ("dense", "dense tensors (input/output layers, others)"),
               ("side_info", "side info (quantizer ranges, coding parameters, entropy models)"),
               ("container", "container (safetensors header, version, names, shapes, CRC)"))


@dataclass
class FileReport:
    """Bytes of the file actually written, by part.

    ``values``/``indices``/``biases``/``dense`` are the coded segments of those tensors (bytes of
    the shared range coder are split by each stream's information content, so parts can be
    fractional before rounding); ``side_info`` is what the decoder needs to read them (ranges,
    coding choices, probability models); ``container`` is everything else: the safetensors header,
    the payload's framing, tensor names and shapes, and the CRC.
    """

    path: str
    file_bytes: int
    values_bytes: int = 0
    indices_bytes: int = 0
    bias_bytes: int = 0
    other_bytes: int = 0  # dense tensors
    side_info_bytes: int = 0
    layers: dict[str, dict[str, int]] = field(default_factory=dict)
    entries: dict[str, dict] = field(default_factory=dict)  # per tensor: part -> bytes (and its coding)

    @property
    def container_bytes(self) -> int:
        return (self.file_bytes - self.values_bytes - self.indices_bytes - self.bias_bytes - self.other_bytes
                - self.side_info_bytes)

    @classmethod
    def from_parts(cls, path: str, file_bytes: int, parts, items) -> "FileReport":
        coded = parts.coded
        report = cls(path, file_bytes, values_bytes=round(coded["values"]), indices_bytes=round(coded["indices"]),
                     bias_bytes=round(coded["biases"]), other_bytes=round(coded["dense"]), side_info_bytes=parts.side_info)
        report.entries = {name: dict(parts_) for name, parts_ in parts.entries.items()}
        for item in items:
            if item.kind == "sinr":
                report.layers[item.name.rpartition(".")[0]] = {"shape": list(item.shape), "s": item.data.spec.s,
                                                                "k2": item.data.spec.k2,
                                                                "value_bits": item.data.spec.quantizer.bits}
        return report

    def parts(self) -> dict[str, int]:
        return {"values": self.values_bytes, "indices": self.indices_bytes, "biases": self.bias_bytes,
                "dense": self.other_bytes, "side_info": self.side_info_bytes, "container": self.container_bytes}

    def table(self) -> str:
        parts = self.parts()
        rows = ["| part | bytes | share |", "|---|---|---|"]
        for key, label in PART_LABELS:
            rows.append(f"| {label} | {parts[key]} | {100 * parts[key] / max(1, self.file_bytes):.1f}% |")
        rows.append(f"| **file** | **{self.file_bytes}** | 100% |")
        return "\n".join(rows)

    def to_dict(self) -> dict:
        return {"path": self.path, "file_bytes": self.file_bytes, "values_bytes": self.values_bytes,
                "indices_bytes": self.indices_bytes, "bias_bytes": self.bias_bytes, "other_bytes": self.other_bytes,
                "side_info_bytes": self.side_info_bytes, "container_bytes": self.container_bytes, "layers": self.layers}


@dataclass
class FileSummary:
    """What a compressed file holds, without decoding it (any format version)."""

    path: str
    version: int
    file_bytes: int
    metadata: dict[str, str]
    tensors: list[dict] = field(default_factory=list)  # name, kind, dtype, shape, + kind details
    names_stored: bool = True
