"""Where the bytes of a compressed file go, format 1 against format 2, and how the range coder
compares with Brotli and with the order-0 entropy, per stream kind.

``python -m benchmarks.format_bytes`` uses the committed Kodak fits (reduced protocol):

1. Bytes by part of kodim01's 2x32, 3x64 and 3x128 SIRENs compressed at s = 0.2 k1, a 4x
   dictionary and 8-bit values (a setting on SINR's Pareto front), written as
   - format 1 as it was (float32 input layer, output layer of tiny nets and biases; JSON header),
   - format 2 with every tensor quantized, self-describing (names stored; the default),
   - format 2 bare (no names: decodable with the model's skeleton only),
   with the container's share against the targets (2% of a 3x64 file, 5% of a 2x32 file).
2. Per stream kind (SINR values, dense weights, biases) over kodim01-04's 3x64 and 3x128 fits at
   8 and 16 bits: bytes with the range coder and its stored model, with the best Brotli layout,
   and the order-0 entropy of the symbols (a bound no coder reaches without paying for a model).
3. Brotli quality: whole-file bytes and save seconds at qualities 5..11 for SINR files (three
   settings) and uniform files (6, 8, 10 bits) of kodim01/03/05/07's three C1 SIRENs (the tuning
   half) and the 8x256 MLP of benchmarks.core at its fixed settings: the measurement format 2's
   default quality (``torch_sinr.format.codec.entropy.FILE_QUALITY``) was chosen on.

Results: ``benchmarks/results/format_bytes.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks import kodak
from benchmarks._common import HelpFormatter, machine_info
from torch_sinr import SINRConfig, SINRLinear, compress_model
from torch_sinr.format.codec.bitpack import byte_planes, pack_uint, packed_size
from torch_sinr.core.quantization import UniformQuantizer
from torch_sinr.format.codec.rangecoder import best_model
from torch_sinr.format import symbols as sym
from torch_sinr.format import save_compressed
from torch_sinr.format.codec.entropy import FILE_QUALITY
from torch_sinr.format.model_io import forget_payload
from torch_sinr.tune import baselines
from torch_sinr.nn.storage import storage_by_key

OUT = Path(__file__).resolve().parent / "results"
SETTING = {"s_ratio": 0.2, "dict_ratio": 4, "value_bits": 8}
TARGETS = {"2x32": 0.05, "3x64": 0.02}


def _fit(image: str, config: str):
    layers, width = map(int, config.split("x"))
    path = kodak.image_paths(kodak.DEFAULT_KODAK, [image])[0]
    model, _ = kodak.fit_protocol(path, kodak.inr_config(layers, width), kodak.PROTOCOL["steps"],
                                  kodak.PROTOCOL["downscale"], kodak.FITS)
    return model


def bytes_by_part(image: str = "kodim01", configs=("2x32", "3x64", "3x128")) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            fitted = _fit(image, config)
            variants = [
                ("format 1 (float32 dense parts)", SINRConfig(dense_dtype="float32", **SETTING), {"format_version": 1}),
                ("format 2 (every tensor quantized)", SINRConfig(**SETTING), {}),
                ("format 2, bare (no names)", SINRConfig(**SETTING), {"names": False}),
            ]
            for label, cfg, options in variants:
                model = copy.deepcopy(fitted)
                compress_model(model, cfg)
                report = save_compressed(model, Path(tmp) / "m.safetensors", **options)
                parts = report.parts()
                rows.append({"config": config, "image": image, "format": label, **parts, "file": report.file_bytes,
                             "container_share": parts["container"] / report.file_bytes,
                             "target_share": TARGETS.get(config)})
    return rows


def _order0_bytes(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum() / 8)


def _streams(model) -> list[tuple[str, np.ndarray, int]]:
    """(kind, symbols, bits) of every quantized stream a format-2 file of ``model`` holds."""
    out = []
    storages = storage_by_key(model)
    for name, module in model.named_modules():
        if isinstance(module, SINRLinear):
            q = module.spec.quantizer
            out.append(("SINR values", q.quantize(module.values.detach()).numpy().ravel(), q.bits))
    for key, tensor in model.state_dict().items():
        storage = storages.get(key)
        if isinstance(storage, UniformQuantizer):
            kind = "biases" if key.endswith("bias") else "dense weights"
            out.append((kind, storage.quantize(tensor.reshape(-1)).numpy(), storage.bits))
    return out


def coder_comparison(images=("kodim01", "kodim02", "kodim03", "kodim04"), configs=("3x64", "3x128"),
                     bits_list=(8, 16)) -> list[dict]:
    totals: dict[tuple, dict] = {}
    for config in configs:
        for image in images:
            fitted = _fit(image, config)
            for bits in bits_list:
                model = copy.deepcopy(fitted)
                compress_model(model, SINRConfig(value_bits=bits, s_ratio=0.2, dict_ratio=4))
                for kind, symbols, b in _streams(model):
                    key = (config, bits, kind)
                    row = totals.setdefault(key, {"config": config, "bits": bits, "stream": kind, "streams": 0,
                                                  "symbols": 0, "packed": 0.0, "range": 0.0, "brotli": 0.0,
                                                  "order0": 0.0, "chosen": 0.0})
                    row["streams"] += 1
                    row["symbols"] += symbols.size
                    row["packed"] += packed_size(b, symbols.size)
                    row["range"] += best_model(symbols)[1]  # information content + the model's bytes
                    row["brotli"] += min(len(sym.brotli_compress(pack_uint(symbols, b), 11)),
                                         len(sym.brotli_compress(byte_planes(symbols, b), 11)))
                    row["order0"] += _order0_bytes(symbols)
                    row["chosen"] += sym.encode_symbols(symbols, b, 11, "auto").estimated_bytes
    return list(totals.values())


QUALITIES = (11, 10, 9, 8, 7, 5)
SWEEP_IMAGES = ("kodim01", "kodim03", "kodim05", "kodim07")  # tuning half: the choice is made here
SWEEP_SINR = ((0.2, 8), (0.3, 10), (0.45, 16))  # (s_ratio, value bits)
SWEEP_UNIFORM_BITS = (6, 8, 10)


def _timed_bytes(write) -> dict:
    """{quality: (file bytes, seconds)} of ``write(path, quality)`` at every swept quality."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for q in QUALITIES:
            path = Path(tmp) / f"q{q}.safetensors"
            start = time.perf_counter()
            write(path, q)
            out[q] = (os.path.getsize(path), time.perf_counter() - start)
    return out


