"""Rewrite README.md's "Does SINR save bits?" block from the committed results.

``python -m benchmarks.readme_summary`` replaces what lies between the ``<!-- results:begin -->``
and ``<!-- results:end -->`` lines of README.md with a table made from
benchmarks/results/kodak_C1.json and kodak_C2.json (SOURCES); ``--check`` only compares, and
exits 1 when the README is stale. tests/test_readme_summary.py runs the check, so a result
regenerated without rerunning this command fails the tests: the README's numbers are never typed
by hand and never older than the JSON.

Per configuration: the fine-tuned SINR variant with the largest saving against the best uniform
baseline at equal PSNR (the comparison ``benchmarks.kodak`` makes), the range of savings over
every fine-tuned variant, and SINR at the paper's settings without fine-tuning against 16-bit
uniform quantization. Other results in benchmarks/results answer other questions (NeRF against
float32, activations, format overheads) and stay in their own files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks._common import HelpFormatter

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# The results that answer "does SINR save bits?", in the order of the table; each holds the
# summary benchmarks.kodak writes (per configuration: sinr_ft_vs_best_baseline, paper_vs_uniform16).
SOURCES = ("kodak_C1.json", "kodak_C2.json")


class SummaryError(ValueError):
    """A source result or the README's markers are missing: nothing is written."""


def _load(results: Path, name: str) -> dict:
    path = results / name
    if not path.is_file():
        tag = name.removeprefix("kodak_").removesuffix(".json")
        raise SummaryError(f"{path} not found: the README summary is made from it. It is written by "
                           f"`python -m benchmarks.kodak compress --configs {tag} ... --tag {tag}` "
                           "(README, Benchmarks)")
    return json.loads(path.read_text())


def _bits(variants: list[str], method: str) -> str:
    """"4-16" for the bit widths of ``method`` ("uniform" or "uniform+ft") among the variants."""
    bits = sorted(int(f.split("=")[1]) for v in variants if v.split(":")[0] == method
                  for f in v.split(":")[1:] if f.startswith("bits="))
    return f"{bits[0]}-{bits[-1]}" if bits else "none"


def _percent(saving: float) -> str:
    return f"{100 * saving:.1f}%"


def _rows(name: str, result: dict) -> list[tuple[str, list[str]]]:
    """One table row per configuration of one result file: (the run's link, the other cells)."""
    from benchmarks.kodak import BASELINE_VERSION  # the version the benchmark writes today

    run = name.removesuffix(".json")
    tag = run.removeprefix("kodak_")
    stale = result["protocol"].get("baseline_version") != BASELINE_VERSION
    link = f"[{tag}](benchmarks/results/{run}.md)" + (" (earlier version)" if stale else "")
    rows = []
    for config, s in result["results"]["summary"].items():
        images = sum(r["config"] == config for r in result["results"]["records"])
        compared = [p for p in s["sinr_ft_vs_best_baseline"] if p["saving"] is not None]
        if compared:
            best = max(compared, key=lambda p: p["saving"])
            savings = [p["saving"] for p in compared]
            best_cells = [f"**{_percent(best['saving'])}**",
                          f"`{best['method']}`, {best['setting']}-bit values, {best['psnr']:.2f} dB",
                          f"{best['bpp']:.3f} vs {best['baseline_bpp']:.3f}",
                          f"{_percent(min(savings))} to {_percent(max(savings))} ({len(compared)} variants)"]
        else:
            best_cells = ["-", "no variant within the baseline's PSNR range", "-", "-"]
        paper = s["paper_vs_uniform16"]
        drop = paper["psnr_drop_vs_uniform16"] if paper else 0.0
        paper_cell = "-" if not paper else (f"{paper['bpp_ratio']:.2f}x the bytes, "
                                            f"{abs(drop):.2f} dB {'lower' if drop >= 0 else 'higher'}")
        rows.append((link, [config, str(images), *best_cells, paper_cell]))
    return rows


def _merged(rows: list[tuple[str, list[str]]]) -> tuple[list[str], bool]:
    """Table lines, a row shared by several runs shown once with every run's link (C1 and C2 both
    hold the 3x64 SIREN: the same images, protocol and cached fits give the same results)."""
    links: dict[tuple[str, ...], list[str]] = {}
    for link, cells in rows:
        links.setdefault(tuple(cells), []).append(link)
    lines = ["| " + " | ".join([", ".join(run_links), *cells]) + " |" for cells, run_links in links.items()]
    return lines, any(len(run_links) > 1 for run_links in links.values())


