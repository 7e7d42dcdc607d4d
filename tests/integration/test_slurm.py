"""The workflow on a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, MariaDB).

`tests/slurm/cluster.sh start` installs the Debian packages it lacks, writes its own
configuration under $WIDTHLAB_SLURM_DIR (default /tmp/widthlab-slurm) and starts the daemons;
the module fixture stops them again (unless the cluster was already running before the tests,
then it is left as found). Needs root on Debian; skipped elsewhere, or with
WIDTHLAB_SKIP_SLURM=1.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from pathlib import Path

import pytest
import torch
from conftest import copy_workflow, tiny_config

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm"
# The plugin waits this long before its first status check (the profile says 40 s).
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "2")


def _os_release() -> dict[str, str]:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def skip_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if os.environ.get("WIDTHLAB_SKIP_SLURM") == "1":
        return "WIDTHLAB_SKIP_SLURM=1"
    if not sys.platform.startswith("linux"):
        return f"needs Linux (Debian) to start a SLURM cluster, this is {sys.platform}"
    release = _os_release()
    if release.get("ID") != "debian" and "debian" not in release.get("ID_LIKE", ""):
        name = release.get("PRETTY_NAME", "an unknown OS")
        return f"needs Debian (apt packages slurmctld, slurmd, ...), this is {name}"
    if os.geteuid() != 0:
        return "needs root: tests/slurm/cluster.sh installs packages and starts SLURM daemons"
    conf = Path("/etc/slurm/slurm.conf")
    if (conf.exists() or conf.is_symlink()) and not _ours(conf):
        return f"{conf} belongs to a real SLURM installation; the test cluster would need it"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "pip install snakemake-executor-plugin-slurm (the 'test' extra has it)"
    return None


def _ours(conf: Path) -> bool:
    target = Path(os.readlink(conf)) if conf.is_symlink() else conf
    if not target.exists():
        return conf.is_symlink() and str(target).endswith("/etc/slurm.conf")
    return target.read_text().startswith("# written by tests/slurm/cluster.sh")


@pytest.fixture(scope="module")
def slurm_env():
    """Environment for SLURM clients (SLURM_CONF set) while the test cluster runs."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    was_running = subprocess.run([CLUSTER_SH, "status"], capture_output=True).returncode == 0
    started = subprocess.run([CLUSTER_SH, "start"], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.fail(f"cluster.sh start failed:\n{started.stdout}\n{started.stderr}")
    match = re.search(r"^export SLURM_CONF=(\S+)$", started.stdout, flags=re.MULTILINE)
    assert match, started.stdout
    env = {**os.environ, "SLURM_CONF": match.group(1)}
    try:
        yield env
    finally:
        if not was_running:
            stopped = subprocess.run([CLUSTER_SH, "stop"], capture_output=True, text=True)
            assert stopped.returncode == 0, stopped.stderr


def run_snakemake(workdir: Path, env: dict, *args: str, timeout: int = 240):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--workflow-profile", str(PROFILE), *FAST_STATUS]
        + list(args),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sacct(env: dict, *job_ids: str) -> dict[str, dict[str, str]]:
    """{job id: {State, ExitCode, AllocTRES}} from slurmdbd."""
    fields = "JobID,State,ExitCode,AllocTRES"
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", fields],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    return {r[0]: {"State": r[1], "ExitCode": r[2], "AllocTRES": r[3]} for r in rows}


TOY_SNAKEFILE = """
rule all:
    input:
        "out/cpu.txt",
        "out/gpu.txt",


rule cpu:
    output:
        "out/cpu.txt",
    resources:
        mem_mb=200,
        runtime=5,
    shell:
        "echo $SLURM_JOB_ID > {output}"


rule gpu:
    output:
        "out/gpu.txt",
    resources:
        gpu=1,
        mem_mb=200,
        runtime=5,
    shell:
        "echo $SLURM_JOB_ID ${{SLURM_GPUS_ON_NODE:-none}} > {output}"
"""


def test_toy_workflow_runs_as_slurm_jobs(slurm_env, tmp_path):
    (tmp_path / "Snakefile").write_text(TOY_SNAKEFILE)
    result = run_snakemake(tmp_path, slurm_env, "--retries", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    cpu_job = (tmp_path / "out/cpu.txt").read_text().split()[0]
    gpu_job, gpus = (tmp_path / "out/gpu.txt").read_text().split()
    assert gpus == "1"  # the fake GPU was allocated to the job
    jobs = sacct(slurm_env, cpu_job, gpu_job)
    assert jobs[cpu_job]["State"] == jobs[gpu_job]["State"] == "COMPLETED"
    assert "gres/gpu=1" in jobs[gpu_job]["AllocTRES"]
    assert "gres/gpu" not in jobs[cpu_job]["AllocTRES"]


def test_gpu_the_cluster_lacks_fails_with_slurms_message(slurm_env, tmp_path):
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            rule gpu:
                output:
                    "out/gpu.txt",
                resources:
                    gpu=1,
                    gpu_model="a100",
                    mem_mb=200,
                    runtime=5,
                shell:
                    "touch {output}"
            """
        )
    )
    result = run_snakemake(tmp_path, slurm_env, "--retries", "0")
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "Requested node configuration is not available" in log
    assert "--gpus=a100:1" in log  # the sbatch call is shown
    assert not (tmp_path / "out").exists()


def test_slurm_check_passes_on_a_working_cluster(slurm_env):
    result = subprocess.run(
        [sys.executable, "-m", "widthlab.cli", "slurm-check"],
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ready" in result.stdout


def test_cluster_script_reports_status(slurm_env):
    status = subprocess.run([CLUSTER_SH, "status"], capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    for daemon in ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd"):
        assert f"{daemon} running" in status.stdout
    assert "gpu:fake:1" in status.stdout


# --- the workflow's tiny config through profiles/slurm -------------------------------------

# Each model's first training job gets a signal mid-training, as SLURM sends them: TERM before
# preemption or at the time limit, USR1 at `--signal=USR1@<lead>` before the limit (what the
# train rules ask for). Both must checkpoint, fail, and resume in the retry.
INTERRUPTIONS = {"digits-mlp-w32-d1-nall-wd0-s0": "TERM", "digits-mlp-w16-d1-nall-wd0-s0": "USR1"}
MODELS = tuple(INTERRUPTIONS)


def interrupt_first_training_jobs(workdir: Path, env: dict, found: dict, stop: threading.Event):
    """Signal the SLURM job training each model of INTERRUPTIONS as soon as it has written a
    checkpoint: {model: job id} into ``found``.

    `scancel --signal=X` signals the job's steps, as SLURM does before a time limit
    (`--signal`) or preemption; the job then fails and Snakemake retries it. (A plain `scancel`
    would leave Snakemake waiting: plugin 2.8.0 does not recognise sacct's "CANCELLED by 0".)
    The job id is read from the SLURM log the plugin opens when it submits the job, so the
    signal goes only once both the log and the checkpoint exist.
    """
    pending = dict(INTERRUPTIONS)
    while pending and not stop.is_set():
        for model, signal in list(pending.items()):
            checkpoint = workdir / "results" / "models" / model / "checkpoint.pt"
            logs = list(
                (workdir / ".snakemake" / "slurm_logs" / "rule_train" / model).glob("*.log")
            )
            if checkpoint.exists() and logs:
                job = min(int(log.stem) for log in logs)
                subprocess.run(["scancel", f"--signal={signal}", str(job)], env=env, check=True)
                found[model] = job
                del pending[model]
        time.sleep(0.05)


def watch(target, found: dict, *args):
    """Run ``target`` in a thread, keeping any exception it raises in ``found["error"]`` (an
    exception in a thread is otherwise lost, and the test would blame the timing)."""

    def run():
        try:
            target(*args, found, stop)
        except BaseException:  # noqa: BLE001 - re-raised by the fixture in the main thread
            found["error"] = traceback.format_exc()

    stop = threading.Event()
    thread = threading.Thread(target=run)
    thread.start()
    return thread, stop


@pytest.fixture(scope="module")
def tiny_slurm_run(slurm_env, tmp_path_factory):
    """The tiny config on SLURM; two training jobs get TERM and USR1 mid-training."""
    config = tiny_config()
    config["train"]["max_epochs"] = 100  # a few seconds of training: time to interrupt it
    # one job per model, so each model's job is interrupted (a pack resumes by the same loop,
    # tested in tests/unit/test_train_packs.py)
    config["train_packs"] = {"max_models": 1}
    # the spine and one per-model analysis stage as SLURM jobs; the others run in the local tests
    for stage in ("similarity", "clones", "transfer", "bottleneck", "report"):
        config["analyses"][stage] = {**config["analyses"].get(stage, {}), "enabled": False}
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny-slurm"), config)
    found: dict = {}
    watcher, stop = watch(interrupt_first_training_jobs, found, workdir, slurm_env)
    started = time.monotonic()
    try:
        result = run_snakemake(workdir, slurm_env, "--slurm-init-seconds-before-status-checks", "8")
    finally:
        stop.set()
        watcher.join()
    print(f"tiny config on SLURM: {time.monotonic() - started:.0f} s")
    if "error" in found:
        pytest.fail(f"the thread that interrupts training failed:\n{found['error']}")
    assert result.returncode == 0, result.stdout + result.stderr
    missed = [m for m in INTERRUPTIONS if m not in found]
    assert not missed, f"training of {missed} finished before its job could be interrupted"
    return workdir, found


def provenance(path: Path) -> dict:
    return json.loads(Path(f"{path}.prov.json").read_text())


def test_tiny_config_completes_on_slurm(tiny_slurm_run):
    workdir, _ = tiny_slurm_run
    results = workdir / "results"
    for mid in MODELS:
        for name in ("model.pt", "history.parquet", "metrics.json"):
            assert (results / "models" / mid / name).stat().st_size > 0
        assert not (results / "models" / mid / "checkpoint.pt").exists()
        assert (results / "activations" / mid / "layers.npz").stat().st_size > 0
    assert (results / "summary" / "training.parquet").stat().st_size > 0
    assert (results / "summary" / "units_headline.parquet").stat().st_size > 0


def test_training_provenance_records_its_slurm_jobs(tiny_slurm_run, slurm_env):
    workdir, interrupted = tiny_slurm_run
    for mid in MODELS:
        model = workdir / "results" / "models" / mid / "model.pt"
        job = provenance(model)["slurm_job_id"]
        metrics = json.loads((model.parent / "metrics.json").read_text())
        assert metrics["slurm_job_ids"] == [str(interrupted[mid]), job]
        assert sacct(slurm_env, job)[job]["State"] == "COMPLETED"
        first = str(interrupted[mid])
        assert sacct(slurm_env, first)[first]["State"] == "FAILED", INTERRUPTIONS[mid]


@pytest.mark.parametrize("interrupted_model", MODELS, ids=INTERRUPTIONS.values())
def test_resumed_training_matches_an_uninterrupted_run(tiny_slurm_run, interrupted_model):
    from widthlab.data.npz import load_dataset
    from widthlab.grid import parse_model_id
    from widthlab.training.train import train

    workdir, _ = tiny_slurm_run
    model_file = workdir / "results" / "models" / interrupted_model / "model.pt"
    settings = provenance(model_file)["params"]["train"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the job: Snakemake sets OMP_NUM_THREADS to the rule's threads
    try:
        reference = train(
            parse_model_id(interrupted_model),
            load_dataset(workdir / "results" / "data" / "digits.npz"),
            {**settings, "device": "cpu"},
            log=lambda line: None,
        )
    finally:
        torch.set_num_threads(threads)
    resumed = torch.load(model_file, map_location="cpu")["state_dict"]
    expected = reference.model.state_dict()
    assert resumed.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name
