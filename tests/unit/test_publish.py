"""Publishing a run: pages and README blocks generated from the run's own artifacts."""

import math
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from widthlab import io, publish, stats
from widthlab.headline import claim, headline_table, not_measured
from widthlab.provenance import Job

PAPER = "Casper et al. 2021"


@pytest.fixture
def run(tmp_path, monkeypatch):
    """A finished run: a headline written through a Job, a figure, two benchmark files."""
    monkeypatch.chdir(tmp_path)
    rows = [
        claim(
            PAPER,
            "prunable units grow faster than width",
            "g",
            "2^slope; t over seeds",
            stats.SeedValues({0: 1.2, 1: 1.3, 2: 1.25}, transform=lambda s: 2**s),
            2.0,
            1,
            "g per seed",
        ),
        not_measured(PAPER, "weight decay shifts the split", "Δ", "not measured: one weight decay"),
    ]
    with Job.standalone("headline", [], {}, {"grids": {"main": {}}}) as job:
        job.write_parquet(headline_table(rows), "results/summary/headline.parquet")
        fig, ax = plt.subplots()
        ax.plot([1, 2], [3, 4])
        job.save_figure(fig, "results/figures/units/growth.png")
    for name, seconds in (("a", 1.5), ("b", 2.5)):
        io.write_text(f"results/benchmarks/rule/{name}.tsv", f"s\th:m:s\n{seconds}\t0:00:01\n")
    return tmp_path


def test_wall_seconds_spans_the_first_start_to_the_last_end():
    records = [
        {"started": "2026-01-01T10:00:00+00:00", "ended": "2026-01-01T10:00:30+00:00"},
        {"started": "2026-01-01T10:00:10+00:00", "ended": "2026-01-01T10:02:00+00:00"},
        {"started": None, "ended": None},
    ]
    assert publish.wall_seconds(records) == 120.0
    assert math.isnan(publish.wall_seconds([{"started": None}]))


def test_study_page_names_the_run_and_shows_its_table_and_figures(run):
    page = publish.study_page(
        "results", "docs/studies/demo.md", "Demo study", ["units/growth.png"], "Why we ran it."
    )
    text = page.read_text()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        cwd=publish.__file__.rsplit("/", 2)[0],
    ).stdout.strip()
    record = publish.provenance.read_provenance("results/summary/headline.parquet")
    assert f"commit `{commit[:10]}" in text
    assert f"config hash `{record['config_hash']}`" in text
    assert "2 jobs, 0.1 job-min" in text  # 1.5 s + 2.5 s
    assert "from the run in `results/`" in text
    assert "| Casper et al. 2021 | prunable units grow faster than width |" in text
    # g = 2^1.25 ≈ 2.4 > 2 on 3 seeds: yes; leaving a seed out leaves 2 (t with 1 df): not robust
    assert "| yes | no |" in text
    assert "n/a: not measured: one weight decay" in text
    assert (run / "docs/studies/demo/units_growth.png").exists()
    assert "![units/growth.png](demo/units_growth.png)" in text


def test_a_page_names_a_study_folder_whole_and_a_machine_path_by_its_name():
    assert publish._shown(Path("results/fashion_mnist_medium")) == "results/fashion_mnist_medium"
    assert publish._shown(Path("/somewhere/else/results")) == "results"


def test_update_block_replaces_only_the_marked_text(run):
    readme = run / "README.md"
    begin, end = publish.BEGIN.format(name="findings"), publish.END.format(name="findings")
    readme.write_text(f"# Title\n\nbefore\n{begin}\nold table\n{end}\nafter\n")
    publish.update_block(readme, "findings", publish.findings_block("results", "default study"))
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{end}\nafter\n")
    assert "old table" not in text and "*default study: commit `" in text
    with pytest.raises(ValueError, match="no block marked"):
        publish.update_block(readme, "other", "x")


def test_side_by_side_matches_claims_and_marks_missing_ones():
    def row(claim_text, value):
        return claim(
            PAPER,
            claim_text,
            "q",
            "e",
            stats.SeedValues({0: value, 1: value + 0.1, 2: value + 0.2}),
            0.0,
            1,
            "d",
        )

    a = headline_table([row("c1", 1.0), row("c2", -1.0)])
    b = headline_table([row("c1", -1.0)])
    # a verdict that flips without one seed is marked in its cell, a robust one is not
    a["robust"], b["robust"] = "yes", "no"
    text = publish.side_by_side({"digits": a, "fashion": b})
    lines = text.splitlines()
    assert lines[0] == "| paper | claim | digits | fashion |"
    assert lines[2].startswith(f"| {PAPER} | c1 | **yes** ") and "**contradicted**" in lines[2]
    assert lines[2].endswith("; not robust |") and lines[2].count("not robust") == 1
    assert lines[3].startswith("|  | c2 | **contradicted**") and lines[3].endswith("| — |")


def test_side_by_side_keeps_every_row_of_a_claim_with_several():
    """Two rows of one claim (two regimes, say) are matched in order, each naming its quantity;
    none overwrites the other."""

    def row(quantity, value):
        values = stats.SeedValues({0: value, 1: value + 0.1, 2: value + 0.2})
        return claim(PAPER, "c", quantity, "e", values, 0.0, 1, "d")

    a = headline_table([row("first", 1.0), row("second", -1.0)])
    b = headline_table([row("first", -1.0), row("second", 1.0)])
    lines = publish.side_by_side({"a": a, "b": b}).splitlines()[2:]
    assert len(lines) == 2
    assert "| c — first | **yes**" in lines[0] and lines[0].count("**contradicted**") == 1
    assert "| c — second | **contradicted**" in lines[1] and "**yes**" in lines[1]


def test_findings_block_with_a_comparison_captions_every_run(run):
    block = publish.findings_block("results", "digits", {"fashion": "results"})
    assert block.startswith("| paper | claim | digits | fashion |")
    assert "*digits: commit `" in block and "*fashion: commit `" in block


def test_cli_publish(run):
    from widthlab import cli

    assert cli.main(["publish", "results", "--page", "p.md", "--title", "T"]) == 0
    assert (run / "p.md").read_text().startswith("# T\n")
    assert cli.main(["publish", "results"]) == 2
    assert cli.main(["publish", "results", "--page", "q.md", "--compare", "nolabel"]) == 2
    pd.testing.assert_frame_equal(
        publish.headline_of("results"), io.read_parquet("results/summary/headline.parquet")
    )
