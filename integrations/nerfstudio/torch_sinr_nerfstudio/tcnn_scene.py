"""A tiny-cuda-nn nerfstudio scene as torch modules that compute tcnn's own function.

nerfstudio's nerfacto defaults to ``implementation="tcnn"``: its field's base network is a
``tcnn.NetworkWithInputEncoding`` (hash grid + MLP, one fused ``params`` tensor), its color head
a ``tcnn.Network``, its direction encoding tcnn's spherical harmonics, and each proposal network
a ``tcnn.Encoding`` (hash grid) followed by a ``tcnn.Network``. Without tcnn (a CPU) nerfstudio
silently builds its torch layers instead, which compute another function, and its checkpoint
loader would then skip every tcnn tensor (it retries with ``strict=False``).

``port_tcnn_model`` replaces, in place, each of those tcnn places of a built model by the module
of ``tcnn_port`` computing the same function, at the same attribute (``MLPWithHashEncoding.model``,
``MLP.tcnn_encoding``, ``HashEncoding.tcnn_encoding``, ``SHEncoding.tcnn_encoding``), so
nerfstudio's forward code runs unchanged, on a CPU too. ``load_tcnn_state_`` fills them from a
checkpoint's ``<place>.params`` tensors (key-checked, nothing half-loaded), ``tcnn_state`` writes
them back (with the empty ``params`` of the parameterless encodings the port leaves out, so
the layout is the checkpoint's), and ``pipeline_io.load_tcnn_run`` is the ``eval_setup`` of a tcnn run.
instant-ngp's NerfactoField is the same field, built with tcnn wherever tinycudann is installed
(its config has no implementation option): such a run is known by its checkpoint's keys
(``holds_tcnn_params``). What the port does not cover (predicted normals: tcnn's Frequency
encoding; activations other than ReLU / Sigmoid / Tanh / none; other tcnn modules) is refused by
name before anything is changed.

Without tcnn installed the parameter precision cannot be read from the modules: it is taken as
float16, tcnn's precision on every GPU nerfstudio trains on (the torch binding's default); with
tcnn installed it is read from each module.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from torch_sinr import SINRConfigError, SINRFormatError

from .tcnn_port import (TcnnGridConfig, TcnnHashGrid, TcnnNetwork, TcnnNetworkConfig, TcnnNetworkWithInputEncoding,
                        TcnnSphericalHarmonics)

PORT_TYPES = (TcnnNetworkWithInputEncoding, TcnnNetwork, TcnnHashGrid, TcnnSphericalHarmonics)
DEFAULT_PARAM_DTYPE = torch.float16
_CHECKPOINT = re.compile(r"step-(\d+)\.ckpt")
# The attributes nerfstudio keeps a tcnn module at (MLPWithHashEncoding.model, <encoding or
# MLP>.tcnn_encoding): a checkpoint key ``<...>.<attribute>.params`` is a tcnn module's params.
TCNN_ATTRIBUTES = ("model", "tcnn_encoding")


def _tcnn_module(module: nn.Module | None) -> nn.Module | None:
    """``module`` when it is a tinycudann module (built where tcnn is installed), else None."""
    if module is not None and type(module).__module__.split(".")[0] in ("tinycudann", "tcnn"):
        return module
    return None


def _param_dtype(tcnn_module: nn.Module | None) -> torch.dtype:
    dtype = getattr(tcnn_module, "dtype", None)
    return dtype if dtype in (torch.float16, torch.float32) else DEFAULT_PARAM_DTYPE


def _grid_config(tcnn_config: dict | None, n_levels: int, features: int, log2_size: int, min_res: int,
                 growth: float) -> TcnnGridConfig:
    """The grid's tcnn config: the tcnn module's own when built, else the one nerfstudio would build."""
    if tcnn_config is None:
        from nerfstudio.field_components.encodings import HashEncoding

        # interpolation: nerfacto and its proposal networks never pass one (tcnn's default, "Linear")
        tcnn_config = HashEncoding.get_tcnn_encoding_config(num_levels=n_levels, features_per_level=features,
                                                            log2_hashmap_size=log2_size, min_res=min_res,
                                                            growth_factor=growth)
    return TcnnGridConfig.from_tcnn(3, tcnn_config)


def _network_config(mlp, n_input_dims: int, tcnn_module: nn.Module | None, padding: float) -> TcnnNetworkConfig:
    from nerfstudio.field_components.mlp import MLP, activation_to_tcnn_string

    if tcnn_module is not None:
        config = tcnn_module.network_config
    else:
        try:
            for activation in (mlp.activation, mlp.out_activation):
                activation_to_tcnn_string(activation)
        except ValueError as exc:
            raise SINRConfigError(str(exc).splitlines()[0]) from None
        config = MLP.get_tcnn_network_config(activation=mlp.activation, out_activation=mlp.out_activation,
                                             layer_width=mlp.layer_width, num_layers=mlp.num_layers)
    return TcnnNetworkConfig.from_tcnn(n_input_dims, mlp.out_dim, config, padding)


def _plan(model: nn.Module) -> tuple[list, list[str], list[str]]:
    """What ``port_tcnn_model`` would install, ``[(owner, attribute, port module)]``, what it
    cannot port, and the places of tcnn modules without parameters that the port leaves out."""
    from nerfstudio.field_components.encodings import HashEncoding, NeRFEncoding, SHEncoding
    from nerfstudio.field_components.mlp import MLP, MLPWithHashEncoding
    from nerfstudio.fields.nerfacto_field import NerfactoField

    from .state import scene_view

    installs, unsupported, parameterless, covered = [], [], [], set()
    for name, module in scene_view(model).named_modules():
        try:
            if isinstance(module, NerfactoField) and module.use_pred_normals:
                unsupported.append(f"{name}: predicted normals (tcnn's 'Frequency' encoding, predict_normals=True)")
            elif isinstance(module, NerfactoField) and isinstance(module.position_encoding, NeRFEncoding):
                # NerfactoField builds its position encoding with the field's implementation
                # (nerfstudio/fields/nerfacto_field.py, NerfactoField.__init__): under tcnn a
                # Frequency encoding, no parameters, read only by predicted normals (refused above),
                # whose empty params tensor a tcnn checkpoint nonetheless holds
                parameterless.append(f"{name}.position_encoding.tcnn_encoding")
            elif isinstance(module, MLPWithHashEncoding):
                fused = _tcnn_module(module.model)
                grid = TcnnHashGrid(_grid_config(getattr(fused, "encoding_config", None), module.num_levels,
                                                 module.features_per_level, module.log2_hashmap_size, module.min_res,
                                                 module.growth_factor), _param_dtype(fused))
                network = TcnnNetwork(_network_config(module, grid.n_output_dims, fused, 0.0), _param_dtype(fused))
                installs.append((module, "model", TcnnNetworkWithInputEncoding(grid, network)))
                covered.update(id(m) for m in module.modules())
            elif isinstance(module, MLP) and id(module) not in covered:
                tcnn = _tcnn_module(module.tcnn_encoding)
                port = TcnnNetwork(_network_config(module, module.in_dim, tcnn, 1.0), _param_dtype(tcnn))
                installs.append((module, "tcnn_encoding", port))
            elif isinstance(module, HashEncoding) and id(module) not in covered:
                tcnn = _tcnn_module(module.tcnn_encoding)
                config = _grid_config(getattr(tcnn, "encoding_config", None), module.num_levels,
                                      module.features_per_level, module.log2_hashmap_size, module.min_res,
                                      module.growth_factor)
                installs.append((module, "tcnn_encoding", TcnnHashGrid(config, _param_dtype(tcnn))))
            elif isinstance(module, SHEncoding):
                installs.append((module, "tcnn_encoding", TcnnSphericalHarmonics(module.levels)))
            elif isinstance(module, NeRFEncoding) and module.tcnn_encoding is not None:
                installs.append((module, "tcnn_encoding", None))  # unused without predicted normals (refused above)
        except SINRConfigError as exc:
            unsupported.append(f"{name}: {exc}")
    return installs, unsupported, parameterless


def port_tcnn_model(model: nn.Module) -> dict:
    """Replace every tcnn place of ``model`` by its torch port (in place; idempotent).

    Returns (and keeps as ``model.sinr_tcnn_port``) a summary: per place, its kind, tcnn's
    parameter count and the count the port keeps.
    """
    if getattr(model, "sinr_tcnn_port", None):
        return model.sinr_tcnn_port
    installs, unsupported, parameterless = _plan(model)
    if unsupported:
        raise SINRConfigError("this tcnn scene uses parts the torch port of tcnn does not cover:\n  "
                              + "\n  ".join(unsupported))
    device = next(iter(model.parameters()), torch.zeros(0)).device
    for owner, attribute, port in installs:
        if owner._parameters.get("hash_table") is not None:  # nerfstudio's torch fallback table
            del owner._parameters["hash_table"]
            owner.hash_table = torch.empty(0)
        if attribute == "tcnn_encoding" and "layers" in owner._modules:  # the torch fallback MLP
            del owner._modules["layers"]
        if attribute in owner._modules:
            del owner._modules[attribute]
        setattr(owner, attribute, port.to(device) if port is not None else None)
    summary = {}
    for path, port in tcnn_places(model):
        summary[path] = {"kind": type(port).__name__, "tcnn_params": port.n_params,
                         "port_params": sum(p.numel() for p in port.parameters())}
    model.sinr_tcnn_parameterless = parameterless
    model.sinr_tcnn_port = summary
    return summary


def tcnn_places(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, port module)`` of every place that holds a tcnn ``params`` tensor in a tcnn
    checkpoint (a module shared under two names comes under each)."""
    modules = dict(model.named_modules(remove_duplicate=False))
    places = []
    for name, module in modules.items():
        parent = modules.get(name.rpartition(".")[0]) if "." in name else None
        if isinstance(module, PORT_TYPES) and not isinstance(parent, TcnnNetworkWithInputEncoding):
            places.append((name, module))
    return places


