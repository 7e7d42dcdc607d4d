"""widthlab.provenance: records, embedding, chains back to raw data, audit, Job."""

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from widthlab import io, provenance
from widthlab.provenance import Job, audit, chain, read_provenance, record


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_chain(config=None) -> dict[str, str]:
    """raw CSV → dataset NPZ → history Parquet (+ metrics JSON), with relative paths, in cwd."""
    config = config or {"epochs": 3}
    paths = {
        "raw": "raw/digits.csv",
        "data": "results/data/digits.npz",
        "history": "results/models/m/history.parquet",
        "metrics": "results/models/m/metrics.json",
    }
    io.write_text(paths["raw"], "pixel,label\n0,1\n3,2\n")
    with Job.standalone("dataset", [paths["raw"]], {"probe": 2}, config) as job:
        job.seed = 7
        job.save_npz(paths["data"], {"x": np.arange(4.0)})
    with Job.standalone(
        "train", [paths["data"]], {"lr": 0.1}, config, wildcards={"model": "m"}
    ) as job:
        job.device = "cpu"
        job.write_parquet(pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5]}), paths["history"])
        job.save_json(paths["metrics"], {"test_acc": np.float64(0.9)})
    return paths


# ------------------------------------------------------------------------------ environment


def test_sha256_matches_hashlib_on_known_bytes(tmp_path):
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    assert provenance.sha256_file(small) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    data = np.random.default_rng(0).bytes(3 * 2**20 + 17)  # spans several read chunks
    big = tmp_path / "big"
    big.write_bytes(data)
    assert provenance.sha256_file(big) == hashlib.sha256(data).hexdigest()


