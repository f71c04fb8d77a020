"""The package's rooms and which way imports run between them.

Every import counts, at module level or inside a function: a lazy import still ties two files
together, and a circle of lazy imports is one refactor away from an ImportError. Read with
``ast``, so nothing is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {  # top-level package -> the folder that holds it
    "torch_sinr": REPO,
    "torch_sinr_nerfstudio": REPO / "integrations" / "nerfstudio",
    "torch_sinr_shacira": REPO / "integrations" / "shacira",
}

# Rooms of torch_sinr, lowest first. An import may go to a lower rank or stay in its own room;
# two rooms of the same rank know nothing of each other.
RANKS = {
    "base": 0,         # errors, _version, _old_paths: imported by everyone
    "native": 0.5,     # C++ kernels built on first use (ctypes), no torch_sinr import; core's OMP uses one
    "core": 1,         # the method, no nn.Module
    "format.codec": 1,  # byte-level stream coders
    "nn": 2,           # SINRLinear and the model transform
    "format": 3,       # the file (reads and writes coded models)
    "inr": 3,          # models and data
    "api": 3.5,        # compress_model: codes the layers (nn) and measures the file (format)
    "tune": 4,         # fine-tuning, autotune, the pipeline, baselines
    "top": 5,          # the public surface, cli, demo
}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "torch_sinr":
        return parts[0]
    if len(parts) == 1:
        return "top"
    if parts[1] in ("errors", "_version", "_old_paths"):
        return "base"
    if parts[1] == "format" and len(parts) > 2 and parts[2] == "codec":
        return "format.codec"
    if parts[1] in ("core", "native", "nn", "format", "inr", "tune", "api"):
        return parts[1]
    return "top"


def modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` imports the submodule; `from pkg import name` runs pkg
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a module: its file
                target = target.rpartition(".")[0]
            # a module's own packages are always imported before it: no edge worth drawing
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, targets in graph.items():
        if name != "torch_sinr" and not name.startswith("torch_sinr."):
            continue  # the integrations sit above all of torch_sinr
        own = room(name)
        for target in targets:
            other = room(target)
            if other != own and RANKS[other] >= RANKS[own]:
                bad.append(f"{name} ({own}) imports {target} ({other})")
    return sorted(bad)


def test_no_import_circle_in_the_package_or_the_integrations():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_run_down_the_rooms():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_core_imports_nothing_above_it():
    graph = import_graph()
    core = {n: t for n, t in graph.items() if room(n) == "core"}
    assert core, "torch_sinr.core has no modules"
    bad = {n: sorted(t for t in targets if room(t) not in ("core", "base", "native")) for n, targets in core.items()}
    assert not any(bad.values()), bad


def test_the_checks_see_a_circle_and_an_upward_import():
    # the checks themselves: a made-up graph with one circle and one upward import
    graph = {"torch_sinr.core.a": {"torch_sinr.nn.b"}, "torch_sinr.nn.b": {"torch_sinr.core.a"},
             "torch_sinr.nn.c": set()}
    assert cycles(graph) == [["torch_sinr.core.a", "torch_sinr.nn.b"]]
    assert upward_imports(graph) == ["torch_sinr.core.a (core) imports torch_sinr.nn.b (nn)"]


def test_lazy_imports_count(tmp_path):
    module = tmp_path / "pkg" / "mod.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from .other import g\n    return g\n")
    known = {"pkg.mod": module, "pkg.other": tmp_path / "pkg" / "other.py"}
    assert imports_of("pkg.mod", module, known) == {"pkg.other"}


@pytest.mark.parametrize("old, new", [
    ("torch_sinr.transform", "torch_sinr.api"),
    ("torch_sinr.codec.quantization", "torch_sinr.core.quantization"),
    ("torch_sinr.codec.wire", "torch_sinr.format.codec.wire"),
    ("torch_sinr.hashgrid.encoding", "torch_sinr.inr.hashgrid.encoding"),
    ("torch_sinr.serialization", "torch_sinr.format"),
])
def test_old_import_paths_are_the_new_modules(old, new, monkeypatch):
    import importlib
    import sys

    for name in [m for m in sys.modules if m == old or m.startswith(old + ".") or old.startswith(m + ".")]:
        if name != "torch_sinr":
            monkeypatch.delitem(sys.modules, name)  # an alias only: the new modules stay loaded
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        aliased = importlib.import_module(old)
    assert aliased is importlib.import_module(new)


def test_an_old_module_named_like_a_function_leaves_the_function_alone():
    import importlib

    import torch_sinr

    module = importlib.import_module("torch_sinr.autotune")
    assert module is importlib.import_module("torch_sinr.tune.autotune")
    assert callable(torch_sinr.autotune) and torch_sinr.autotune is module.autotune