def _sinr_sweep(model) -> dict:
    def write(path, q):
        forget_payload()  # every quality encodes its own file
        save_compressed(model, path, brotli_quality=q)
    return _timed_bytes(write)


def _uniform_sweep(state: dict, bits: int) -> dict:
    def write(path, q):
        saved = baselines.FILE_QUALITY
        baselines.FILE_QUALITY = q  # the baselines write at the library's quality; sweep it here
        try:
            baselines.write_uniform(state, path, bits)
        finally:
            baselines.FILE_QUALITY = saved
    return _timed_bytes(write)


def quality_sweep() -> dict:
    from benchmarks.core import FIXED, build_mlp

    rows = []
    for image in SWEEP_IMAGES:
        for config in ("2x32", "3x64", "3x128"):
            fitted = _fit(image, config)
            for s_ratio, bits in SWEEP_SINR:
                model = copy.deepcopy(fitted)
                compress_model(model, SINRConfig(s_ratio=s_ratio, value_bits=bits), progress=False)
                rows.append({"file": f"{image} {config} SINR s={s_ratio} k1, {bits}-bit", "sizes": _sinr_sweep(model)})
            state = {k: v.detach() for k, v in fitted.state_dict().items()}
            for bits in SWEEP_UNIFORM_BITS:
                rows.append({"file": f"{image} {config} uniform {bits}-bit", "sizes": _uniform_sweep(state, bits)})
    mlp = build_mlp(0)
    compress_model(mlp, SINRConfig(**FIXED), progress=False)
    rows.append({"file": "8x256 MLP (benchmarks.core, fixed settings)", "sizes": _sinr_sweep(mlp)})
    summary = []
    for q in QUALITIES:
        excess = [r["sizes"][q][0] / r["sizes"][11][0] - 1 for r in rows]
        summary.append({"quality": q, "max_excess_vs_11": max(excess), "mean_excess_vs_11": sum(excess) / len(excess),
                        "save_s_total": sum(r["sizes"][q][1] for r in rows),
                        "save_s_8x256": rows[-1]["sizes"][q][1], "default": q == FILE_QUALITY})
    for r in rows:
        r["sizes"] = {str(q): {"bytes": b, "save_s": t} for q, (b, t) in r["sizes"].items()}
    return {"files": len(rows), "summary": summary, "rows": rows}


