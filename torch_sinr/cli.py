"""``torch-sinr``: demo | compress | decompress | info."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import demo
from .config import SINRConfig
from .errors import SINRError
from .serialization import decode_state_dict, read_compressed, save_compressed
from .statedict import load_checkpoint, module_from_state_dict
from .transform import compress_model


def _compress(args: argparse.Namespace) -> int:
    state = load_checkpoint(args.checkpoint)
    model = module_from_state_dict(state)
    targets = args.targets if args.targets else ("all-linear" if args.regex is None else args.regex)
    config = SINRConfig(
        target_modules=targets, exclude_modules=args.exclude or None, input_fan_in_max=args.input_fan_in_max,
        s=args.s, s_ratio=args.s_ratio, target_error=args.target_error, k2=args.k2, dict_ratio=args.dict_ratio,
        seed=args.seed, coder=args.coder, value_bits=args.value_bits, index_coding=args.index_coding,
        dense_dtype=args.dense_dtype)
    if args.dry_run:
        print(compress_model(model, config, dry_run=True))
        return 0
    report = compress_model(model, config, progress=True)
    file_report = save_compressed(model, args.output)
    print(report.table())
    print()
    print(file_report.table())
    dense_bytes = sum(t.numel() * t.element_size() for t in state.values())
    print(f"\n{args.checkpoint}: {dense_bytes} B of tensors -> {args.output}: {file_report.file_bytes} B "
          f"({dense_bytes / file_report.file_bytes:.2f}x)")
    if args.report:
        Path(args.report).write_text(json.dumps({"compression": report.to_dict(), "file": file_report.to_dict()}, indent=2))
    return 0


def _decompress(args: argparse.Namespace) -> int:
    state = {k: v.contiguous() for k, v in decode_state_dict(args.file).items()}
    out = Path(args.output)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, out)
    print(f"wrote {len(state)} dense tensors to {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    cf = read_compressed(args.file)
    print(f"{args.file}: {cf.file_bytes} bytes, format {cf.metadata['format']} v{cf.metadata['format_version']}, "
          f"written by torch_sinr {cf.metadata.get('torch_sinr_version')}, dictionary {cf.metadata['dictionary_generator']}")
    print("\n| layer | shape | mode | s | k2 | seed | value bits | index coding | bytes (values/indices/bias) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in cf.layers:
        sizes = [r.values_stream[1] if r.values_stream else 0, r.indices_stream[1] if r.indices_stream else 0,
                 r.bias_stream[1] if r.bias_stream else 0]
        coding = f"tied to {r.tied_to}" if r.tied_to else f"{r.index_coding[0]}({r.index_coding[1]})"
        s = r.spec
        print(f"| {r.name} | {s.shape[0]}x{s.shape[1]} | {s.mode} | {s.s} | {s.k2} | {s.dictionary.seed} | "
              f"{s.quantizer.bits} | {coding} | {sizes[0]}/{sizes[1]}/{sizes[2]} |")
    print(f"\n{len(cf.dense)} dense tensors, {sum(r.stream[1] for r in cf.dense if r.stream)} bytes; "
          f"payload {len(cf.payload)} bytes; container {cf.file_bytes - len(cf.payload)} bytes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torch-sinr", description="Compress implicit neural representations with SINR.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(sub.add_parser("demo", help="fit a SIREN to a bundled Kodak image, compress it, report"))

    p = sub.add_parser("compress", help="compress a state_dict (.safetensors, or .pt/.pth loaded weights_only)")
    p.add_argument("checkpoint")
    p.add_argument("-o", "--output", required=True, help="output .safetensors")
    p.add_argument("--targets", nargs="*", help="module names or suffixes to code (default: all linears)")
    p.add_argument("--regex", help="regex (fullmatch) of module names to code")
    p.add_argument("--exclude", nargs="*", help="module names or suffixes to keep dense")
    p.add_argument("--input-fan-in-max", type=int, default=16, help="linears with fan-in <= this stay dense")
    p.add_argument("--s", type=int, help="non-zeros per weight vector")
    p.add_argument("--s-ratio", type=float, default=SINRConfig.s_ratio)
    p.add_argument("--target-error", type=float, help="choose s per layer for this relative weight error")
    p.add_argument("--k2", type=int, help="dictionary atoms")
    p.add_argument("--dict-ratio", type=int, default=SINRConfig.dict_ratio)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--coder", choices=["omp", "bp"], default="omp")
    p.add_argument("--value-bits", type=int, default=16)
    p.add_argument("--index-coding", default="auto", choices=["auto", "fixed", "rice", "bitmask"])
    p.add_argument("--dense-dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--dry-run", action="store_true", help="list matched / excluded / unmatched modules only")
    p.add_argument("--report", help="also write the report as JSON here")

    p = sub.add_parser("decompress", help="decode a compressed file to a dense state_dict")
    p.add_argument("file")
    p.add_argument("-o", "--output", required=True, help=".safetensors or .pt")

    p = sub.add_parser("info", help="per-layer table and sizes of a compressed file")
    p.add_argument("file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            demo.run(args)
            return 0
        return {"compress": _compress, "decompress": _decompress, "info": _info}[args.command](args)
    except SINRError as exc:
        print(f"torch-sinr: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
