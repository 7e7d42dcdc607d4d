"""The report stage on the tiny run: headline, joint analysis, `--report`, `widthlab summary`."""

import html
import subprocess
import sys

import pandas as pd
import pytest
from conftest import snakemake

from widthlab.headline import HEADLINE_COLUMNS, VERDICTS
from widthlab.io import read_parquet_metadata

pytestmark = pytest.mark.integration

PAPER_STAGES = ("similarity", "transfer", "units", "bottleneck", "clones")


def test_the_headline_holds_every_stage_and_the_joint_analysis(tiny_run):
    table = pd.read_parquet(tiny_run / "results/summary/headline.parquet")
    assert list(table.columns) == ["stage", *HEADLINE_COLUMNS]
    assert set(table["stage"]) == {*PAPER_STAGES, "joint"}
    # in the papers' order, the joint questions last
    order = list(dict.fromkeys(table["stage"]))
    assert order == [*PAPER_STAGES, "joint"]
    assert set(table["holds"]) <= set(VERDICTS)
    assert "widthlab.provenance" in read_parquet_metadata(
        tiny_run / "results/summary/headline.parquet"
    )
    page = (tiny_run / "results/figures/report/headline.html").read_text()
    assert all(html.escape(paper) in page for paper in table["paper"].unique())


def test_the_joint_analysis_wrote_its_tables_and_figure(tiny_run):
    subsets = pd.read_parquet(tiny_run / "results/joint/prune_vs_clone.parquet")
    assert set(subsets["width"]) == {16, 32}
    assert subsets["agreement"].between(0, 1).all()
    assert (tiny_run / "results/figures/joint/joint.png").stat().st_size > 0


def test_widthlab_summary_prints_the_headline(tiny_run):
    result = subprocess.run(
        [sys.executable, "-m", "widthlab.cli", "summary"],
        cwd=tiny_run,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for paper in ("Nguyen", "Gilboa", "Casper", "Littwin", "Doimo", "Across papers"):
        assert paper in result.stdout


def test_the_snakemake_report_is_one_self_contained_file(tiny_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(tiny_run, "--report", str(report))
    html = report.read_text()
    assert report.stat().st_size > 100_000
    for category in ("0. Headline", "1. Nguyen", "3. Casper", "5. Doimo", "6. Across papers"):
        assert category in html


def test_a_second_run_of_the_same_commit_and_config_gives_the_same_headline(tiny_run, tmp_path):
    """Same config and seeds → same results on CPU: a fresh run in another folder reproduces
    every headline row exactly, and every per-model table's data (provenance aside)."""
    from conftest import copy_workflow, tiny_config

    (tmp_path / "again").mkdir()
    again = copy_workflow(tmp_path / "again", tiny_config())
    snakemake(again)
    first = pd.read_parquet(tiny_run / "results/summary/headline.parquet")
    second = pd.read_parquet(again / "results/summary/headline.parquet")
    pd.testing.assert_frame_equal(first, second)
    for table in sorted((tiny_run / "results").glob("*/*.parquet")):
        relative = table.relative_to(tiny_run)
        if relative.parts[1] in ("summary", "benchmarks", "logs"):
            continue
        pd.testing.assert_frame_equal(
            pd.read_parquet(table), pd.read_parquet(again / relative), obj=str(relative)
        )
