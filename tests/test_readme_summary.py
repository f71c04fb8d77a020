"""The README blocks (README.md's "Does SINR save bits?", the nerfstudio and SHACIRA integrations'
results) are what benchmarks.readme_summary makes from the committed results: a result regenerated
without rewriting the READMEs fails here."""

import copy
import json
import shutil

import pytest

from benchmarks import readme_summary
from benchmarks.readme_summary import (BEGIN, END, SOURCES, TARGETS, SummaryError, block, main, nerfstudio_block,
                                       rewrite, shacira_block)

STALE = "stale text\n"


def _stale_root(root):
    """A repository root whose three READMEs hold stale blocks between their markers."""
    for target in TARGETS:
        path = root / target.readme
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# x\n\nbefore\n{target.begin}\n{STALE}{target.end}\nafter\n")
    return root


def _copy_sources(results):
    for target in TARGETS:
        for name in target.sources:
            shutil.copy(readme_summary.RESULTS / name, results / name)


def test_readme_block_matches_the_committed_results(capsys):
    assert main(["--check"]) == 0, capsys.readouterr().err
    text = readme_summary.README.read_text()
    assert text.index("## Does SINR save bits?") < text.index(BEGIN) < text.index("## What it is")
    nerfstudio, shacira = (readme_summary.REPO / target.readme for target in TARGETS[1:])
    text = nerfstudio.read_text()
    assert text.index("## The lego experiment") < text.index(TARGETS[1].begin) < text.index("## Tests")
    text = shacira.read_text()
    assert text.index("## The committed runs") < text.index(TARGETS[2].begin) < text.index("## Images larger")


def test_the_numbers_come_from_the_json(tmp_path):
    _copy_sources(tmp_path)
    c1 = json.loads((tmp_path / "kodak_C1.json").read_text())
    for config, summary in c1["results"]["summary"].items():  # every configuration's best saving is shown
        best = max(p["saving"] for p in summary["sinr_ft_vs_best_baseline"] if p["saving"] is not None)
        assert f"| {config} | " in block(tmp_path) and f"**{100 * best:.1f}%**" in block(tmp_path)
    pair = next(iter(c1["results"]["summary"].values()))["sinr_ft_vs_best_baseline"][0]
    pair["saving"] = 0.987654
    (tmp_path / "kodak_C1.json").write_text(json.dumps(c1))
    assert "**98.8%**" in block(tmp_path)


def test_missing_json_fails_clearly(tmp_path, capsys):
    shutil.copy(readme_summary.RESULTS / SOURCES[0], tmp_path / SOURCES[0])
    with pytest.raises(SummaryError, match=f"{SOURCES[1]} not found.*benchmarks.kodak compress"):
        block(tmp_path)
    root = _stale_root(tmp_path / "root")
    assert main(["--results", str(tmp_path), "--root", str(root)]) == 1
    assert "not found" in capsys.readouterr().err
    for target in TARGETS:  # nothing written
        assert (root / target.readme).read_text() == f"# x\n\nbefore\n{target.begin}\n{STALE}{target.end}\nafter\n"