def tcnn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ported model's state in a tcnn checkpoint's layout: each place's ``params`` tensor
    (float32, as tcnn's torch binding keeps it) instead of the port's tensors, and the empty
    ``params`` of the parameterless tcnn encodings the port leaves out. A SINR-coded layer of a
    place is written as its decoded weight."""
    places = tcnn_places(model)
    state = {k: v for k, v in model.state_dict().items() if not _under(k, [p for p, _ in places])}
    for path, port in places:
        state[f"{path}.params"] = port.tcnn_params(torch.float32)
    for path in getattr(model, "sinr_tcnn_parameterless", ()):
        state[f"{path}.params"] = torch.zeros(0)
    return state


def holds_tcnn_params(keys) -> bool:
    """Whether checkpoint state keys (with or without ``_model.``) include a tcnn module's ``params``."""
    return any(len(parts := key.split(".")) >= 2 and parts[-1] == "params" and parts[-2] in TCNN_ATTRIBUTES
               for key in keys)


def checkpoint_holds_tcnn_params(checkpoint: Path) -> bool:
    """Whether a nerfstudio checkpoint's pipeline state holds tcnn ``params`` (its keys are read
    memory-mapped: the tensors are not loaded)."""
    from .compat import nerfstudio_checkpoint_loading

    with nerfstudio_checkpoint_loading():
        try:
            loaded = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a checkpoint in torch's legacy (non-zip) format cannot be mapped
            loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return holds_tcnn_params(loaded.get("pipeline", {}))


def _under(key: str, paths: list[str]) -> bool:
    return any(key.startswith(p + ".") for p in paths)


@torch.no_grad()
def load_tcnn_state_(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a tcnn checkpoint's model state (keys without ``_model.``) into the ported ``model``.

    Every ``<place>.params`` tensor goes through its port's converter; every other key must be
    one of the model's. Checked in full before anything is loaded.
    """
    places = tcnn_places(model)
    if not places:
        raise SINRConfigError("the model has no tcnn port modules: call port_tcnn_model first")
    paths = [p for p, _ in places]
    state = dict(state)
    params, problems = {}, []
    for path, port in places:
        key = f"{path}.params"
        if key not in state:
            problems.append(f"no tcnn params '{key}'")
            continue
        tensor = state.pop(key)
        if tensor.numel() != port.n_params:
            problems.append(f"'{key}' holds {tensor.numel()} values, the config's {type(port).__name__} has "
                            f"{port.n_params}")
        elif id(port) in params and not torch.equal(params[id(port)][1], tensor):
            problems.append(f"'{key}' differs from the same module's tensor under another name")
        params.setdefault(id(port), (port, tensor))
    # parameterless tcnn encodings nerfstudio builds but never calls (the Frequency encoding of
    # predicted normals, when they are off) leave an empty params tensor
    for key in [k for k, v in state.items() if k.endswith("tcnn_encoding.params") and v.numel() == 0]:
        del state[key]
    expected = {k for k in model.state_dict() if not _under(k, paths)}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing:
        problems.append(f"{len(missing)} tensors missing: {missing[:8]}")
    if unexpected:
        problems.append(f"{len(unexpected)} tensors the tcnn model does not have: {unexpected[:8]}")
    if problems:
        hint = ("; it holds torch hash tables: was the run trained with implementation='torch'? (then its "
                "config.yml should say so)" if any(k.endswith("hash_table") for k in unexpected) else "")
        raise SINRFormatError("the checkpoint does not fit the tcnn model of its config:\n  "
                              + "\n  ".join(problems) + hint)
    for port, tensor in params.values():
        port.load_tcnn_params_(tensor)
    full = model.state_dict()
    full.update(state)
    model.load_state_dict(full, strict=True)


def latest_checkpoint(checkpoint_dir: Path) -> tuple[Path, int]:
    """nerfstudio's newest ``step-<n>.ckpt`` of a run (as its ``eval_load_checkpoint`` picks it)."""
    steps = sorted(int(m.group(1)) for f in Path(checkpoint_dir).glob("step-*.ckpt")
                   if (m := _CHECKPOINT.fullmatch(f.name)))
    if not steps:
        raise FileNotFoundError(f"no nerfstudio checkpoint (step-*.ckpt) in {checkpoint_dir}")
    return Path(checkpoint_dir) / f"step-{steps[-1]:09d}.ckpt", steps[-1]


def model_state_of(pipeline_state: dict) -> dict:
    """The model's keys of a checkpoint's pipeline state (``_model.`` and DDP's ``module.`` removed)."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in pipeline_state.items()}
    model = {k[len("_model."):]: v for k, v in state.items() if k.startswith("_model.")}
    if model and all(k.startswith("module.") for k in model):
        model = {k[len("module."):]: v for k, v in model.items()}
    return model


def _grid(levels: int, features: int, log2_size: int, base_res: int, max_res: int) -> TcnnGridConfig:
    """The tcnn grid nerfstudio configures for these HashEncoding / MLPWithHashEncoding arguments
    (their growth factor, nerfstudio/field_components/encodings.py, ``HashEncoding.__init__``)."""
    growth = math.exp((math.log(max_res) - math.log(base_res)) / (levels - 1)) if levels > 1 else 1.0
    return TcnnGridConfig(3, levels, features, log2_size, base_res, growth)


def _mlp_params(n_in: int, n_out: int, width: int, layers: int, padding: float) -> int:
    """The params of the tcnn network nerfstudio's ``MLP.get_tcnn_network_config`` picks (fully
    fused for widths 16, 32, 64 and 128, else CutlassMLP)."""
    otype = "FullyFusedMLP" if width in (16, 32, 64, 128) else "CutlassMLP"
    return TcnnNetworkConfig(n_in, n_out, width, layers - 1, otype=otype, input_padding=padding).n_params


def _nerfacto_field_counts(*, num_levels: int = 16, base_res: int = 16, max_res: int = 2048,
                           log2_hashmap_size: int = 19, features_per_level: int = 2, hidden_dim: int = 64,
                           hidden_dim_color: int = 64, appearance_embedding_dim: int = 32) -> dict[str, int]:
    """A NerfactoField's params under tcnn, for its constructor's arguments (defaults as in
    nerfstudio/fields/nerfacto_field.py; two base layers giving density + 15 geometry features,
    a three-layer color head reading 16 SH values, those features and the appearance embedding)."""
    grid = _grid(num_levels, features_per_level, log2_hashmap_size, base_res, max_res)
    return {
        "field.mlp_base.model.params": _mlp_params(grid.n_output_dims, 16, hidden_dim, 2, 0.0) + grid.n_params,
        "field.direction_encoding.tcnn_encoding.params": 0,
        "field.position_encoding.tcnn_encoding.params": 0,
        "field.mlp_head.tcnn_encoding.params": _mlp_params(16 + 15 + appearance_embedding_dim, 3, hidden_dim_color,
                                                           3, 1.0),
    }


def nerfacto_tcnn_param_counts(model_config) -> dict[str, int]:
    """The ``params`` tensors (numel) nerfstudio 1.1.5 creates with tcnn for a nerfacto model
    config, computed from the config alone (no model built): the field's fused base network,
    its color head, its parameterless direction (and position) encodings, and each proposal
    network's grid and MLP (under both names a proposal grid is registered)."""
    c = model_config
    counts = _nerfacto_field_counts(
        num_levels=c.num_levels, base_res=c.base_res, max_res=c.max_res, log2_hashmap_size=c.log2_hashmap_size,
        features_per_level=c.features_per_level, hidden_dim=c.hidden_dim, hidden_dim_color=c.hidden_dim_color,
        appearance_embedding_dim=c.appearance_embed_dim if c.use_appearance_embedding else 0)
    networks = 1 if c.use_same_proposal_network else c.num_proposal_iterations
    for i in range(networks):
        args = {"num_layers": 2, "hidden_dim": 64, "num_levels": 8, "max_res": 1024, "base_res": 16,
                "log2_hashmap_size": 18, "features_per_level": 2, "use_linear": False}
        args.update(c.proposal_net_args_list[min(i, len(c.proposal_net_args_list) - 1)])
        g = _grid(args["num_levels"], args["features_per_level"], args["log2_hashmap_size"], args["base_res"],
                  args["max_res"])
        counts[f"proposal_networks.{i}.encoding.tcnn_encoding.params"] = g.n_params
        if args["use_linear"]:
            continue
        counts[f"proposal_networks.{i}.mlp_base.0.tcnn_encoding.params"] = g.n_params
        counts[f"proposal_networks.{i}.mlp_base.1.tcnn_encoding.params"] = _mlp_params(
            g.n_output_dims, 1, args["hidden_dim"], args["num_layers"], 1.0)
    return counts


def instant_ngp_tcnn_param_counts(model_config) -> dict[str, int]:
    """The ``params`` tensors (numel) nerfstudio 1.1.5 creates with tcnn for an instant-ngp model
    config: its NerfactoField, built with the field's defaults but for the config's hash-map
    size, finest resolution and appearance embedding (nerfstudio/models/instant_ngp.py,
    ``NGPModel.populate_modules``, which passes an embedding of 0 when the config enables it
    and of 32 when it does not, as written there)."""
    c = model_config
    return _nerfacto_field_counts(log2_hashmap_size=c.log2_hashmap_size, max_res=c.max_res,
                                  appearance_embedding_dim=0 if c.use_appearance_embedding else 32)


__all__ = ["checkpoint_holds_tcnn_params", "holds_tcnn_params", "instant_ngp_tcnn_param_counts",
           "load_tcnn_state_", "nerfacto_tcnn_param_counts", "port_tcnn_model", "tcnn_places", "tcnn_state"]
