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
        dense_dtype=args.dense_dtype, dense_bits=args.dense_bits)
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
    # one tensor per name: safetensors refuses tensors that share memory (tied or shared layers)
    state = {k: v.contiguous().clone() for k, v in decode_state_dict(args.file).items()}
    out = Path(args.output)
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, out)
    print(f"wrote {len(state)} dense tensors to {out}")
    return 0


def _info(args: argparse.Namespace) -> int:
    summary = read_compressed(args.file)
    print(f"{args.file}: {summary.file_bytes} bytes, torch_sinr format {summary.version}"
          + ("" if summary.names_stored else " (bare: no tensor names)"))
    print("\n| tensor | kind | shape | coding | bytes |")
    print("|---|---|---|---|---|")
    for t in summary.tensors:
        if t["kind"] == "sinr":
            coding = (f"{t['mode']}, s={t['s']}, k2={t['k2']}, seed={t['seed']}, {t['value_bits']}-bit values "
                      f"({t.get('value_coding', 'brotli')}), indices {t['index_coding']}")
        elif t["kind"] == "uniform":
            coding = f"{t['bits']}-bit uniform ({t['value_coding']})"
        elif t["kind"] == "alias":
            coding = f"same as {t['alias_of']}"
        else:
            coding = f"stored as {t.get('stored', t['dtype'])}"
        shape = "x".join(map(str, t["shape"])) or "scalar"
        print(f"| {t['name']} | {t['kind']} | {shape} | {coding} | {t['segment_bytes']} |")
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
    p.add_argument("--dense-bits", type=int, help="width of the uniform quantizer for tensors SINR does not code "
                                                   "(default: --value-bits)")
    p.add_argument("--dense-dtype", choices=["float32", "float16", "bfloat16"],
                   help="store tensors SINR does not code at this float dtype instead of quantizing them")
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