def quality_markdown(sweep: dict) -> list[str]:
    lines = ["", "## Brotli quality (format 2's default)", "",
             f"{sweep['files']} files: kodim01/03/05/07's C1 SIRENs (the tuning half) as SINR at "
             f"{', '.join(f's = {s} k1 with {b}-bit values' for s, b in SWEEP_SINR)} and as uniform files at "
             f"{'/'.join(map(str, SWEEP_UNIFORM_BITS))} bits, and the 8x256 MLP of benchmarks.core. Excess: file bytes "
             "over quality 11's; seconds: one save each, summed. The default is marked.", "",
             "| quality | max excess | mean excess | save s, all files | save s, 8x256 |", "|---|---|---|---|---|"]
    for r in sweep["summary"]:
        mark = " (default)" if r["default"] else ""
        lines.append(f"| {r['quality']}{mark} | {100 * r['max_excess_vs_11']:+.3f}% | {100 * r['mean_excess_vs_11']:+.3f}% "
                     f"| {r['save_s_total']:.2f} | {r['save_s_8x256']:.3f} |")
    return lines


def markdown(parts: list[dict], coders: list[dict], sweep: dict | None = None) -> str:
    lines = ["# Format 2: bytes by part, and the entropy coder per stream kind", "",
             "Made by `python -m benchmarks.format_bytes` on the committed Kodak fits (reduced protocol).", "",
             f"## Bytes by part, kodim01, SINR at s = {SETTING['s_ratio']} k1, {SETTING['dict_ratio']}x dictionary, "
             f"{SETTING['value_bits']}-bit values", "",
             "Side info = quantizer ranges, coding choices and entropy models; container = safetensors header, "
             "framing, names and shapes, CRC (format 1: its JSON header, side info included).", "",
             "| SIREN | file | values | indices | biases | dense | side info | container | file bytes | container share "
             "| target |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in parts:
        target = f"≤ {100 * r['target_share']:.0f}%" if r["target_share"] else ""
        met = ""
        if r["target_share"] and r["format"].startswith("format 2"):
            met = " (met)" if r["container_share"] <= r["target_share"] else " (missed)"
        lines.append(f"| {r['config']} | {r['format']} | {r['values']} | {r['indices']} | {r['biases']} | {r['dense']} "
                     f"| {r['side_info']} | {r['container']} | {r['file']} | {100 * r['container_share']:.1f}% | "
                     f"{target}{met} |")
    lines += ["", "## Per stream kind: range coder vs Brotli vs order-0 entropy", "",
              "kodim01-04, SINR at s = 0.2 k1, 4x dictionary; bytes summed over the streams. Packed: fixed-width "
              "bits. Range coder: the information content under the stored histogram model plus the model's own "
              "bytes. Brotli: the smaller of bit-packed and byte-aligned layouts. Order-0: the empirical entropy "
              "of each stream's symbols with no model cost, a bound no coder reaches on short streams over large "
              "alphabets (at 16 bits most symbols occur once, so it falls below what any stored model costs). "
              "Chosen: what the writer stores, the smallest per stream.", "",
              "| SIREN | bits | stream | streams | symbols | order-0 | packed | Brotli | range coder (+model) | chosen "
              "| chosen vs Brotli |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in coders:
        lines.append(f"| {r['config']} | {r['bits']} | {r['stream']} | {r['streams']} | {r['symbols']} | "
                     f"{r['order0']:.0f} | {r['packed']:.0f} | {r['brotli']:.0f} | {r['range']:.0f} | "
                     f"{r['chosen']:.0f} | {100 * (r['chosen'] / r['brotli'] - 1):+.1f}% |")
    if sweep is not None:
        lines += quality_markdown(sweep)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.format_bytes", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="folder format_bytes.{json,md} go to")
    args = parser.parse_args(argv)
    if not kodak.DEFAULT_KODAK.is_dir():
        parser.error(f"Kodak images not found at {kodak.DEFAULT_KODAK} (the repo expects ../shared/data/kodak)")
    torch.set_num_threads(1)
    parts = bytes_by_part()
    coders = coder_comparison()
    sweep = quality_sweep()
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"name": "format_bytes", "description": __doc__.strip().splitlines()[0],
                "protocol": {"setting": SETTING, "targets": TARGETS, "machine": machine_info()},
                "results": {"bytes_by_part": parts, "coders": coders, "brotli_quality": sweep}}
    (args.out / "format_bytes.json").write_text(json.dumps(document, indent=1))
    text = markdown(parts, coders, sweep)
    (args.out / "format_bytes.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
