"""The conda environment that rules name must ask for what pyproject.toml asks for."""

import re
import tomllib

import yaml

CONDA_NAMES = {"torch": "pytorch"}


def requirement(text):
    name, spec = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", text.strip()).groups()
    return name.lower(), spec.replace(" ", "")


def test_conda_env_matches_pyproject_dependencies():
    with open("pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    wanted = {CONDA_NAMES.get(n, n): s for n, s in map(requirement, project["dependencies"])}
    with open("envs/widthlab.yaml") as handle:
        env = yaml.safe_load(handle)
    listed = dict(requirement(d) for d in env["dependencies"] if isinstance(d, str))
    python = listed.pop("python")
    listed.pop("pip")
    assert listed == wanted
    assert python == project["requires-python"]


def test_conda_env_installs_the_package_itself():
    with open("envs/widthlab.yaml") as handle:
        env = yaml.safe_load(handle)
    pip_entries = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .." in pip_entries