def git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_version_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("x = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    provenance._code_version.cache_clear()
    assert provenance.code_version(repo / "pkg") == {"commit": head, "dirty": False}
    (repo / "pkg" / "mod.py").write_text("x = 2\n")
    provenance._code_version.cache_clear()
    version = provenance.code_version(repo / "pkg")
    assert version["commit"] == head and version["dirty"] is True
    assert len(version["diff_sha256"]) == 64
    provenance._code_version.cache_clear()


def test_code_version_outside_git_is_unknown(tmp_path):
    provenance._code_version.cache_clear()
    assert provenance.code_version(tmp_path)["commit"] == "unknown"
    provenance._code_version.cache_clear()
    assert provenance.code_version()["commit"]  # the package's own checkout, whatever it is


def test_package_versions_name_the_stack():
    versions = provenance.package_versions()
    for name in ("python", "widthlab", "numpy", "torch", "pandas", "pyarrow", "snakemake"):
        assert name in versions
    assert versions["numpy"] == np.__version__


def test_config_hash_is_canonical():
    a = provenance.config_hash({"a": 1, "b": {"c": [1, 2]}})
    assert a == provenance.config_hash({"b": {"c": [1, 2]}, "a": 1})
    assert a != provenance.config_hash({"a": 1, "b": {"c": [2, 1]}})
    assert len(a) == 64


def test_device_info():
    assert provenance.device_info("cpu")["type"] == "cpu"
    assert provenance.device_info(None)["name"]


def test_record_holds_every_field(workdir, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    (workdir / "in.txt").write_bytes(b"abc")
    rec = record(
        rule="train",
        wildcards={"model": "m"},
        params={"settings": {"lr": np.float32(0.5)}, "tags": ("a", "b")},
        config={"epochs": 3},
        inputs=["in.txt"],
        outputs=["out.parquet"],
        seed=np.int64(1),
        device="cpu",
        started=datetime(2025, 1, 31, 12, 0, 0).astimezone(),
        ended=provenance.now(),
    )
    assert {
        "rule",
        "wildcards",
        "params",
        "config_hash",
        "config",
        "inputs",
        "code",
        "packages",
        "device",
        "seed",
        "host",
        "slurm_job_id",
        "started",
        "ended",
        "widthlab",
    } <= set(rec)
    json.dumps(rec, allow_nan=False)  # JSON-safe throughout
    assert rec["params"] == {"settings": {"lr": 0.5}, "tags": ["a", "b"]}
    assert rec["inputs"] == [
        {
            "path": "in.txt",
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "bytes": 3,
        }
    ]
    assert rec["slurm_job_id"] == "4242" and rec["slurm"]["SLURM_RESTART_COUNT"] == "1"
    assert "SLURM_ARRAY_JOB_ID" not in rec["slurm"]
    assert rec["started"].endswith("Z") and rec["ended"].endswith("Z")
    assert datetime.fromisoformat(rec["started"]).utcoffset().total_seconds() == 0
    assert rec["seed"] == 1 and rec["config"] == {"epochs": 3}
    assert rec["config_hash"] == provenance.config_hash({"epochs": 3})


# ------------------------------------------------------------------------------- embedding


def test_parquet_npz_and_sidecar_carry_their_records(workdir):
    paths = make_chain()
    data = read_provenance(paths["data"])
    assert data["rule"] == "dataset" and data["seed"] == 7
    assert data["artifact"] == paths["data"]
    assert data["inputs"][0]["path"] == paths["raw"]
    history = read_provenance(paths["history"])
    assert history["rule"] == "train" and history["wildcards"] == {"model": "m"}
    assert history["device"]["type"] == "cpu"
    assert history["inputs"][0]["sha256"] == provenance.sha256_file(paths["data"])
    assert json.loads(io.read_parquet_metadata(paths["history"])[provenance.RECORD_KEY])
    metrics = read_provenance(paths["metrics"])
    assert metrics["rule"] == "train"
    assert metrics["artifact_sha256"] == provenance.sha256_file(paths["metrics"])
    assert io.load_json(paths["metrics"]) == {"test_acc": 0.9}  # the JSON itself stays clean
    assert (workdir / f"{paths['metrics']}.prov.json").exists()
    assert read_provenance(paths["raw"]) is None
    with pytest.raises(io.ArtifactError, match="nowhere.csv"):
        read_provenance("nowhere.csv")


def test_figure_and_torch_get_sidecars(workdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    job = Job.standalone("figures", [], {}, {})
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    job.save_figure(fig, "results/figures/f.png")
    assert fig.number not in plt.get_fignums()  # closed (other tests' figures may be open)
    assert (workdir / "results/figures/f.png").read_bytes()[:4] == b"\x89PNG"
    assert read_provenance("results/figures/f.png")["rule"] == "figures"
    job.save_torch({"w": torch.zeros(2)}, "results/models/m/model.pt")
    assert read_provenance("results/models/m/model.pt")["artifact"] == "results/models/m/model.pt"
    torch.save({"w": 1}, "other.pt")
    job.sidecar("other.pt")
    assert read_provenance("other.pt")["artifact_bytes"] == (workdir / "other.pt").stat().st_size


# ----------------------------------------------------------------------------------- chain


def test_chain_walks_back_to_the_raw_file(workdir):
    paths = make_chain()
    steps = chain(paths["history"])
    assert [step["path"] for step in steps] == [paths["history"], paths["data"], paths["raw"]]
    assert [step["depth"] for step in steps] == [0, 1, 2]
    assert [(step["provenance"] or {}).get("rule") for step in steps] == ["train", "dataset", None]
    assert steps[2]["recorded"]["sha256"] == provenance.sha256_file(paths["raw"])


def test_chain_lists_a_shared_input_once(workdir):
    paths = make_chain()
    with Job.standalone("summary", [paths["history"], paths["data"]], {}, {}) as job:
        job.write_parquet(pd.DataFrame({"a": [1]}), "results/summary.parquet")
    steps = chain("results/summary.parquet")
    assert [step["path"] for step in steps] == [
        "results/summary.parquet",
        paths["history"],
        paths["data"],
        paths["raw"],
    ]


def test_chain_and_audit_follow_a_moved_workflow(workdir, tmp_path_factory, monkeypatch):
    paths = make_chain()
    copy = tmp_path_factory.mktemp("elsewhere") / "run"
    shutil.copytree(workdir, copy)
    (workdir / paths["raw"]).write_text("the original changed\n")
    monkeypatch.chdir(copy.parent)  # neither the old nor the new workflow directory
    steps = chain(copy / paths["history"])
    assert steps[-1]["resolved"] == str(copy / paths["raw"])
    assert all(step["exists"] for step in steps)
    assert audit(copy / "results") == []


# ----------------------------------------------------------------------------------- audit


def test_audit_clean_run(workdir):
    make_chain()
    checked, problems = provenance.audit_report("results")
    assert problems == [] and len(checked) == 3


def test_audit_names_the_artifact_whose_input_changed(workdir):
    paths = make_chain()
    (workdir / paths["raw"]).write_text("pixel,label\n0,1\n3,3\n")
    problems = audit("results")
    assert [(p.artifact, p.input, p.kind) for p in problems] == [
        ("results/data/digits.npz", paths["raw"], "changed")
    ]
    assert "results/data/digits.npz" in str(problems[0]) and paths["raw"] in str(problems[0])


def test_a_job_over_several_models_records_each_models_own_inputs(workdir):
    """A change to one model's input flags that model's artifact only."""
    io.write_text("a.txt", "a")
    io.write_text("b.txt", "b")
    with Job.standalone("units_model_0", ["a.txt", "b.txt"], {"models": ["a", "b"]}, {}) as job:
        for name in ("a", "b"):
            with job.for_model(name, [f"{name}.txt"]):
                job.write_parquet(pd.DataFrame({"x": [1]}), f"results/units/{name}.parquet")
        with pytest.raises(ValueError, match=r"\['c.txt'\] are not inputs"):
            with job.for_model("c", ["c.txt"]):
                pass
        assert job.inputs == ["a.txt", "b.txt"] and "model" not in job.wildcards
    rec = provenance.read_provenance("results/units/b.parquet")
    assert [i["path"] for i in rec["inputs"]] == ["b.txt"] and rec["wildcards"] == {"model": "b"}
    io.write_text("b.txt", "changed")
    assert [p.artifact for p in audit("results")] == ["results/units/b.parquet"]


def test_audit_reports_missing_unreadable_and_modified(workdir):
    paths = make_chain()
    (workdir / paths["raw"]).unlink()
    history = workdir / paths["history"]
    history.write_bytes(history.read_bytes()[:-10])
    (workdir / paths["metrics"]).write_text('{"test_acc": 1.0}')
    found = {(p.artifact, p.kind) for p in audit("results")}
    assert found == {
        ("results/data/digits.npz", "missing"),
        (paths["history"], "unreadable"),
        (paths["metrics"], "modified"),
    }


def test_audit_reports_files_without_records_and_orphan_sidecars(workdir):
    paths = make_chain()
    (workdir / "results/benchmarks/train").mkdir(parents=True)  # Snakemake's, not artifacts
    (workdir / "results/benchmarks/train/m.tsv").write_text("s\n1\n")
    (workdir / "results/logs").mkdir()
    (workdir / "results/logs/train.log").write_text("ok\n")
    assert audit("results") == []
    io.write_parquet(pd.DataFrame({"a": [1]}), "results/plain.parquet")  # no record
    pd.DataFrame({"a": [1]}).to_parquet("results/pandas.parquet")  # neither record nor hash
    io.save_npz("results/plain.npz", {"a": np.zeros(2)})
    (workdir / "results/notes.txt").write_text("x")
    found = sorted((p.artifact, p.kind) for p in audit("results"))
    assert found == [
        ("results/notes.txt", "unrecorded"),
        ("results/pandas.parquet", "unrecorded"),
        ("results/plain.npz", "unrecorded"),
        ("results/plain.parquet", "unrecorded"),
    ]
    for name in ("plain.parquet", "pandas.parquet", "plain.npz", "notes.txt"):
        (workdir / "results" / name).unlink()
    (workdir / paths["metrics"]).unlink()
    assert [p.kind for p in audit("results")] == ["orphan"]


def test_audit_counts_code_versions_and_configs_and_flags_mixtures(workdir, monkeypatch):
    make_chain()
    report = provenance.audit_report("results")
    assert sum(report.code_versions.values()) == 3 and len(report.config_hashes) == 1
    old = {"commit": "a" * 40, "dirty": False}
    monkeypatch.setattr("widthlab.provenance.records.code_version", lambda: old)
    with Job.standalone("units_summary", [], config={"epochs": 9}) as job:
        job.write_parquet(pd.DataFrame({"x": [1]}), "results/summary/units.parquet")
    report = provenance.audit_report("results")
    mixed = [p.message for p in report.problems if p.kind == "mixed"]
    assert len(mixed) == 2
    assert "artifacts from 2 code versions" in mixed[0] and "aaaaaaaaaaaa (1 artifacts)" in mixed[0]
    assert "artifacts from 2 configs" in mixed[1] and "--allow-mixed" in mixed[1]
    assert provenance.audit("results", allow_mixed=True) == []


# ------------------------------------------------------------------------------------- Job


class FakeNamedlist(list):
    """Snakemake's Namedlist in miniature: a list with some entries also reachable by name."""

    def __init__(self, positional=(), **named):
        values = list(positional)
        for value in named.values():
            values.extend(value if isinstance(value, list) else [value])
        super().__init__(values)
        self._named = named
        for key, value in named.items():
            setattr(self, key, value)

    def items(self):
        return iter(self._named.items())


def test_job_from_snakemake_logs_and_records(workdir):
    io.write_text("results/data/d.npz.raw", "a")
    io.write_text("results/models/m/a.json", "1")
    io.write_text("results/models/m/b.json", "2")
    fake = SimpleNamespace(
        rule="training_summary",
        wildcards=FakeNamedlist(grid="main"),
        params=FakeNamedlist(settings={"top": 3}, device="cpu"),
        config={"results": "results", "train": {"lr": 0.1}},
        input=FakeNamedlist(
            data="results/data/d.npz.raw",
            metrics=["results/models/m/a.json", ["results/models/m/b.json"]],
        ),
        output=FakeNamedlist(table="results/summary/t.parquet"),
        log=FakeNamedlist(["results/logs/training_summary/main.log"]),
    )
    job = Job.from_snakemake(fake)
    try:
        job.seed = 3
        job.log.info("progress %d", 5)
        job.write_parquet(pd.DataFrame({"x": [1.0]}), fake.output.table)
    finally:
        job.close()
    log = (workdir / "results/logs/training_summary/main.log").read_text()
    assert "rule training_summary grid=main" in log and "progress 5" in log
    assert "wrote results/summary/t.parquet" in log
    rec = read_provenance(fake.output.table)
    assert rec["rule"] == "training_summary" and rec["wildcards"] == {"grid": "main"}
    assert rec["params"] == {"settings": {"top": 3}, "device": "cpu"}
    assert rec["seed"] == 3 and rec["outputs"] == ["results/summary/t.parquet"]
    assert rec["config_hash"] == provenance.config_hash(fake.config)
    assert [(e["path"], e["sha256"]) for e in rec["inputs"]] == [
        (p, provenance.sha256_file(p))
        for p in ["results/data/d.npz.raw", "results/models/m/a.json", "results/models/m/b.json"]
    ]


def test_job_logs_an_uncaught_failure_to_its_log(workdir):
    script = (
        "from types import SimpleNamespace\n"
        "from widthlab.provenance import Job\n"
        "job = Job.from_snakemake(SimpleNamespace(rule='r', wildcards={}, params={}, config={},"
        " input=[], output=[], log=['r.log']))\n"
        "raise RuntimeError('non-finite loss in model m at epoch 3')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "non-finite loss" in result.stderr
    assert "RuntimeError: non-finite loss in model m at epoch 3" in (workdir / "r.log").read_text()


def test_the_audit_compares_under_the_config_file_whose_results_folder_is_deepest(
    tmp_path, monkeypatch
):
    """The default study writes to results/, a named study to results/<name>: a named study's
    directory lies inside both, and must be compared under its own file, not config.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "config.yaml").write_text("results: results\nseeds: [0]\n")
    (tmp_path / "configs" / "a.yaml").write_text("results: results/study\nseeds: [1]\n")
    (tmp_path / "configs" / "b.yaml").write_text("results: results/study\nseeds: [2]\n")
    (tmp_path / "configs" / "broken.yaml").write_text("results: [unclosed\n")
    (tmp_path / "configs" / "other.yaml").write_text("results: elsewhere\n")
    find = provenance.study_configfile
    assert find("results", None).name == "config.yaml"
    assert find("results/digits-mlp", None).name == "config.yaml"
    # two files share the folder: the one equal to the recorded config, else the first
    assert find("results/study", {"results": "results/study", "seeds": [2]}).name == "b.yaml"
    assert find("results/study/units", {"seeds": [9]}).name == "a.yaml"
    assert find("elsewhere", None).name == "other.yaml"
    assert find(tmp_path / "nowhere", None) is None
