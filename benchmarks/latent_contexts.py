"""How much could a context model save on trained SHACIRA-style latents, coded after training?

    python -m benchmarks.latent_contexts [--image PATH]

The first question of the hash-grid rates issue: today's file codes each level of integer latents
with one stored histogram (order 0). This trains (or resumes from ``benchmarks.shacira``'s
checkpoint: same image, model, CPU protocol and seed) the large-image model, rounds its latents as
the file stores them, and measures per level the adaptive code length of those integers under
several contexts. The code length is Krichevsky-Trofimov's (each context's counts start at 1/2 and
learn from the symbols coded before), so no model is hidden as side information; it does not
depend on the coding order within a context. Contexts:

* ``order0``: none (what today's coder models, here without its stored histogram);
* ``coarse``: the coarser level's latents interpolated (bilinearly) at the entry's vertex, on a
  half-integer grid; on a hashed level, averaged over every vertex sharing the row (what a
  decoder that has decoded the coarser levels can compute: CNC's level context with collision
  fusion);
* ``coarse2``: ``coarse`` and the same from two levels up;
* ``raster`` (dense levels): the left and upper neighbours (sequential decoding);
* ``checkerboard`` (dense levels, two parallel passes): anchors conditioned on ``coarse``, the
  rest on the sum of their four anchor neighbours.

Beside them, the latents' bytes in the SHACIRA-style file (``torch_sinr_shacira.write_baseline``)
with one stored histogram for every level (the committed ``benchmarks.shacira`` runs' files) and
with one per level (what ``prepare_for_coding`` stores now). The latents were trained against a
factorized prior: the numbers say what a context model gains after the fact, not with rate-aware
training.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.special import gammaln

from benchmarks._common import HelpFormatter, cpu_model, exit_code, md_table, publish
from benchmarks.shacira import CACHE, LARGE, REPO, checkpoint_path
from torch_sinr.errors import SINRError
from torch_sinr.inr.hashgrid.encoding import HashGrid, hash_coords

NAME = "latent_contexts"
CONTEXTS = ("order0", "coarse", "coarse2", "raster", "checkerboard")
COARSE_STEPS = 2  # the interpolated coarser latents are bucketed on a grid of 1 / COARSE_STEPS
COARSE_CLAMP = 8  # buckets beyond +-COARSE_CLAMP are merged (few entries reach them)
NEIGHBOUR_CLAMP = 4  # raster neighbours and the second coarse context, likewise


def kt_bits(symbols: torch.Tensor, contexts: torch.Tensor | None = None) -> float:
    """Adaptive Krichevsky-Trofimov code length in bits of integer ``symbols`` (1-D), with one
    adaptive model per value of ``contexts`` (same length; None: one model). The alphabet is the
    symbols' range, known to the decoder as the file's is."""
    low = int(symbols.min())
    s = symbols.long() - low
    k = int(s.max()) + 1
    c = torch.zeros_like(s) if contexts is None else contexts.long() - int(contexts.min())
    counts = torch.bincount(c * k + s, minlength=(int(c.max()) + 1) * k).view(-1, k).double().numpy()
    total = counts.sum(1)
    counts, total = counts[total > 0], total[total > 0]
    nats = (gammaln(total + k / 2) - gammaln(k / 2) - (gammaln(counts + 0.5) - gammaln(0.5)).sum(1)).sum()
    return float(nats / math.log(2))


class LevelReader:
    """The integer latents of a 2-D hash grid by level and vertex."""

    def __init__(self, grid: HashGrid) -> None:
        if grid.dims != 2 or grid.latent_dim != 1:
            raise SINRError(f"the probe reads 2-D grids with one latent per row, got dims={grid.dims}, "
                            f"latent_dim={grid.latent_dim}")
        c = grid.config
        self.latents = torch.round(grid.latents.detach()).long()[:, 0]
        self.res, self.sizes, self.dense = c.resolutions(), c.level_sizes(), c.dense_levels()
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        self.log2_table = c.log2_table

    def level(self, level: int) -> torch.Tensor:
        return self.latents[self.offsets[level]:self.offsets[level] + self.sizes[level]]

    def at(self, level: int, vx: torch.Tensor, vy: torch.Tensor) -> torch.Tensor:
        """Latents at integer vertices (the grid's row rule: x + y res dense, hashed otherwise)."""
        index = vx + vy * self.res[level] if self.dense[level] else hash_coords(torch.stack([vx, vy], 1),
                                                                               self.log2_table)
        return self.latents[self.offsets[level] + index].double()

    def interpolate(self, level: int, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
        """Bilinear interpolation of a level's latents at positions in [0, 1] (the grid's rule)."""
        q = self.res[level] - 1
        x, y = px * q, py * q
        x0, y0 = torch.clamp(x.floor().long(), 0, q - 1), torch.clamp(y.floor().long(), 0, q - 1)
        fx, fy = x - x0, y - y0
        return ((1 - fx) * (1 - fy) * self.at(level, x0, y0) + fx * (1 - fy) * self.at(level, x0 + 1, y0)
                + (1 - fx) * fy * self.at(level, x0, y0 + 1) + fx * fy * self.at(level, x0 + 1, y0 + 1))

    def coarse(self, level: int, up: int) -> torch.Tensor:
        """Per row of ``level``: the latents ``up`` levels coarser interpolated at the row's vertex,
        averaged over the vertices sharing the row on a hashed level (zeros above level 0)."""
        r = self.res[level]
        vy, vx = (t.reshape(-1) for t in torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij"))
        if level - up < 0:
            return torch.zeros(self.sizes[level], dtype=torch.float64)
        values = self.interpolate(level - up, vx.double() / (r - 1), vy.double() / (r - 1))
        if self.dense[level]:
            out = torch.empty(self.sizes[level], dtype=torch.float64)
            out[vx + vy * r] = values
            return out
        rows = hash_coords(torch.stack([vx, vy], 1), self.log2_table)
        held = torch.bincount(rows, minlength=self.sizes[level]).double().clamp(min=1)
        return torch.bincount(rows, weights=values, minlength=self.sizes[level]) / held


def _bucket(values: torch.Tensor, clamp: int) -> torch.Tensor:
    return torch.clamp(torch.round(values * COARSE_STEPS), -clamp, clamp).long()


def level_bits(reader: LevelReader, level: int) -> dict[str, float | None]:
    """Each context's code length (bits) of one level (None where a context does not apply)."""
    symbols = reader.level(level)
    coarse = _bucket(reader.coarse(level, 1), COARSE_CLAMP)
    coarse2 = _bucket(reader.coarse(level, 2), NEIGHBOUR_CLAMP)
    out = {"order0": kt_bits(symbols), "coarse": kt_bits(symbols, coarse),
           "coarse2": kt_bits(symbols, coarse * (2 * NEIGHBOUR_CLAMP + 1) + coarse2), "raster": None,
           "checkerboard": None}
    if reader.dense[level]:
        r = reader.res[level]
        image = symbols.view(r, r)  # [y, x]
        padded = torch.nn.functional.pad(image[None, None].double(), (1, 1, 1, 1))[0, 0]
        left, upper = padded[1:-1, :-2], padded[:-2, 1:-1]
        raster = (torch.clamp(left, -NEIGHBOUR_CLAMP, NEIGHBOUR_CLAMP).long() * (2 * NEIGHBOUR_CLAMP + 1)
                  + torch.clamp(upper, -NEIGHBOUR_CLAMP, NEIGHBOUR_CLAMP).long())
        out["raster"] = kt_bits(symbols, raster.reshape(-1))
        yy, xx = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
        anchor = ((xx + yy) % 2 == 0).reshape(-1)
        # a non-anchor's four neighbours are anchors (outside the grid: 0), decoded in the first pass
        around = (padded[1:-1, :-2] + padded[1:-1, 2:] + padded[:-2, 1:-1] + padded[2:, 1:-1]).reshape(-1)
        neighbours = torch.clamp(torch.round(around), -COARSE_CLAMP, COARSE_CLAMP).long()
        out["checkerboard"] = (kt_bits(symbols[anchor], coarse[anchor])
                               + (kt_bits(symbols[~anchor], neighbours[~anchor]) if bool((~anchor).any()) else 0.0))
    return out


def measure(grid: HashGrid) -> dict:
    """Per level and in total, each context's bytes and its saving against order 0."""
    reader = LevelReader(grid)
    levels = []
    for level in range(len(reader.res)):
        bits = level_bits(reader, level)
        levels.append({"level": level, "resolution": reader.res[level], "rows": reader.sizes[level],
                       "dense": reader.dense[level],
                       "bytes": {k: None if v is None else v / 8 for k, v in bits.items()}})
    total = {k: sum(l["bytes"][k] for l in levels) for k in ("order0", "coarse", "coarse2")}
    dense = [l for l in levels if l["dense"]]
    dense_total = {k: sum(l["bytes"][k] for l in dense) for k in CONTEXTS}
    # on the whole stream, dense levels with their best context and hashed levels with coarse2
    best = sum(min(v for v in l["bytes"].values() if v is not None) for l in levels)
    return {"levels": levels, "total": total, "dense_levels": dense_total, "best_per_level": best,
            "saving": {k: 1 - v / total["order0"] for k, v in total.items()},
            "saving_dense": {k: 1 - v / dense_total["order0"] for k, v in dense_total.items()},
            "saving_best_per_level": 1 - best / total["order0"]}


def trained_model(image: Path, cache: Path, threads: int):
    """benchmarks.shacira's model for ``image``, trained or resumed from its checkpoint."""
    from torch_sinr_shacira import ImageModel, ImageModelConfig, PixelSource, RateModel, train
    from torch_sinr_shacira.train import CPU_TRAINING

    torch.set_num_threads(threads)
    if not image.exists():
        raise SINRError(f"image not found: {image} (the shared data lives next to the repository: ../shared/data; "
                        "or pass --image)")
    source = PixelSource.open(image, cache / "images")
    model_config = ImageModelConfig.for_image(source.height, source.width)
    train_config = replace(CPU_TRAINING)
    checkpoint = checkpoint_path(cache, image.stem.split("-")[0], source, model_config, train_config)
    torch.manual_seed(train_config.seed)
    model = ImageModel(model_config)
    record = train(model, source, train_config, rate=RateModel(model_config.latent_dim), checkpoint=checkpoint,
                   progress=False)
    return model, source, {"steps": record["steps"], "resumed_from": record["resumed_from"],
                           "model": model_config.to_dict(), "train": train_config.to_dict()}


def file_latent_bytes(model) -> dict[str, int]:
    """The latents' bytes in the SHACIRA-style file: with one stored histogram for every level
    (kind ``integers``, the committed runs' files) and with one per level (kind ``stepped``,
    what ``prepare_for_coding`` stores now)."""
    from torch_sinr.format import read_compressed
    from torch_sinr.nn.storage import INTEGER_STORAGE, set_storage
    from torch_sinr_shacira import prepare_for_coding, write_baseline

    prepare_for_coding(model)
    out = {}
    with tempfile.TemporaryDirectory() as work:
        for label, storage in (("per_level", None), ("one_histogram", INTEGER_STORAGE)):
            if storage is not None:
                set_storage(model.grid, "latents", storage)
            path = Path(work) / f"{label}.safetensors"
            write_baseline(model, path)
            names = model.parts()["latents"]
            out[label] = int(sum(e["bytes"] for e in read_compressed(path).tensors if e["name"] in names))
    return out


def markdown(results: dict) -> str:
    m = results["measured"]
    rows = []
    for level in m["levels"]:
        b = level["bytes"]
        cells = [f"{b[k]:,.0f} ({100 * (1 - b[k] / b['order0']):+.1f}%)" if b[k] is not None else "-"
                 for k in CONTEXTS[1:]]
        rows.append([level["level"], level["resolution"], "dense" if level["dense"] else "hashed",
                     f"{level['rows']:,}", f"{b['order0']:,.0f}", *cells])
    lines = [f"# {__doc__.splitlines()[0]}", "", f"Image: {results['image']} ({results['cpu']}); model "
             f"{results['protocol']['model']}; training {results['protocol']['train']['steps']} steps "
             f"(resumed from step {results['protocol']['resumed_from']}).", "",
             "Bytes are adaptive Krichevsky-Trofimov code lengths / 8 (no side information); the saving in "
             "brackets is against order 0 on the same level.", "",
             md_table(["level", "resolution", "kind", "rows", "order 0 (B)", "coarse", "coarse + two up",
                       "raster (left, up)", "checkerboard"], rows), "",
             f"- Whole latent stream: order 0 {m['total']['order0']:,.0f} B; coarse context "
             f"{100 * m['saving']['coarse']:+.1f}%; coarse + two up {100 * m['saving']['coarse2']:+.1f}%; each "
             f"level's best context {100 * m['saving_best_per_level']:+.1f}%.",
             f"- Dense levels only ({m['dense_levels']['order0']:,.0f} B at order 0): raster "
             f"{100 * m['saving_dense']['raster']:+.1f}%, checkerboard {100 * m['saving_dense']['checkerboard']:+.1f}%.",
             f"- The latents in the file as `benchmarks.shacira`'s committed runs wrote it (one stored histogram "
             f"for every level, kind `integers`): {results['file_latent_bytes']['one_histogram']:,} B; "
             f"with one histogram per level (kind `stepped`, step 1; `prepare_for_coding` now): "
             f"{results['file_latent_bytes']['per_level']:,} B "
             f"({100 * (1 - results['file_latent_bytes']['per_level'] / results['file_latent_bytes']['one_histogram']):.1f}% "
             "fewer).",
             f"- Seconds: {results['seconds']:.0f} (measuring; training resumed from the checkpoint where there was "
             "one)."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    model, source, protocol = trained_model(args.image, args.cache, args.threads)
    measured = measure(model.grid)
    results = {"image": source.name, "cpu": cpu_model(), "protocol": protocol, "measured": measured,
               "contexts": {"coarse_steps": COARSE_STEPS, "coarse_clamp": COARSE_CLAMP,
                            "neighbour_clamp": NEIGHBOUR_CLAMP},
               "file_latent_bytes": file_latent_bytes(model), "seconds": time.perf_counter() - started}
    text = markdown(results)
    publish(Path(args.out), NAME, __doc__.splitlines()[0], results, text)
    print(text)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latent_contexts", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--image", type=Path, default=LARGE, help="the image benchmarks.shacira trains on")
    parser.add_argument("--cache", type=Path, default=CACHE, help="benchmarks.shacira's cache (its checkpoint)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder the results go to")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (training and measuring)")
    return exit_code(run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
