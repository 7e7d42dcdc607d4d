"""The `widthlab` command: provenance chains and audit, through a real subprocess."""

import json
import subprocess
import sys
from io import StringIO

import numpy as np
import pandas as pd
import pytest

from widthlab import cli, io, rerun
from widthlab.provenance import Job


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """raw CSV → dataset NPZ → train Parquet + JSON → summary Parquet, in a workflow folder."""
    monkeypatch.chdir(tmp_path)
    io.write_text("raw/digits.csv", "pixel,label\n0,1\n")
    with Job.standalone("dataset", ["raw/digits.csv"], {}, {"e": 1}) as job:
        job.seed = 0
        job.save_npz("results/data/digits.npz", {"x": np.zeros(3)})
    with Job.standalone("train", ["results/data/digits.npz"], {}, {"e": 1}) as job:
        job.write_parquet(pd.DataFrame({"epoch": [1]}), "results/models/m/history.parquet")
        job.save_json("results/models/m/metrics.json", {"acc": 1.0})
    summary_inputs = ["results/models/m/history.parquet", "results/models/m/metrics.json"]
    with Job.standalone("training_summary", summary_inputs, {}, {"e": 1}) as job:
        job.write_parquet(pd.DataFrame({"acc": [1.0]}), "results/summary/training.parquet")
    return tmp_path


def widthlab(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "widthlab.cli", *args], cwd=cwd, capture_output=True, text=True
    )


def test_subcommands_are_a_table():
    assert {"provenance", "audit"} <= set(cli.COMMANDS)