def block(results: Path = RESULTS) -> str:
    """The markdown between the markers, from the SOURCES in ``results``."""
    loaded = {name: _load(results, name) for name in SOURCES}
    lines = [f"*Generated by `python -m benchmarks.readme_summary` from "
             f"{', '.join(f'`benchmarks/results/{n}`' for n in SOURCES)}; not edited by hand.*", "",
             "| run | SIREN | images | saving at equal PSNR | best fine-tuned SINR (value bits, PSNR) "
             "| bpp: SINR vs best baseline | every fine-tuned SINR variant "
             "| SINR at paper settings, not fine-tuned, vs 16-bit uniform |",
             "|---|---|---|---|---|---|---|---|"]
    from benchmarks.kodak import BASELINE_VERSION

    notes, rows = [], []
    for name, result in loaded.items():
        rows += _rows(name, result)
        p = result["protocol"]
        images = p["images"]
        notes.append(f"{name.removesuffix('.json').removeprefix('kodak_')}: {len(images)} Kodak images "
                     f"({images[0].removesuffix('.png')} to {images[-1].removesuffix('.png')}) box-downscaled by "
                     f"{p['downscale']}, SIRENs fitted in {p['steps']} steps; baseline: uniform quantization of every "
                     f"tensor at {_bits(p['baseline_variants'], 'uniform')} bits and fine-tuned at "
                     f"{_bits(p['baseline_variants'], 'uniform+ft')} bits, with SINR's {p['finetune_steps']} "
                     f"fine-tuning steps (baseline version {p['baseline_version']}).")
    table, shared = _merged(rows)
    lines += table
    lines += ["", "SIRENs are layers x width. Means over the images. Every bpp counts the bytes of the file "
              "written, every PSNR what that file decodes to. Saving = 1 - SINR's bpp / the bpp the best baseline "
              "needs for the same PSNR: the Pareto front of every uniform point, plain or fine-tuned, and float16, "
              "interpolated and never extrapolated. \"Earlier version\": made with an older baseline version than "
              f"the benchmark's current {BASELINE_VERSION}, shown until it is rerun."
              + (" A row naming two runs is one measurement both runs contain (same images, protocol and fits)."
                 if shared else ""), ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines + _choice_lines(results) + _defaults_lines(results))


CHOICE_SOURCE = "per_layer_choice.json"  # written by python -m benchmarks.per_layer_choice


def _choice_lines(results: Path) -> list[str]:
    """``torch_sinr.compress`` with SINR, with the per-layer choice, and with SINR off (mixed-precision
    uniform quantization under the same search and fine-tuning), on held-out images."""
    path = results / CHOICE_SOURCE
    if not path.is_file():
        raise SummaryError(f"{path} not found: it is written by `python -m benchmarks.per_layer_choice`")
    data = json.loads(path.read_text())["results"]
    if any("uniform" not in r["runs"] for r in data["records"]):
        raise SummaryError(f"{path} has no uniform baseline runs: rerun `python -m benchmarks.per_layer_choice`")
    p = data["protocol"]
    lines = ["", f"Against the strongest uniform baseline, from [`per_layer_choice.json`]"
             f"(benchmarks/results/per_layer_choice.md): `torch_sinr.compress(target=MaxDrop({p['drop']}), "
             f"steps={p['steps']})` on held-out Kodak images ({p['held_out']}), with every target linear SINR-coded, "
             f"with the per-layer choice between SINR and uniform grids, and with SINR switched off (`sinr=False`: "
             f"mixed-precision uniform quantization, bits per tensor, the same search and fine-tuning). Dense tensors "
             f"get per-tensor widths in all three. Saving = 1 - bytes / the baseline's bytes, each file meeting the "
             f"same target; negative: larger than the baseline.", "",
             "| image | SIREN | SINR: bytes, dB | choice: bytes, dB | baseline: bytes, dB | SINR saves | choice saves |",
             "|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        runs = r["runs"]
        cells = [f"{runs[v]['bytes']:,} B, {runs[v]['psnr_reloaded']:.2f}" for v in ("sinr", "choice", "uniform")]
        lines.append(f"| {r['image']} | {r['config']} | " + " | ".join(cells) + " | "
                     + " | ".join(_percent(r["saving_vs_uniform"][v]) for v in ("sinr", "choice")) + " |")
    return lines


DEFAULTS_SOURCE = "defaults.json"  # written by python -m benchmarks.defaults


def _defaults_lines(results: Path) -> list[str]:
    """What ``compress_model(model)`` costs with no data, old defaults against new (defaults.json)."""
    data = json.loads((results / DEFAULTS_SOURCE).read_text()) if (results / DEFAULTS_SOURCE).is_file() else None
    if data is None:
        raise SummaryError(f"{results / DEFAULTS_SOURCE} not found: it is written by `python -m benchmarks.defaults`")
    summary = data["summary"]
    labels = [label for label in next(iter(summary.values())) if label.startswith(("old default", "new default"))]
    lines = ["", f"Without data, `compress_model(model)` (no fine-tuning) against 16-bit uniform quantization in the "
             f"same container, from [`defaults.json`](benchmarks/results/defaults.md): mean PSNR drop, and bytes as a "
             f"share of 16-bit uniform's.", "", "| SIREN | fits | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for config, row in sorted(summary.items()):
        fits = sum(1 for f in data["fits"] if f["config"] == config)
        cells = [f"{row[label]['drop']:.2f} dB, {100 * row[label]['bytes_vs_uniform16']:.0f}%" for label in labels]
        lines.append(f"| {config} | {fits} | " + " | ".join(cells) + " |")
    return lines


def rewrite(readme: str, new_block: str) -> str:
    """``readme`` with the text between its marker lines replaced by ``new_block``."""
    lines = readme.split("\n")
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise SummaryError(f"README needs exactly one {BEGIN} line followed by one {END} line "
                           f"(found {len(begins)} and {len(ends)})")
    return "\n".join(lines[:begins[0] + 1] + new_block.split("\n") + lines[ends[0]:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_summary", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"folder holding the source results ({', '.join(SOURCES)})")
    parser.add_argument("--readme", type=Path, default=README,
                        help="the README whose results block is rewritten (or checked)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the README is stale")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        updated = rewrite(text, block(args.results))
    except (SummaryError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.check:
        if updated != text:
            print(f"{args.readme} is stale: run python -m benchmarks.readme_summary", file=sys.stderr)
            return 1
        print(f"{args.readme} is up to date")
        return 0
    if updated != text:
        args.readme.write_text(updated)
    print(f"{args.readme}: {'rewritten' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
