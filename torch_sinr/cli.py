"""``torch-sinr``: demo | compress | decompress | info.

Every command writes the format its output's extension names, or refuses the extension before
doing any work: a file whose name says one format and whose bytes are another is worse than an
error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .api import compress_model
from .core.coders import CODER_NAMES
from .errors import SINRAlreadyCompressedError, SINRConfigError, SINRError, SINRFormatError
from .format import container, decode_state_dict, read_compressed, save_compressed
from .format.statedict import load_checkpoint, module_from_state_dict, skeleton_from_state_dict
from .nn.config import SINRConfig

# A compressed file is a safetensors file (one uint8 tensor and torch_sinr metadata), and its name
# says so: safetensors tools open it, and ``load_checkpoint`` reads .safetensors by extension.
COMPRESSED_SUFFIXES = (".safetensors",)
# What ``decompress`` writes, by extension.
DENSE_SUFFIXES = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch", ".npz": "numpy"}


def _suffix(path: str | Path) -> str:
    return Path(path).suffix.lower()


def _check_compressed_output(path: str) -> None:
    if _suffix(path) not in COMPRESSED_SUFFIXES:
        raise SINRConfigError(f"{path}: a compressed file is written as safetensors; name it "
                              f"{' or '.join(COMPRESSED_SUFFIXES)} (got {_suffix(path) or 'no extension'!r}). "
                              f"For a dense .pt/.npz, run `torch-sinr decompress` on the compressed file.")


def _check_dense_output(path: str) -> str:
    kind = DENSE_SUFFIXES.get(_suffix(path))
    if kind is None:
        raise SINRConfigError(f"{path}: cannot write a dense state_dict as {_suffix(path) or 'no extension'!r}; "
                              f"use one of {', '.join(DENSE_SUFFIXES)}")
    return kind


def _refuse_compressed_input(path: str) -> None:
    """Raise ``SINRAlreadyCompressedError`` if ``path`` is a torch_sinr file, whatever its name.

    Read as a checkpoint, such a file is one uint8 tensor with no linear layer, and the targets
    would match nothing: the message would send the user looking in the wrong place.
    """
    try:
        raw = container.read_file(path)  # parses the safetensors header; any other file is refused cheaply
    except SINRFormatError:
        return  # not a torch_sinr file: a checkpoint (or garbage, which load_checkpoint reports)
    raise SINRAlreadyCompressedError(
        f"{path} is already compressed (torch_sinr format {raw.version}, {raw.file_bytes} B): "
        f"`torch-sinr info` describes it, `torch-sinr decompress` gives back its dense tensors")


def _compress(args: argparse.Namespace) -> int:
    _check_compressed_output(args.output)
    _refuse_compressed_input(args.checkpoint)
    state = load_checkpoint(args.checkpoint)
    model = module_from_state_dict(state)
    targets = args.targets if args.targets else ("all-linear" if args.regex is None else "re:" + args.regex)
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
    # The report measured the file in memory before it was written (the same bytes:
    # tests/test_report_bytes.py); the written size is the one the user sees on disk.
    report.file_bytes = file_report.file_bytes
    print(report.table())
    print()
    print(file_report.table())
    # One ratio everywhere: the report's (dense tensors in memory, each once / the whole file).
    print(f"\n{args.checkpoint}: {report.total_dense_bytes} B of tensors -> {args.output}: {report.file_bytes} B "
          f"({report.ratio:.2f}x)")
    if args.report:
        Path(args.report).write_text(json.dumps({"compression": report.to_dict(), "file": file_report.to_dict()}, indent=2))
    return 0


def _decompress(args: argparse.Namespace) -> int:
    kind = _check_dense_output(args.output)
    # one tensor per name: safetensors refuses tensors that share memory (tied or shared layers)
    state = {k: v.contiguous().clone() for k, v in decode_state_dict(args.file).items()}
    out = Path(args.output)
    note = ""
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    elif kind == "torch":
        torch.save(state, out)
    else:
        widened = _save_npz(state, out)
        if widened:
            note = (f" ({len(widened)} bfloat16 tensor{'s' if len(widened) > 1 else ''} written as float32, "
                    f"which holds bfloat16 exactly: numpy has no bfloat16)")
    print(f"wrote {len(state)} dense tensors to {out}{note}")
    return 0


def _save_npz(state: dict[str, torch.Tensor], out: Path) -> list[str]:
    """``numpy.savez`` with the tensor names as keys; returns the names widened from bfloat16.

    Written entry by entry with ``numpy.lib.format.write_array``, as ``savez`` itself does,
    because ``savez(out, **state)`` breaks on a tensor named ``file`` or ``allow_pickle``.
    """
    import zipfile

    import numpy as np

    arrays, widened = {}, []
    for name, tensor in state.items():
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
            widened.append(name)
        try:
            arrays[name] = tensor.detach().cpu().numpy()
        except TypeError as exc:  # a dtype numpy lacks
            raise SINRConfigError(f"{out}: {name} ({tensor.dtype}) cannot be stored in .npz ({exc}); "
                                  f"write .safetensors or .pt instead") from None
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
    tmp.replace(out)  # never leave a half-written archive under the final name
    return widened


def _info(args: argparse.Namespace) -> int:
    skeleton = skeleton_from_state_dict(load_checkpoint(args.skeleton)) if args.skeleton else None
    try:
        summary = read_compressed(args.file, skeleton=skeleton)
    except container.BareFileError as bare:
        _info_bare(args.file, bare)
        return 0
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


class _HelpWithDefaults(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none (None, False) or says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
                and action.option_strings
                and "default" not in text.lower()):
            text += " (default: %(default)s)"
        return text


def _info_bare(path: str, bare: container.BareFileError) -> None:
    """What a bare file says before its entries; the rest needs the model's names and shapes."""
    size = Path(path).stat().st_size
    print(f"{path}: {size} bytes, torch_sinr format 2, bare: no tensor names, dtypes or shapes")
    print(f"{bare.entries} tensors; writer settings: index coding {bare.index_policy}, symbol coding "
          f"{bare.symbol_policy}, Brotli quality {bare.quality}; model fingerprint {bare.fingerprint:#010x}")
    print("Each entry's kind and bytes are sized by its tensor's shape, which a bare file leaves to the model: "
          f"run `torch-sinr info {path} --skeleton CHECKPOINT` with the model's dense state_dict "
          "(.safetensors or .pt) for the per-tensor table.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torch-sinr", description="Compress implicit neural representations with SINR.",
                                     formatter_class=_HelpWithDefaults)
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser = sub.add_parser

    def _subcommand(name: str, **kwargs) -> argparse.ArgumentParser:
        return add_parser(name, formatter_class=_HelpWithDefaults, **kwargs)

    sub.add_parser = _subcommand
    # The demo module (and Pillow, through it) loads when the parser is built, not when this
    # module is imported: `import torch_sinr.cli` stays as lean as `import torch_sinr`.
    from . import demo

    demo.add_arguments(sub.add_parser("demo", help="fit a SIREN to a bundled Kodak image, compress it, report"))

    p = sub.add_parser("compress", help="compress a state_dict (.safetensors, or .pt/.pth loaded weights_only)")
    p.add_argument("checkpoint", help="the dense state_dict: .safetensors, or .pt/.pth (loaded weights_only)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors (the compressed file is a safetensors file)")
    p.add_argument("--targets", nargs="*", help="module names or suffixes to code (default: all linears)")
    p.add_argument("--regex", help="regex (fullmatch) of module names to code")
    p.add_argument("--exclude", nargs="*", help="module names or suffixes to keep dense")
    p.add_argument("--input-fan-in-max", type=int, default=16, help="linears with fan-in <= this stay dense")
    p.add_argument("--s", type=int, help="non-zeros per weight vector")
    p.add_argument("--s-ratio", type=float, default=SINRConfig.s_ratio,
                   help="non-zeros per weight vector as a fraction of its length k1 (capped at 2s < k1); "
                        "--s or --target-error override it")
    p.add_argument("--target-error", type=float, help="choose s per layer for this relative weight error")
    p.add_argument("--k2", type=int, help="dictionary atoms")
    p.add_argument("--dict-ratio", type=int, default=SINRConfig.dict_ratio,
                   help="dictionary atoms as a multiple of k1 (k2 = ratio * k1); unset: --k2, else 2**16 atoms (the "
                        "paper's 16-bit indices; fewer for vectors longer than 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random dictionaries (stored in the file; the dictionary never is)")
    p.add_argument("--coder", choices=list(CODER_NAMES), default="omp",
                   help="sparse coder: Orthogonal Matching Pursuit or L1 basis pursuit")
    p.add_argument("--value-bits", type=int, default=16,
                   help="bits of each stored non-zero value (uniform quantizer per layer)")
    p.add_argument("--index-coding", default="auto", choices=["auto", "fixed", "rice", "bitmask"],
                   help="how support indices are coded; auto keeps the smallest per layer")
    p.add_argument("--dense-bits", type=int, help="width of the uniform quantizer for tensors SINR does not code "
                                                   "(default: --value-bits)")
    p.add_argument("--dense-dtype", choices=["float32", "float16", "bfloat16"],
                   help="store tensors SINR does not code at this float dtype instead of quantizing them")
    p.add_argument("--dry-run", action="store_true", help="list matched / excluded / unmatched modules only")
    p.add_argument("--report", help="also write the report as JSON here")

    p = sub.add_parser("decompress", help="decode a compressed file to a dense state_dict")
    p.add_argument("file", help="a torch_sinr compressed .safetensors file")
    p.add_argument("-o", "--output", required=True,
                   help=".safetensors, .pt/.pth (torch.save) or .npz (numpy, bfloat16 widened to float32)")

    p = sub.add_parser("info", help="per-layer table and sizes of a compressed file")
    p.add_argument("file", help="a torch_sinr compressed .safetensors file")
    p.add_argument("--skeleton", help="the model's dense state_dict (.safetensors, .pt): names and shapes for a "
                                      "bare file (saved with names=False), checked against a named one")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from . import demo

            demo.run(args)
            return 0
        return {"compress": _compress, "decompress": _decompress, "info": _info}[args.command](args)
    except SINRError as exc:
        print(f"torch-sinr: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