def test_audit_clean_run_exits_zero(run_dir):
    result = widthlab("audit", "results", cwd=run_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 artifacts, all intact, all inputs match" in result.stdout


def flip_a_data_bit(path) -> None:
    """One bit of the first column page of a Parquet file (the data precede the footer)."""
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    data[footer - 3] ^= 1
    path.write_bytes(bytes(data))


def test_audit_and_summary_refuse_a_flipped_bit_in_the_headline(run_dir):
    headline = run_dir / "results/summary/headline.parquet"
    with Job.standalone("headline", [], {}, {"e": 1}) as job:
        job.write_parquet(pd.DataFrame({"g": [1.566]}), headline)
    flip_a_data_bit(headline)
    result = widthlab("audit", "results", cwd=run_dir)
    assert result.returncode == 1
    assert "results/summary/headline.parquet: content changed since it was written" in result.stdout
    summary = widthlab("summary", "results", cwd=run_dir)
    assert summary.returncode == 2 and "content changed since it was written" in summary.stderr
    assert "snakemake --force results/summary/headline.parquet" in summary.stderr


def test_audit_reports_a_table_re_saved_without_provenance(run_dir):
    table = run_dir / "results/summary/training.parquet"
    pd.read_parquet(table).assign(acc=42.0).to_parquet(table)
    result = widthlab("audit", "results", cwd=run_dir)
    assert result.returncode == 1
    assert "results/summary/training.parquet: carries no provenance record" in result.stdout
    assert "of 3 artifacts" in result.stdout  # the re-saved one no longer counts as recorded


def test_audit_reports_mixed_code_versions_unless_allowed(run_dir, monkeypatch):
    from widthlab.provenance import records

    monkeypatch.setattr(records, "code_version", lambda: {"commit": "b" * 40, "dirty": False})
    with Job.standalone("units_summary", [], {}, {"e": 2}) as job:
        job.write_parquet(pd.DataFrame({"g": [2.0]}), "results/summary/units.parquet")
    result = widthlab("audit", "results", cwd=run_dir)
    assert result.returncode == 1
    assert "artifacts from 2 code versions: " in result.stdout
    assert "bbbbbbbbbbbb (1 artifacts)" in result.stdout
    assert "artifacts from 2 configs: " in result.stdout
    assert widthlab("audit", "results", "--allow-mixed", cwd=run_dir).returncode == 0


def test_provenance_marks_a_recorded_hash_that_no_longer_matches(run_dir):
    (run_dir / "raw/digits.csv").write_text("pixel,label\n9,9\n")
    flip_a_data_bit(run_dir / "results/models/m/history.parquet")
    result = widthlab("provenance", "results/summary/training.parquet", cwd=run_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    (raw,) = [line for line in lines if "raw/digits.csv" in line and "└─" in line]
    assert "CHANGED since it was read" in raw
    (history,) = [line for line in lines if "history.parquet" in line and "└─" in line]
    assert "CHANGED since it was read" in history
    assert any(
        "CONTENT CHANGED: " in line and "m/history.parquet: content changed" in line
        for line in lines
    )
    assert not any("metrics.json" in line and "CHANGED" in line for line in lines)


def test_audit_defaults_to_results(run_dir):
    assert cli.main(["audit"]) == 0


def test_audit_names_the_artifact_and_input_that_changed(run_dir):
    history = run_dir / "results/models/m/history.parquet"
    history.write_bytes(history.read_bytes() + b"\0")
    result = widthlab("audit", "results", cwd=run_dir)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(
        "results/summary/training.parquet" in line and "results/models/m/history.parquet" in line
        for line in lines
    ), result.stdout
    assert any("history.parquet: unreadable" in line for line in lines), result.stdout


def test_audit_json(run_dir):
    (run_dir / "raw/digits.csv").write_text("changed\n")
    result = widthlab("audit", "results", "--json", cwd=run_dir)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert len(report["artifacts"]) == 4
    assert report["problems"][0]["artifact"] == "results/data/digits.npz"
    assert report["problems"][0]["input"] == "raw/digits.csv"


def test_audit_of_a_missing_directory_fails_clearly(run_dir, capsys):
    assert cli.main(["audit", "nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_provenance_prints_the_chain_to_the_raw_data(run_dir):
    result = widthlab("provenance", "results/summary/training.parquet", cwd=run_dir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("rule training_summary", "rule train", "rule dataset", "raw/digits.csv"):
        assert text in out
    assert out.index("rule training_summary") < out.index("rule train,") < out.index("rule dataset")
    assert "raw file, no provenance" in out
    assert "code " in out and "device cpu" in out and "seed 0" in out


def test_provenance_shows_the_slurm_job(run_dir, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_JOB_ID", "98765")
    with Job.standalone("slurmy", ["raw/digits.csv"], {}, {}) as job:
        job.save_npz("results/s.npz", {"a": np.zeros(1)})
    assert cli.main(["provenance", "results/s.npz"]) == 0
    assert "slurm job 98765" in capsys.readouterr().out


def test_provenance_json(run_dir, capsys):
    assert cli.main(["provenance", "results/models/m/metrics.json", "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)
    assert [step["path"] for step in steps] == [
        "results/models/m/metrics.json",
        "results/data/digits.npz",
        "raw/digits.csv",
    ]


def test_provenance_of_missing_or_raw_files(run_dir, capsys):
    assert cli.main(["provenance", "results/none.parquet"]) == 2
    assert "results/none.parquet" in capsys.readouterr().err
    assert cli.main(["provenance", "raw/digits.csv"]) == 0
    assert "no provenance" in capsys.readouterr().out


def test_summary_prints_every_stage_headline_and_fails_clearly_without_one(tmp_path):
    assert widthlab("summary", "results", cwd=tmp_path).returncode == 2
    from widthlab import stats
    from widthlab.headline import claim, headline_table

    rows = {
        "units": claim(
            "Casper et al. 2021",
            "prunable units grow faster than width",
            "g of prunable units",
            "t-interval over seeds",
            stats.SeedValues({0: 2.4, 1: 2.6, 2: 2.5}),
            2.0,
            1,
            "g = 2.5 > 2",
        ),
        "clones": claim(
            "Doimo et al. 2022",
            "clones grow linearly with width",
            "slope of #clones vs W",
            "least squares above the critical width",
            stats.SeedValues({0: 0.01}),
            1.0,
            0,
            "one seed only",
        ),
    }
    for stage, row in rows.items():
        io.write_parquet(
            headline_table([row]), tmp_path / f"results/summary/{stage}_headline.parquet"
        )
    result = widthlab("summary", "results", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Casper et al. 2021" in result.stdout and "Doimo et al. 2022" in result.stdout
    assert "2.5 [" in result.stdout  # mean with its t-interval
    assert "(n=1 " in result.stdout  # a single value has no interval
    csv = widthlab("summary", "results", "--format", "csv", cwd=tmp_path)
    assert pd.read_csv(StringIO(csv.stdout))["stage"].tolist() == [
        "clones",
        "units",
    ]


def test_slurm_check_names_the_package_to_install_when_the_plugin_is_missing(monkeypatch, capsys):
    import importlib.util
    import shutil

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "slurm" in name else object()
    )
    monkeypatch.setattr(shutil, "which", lambda command: None)
    assert cli.main(["slurm-check"]) == 1
    err = capsys.readouterr().err
    assert "pip install snakemake-executor-plugin-slurm" in err
    assert "`sbatch` is not on PATH" in err


def test_rerun_picks_exactly_the_rules_named_after_the_stages():
    rules = ["activations_0", "activations_3", "all", "train", "train_pack6_0a1b2c3d"]
    rules += ["training_summary", "units_model_0", "units_summary", "headline"]
    assert rerun.stage_rules(rules, ["activations"]) == ["activations_0", "activations_3"]
    assert rerun.stage_rules(rules, ["train"]) == ["train", "train_pack6_0a1b2c3d"]
    assert rerun.stage_rules(rules, ["units", "headline"]) == [
        "units_model_0",
        "units_summary",
        "headline",
    ]
    with pytest.raises(ValueError, match=r"no rules of \['activation'\]"):
        rerun.stage_rules(rules, ["activation"])


RULEGRAPH = """digraph snakemake_dag {
    graph[bgcolor=white, margin=0];
	0[label = "all", color = "0.05 0.6 0.85", style="rounded"];
	1[label = "train", color = "0.44 0.6 0.85", style="rounded"];
	2[label = "units_model_0", color = "0.59 0.6 0.85", style="rounded"];
	3[label = "units_model_1", color = "0.62 0.6 0.85", style="rounded"];
	4[label = "units_summary", color = "0.64 0.6 0.85", style="rounded"];
	5[label = "activations_0", color = "0.00 0.6 0.85", style="rounded"];
	6[label = "headline", color = "0.26 0.6 0.85", style="rounded"];
	7[label = "joint_summary", color = "0.31 0.6 0.85", style="rounded"];
	1 -> 2
	1 -> 3
	1 -> 5
	2 -> 4
	3 -> 4
	4 -> 6
	7 -> 6
	6 -> 0
	5 -> 0
}"""


def test_rerun_names_only_the_last_rules_of_the_stages_in_until():
    # naming units_model_* and units_summary together in --until is what made Snakemake stop
    # with "BUG: Out of jobs ready to be started"
    rules, edges = rerun.parse_rulegraph(RULEGRAPH)
    assert rules[:3] == ["all", "train", "units_model_0"]
    assert ("units_model_1", "units_summary") in edges
    units = rerun.stage_rules(rules, ["units"])
    command = rerun.rerun_command(units, edges, ["--cores", "2"])
    until = command[command.index("--until") + 1 : command.index("--cores")]
    assert until == ["units_summary"]
    assert command[command.index("--forcerun") + 1 : command.index("--until")] == units
    both = rerun.stage_rules(rules, ["activations", "units"])
    assert rerun.last_rules(both, edges) == ["units_summary", "activations_0"]
    assert rerun.stage_rules(rules, ["report"]) == ["headline", "joint_summary"]
    assert rerun.last_rules(rerun.stage_rules(rules, ["report"]), edges) == ["headline"]