def test_rewrite_replaces_only_the_blocks(tmp_path, capsys):
    root = _stale_root(tmp_path)
    assert main(["--root", str(root), "--check"]) == 1
    err = capsys.readouterr().err
    assert all(f"{root / target.readme} is stale" in err for target in TARGETS)  # every stale README named
    assert main(["--root", str(root)]) == 0
    for target in TARGETS:
        text = (root / target.readme).read_text()
        assert text.startswith(f"# x\n\nbefore\n{target.begin}\n") and text.endswith(f"{target.end}\nafter\n")
        assert STALE not in text and target.build(readme_summary.RESULTS) in text
    assert main(["--root", str(root), "--check"]) == 0
    for broken in ("no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(SummaryError, match="exactly one"):
            rewrite(broken, "table")
    # another README's markers are not this one's
    with pytest.raises(SummaryError, match="exactly one <!-- results:shacira:begin -->"):
        rewrite(f"{BEGIN}\n{END}\n", "table", TARGETS[2].begin, TARGETS[2].end)


def test_one_stale_readme_is_named_alone(tmp_path, capsys):
    root = _stale_root(tmp_path)
    assert main(["--root", str(root)]) == 0
    shacira = root / TARGETS[2].readme
    shacira.write_text(shacira.read_text().replace("| shacira |", "| edited by hand |"))
    assert main(["--root", str(root), "--check"]) == 1
    assert capsys.readouterr().err.splitlines() == [f"{shacira} is stale: run python -m benchmarks.readme_summary"]


def test_the_defaults_table_comes_from_defaults_json(tmp_path):
    _copy_sources(tmp_path)
    path = tmp_path / readme_summary.DEFAULTS_SOURCE
    data = json.loads(path.read_text())
    label = next(label for label in data["summary"]["3x64"] if label.startswith("new default"))
    data["summary"]["3x64"][label]["drop"] = 9.87
    path.write_text(json.dumps(data))
    assert "| 3x64 | 4 | " in block(tmp_path) and "9.87 dB" in block(tmp_path)
    path.unlink()
    with pytest.raises(SummaryError, match="benchmarks.defaults"):
        block(tmp_path)


def test_a_measurement_two_runs_share_is_one_row(tmp_path):
    _copy_sources(tmp_path)
    c1 = json.loads((tmp_path / "kodak_C1.json").read_text())
    c2 = json.loads((tmp_path / "kodak_C2.json").read_text())
    shared = set(c1["results"]["summary"]) & set(c2["results"]["summary"])
    assert shared, "C1 and C2 no longer share a SIREN: this test needs another pair"
    config = sorted(shared)[0]
    c2["results"]["summary"][config] = c1["results"]["summary"][config]
    c2["results"]["records"] = [r for r in c2["results"]["records"] if r["config"] != config] + [
        r for r in c1["results"]["records"] if r["config"] == config]
    (tmp_path / "kodak_C2.json").write_text(json.dumps(c2))
    def rows_of_c1_and_c2():  # the Kodak table's rows of this SIREN (the held-out run has its own row)
        return [line for line in block(tmp_path).splitlines()
                if f" | {config} | " in line and line.startswith("| [") and "[C1_held_out]" not in line]

    rows = rows_of_c1_and_c2()
    assert len(rows) == 1 and "[C1]" in rows[0] and "[C2]" in rows[0]
    # a different measurement of the same SIREN stays its own row
    c2["results"]["summary"][config]["sinr_ft_vs_best_baseline"][0]["saving"] = 0.987654
    (tmp_path / "kodak_C2.json").write_text(json.dumps(c2))
    assert len(rows_of_c1_and_c2()) == 2


def test_the_baseline_table_comes_from_per_layer_choice_json(tmp_path):
    _copy_sources(tmp_path)
    path = tmp_path / readme_summary.CHOICE_SOURCE
    data = json.loads(path.read_text())
    record = data["results"]["records"][0]
    record["saving_vs_best_baseline"]["sinr"] = -0.123
    path.write_text(json.dumps(data))
    assert f"| {record['image']} | {record['config']} | " in block(tmp_path) and "-12.3%" in block(tmp_path)
    for baseline in ("uniform", "one_width", "pruned"):
        changed = copy.deepcopy(data)
        for run in changed["results"]["records"]:
            run["runs"].pop(baseline)
        path.write_text(json.dumps(changed))
        with pytest.raises(readme_summary.SummaryError, match="lacks a baseline run"):
            block(tmp_path)


def test_the_nerfstudio_block_comes_from_the_json(tmp_path):
    _copy_sources(tmp_path)
    path = tmp_path / readme_summary.NERF_SOURCE
    data = json.loads(path.read_text())
    nerfacto = next(r for r in data["results"] if r["name"].startswith("nerfacto"))
    assert f"| {nerfacto['name']} | {nerfacto['model_bytes'] / 1e6:.2f} MB | " in nerfstudio_block(tmp_path)
    # the MLPs a fifth of the scene and coded to nothing: the scene with its MLPs coded alone is 1.25x smaller
    nerfacto.update(model_bytes=1_000_000, mlp_bytes_before=200_000, mlp_bytes_after=0, hash_grid_share_of_model=0.4321,
                    file_bytes=123_456_789, ratio=12.3456, psnr_before=31.234, psnr_after=30.111,
                    psnr_drop_db=1.123, machine="Some CPU 9000")
    path.write_text(json.dumps(data))
    text = nerfstudio_block(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith(f"| {nerfacto['name']} |"))
    for figure in ("| 1.00 MB |", "| 43.2% |", "| 1.25x |", "| 123.46 MB, 12.35x |", "31.23 → 30.11 dB (+1.12)",
                   "| Some CPU 9000 |"):
        assert figure in row, (figure, row)
    rd_path = tmp_path / readme_summary.NERF_RD_SOURCE
    rd = json.loads(rd_path.read_text())
    results = rd["results"]
    results["comparison"]["fine-tuned"]["baselines"]["uniform 8-bit"]["sinr_saving"] = 0.4321
    results["comparison"]["fine-tuned"]["baselines"]["uniform searched"]["sinr_saving"] = None
    picked = results["chosen"]["uniform 8-bit|post-training"]
    point = next(p for p in results["points"] if (p["coding"], p["kind"], p["target_drop_db"]) ==
                 ("uniform 8-bit", "post-training", picked["target_drop_db"]))
    point.update(file_bytes=1_234_567, ratio=62.9, view_psnr_mean=25.4321, view_psnr_se=0.1234)
    results["chosen"]["sinr|fine-tuned"] = None
    rd_path.write_text(json.dumps(rd))
    text = nerfstudio_block(tmp_path)
    assert f"uniform 8-bit, post-training: 1.23 MB (62.90x, field MLPs {point['bytes_by_part']['mlp']:,} B) at 25.43 ± 0.12 dB" \
        in text
    assert "sinr, fine-tuned: no point within 0.3 dB" in text
    assert "fine-tuned: uniform 8-bit +43.2%, uniform searched n/a (outside its range)" in text


def test_the_shacira_block_comes_from_the_json(tmp_path):
    _copy_sources(tmp_path)
    path = tmp_path / "shacira_olena.json"
    data = json.loads(path.read_text())
    data["results"].update(decoder_saving=0.4321, total_saving=0.0123, psnr_drop_db=0.25, target_met=False)
    data["results"]["files"]["sinr"]["bytes"] = 98_765
    path.write_text(json.dumps(data))
    text = shacira_block(tmp_path)
    kept = data["results"]["files"]["sinr"]["pipeline"]["guard"]["kept"]
    assert f"| compress (kept: {kept}) | 98,765 B |" in text  # the kept file names which candidate it is
    assert f"compress (kept: {kept}) makes the decoders 43.2% smaller and the whole file 1.2% smaller, " \
           "PSNR 0.250 dB lower" in text
    assert "(target: at most 0.3 dB lower, not met;" in text
    # a run from before the guard: its file is the SINR search's, labelled as such
    del data["results"]["files"]["sinr"]["pipeline"]["guard"]
    path.write_text(json.dumps(data))
    assert "| sinr | 98,765 B |" in shacira_block(tmp_path) and "SINR makes the decoders" in shacira_block(tmp_path)
    # a run without coded decoders says so instead of showing a saving
    del data["results"]["files"]["sinr"]
    path.write_text(json.dumps(data))
    assert "| sinr |" not in shacira_block(tmp_path) and shacira_block(tmp_path).count("no SINR file") == 1


@pytest.mark.parametrize(("name", "command"), [
    (readme_summary.NERF_SOURCE, "python -m benchmarks.nerf_lego summary"),
    (readme_summary.NERF_RD_SOURCE, "python -m benchmarks.nerf_scene_rd --out benchmarks/results"),
    *readme_summary.SHACIRA_SOURCES.items()])
def test_a_missing_integration_json_names_its_command_and_writes_nothing(tmp_path, capsys, name, command):
    results = tmp_path / "results"
    results.mkdir()
    _copy_sources(results)
    (results / name).unlink()
    with pytest.raises(SummaryError, match=f"{name} not found: it is written by `{command}`"):
        (nerfstudio_block if name.startswith("nerf") else shacira_block)(results)
    root = _stale_root(tmp_path / "root")
    before = {target.readme: (root / target.readme).read_text() for target in TARGETS}
    assert main(["--results", str(results), "--root", str(root)]) == 1
    assert command in capsys.readouterr().err
    assert {target.readme: (root / target.readme).read_text() for target in TARGETS} == before


def test_a_result_without_an_entry_names_its_sources(tmp_path, capsys):
    _copy_sources(tmp_path)
    path = tmp_path / readme_summary.NERF_SOURCE
    data = json.loads(path.read_text())
    del data["results"][0]["model_bytes"]
    path.write_text(json.dumps(data))
    root = _stale_root(tmp_path / "root")
    assert main(["--results", str(tmp_path), "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "'model_bytes'" in err and readme_summary.NERF_SOURCE in err and "nerfstudio/README.md" in err
    path.write_text("{not json")
    with pytest.raises(SummaryError, match="not valid JSON.*benchmarks.nerf_lego summary"):
        nerfstudio_block(tmp_path)


def test_the_paper_settings_column_follows_the_json(tmp_path, monkeypatch, capsys):
    # The Kodak table reads only the kodak_*.json files; the per-layer table before it has its own test.
    monkeypatch.setattr(readme_summary, "_choice_lines", lambda results: [])
    _copy_sources(tmp_path)
    path = tmp_path / "kodak_C1.json"
    c1 = json.loads(path.read_text())
    config, summary = next(iter(c1["results"]["summary"].items()))

    def row():
        path.write_text(json.dumps(c1))
        return next(line for line in block(tmp_path).splitlines()
                    if line.startswith("| [C1]") and f" | {config} | " in line)

    summary["paper_vs_best_baseline"].update(psnr=12.345, sinr_bpp=1.5, baseline_bpp=1.2, saving=-0.25)
    assert "**25.0% more bytes** than the best baseline at its PSNR (12.35 dB; 1.500 vs 1.200 bpp)" in row()
    assert f"vs 16-bit uniform: {summary['paper_vs_uniform16']['bpp_ratio']:.2f}x the bytes" in row()
    summary["paper_vs_best_baseline"].update(saving=0.0567)
    assert "**5.7% fewer bytes** than the best baseline" in row()
    summary["paper_vs_best_baseline"].update(baseline_bpp=None, saving=None)
    assert "outside the best baseline's PSNR range (12.35 dB): not compared" in row()
    # the note names the images the settings were chosen on, from the protocol
    c1["protocol"]["tuned_on"][0].update(images=["kodim05.png", "kodim23.png"], among_reported=["kodim05.png"])
    path.write_text(json.dumps(c1))
    assert "on kodim05, kodim23 (here: kodim05)" in block(tmp_path)
    # a result written before the fair comparison existed is named, and nothing is written
    del summary["paper_vs_best_baseline"]
    path.write_text(json.dumps(c1))
    root = _stale_root(tmp_path / "root")
    assert main(["--results", str(tmp_path), "--root", str(root)]) == 1
    assert "'paper_vs_best_baseline'" in capsys.readouterr().err
    assert (root / "README.md").read_text() == f"# x\n\nbefore\n{BEGIN}\n{STALE}{END}\nafter\n"
