"""The house rules that keep the package layered: what may import torch, how big a module may be."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import widthlab

PACKAGE = Path(widthlab.__file__).resolve().parent
# modules of a stage package that must load without torch: a figure or a summary can be remade
# on a machine (or in a job) without it
TORCH_FREE_PARTS = ("summary", "claims", "jobs", "figures", "settings")
TORCH_FREE_MODULES = (
    "widthlab.stats",
    "widthlab.recipe",
    "widthlab.headline",
    "widthlab.grid",
    "widthlab.config",
    "widthlab.plots",
    "widthlab.training.packs",
)
MAX_LINES = 500


def stage_packages() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules([str(PACKAGE)])
        if info.ispkg and any((PACKAGE / info.name / f"{p}.py").exists() for p in TORCH_FREE_PARTS)
    )


def torch_free_modules() -> list[str]:
    modules = list(TORCH_FREE_MODULES)
    for stage in stage_packages():
        modules += [
            f"widthlab.{stage}.{part}"
            for part in TORCH_FREE_PARTS
            if (PACKAGE / stage / f"{part}.py").exists()
        ]
    return modules


@pytest.mark.parametrize("module", torch_free_modules())
def test_imports_without_torch(module):
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError(f'{name} is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        f"import {module}\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"{module} needs torch:\n{result.stderr[-2000:]}"


def test_the_package_never_imports_snakemake():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "import snakemake" in path.read_text() or "from snakemake" in path.read_text()
    ]
    assert offenders == []


# modules still over the limit, each with what would split it (none may be added)
OVER_THE_LIMIT: dict[str, str] = {}  # a module over the limit is named here, with why


def test_every_module_can_be_read_in_one_sitting():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert set(long) <= set(OVER_THE_LIMIT), f"modules over {MAX_LINES} lines: {long}"
