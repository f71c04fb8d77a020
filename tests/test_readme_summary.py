"""README.md's "Does SINR save bits?" block is what benchmarks.readme_summary makes from the
committed results: a result regenerated without rewriting the README fails here."""

import json
import shutil

import pytest

from benchmarks import readme_summary
from benchmarks.readme_summary import BEGIN, END, SOURCES, SummaryError, block, main, rewrite


def test_readme_block_matches_the_committed_results(capsys):
    assert main(["--check"]) == 0, capsys.readouterr().err
    text = readme_summary.README.read_text()
    assert text.index("## Does SINR save bits?") < text.index(BEGIN) < text.index("## What it is")


def test_the_numbers_come_from_the_json(tmp_path):
    for name in SOURCES + (readme_summary.DEFAULTS_SOURCE, readme_summary.CHOICE_SOURCE):
        shutil.copy(readme_summary.RESULTS / name, tmp_path / name)
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
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n")
    assert main(["--results", str(tmp_path), "--readme", str(readme)]) == 1
    assert "not found" in capsys.readouterr().err
    assert readme.read_text() == f"# x\n\n{BEGIN}\nold\n{END}\n"  # nothing written


def test_rewrite_replaces_only_the_block(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{BEGIN}\nstale table\n{END}\nafter\n")
    assert main(["--readme", str(readme), "--check"]) == 1
    assert main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n" + BEGIN + "\n") and text.endswith(END + "\nafter\n")
    assert "stale table" not in text and block() in text
    assert main(["--readme", str(readme), "--check"]) == 0
    for broken in ("no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(SummaryError, match="exactly one"):
            rewrite(broken, "table")


def test_the_defaults_table_comes_from_defaults_json(tmp_path):
    for name in SOURCES + (readme_summary.DEFAULTS_SOURCE, readme_summary.CHOICE_SOURCE):
        shutil.copy(readme_summary.RESULTS / name, tmp_path / name)
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
    for name in SOURCES + (readme_summary.DEFAULTS_SOURCE, readme_summary.CHOICE_SOURCE):
        shutil.copy(readme_summary.RESULTS / name, tmp_path / name)
    c1 = json.loads((tmp_path / "kodak_C1.json").read_text())
    c2 = json.loads((tmp_path / "kodak_C2.json").read_text())
    shared = set(c1["results"]["summary"]) & set(c2["results"]["summary"])
    assert shared, "C1 and C2 no longer share a SIREN: this test needs another pair"
    config = sorted(shared)[0]
    c2["results"]["summary"][config] = c1["results"]["summary"][config]
    c2["results"]["records"] = [r for r in c2["results"]["records"] if r["config"] != config] + [
        r for r in c1["results"]["records"] if r["config"] == config]
    (tmp_path / "kodak_C2.json").write_text(json.dumps(c2))
    rows = [line for line in block(tmp_path).splitlines() if f" | {config} | " in line and line.startswith("| [")]  # the Kodak table's rows
    assert len(rows) == 1 and "[C1]" in rows[0] and "[C2]" in rows[0]
    # a different measurement of the same SIREN stays its own row
    c2["results"]["summary"][config]["sinr_ft_vs_best_baseline"][0]["saving"] = 0.987654
    (tmp_path / "kodak_C2.json").write_text(json.dumps(c2))
    assert len([line for line in block(tmp_path).splitlines() if f" | {config} | " in line and line.startswith("| [")]) == 2


def test_the_baseline_table_comes_from_per_layer_choice_json(tmp_path):
    for name in SOURCES + (readme_summary.DEFAULTS_SOURCE, readme_summary.CHOICE_SOURCE):
        shutil.copy(readme_summary.RESULTS / name, tmp_path / name)
    path = tmp_path / readme_summary.CHOICE_SOURCE
    data = json.loads(path.read_text())
    record = data["results"]["records"][0]
    record["saving_vs_uniform"]["sinr"] = -0.123
    path.write_text(json.dumps(data))
    assert f"| {record['image']} | {record['config']} | " in block(tmp_path) and "-12.3%" in block(tmp_path)
    for run in data["results"]["records"]:
        run["runs"].pop("uniform")
    path.write_text(json.dumps(data))
    with pytest.raises(readme_summary.SummaryError, match="uniform baseline"):
        block(tmp_path)
