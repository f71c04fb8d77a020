"""Rewrite the README blocks that show benchmark results, from the committed results.

``python -m benchmarks.readme_summary`` replaces what lies between each README's marker lines
with text made from JSON under benchmarks/results (TARGETS):

- README.md, ``<!-- results:begin -->`` / ``<!-- results:end -->``: "Does SINR save bits?", from
  kodak_C1.json, kodak_C1_held_out.json and kodak_C2.json (SOURCES), per_layer_choice.json and
  defaults.json;
- integrations/nerfstudio/README.md, ``<!-- results:nerfstudio:begin -->`` / ``...:end -->``: the
  lego scenes, from nerf_lego.json and nerf_scene_rd.json;
- integrations/shacira/README.md, ``<!-- results:shacira:begin -->`` / ``...:end -->``: the
  SHACIRA-style codec's runs, from shacira_olena.json and shacira_olena_32768.json.

``--check`` only compares, and exits 1 naming every stale README. Every block is built before
anything is written, so a missing or malformed result writes nothing. tests/test_readme_summary.py
runs the check, so a result regenerated without rerunning this command fails the tests: the
READMEs' numbers are never typed by hand and never older than the JSON.

The main README, per configuration: the fine-tuned SINR variant with the largest saving against
the best uniform baseline at equal PSNR (the comparison ``benchmarks.kodak`` makes), the range of
savings over every fine-tuned variant, and SINR at the paper's settings without fine-tuning
against the same best baseline at its PSNR (the paper's own comparison, with 16-bit uniform
quantization at that method's different PSNR, follows it); each run's note names the images its
settings were chosen on (the result's protocol.tuned_on) and which of its own are among them.
Other results in benchmarks/results answer other questions (activations, format overheads) and
stay in their own files.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmarks._common import HelpFormatter
from benchmarks.shacira import file_label, kept_name

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# The results that answer "does SINR save bits?", in the order of the table; each holds the
# summary benchmarks.kodak writes (per configuration: sinr_ft_vs_best_baseline, paper_vs_best_baseline,
# paper_vs_uniform16).
# kodim01-12 and the held-out kodim13-24 (C1), then C2 (kodim01-12)
SOURCES = ("kodak_C1.json", "kodak_C1_held_out.json", "kodak_C2.json")


class SummaryError(ValueError):
    """A source result or the README's markers are missing: nothing is written."""


def _load(results: Path, name: str) -> dict:
    path = results / name
    if not path.is_file():
        tag = name.removeprefix("kodak_").removesuffix(".json")
        raise SummaryError(f"{path} not found: the README summary is made from it. It is written by "
                           f"`python -m benchmarks.kodak compress --configs {tag.split('_')[0]} ... --tag {tag}` "
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
        rows.append((link, [config, str(images), *best_cells, _paper_cell(s["paper_vs_best_baseline"],
                                                                          s["paper_vs_uniform16"])]))
    return rows


def _paper_cell(fair: dict | None, uniform16: dict | None) -> str:
    """SINR at the paper's settings against the best baseline at its PSNR, then the paper's own
    comparison (16-bit uniform, at another PSNR) as secondary text."""
    if not fair:
        return "-"
    if fair["saving"] is None:
        cell = f"outside the best baseline's PSNR range ({fair['psnr']:.2f} dB): not compared"
    else:
        more = fair["saving"] < 0
        cell = (f"**{_percent(abs(fair['saving']))} {'more' if more else 'fewer'} bytes** than the best baseline at "
                f"its PSNR ({fair['psnr']:.2f} dB; {fair['sinr_bpp']:.3f} vs {fair['baseline_bpp']:.3f} bpp)")
    if uniform16:
        drop = uniform16["psnr_drop_vs_uniform16"]
        cell += (f"; vs 16-bit uniform: {uniform16['bpp_ratio']:.2f}x the bytes at "
                 f"{abs(drop):.2f} dB {'lower' if drop >= 0 else 'higher'} PSNR")
    return cell


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
             f"{', '.join(f'`benchmarks/results/{n}`' for n in (CHOICE_SOURCE, *SOURCES, DEFAULTS_SOURCE))}; "
             "not edited by hand.*", *_choice_lines(results), "",
             "Against a weaker baseline, uniform quantization at one bit width for every tensor (the Kodak "
             "benchmark's; the notes below name the images its settings were chosen on):", "",
             "| run | SIREN | images | saving at equal PSNR | best fine-tuned SINR (value bits, PSNR) "
             "| bpp: SINR vs best baseline | every fine-tuned SINR variant "
             "| SINR at paper settings, not fine-tuned, at equal PSNR (then the paper's comparison) |",
             "|---|---|---|---|---|---|---|---|"]
    from benchmarks.kodak import BASELINE_VERSION, image_names

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
                     f"fine-tuning steps (baseline version {p['baseline_version']}). Settings chosen on images: "
                     + "; ".join(f"{t['choices']} on {image_names(t['images'])} (here: "
                                 f"{image_names(t['among_reported'])})" for t in p["tuned_on"]) + ".")
    table, shared = _merged(rows)
    lines += table
    lines += ["", "SIRENs are layers x width. Means over the images. Every bpp counts the bytes of the file "
              "written, every PSNR what that file decodes to. Saving = 1 - SINR's bpp / the bpp the best baseline "
              "needs for the same PSNR: the Pareto front of every uniform point, plain or fine-tuned, and float16, "
              "interpolated and never extrapolated. SINR at the paper's settings (16-bit values, 16-bit indices, "
              "no fine-tuning) is compared the same way, at its own PSNR; the paper compares it with 16-bit uniform "
              "quantization at that method's own, different PSNR, so a ratio below 1x there shows no saving at "
              "equal quality. "
              "\"Earlier version\": made with an older baseline version than "
              f"the benchmark's current {BASELINE_VERSION}, shown until it is rerun."
              + (" A row naming two runs is one measurement both runs contain (same images, protocol and fits)."
                 if shared else ""), ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines + _defaults_lines(results))


