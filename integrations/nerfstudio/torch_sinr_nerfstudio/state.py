"""What of a nerfstudio model is the scene, and which part of it each tensor belongs to.

A nerfstudio ``Model`` holds the scene (fields, proposal networks, appearance embeddings,
camera pose corrections) next to metric modules (LPIPS' AlexNet, PSNR, SSIM) that are rebuilt
from pretrained weights and play no part in rendering. ``scene_view`` is an ``nn.Module`` that
shares the model's scene submodules (the same objects, not copies) and leaves the metrics out,
so torch_sinr's ``compress_model`` / ``save_compressed`` / ``load_compressed`` work on exactly
what is needed to render, and swapping a linear in the view swaps it in the model.
"""

from __future__ import annotations

from collections import Counter

from torch import nn

from torch_sinr import SINRLinear

from .tcnn_port import TcnnHashGrid

# Parts of a scene's bytes: the field's MLP layers (coded or kept dense), its hash tables, the
# proposal networks (tables and MLPs: they only guide sampling), and everything else
# (appearance embeddings, pose corrections, ...).
PARTS = ("mlp", "hash_grid", "proposal_networks", "other")
PROPOSAL_PREFIX = "proposal_networks."


def _is_metric(module: nn.Module) -> bool:
    from torchmetrics import Metric

    return isinstance(module, Metric)


def scene_view(model: nn.Module) -> nn.Module:
    """An ``nn.Module`` sharing every non-metric child, parameter and buffer of ``model``."""
    view = nn.Module()
    for name, child in model.named_children():
        if not _is_metric(child):
            view.add_module(name, child)
    for name, param in model.named_parameters(recurse=False):
        view.register_parameter(name, param)
    for name, buffer in model.named_buffers(recurse=False):
        view.register_buffer(name, buffer)
    return view


def sync_children(view: nn.Module, model: nn.Module) -> None:
    """Put back into ``model`` any direct child that was replaced in ``view``."""
    for name, child in view.named_children():
        if getattr(model, name, None) is not child:
            setattr(model, name, child)


def metric_keys(model: nn.Module) -> list[str]:
    """State keys of the metric modules (left out of the compressed file)."""
    return [f"{name}.{key}" for name, child in model.named_children() if _is_metric(child)
            for key in child.state_dict()]


def field_linear_names(view: nn.Module) -> list[str]:
    """Every ``nn.Linear`` inside a nerfstudio ``Field`` (fields and proposal networks)."""
    from nerfstudio.fields.base_field import Field

    roots = [name for name, m in view.named_modules() if isinstance(m, Field) and name]
    return [name for name, m in view.named_modules()
            if isinstance(m, nn.Linear) and not isinstance(m, SINRLinear)
            and any(name.startswith(root + ".") for root in roots)]


def part_of(view: nn.Module) -> dict[str, str]:
    """Map every state key of ``view`` to its part (``PARTS``)."""
    from nerfstudio.field_components.encodings import HashEncoding

    owner_kind: dict[str, str] = {}
    for name, module in view.named_modules(remove_duplicate=False):
        if isinstance(module, (nn.Linear, SINRLinear)):
            owner_kind[name] = "mlp"
        elif isinstance(module, (HashEncoding, TcnnHashGrid)):
            owner_kind[name] = "hash_grid"
    parts = {}
    for key in view.state_dict():
        owner = key.rpartition(".")[0]
        parts[key] = "proposal_networks" if key.startswith(PROPOSAL_PREFIX) else owner_kind.get(owner, "other")
    return parts


def state_bytes_by_part(view: nn.Module) -> dict[str, int]:
    """Bytes of the view's state as it is held in memory (shared tensors counted once)."""
    parts = part_of(view)
    totals: Counter = Counter({p: 0 for p in PARTS})
    seen = set()
    for key, tensor in view.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        totals[parts[key]] += tensor.numel() * tensor.element_size()
    return dict(totals)


def file_bytes_by_part(path, view: nn.Module) -> dict[str, int]:
    """Bytes of a compressed file by part, read from the file itself (each tensor's segments,
    side information and share of the range-coded segment), so the split is that of the bytes
    actually written; ``container`` is the rest (header, names, CRC)."""
    from torch_sinr.format import read_compressed

    summary = read_compressed(path)
    parts = part_of(view)
    totals: Counter = Counter({p: 0.0 for p in PARTS})
    for tensor in summary.tensors:
        owner, _, leaf = tensor["name"].rpartition(".")
        part = "mlp" if tensor["kind"] == "sinr" else parts.get(tensor["name"], parts.get(f"{owner}.values", "other"))
        totals[part] += tensor.get("bytes", tensor["segment_bytes"])
    out = {p: round(v) for p, v in totals.items()}
    out["container"] = summary.file_bytes - sum(out.values())
    return out
