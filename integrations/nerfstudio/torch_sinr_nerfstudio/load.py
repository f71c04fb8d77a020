"""The way back: a compressed scene file into a pipeline built from the run's config.

nerfstudio's ``load_pipeline`` loads the model state with ``strict=False`` when a strict load
fails, so a checkpoint that does not fit the model is silently half loaded. Here the file's
tensors are compared with the model's, name by name and shape by shape, and any difference
raises ``SceneMismatchError`` before the model is modified.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from torch_sinr import SINRFormatError
from torch_sinr.format import load_compressed, read_compressed

from .compat import check_tcnn_ported, is_tcnn_model
from .compress import META_METHOD, META_STEP, META_TCNN_PORT
from .pipeline_io import TestMode, build_pipeline
from .state import scene_view, sync_children
from .tcnn_scene import port_tcnn_model


class SceneMismatchError(SINRFormatError):
    """A compressed scene file that does not fit the pipeline built from the given config."""


def _file_keys(path: Path) -> dict[str, tuple[int, ...]]:
    """Dense-equivalent state keys (and shapes) the file provides."""
    return {t["name"]: tuple(t["shape"]) for t in read_compressed(path).tensors}


def check_scene_keys(view: nn.Module, path: Path) -> None:
    """Raise ``SceneMismatchError`` listing every key the file and the model do not share."""
    expected = {k: tuple(t.shape) for k, t in view.state_dict().items()}
    found = _file_keys(path)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(f"{k}: file {found[k]}, model {expected[k]}" for k in set(found) & set(expected)
                    if found[k] != expected[k])
    if missing or unexpected or shapes:
        lines = [f"{path} does not match the pipeline built from the config:"]
        if missing:
            lines.append(f"  {len(missing)} model tensors missing from the file: {missing}")
        if unexpected:
            lines.append(f"  {len(unexpected)} file tensors not in the model: {unexpected}")
        if shapes:
            lines.append(f"  {len(shapes)} shape mismatches: {shapes}")
        lines.append("  (was the file made from a run of this config? nerfstudio itself would ignore this silently)")
        raise SceneMismatchError("\n".join(lines))


def is_tcnn_scene(model: nn.Module, metadata: dict[str, str]) -> bool:
    """Whether a file with ``metadata`` is read into ``model`` through the torch port of tcnn.

    The model's config decides where it has an implementation option (a file of the other kind
    then fails the key check); where it has none (instant-ngp, which takes tcnn wherever
    tinycudann is installed) the file does, by the mark ns-sinr-compress writes into it.
    """
    config_decides = hasattr(getattr(model, "config", None), "implementation")
    return is_tcnn_model(model) or (not config_decides and metadata.get(META_TCNN_PORT) == "true")


def load_into_model(model: nn.Module, path: Path, *, method_name: str = "<method>") -> nn.Module:
    """Load a compressed scene into a freshly built nerfstudio model, in place; returns the view."""
    path = Path(path)
    metadata = read_compressed(path).metadata
    if is_tcnn_scene(model, metadata):  # a file of a tcnn run holds the port's tensors
        port_tcnn_model(model)
    check_tcnn_ported(model, method_name)
    stored_method = metadata.get(META_METHOD)
    if stored_method is not None and method_name != "<method>" and stored_method != method_name:
        raise SceneMismatchError(f"{path} was made from a '{stored_method}' run, the config is '{method_name}'")
    view = scene_view(model)
    check_scene_keys(view, path)
    load_compressed(path, view, device=next(iter(model.parameters())).device)
    sync_children(view, model)
    step = metadata.get(META_STEP)
    if step is not None and step.isdigit():
        model.update_to_step(int(step))  # as nerfstudio's load_pipeline does with a checkpoint's step
    return view


def load_compressed_pipeline(load_config: Path, compressed: Path, *, test_mode: TestMode = "test",
                             device: str | None = None):
    """Build the pipeline of ``load_config`` and load the compressed scene into it.

    Returns ``(config, pipeline)``, ready to evaluate or render (``pipeline.model``).
    """
    config, pipeline = build_pipeline(Path(load_config), test_mode=test_mode, device=device)
    load_into_model(pipeline.model, Path(compressed), method_name=config.method_name)
    pipeline.eval()
    return config, pipeline


def file_provenance(path: Path) -> dict:
    metadata = read_compressed(path).metadata
    return {k: metadata[k] for k in (META_METHOD, META_STEP) if k in metadata} | (
        {"sinr_config": json.loads(metadata["nerfstudio_sinr_config"])} if "nerfstudio_sinr_config" in metadata else {})
