"""What ``compress_model(model)`` costs with no data and no settings: old defaults against new.

``python -m benchmarks.defaults`` (about 10 CPU-minutes on 2 cores) writes
``benchmarks/results/defaults.{json,md}``:

* per Kodak fit (3x64 on kodim01-04, 3x128 on kodim01-02, 2x32 on kodim01; the Kodak benchmark's
  cached fits):
  the PSNR drop and file bytes of each candidate setting, the old default (k2 = 16 k1) and the
  library's current default (``SINRConfig()``), against 16-bit uniform quantization in the
  same container (same entropy coder, bare files on both sides, no fine-tuning anywhere);
* the input-layer rule on a ReLU network with a positional encoding (fan-in 34): PSNR and
  bytes with its first linear coded and kept dense.

Nothing here fine-tunes: these are the numbers a user gets from the one-line call.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks import kodak
from benchmarks._common import HelpFormatter, machine_info
from torch_sinr import SINRConfig, compress_model, load_compressed, save_compressed
from torch_sinr.tune.baselines import write_uniform
from torch_sinr.inr.models import INR, image_loss, psnr, render

OUT = kodak.REPO / "benchmarks" / "results"
FITS = {(3, 64): ["kodim01", "kodim02", "kodim03", "kodim04"], (3, 128): ["kodim01", "kodim02"], (2, 32): ["kodim01"]}
# What each candidate changes from SINRConfig(); "old default" is the default before this benchmark.
CANDIDATES = {
    "old default (k2 = 16 k1, s = 0.45 k1)": {"dict_ratio": 16, "s_ratio": 0.45},
    "k2 = 2^14, s = 0.45 k1": {"k2": 2**14, "s_ratio": 0.45},
    "k2 = 2^16, s = 0.45 k1": {"k2": 2**16, "s_ratio": 0.45},
    "k2 = 2^16, s = max": {"k2": 2**16, "s_ratio": 0.5},
    "new default (SINRConfig())": {},
}
UNIFORM_BITS = 16


def _file(model: nn.Module, config, path: Path) -> tuple[int, INR]:
    size = save_compressed(model, path).file_bytes
    return size, load_compressed(path, INR(config)).eval()


def measure_fit(layers: int, width: int, image_name: str, workdir: Path) -> dict:
    config = kodak.inr_config(layers, width)
    model, image = kodak.kodak_fit(image_name, layers, width)
    height, width_px = image.shape[1:]
    pixels = height * width_px
    reference = psnr(render(model, height, width_px), image)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    size = write_uniform(state, workdir / "u.safetensors", UNIFORM_BITS, names=False)
    from torch_sinr.tune.baselines import read_baseline

    decoded = INR(config)
    decoded.load_state_dict(read_baseline(workdir / "u.safetensors", skeleton=INR(config)))
    row = {"image": image_name, "config": f"{layers}x{width}", "psnr": reference,
           "uniform16": {"bytes": size, "bpp": 8 * size / pixels,
                         "drop": reference - psnr(render(decoded.eval(), height, width_px), image)},
           "candidates": {}}
    for label, options in CANDIDATES.items():
        compressed = copy.deepcopy(model)
        _cold()
        started = time.perf_counter()
        compress_model(compressed, SINRConfig(store_names=False, **options), progress=False)
        seconds = time.perf_counter() - started
        size, decoded = _file(compressed, config, workdir / "s.safetensors")
        row["candidates"][label] = {"bytes": size, "bpp": 8 * size / pixels, "seconds": seconds,
                                    "drop": reference - psnr(render(decoded, height, width_px), image)}
    return row


def _cold() -> None:
    """Forget remembered codes and dictionaries: each candidate's time is a first call's."""
    from torch_sinr.core import dictionary, tensor_codes
    from torch_sinr.format import model_io

    tensor_codes._MEMO.clear()
    dictionary.clear_dictionary_cache()
    model_io.forget_payload()


class PositionalReLU(nn.Module):
    """A ReLU MLP on a NeRF-style positional encoding of (x, y): fan-in 2 + 4 * 8 = 34."""

    def __init__(self, width: int = 64, layers: int = 3, frequencies: int = 8) -> None:
        super().__init__()
        self.register_buffer("scales", 2.0 ** torch.arange(frequencies) * torch.pi, persistent=False)
        dims = [2 + 4 * frequencies] + [width] * layers
        blocks = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(width, 3))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        angles = (coords[..., None] * self.scales).flatten(-2)
        return self.net(torch.cat([coords, torch.sin(angles), torch.cos(angles)], dim=-1))


def measure_positional_input(workdir: Path, steps: int = 1500) -> dict:
    from torch_sinr.inr.images import load_image

    path = kodak.image_paths(kodak.DEFAULT_KODAK, ["kodim01"])[0]
    image = load_image(path, kodak.PROTOCOL["downscale"])
    height, width = image.shape[1:]
    torch.manual_seed(0)
    model = PositionalReLU()
    loss = image_loss(image)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss(model).backward()
        optimizer.step()
    model.eval()
    reference = psnr(render(model, height, width), image)
    rows = {}
    settings = {"defaults": {}, "4x dictionary, s = 0.3 k1, 8-bit (compress's setting, not fine-tuned)":
                {"dict_ratio": 4, "s_ratio": 0.3, "value_bits": 8}}
    for setting, base in settings.items():
        for rule, options in {"input layer kept dense (first-linear rule)": {},
                              "input layer coded (fan-in rule only)": {"keep_first_linear": False}}.items():
            compressed = copy.deepcopy(model)
            compress_model(compressed, SINRConfig(store_names=False, **base, **options), progress=False)
            size = save_compressed(compressed, workdir / "pe.safetensors").file_bytes
            rows[f"{setting}: {rule}"] = {"bytes": size,
                                          "drop": reference - psnr(render(compressed, height, width), image)}
    return {"model": "ReLU 3x64 on an 8-frequency positional encoding (fan-in 34), kodim01 at 1/4",
            "steps": steps, "psnr": reference, "rows": rows}


def markdown(results: dict) -> str:
    labels = list(CANDIDATES)
    lines = ["# `compress_model(model)` with no data: PSNR drop and file bytes", "",
             "Generated by `python -m benchmarks.defaults`. Kodak benchmark fits (2000 steps, 1/4 scale), no "
             "fine-tuning, bare files (no tensor names) on both sides, the whole file counted. Each cell: "
             "PSNR drop in dB / bytes; 16-bit uniform quantization in the same container for reference.", "",
             "| fit | PSNR | 16-bit uniform | " + " | ".join(labels) + " |",
             "|---|---|---|" + "---|" * len(labels)]
    for row in results["fits"]:
        cells = [f"{row['candidates'][l]['drop']:.2f} / {row['candidates'][l]['bytes']}" for l in labels]
        lines.append(f"| {row['image']} {row['config']} | {row['psnr']:.2f} | "
                     f"{row['uniform16']['drop']:.2f} / {row['uniform16']['bytes']} | " + " | ".join(cells) + " |")
    lines += ["", "Mean over the fits of each configuration (drop in dB, bytes relative to 16-bit uniform, "
              "seconds of a first call: dictionary generation and coding, on this machine while other jobs ran):", "",
              "| config | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for config, summary in results["summary"].items():
        cells = [f"{s['drop']:.2f} dB, {100 * s['bytes_vs_uniform16']:.0f}%, {s['seconds']:.1f} s"
                 for s in (summary[l] for l in labels)]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    pe = results["positional_input"]
    lines += ["", f"## Input layers: {pe['model']}", "", f"Fitted {pe['steps']} steps to {pe['psnr']:.2f} dB.", "",
              "| setting: rule | PSNR drop (dB) | bytes |", "|---|---|---|"]
    for label, row in pe["rows"].items():
        lines.append(f"| {label} | {row['drop']:.2f} | {row['bytes']} |")
    return "\n".join(lines) + "\n"


def summarize(fits: list[dict]) -> dict:
    out = {}
    for config in sorted({r["config"] for r in fits}):
        rows = [r for r in fits if r["config"] == config]
        out[config] = {label: {
            "drop": sum(r["candidates"][label]["drop"] for r in rows) / len(rows),
            "bytes_vs_uniform16": sum(r["candidates"][label]["bytes"] / r["uniform16"]["bytes"] for r in rows) / len(rows),
            "seconds": sum(r["candidates"][label]["seconds"] for r in rows) / len(rows)} for label in CANDIDATES}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.defaults", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="folder defaults.{json,md} go to")
    parser.add_argument("--quick", action="store_true", help="kodim01 3x64 only (a smoke run)")
    args = parser.parse_args(argv)
    if not kodak.DEFAULT_KODAK.is_dir():
        parser.error(f"Kodak images not found at {kodak.DEFAULT_KODAK} (the repo expects ../shared/data/kodak)")
    fits = {(3, 64): ["kodim01"]} if args.quick else FITS
    results = {"machine": machine_info(), "fits": []}
    with tempfile.TemporaryDirectory() as tmp:
        for (layers, width), images in fits.items():
            for name in images:
                row = measure_fit(layers, width, name, Path(tmp))
                results["fits"].append(row)
                print(f"{name} {layers}x{width}: " + ", ".join(
                    f"{label}: {c['drop']:.2f} dB {c['bytes']} B" for label, c in row["candidates"].items())
                    + f"; uniform16 {row['uniform16']['bytes']} B", flush=True)
        results["positional_input"] = measure_positional_input(Path(tmp))
    results["summary"] = summarize(results["fits"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "defaults.json").write_text(json.dumps(results, indent=2))
    (args.out / "defaults.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