CHOICE_SOURCE = "per_layer_choice.json"  # written by python -m benchmarks.per_layer_choice


def _choice_lines(results: Path) -> list[str]:
    """``torch_sinr.compress`` with SINR on every layer and with the per-layer choice, against the
    files a user could make instead (mixed precision under the same search, one width for every
    tensor, magnitude pruning; the same fine-tuning), on held-out images."""
    path = results / CHOICE_SOURCE
    if not path.is_file():
        raise SummaryError(f"{path} not found: it is written by `python -m benchmarks.per_layer_choice`")
    data = json.loads(path.read_text())["results"]
    if any(not {"uniform", "one_width", "pruned"} <= set(r["runs"]) for r in data["records"]):
        raise SummaryError(f"{path} lacks a baseline run (mixed precision, one width or pruned): rerun "
                           "`python -m benchmarks.per_layer_choice`")
    p = data["protocol"]
    lines = ["", f"Against the strongest fair baselines, from [`per_layer_choice.json`]"
             f"(benchmarks/results/per_layer_choice.md): `torch_sinr.compress(target=MaxDrop(drop), "
             f"steps={p['steps']})` on held-out Kodak images ({p['held_out']}), with every target linear SINR-coded "
             f"and with the per-layer choice between SINR and uniform grids; the baselines are the same search with "
             f"SINR switched off (mixed-precision uniform quantization, bits per tensor), one bit width for every "
             f"tensor, and magnitude pruning at SINR's densities with quantized kept values, each with the same "
             f"fine-tuning, in the same container and coder. Saving = 1 - bytes / the smallest baseline file, each "
             f"file meeting the same target; negative: larger than the baseline. By "
             f"default `compress` keeps the smallest of the choice, SINR on every layer (the SINR column) and the two "
             f"uniform baselines (mixed precision, one width); pruning is not among its candidates.", "",
             "| image | SIREN | drop (dB) | SINR: bytes, dB | choice: bytes, dB | mixed precision: bytes, dB "
             "| one width: bytes, dB | pruned: bytes, dB | SINR saves | choice saves |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["records"]:
        runs = r["runs"]
        cells = [f"{runs[v]['bytes']:,} B, {runs[v]['psnr_reloaded']:.2f}" if runs[v]["met"] else "none meets the drop"
                 for v in ("sinr", "choice", "uniform", "one_width", "pruned")]
        lines.append(f"| {r['image']} | {r['config']} | {r['target_drop']:g} | " + " | ".join(cells) + " | "
                     + " | ".join(_percent(r["saving_vs_best_baseline"][v]) for v in ("sinr", "choice")) + " |")
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


NERF_SOURCE = "nerf_lego.json"
NERF_RD_SOURCE = "nerf_scene_rd.json"
# The shared image and its gigapixel stand-in; benchmarks.shacira writes each (its --out default is
# benchmarks/runs/shacira, which is not committed).
SHACIRA_SOURCES = {
    "shacira_olena.json": "python -m benchmarks.shacira --out benchmarks/results",
    "shacira_olena_32768.json": "python -m benchmarks.shacira --gigapixel 32768 --out benchmarks/results",
}
# From an integration's README (integrations/<name>/README.md) to the committed results.
RESULTS_LINK = "../../benchmarks/results"


def _load_result(results: Path, name: str, command: str) -> dict:
    """One committed result, or a SummaryError naming the command that writes it."""
    path = results / name
    if not path.is_file():
        raise SummaryError(f"{path} not found: it is written by `{command}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SummaryError(f"{path} is not valid JSON ({error}): rerun `{command}`") from error


def _ratio(ratio: float) -> str:
    """"18.88x", or "1.0004x" where two decimals would round a real change away."""
    return f"{ratio:.2f}x" if ratio - 1 >= 0.01 else f"{ratio:.4f}x"


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _generated_by(sources: list[str]) -> str:
    return (f"*Generated by `python -m benchmarks.readme_summary` from "
            f"{', '.join(f'`benchmarks/results/{n}`' for n in sources)}; not edited by hand.*")


def nerfstudio_block(results: Path = RESULTS) -> str:
    """integrations/nerfstudio/README.md's block: the lego scenes (nerf_lego.json) and the whole
    nerfacto scene's best ratios within the PSNR target (nerf_scene_rd.json)."""
    return "\n".join([_generated_by([NERF_SOURCE, NERF_RD_SOURCE]), "", *_nerf_lego_lines(results),
                      "", *_nerf_scene_rd_lines(results)])


def _nerf_lego_lines(results: Path) -> list[str]:
    """Per lego run: what the float32 scene is made of, what coding its MLPs alone would save,
    what the whole file saves, and what it costs in test PSNR."""
    data = _load_result(results, NERF_SOURCE, "python -m benchmarks.nerf_lego summary")
    lines = [f"The lego runs, from [`nerf_lego.json`]({RESULTS_LINK}/nerf_lego.md) (reduced CPU protocol, "
             f"PSNR over every {data['test_stride']}th test view). Scene: the model's state in memory at float32, "
             "metric modules excluded. \"MLPs coded alone\": the scene's bytes over the same bytes with only its "
             "field MLPs at their coded size, the hash tables and the rest left at float32. File: the one "
             ".safetensors file that renders the scene, every byte counted.", "",
             "| run | scene (float32) | hash tables | proposal networks | field MLPs | MLPs coded alone | file | "
             "PSNR before → after (drop) | run's CPU |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        model = r["model_bytes"]
        mlps_coded_alone = model / (model - r["mlp_bytes_before"] + r["mlp_bytes_after"])
        lines.append(
            f"| {r['name']} | {_megabytes(model)} | {_percent(r['hash_grid_share_of_model'])} | "
            f"{_percent(r['proposal_bytes_before'] / model)} | {_percent(r['mlp_share_of_model'])}, "
            f"{_percent(r['mlp_reduction'])} smaller coded | {_ratio(mlps_coded_alone)} | "
            f"{_megabytes(r['file_bytes'])}, {_ratio(r['ratio'])} | "
            f"{r['psnr_before']:.2f} → {r['psnr_after']:.2f} dB ({r['psnr_drop_db']:+.2f}) | {r['machine']} |")
    machine, target = data["machine"], data["target"]
    judged = [r for r in data["results"] if "meets_paper_target" in r]
    lines += ["", f"The paper's target for the field MLPs (at least {_percent(target['mlp_reduction_min'])} smaller "
              f"and at most {target['psnr_drop_max_db']:g} dB lower): "
              + "; ".join(f"{r['name']}: {'met' if r['meets_paper_target'] else 'missed'}" for r in judged) + "."]
    lines += ["", f"Shares are of the float32 scene; the proposal networks are nerfacto's small density fields "
              f"(their hash tables and MLPs). \"Not recorded\": a run made before the compress command recorded "
              f"its CPU; the summary was written on {machine['cpu_model']} ({machine['cpu_count']} cores, "
              f"CUDA available: {machine['cuda_available']})."]
    return lines


def _saving(saving: float | None) -> str:
    return "n/a (outside its range)" if saving is None else f"{100 * saving:+.1f}%"


def _nerf_scene_rd_lines(results: Path) -> list[str]:
    """The whole nerfacto scene with SINR and uniform MLPs: per coding, the point chosen on the
    training rays, and SINR's saving against each baseline at its test PSNR."""
    data = _load_result(results, NERF_RD_SOURCE, "python -m benchmarks.nerf_scene_rd --out benchmarks/results")
    r = data["results"]
    un = r["uncompressed"]
    points = {(p["coding"], p["kind"], p["target_drop_db"]): p for p in r["points"]}
    cells = []
    for key, picked in r["chosen"].items():
        coding, kind = key.split("|")
        if picked is None:
            cells.append(f"{coding}, {kind}: no point within {r['target']['psnr_drop_max_db']:g} dB")
            continue
        p = points[(coding, kind, picked["target_drop_db"])]
        cells.append(f"{coding}, {kind}: {_megabytes(p['file_bytes'])} ({_ratio(p['ratio'])}, field MLPs "
                     f"{p['bytes_by_part']['mlp']:,} B) at {p['view_psnr_mean']:.2f} ± {p['view_psnr_se']:.2f} dB")
    savings = []
    for kind, c in r["comparison"].items():
        parts = [f"{baseline} {_saving(v['sinr_saving'])}" for baseline, v in c["baselines"].items()]
        savings.append(f"{kind}: " + ", ".join(parts))
    return [f"The whole nerfacto scene, its MLPs coded by SINR or on uniform grids (8-bit, and widths searched "
            f"like `compress`'s mixed-precision baseline) and its tables coded the same way, from "
            f"[`nerf_scene_rd.json`]({RESULTS_LINK}/nerf_scene_rd.md) (on {data['machine']['cpu_model']}; "
            f"uncompressed {un['psnr']:.2f} ± {un['psnr_se']:.2f} dB over {un['num_eval_images']} test views). "
            f"Per coding, the smallest file within {r['target']['psnr_drop_max_db']:g} dB on the training rays, "
            f"and its test PSNR (mean ± standard error): " + "; ".join(cells) + ".",
            "", "SINR's saving against each baseline at SINR's test PSNR (interpolated, never extrapolated): "
            + "; ".join(savings) + "."]


def shacira_block(results: Path = RESULTS) -> str:
    """integrations/shacira/README.md's block: each committed run of benchmarks.shacira."""
    runs = {name: _load_result(results, name, command) for name, command in SHACIRA_SOURCES.items()}
    storage_note = _latent_storage_note(results)
    sources = list(runs) + (["latent_contexts.json"] if storage_note else [])
    lines = [_generated_by(sources), "",
             "| image | file | bytes | bpp | PSNR | latents | latent decoder | MLP | decoded in | peak RSS decoding "
             "(anonymous) | CPU, threads |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for name, data in runs.items():
        lines += _shacira_rows(name, data)
        notes.append(_shacira_note(data))
    return "\n".join(lines + [""] + notes + [
        "", "Decoders are counted at float32 in the SHACIRA-style file, as SHACIRA counts them: the decoder "
        "saving is against that, context for the paper's figure. Where a run lists them, \"search\", \"mixed "
        "precision\", \"one width\" and \"SINR on every layer\" are the candidates `compress` made (its SINR / "
        "per-layer search, the fair uniform baselines with the same fine-tuning, and the search with SINR on every "
        "linear; runs made before that candidate existed list three), each written and decoded in full; "
        "\"compress (kept: ...)\" is the one it keeps, the smallest within the PSNR target."] + storage_note)


def _latent_storage_note(results: Path) -> list[str]:
    """What storing the latents level by level changed, from latent_contexts.json (when present)."""
    path = results / "latent_contexts.json"
    if not path.is_file():
        return []
    stored = json.loads(path.read_text())["results"]["file_latent_bytes"]
    return ["", f"Runs made before the latents were stored level by level (one histogram per level, kind `stepped`) "
                f"used one histogram for all levels (kind `integers`): on the 5208 x 3588 image's trained latents "
                f"{stored['one_histogram']:,} B then, {stored['per_level']:,} B now "
                f"([`latent_contexts.md`]({RESULTS_LINK}/latent_contexts.md))."]


def _shacira_rows(name: str, data: dict) -> list[str]:
    """One row per file a run wrote: the SHACIRA-style file and, where the run coded them, SINR decoders."""
    image, machine = data["results"]["image"], data["machine"]
    label = f"[{image['width']} x {image['height']}]({RESULTS_LINK}/{name.removesuffix('.json')}.md)"
    rows = []
    for kind, f in data["results"]["files"].items():
        kind = file_label(kind, f)
        parts = f["parts"]
        memory = f["decode_memory"]
        rows.append(f"| {label} | {kind} | {f['bytes']:,} B | {f['bpp']:.4f} | {f['psnr']:.2f} dB | "
                    f"{parts['latents']:,.0f} B | {parts['latent decoder']:,.0f} B | {parts['mlp']:,.0f} B | "
                    f"{f['decode_seconds']:,.0f} s | {memory['peak_rss_mib']:,.0f} MiB "
                    f"({memory['peak_anon_mib']:,.0f} MiB) | {machine['cpu_model']}, {machine['torch_threads']} |")
    return rows


def _shacira_note(data: dict) -> str:
    """What SINR on the decoders saved in one run, next to the paper's figure (or that it did not run)."""
    r = data["results"]
    image, train, paper = r["image"], r["train"], r["paper"]
    head = (f"- {image['width']} x {image['height']} ({image['name']}), {train['steps']} training steps of "
            f"{train['batch']:,} pixels: ")
    if "sinr" not in r["files"]:
        return head + "no SINR file (this run measures the SHACIRA-style codec alone at this size)."
    drop = r["psnr_drop_db"]
    who = "SINR" if kept_name(r["files"]["sinr"]) is None else file_label("sinr", r["files"]["sinr"])
    return head + (f"{who} makes the decoders {_percent(r['decoder_saving'])} smaller and the whole file "
                   f"{_percent(r['total_saving'])} smaller, PSNR {abs(drop):.3f} dB "
                   f"{'lower' if drop >= 0 else 'higher'} (target: at most {r['drop_target_db']:g} dB lower, "
                   f"{'met' if r['target_met'] else 'not met'}; the paper's figure, on a gigapixel image: "
                   f"{_percent(paper['decoder_saving'])} at {paper['psnr_drop_db']:g} dB).")


@dataclass(frozen=True)
class Target:
    """A README and the block between its two marker lines that ``build`` makes from the results."""

    readme: str  # relative to the repository root
    begin: str
    end: str
    build: Callable[[Path], str]
    sources: tuple[str, ...]  # the results ``build`` reads, named when one lacks an entry


TARGETS = (
    Target("README.md", BEGIN, END, block, SOURCES + (CHOICE_SOURCE, DEFAULTS_SOURCE)),
    Target("integrations/nerfstudio/README.md", "<!-- results:nerfstudio:begin -->",
           "<!-- results:nerfstudio:end -->", nerfstudio_block, (NERF_SOURCE, NERF_RD_SOURCE)),
    Target("integrations/shacira/README.md", "<!-- results:shacira:begin -->", "<!-- results:shacira:end -->",
           shacira_block, tuple(SHACIRA_SOURCES)),
)


def rewrite(readme: str, new_block: str, begin: str = BEGIN, end: str = END) -> str:
    """``readme`` with the text between its marker lines replaced by ``new_block``."""
    lines = readme.split("\n")
    begins = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise SummaryError(f"README needs exactly one {begin} line followed by one {end} line "
                           f"(found {len(begins)} and {len(ends)})")
    return "\n".join(lines[:begins[0] + 1] + new_block.split("\n") + lines[ends[0]:])


def updated_readmes(root: Path, results: Path) -> list[tuple[Path, str, str]]:
    """(path, text now, text from the results) for every target, all built before any is written."""
    updates = []
    for target in TARGETS:
        path = root / target.readme
        try:
            text = path.read_text()
            updates.append((path, text, rewrite(text, target.build(results), target.begin, target.end)))
        except KeyError as error:  # a result written by an older version of its benchmark
            raise SummaryError(f"{path}: one of {', '.join(target.sources)} in {results} has no {error} entry "
                               "(written by an older version of its benchmark?): rerun the benchmark") from error
        except (SummaryError, OSError) as error:
            raise SummaryError(f"{path}: {error}") from error
    return updates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_summary", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder holding the source results")
    parser.add_argument("--root", type=Path, default=REPO,
                        help=f"folder the READMEs are found under ({', '.join(t.readme for t in TARGETS)})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a README is stale")
    args = parser.parse_args(argv)
    try:
        updates = updated_readmes(args.root, args.results)
    except SummaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stale = [path for path, text, updated in updates if updated != text]
    if args.check:
        for path in stale:
            print(f"{path} is stale: run python -m benchmarks.readme_summary", file=sys.stderr)
        if not stale:
            print(f"{', '.join(str(path) for path, _, _ in updates)}: up to date")
        return 1 if stale else 0
    for path, text, updated in updates:
        if updated != text:
            path.write_text(updated)
        print(f"{path}: {'rewritten' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
