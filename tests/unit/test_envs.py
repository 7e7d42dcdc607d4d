"""The conda environments rules name (`--sdm conda`) ask for what pyproject.toml asks for, pick
their PyTorch build explicitly, and get the package itself the way Snakemake deploys them."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONDA_NAMES = {"torch": "pytorch"}
ENVS = {"widthlab.yaml": "cuda*", "widthlab-cpu.yaml": "cpu*"}  # env file → PyTorch build


def requirement(text):
    """(name, version spec, build) of a conda or pip requirement string."""
    name, spec, build = re.match(r"^([A-Za-z0-9_.-]+)\s*([^ ]*)\s*(\S*)$", text.strip()).groups()
    return name.lower(), spec.replace(" ", ""), build


def version(spec: str) -> tuple[int, ...]:
    """The lower bound of ``>=X.Y[,<…]`` as a tuple of integers."""
    return tuple(int(p) for p in spec.removeprefix(">=").split(",")[0].split("."))


def load(name):
    return yaml.safe_load((REPO / "envs" / name).read_text())


@pytest.mark.parametrize("name", ENVS)
def test_conda_env_matches_pyproject_and_picks_its_pytorch_build(name):
    with open(REPO / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)
    wanted = {
        CONDA_NAMES.get(n, n): s for n, s, _ in map(requirement, project["project"]["dependencies"])
    }
    env = load(name)
    assert all(isinstance(d, str) for d in env["dependencies"]), "no pip section: see post-deploy"
    listed = {n: (s, b) for n, s, b in map(requirement, env["dependencies"])}
    assert listed.pop("python")[0] == project["project"]["requires-python"]
    listed.pop("pip")
    backend = dict(requirement(r)[:2] for r in project["build-system"]["requires"])
    # the editable install without build isolation: at least pyproject's build backend
    assert version(listed.pop("setuptools")[0]) >= version(backend["setuptools"])
    assert listed.pop("pytorch") == (wanted.pop("pytorch"), ENVS[name])
    if ENVS[name] == "cuda*":
        assert listed.pop("cuda-version")[0] == ">=12,<13"
    assert {n: s for n, (s, _) in listed.items()} == wanted
    assert env["channels"] == ["conda-forge", "nodefaults"]


def test_rules_pick_the_cuda_environment_exactly_when_the_config_uses_a_gpu():
    common = re.sub(r"[\s()]+", " ", (REPO / "rules" / "common.smk").read_text())
    assert (
        'CONDA_ENV = "../envs/widthlab.yaml" if config["device"] != "cpu" else '
        '"../envs/widthlab-cpu.yaml"' in common
    )


def post_deploy_script(env_file: Path) -> Path:
    """Where Snakemake looks for an env's post-deploy script (snakemake.deployment.conda:
    the env file's .yaml replaced by .post-deploy.sh)."""
    return env_file.with_suffix(".post-deploy.sh")


@pytest.fixture(scope="module")
def fresh_python(tmp_path_factory):
    """A new Python environment holding the dependencies (this machine's, as a new conda env
    holds the env file's), but not widthlab."""
    folder = tmp_path_factory.mktemp("env")
    venv.create(folder, system_site_packages=True)
    return folder


def deploy(env: Path, workdir: Path, source: Path | None = None):
    """Run the post-deploy script as Snakemake does: copied next to the environment under
    .snakemake/conda/, run by the interpreter of its shebang, inside the active environment,
    from the directory Snakemake was started in."""
    script = post_deploy_script(REPO / "envs" / "widthlab.yaml")
    target = workdir / ".snakemake" / "conda" / "0123abcd_.post-deploy.sh"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(script, target)
    interpreter = script.read_text().splitlines()[0].removeprefix("#!").split()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "PATH": f"{env / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(env),
    }
    if source is not None:
        environment["WIDTHLAB_SOURCE"] = str(source)
    return subprocess.run(
        [*interpreter, str(target)],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_env_has_the_post_deploy_script_that_installs_the_package():
    for name in ENVS:
        script = post_deploy_script(REPO / "envs" / name)
        assert script.is_file(), f"{name}: no {script.name}"
        assert script.read_text() == post_deploy_script(REPO / "envs" / "widthlab.yaml").read_text()


def test_post_deploy_installs_the_checkout_the_run_started_in(fresh_python, tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "widthlab", checkout / "widthlab")
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, checkout / part)
    done = deploy(fresh_python, checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    where = subprocess.run(
        [str(fresh_python / "bin" / "python"), "-c", "import widthlab; print(widthlab.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert where.stdout.strip() == str(checkout / "widthlab" / "__init__.py"), where.stderr


def test_post_deploy_outside_the_checkout_says_where_to_start(fresh_python, tmp_path):
    done = deploy(fresh_python, tmp_path)
    assert done.returncode != 0
    assert "is not the widthlab checkout; start snakemake from the repository root" in done.stderr


@pytest.mark.skipif(
    not (shutil.which("conda") or shutil.which("mamba")),
    reason="conda or mamba is needed to build the environment (not on this machine)",
)
def test_snakemake_builds_the_cpu_environment(tmp_path):
    from conftest import copy_workflow, tiny_config

    workdir = copy_workflow(tmp_path, tiny_config())
    for part in ("pyproject.toml", "README.md", "widthlab"):
        source = REPO / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / part)
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--sdm", "conda", "--conda-create-envs-only", "-c1"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
