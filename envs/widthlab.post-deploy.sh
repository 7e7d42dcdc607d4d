#!/usr/bin/env bash
# Snakemake (--sdm conda) runs this once in each new environment of this workflow, with the
# environment active, from the directory Snakemake was started in. It installs the widthlab
# package there from the repository checkout, editable, so jobs run the checkout's code (the
# commit their provenance records). A `pip: [-e ..]` entry cannot do this: conda resolves it
# against Snakemake's copy of the env file under .snakemake/conda/.
set -euo pipefail
source_dir="${WIDTHLAB_SOURCE:-$PWD}"
if [ ! -f "$source_dir/pyproject.toml" ] || [ ! -f "$source_dir/widthlab/__init__.py" ]; then
    echo "widthlab post-deploy: $source_dir is not the widthlab checkout; start snakemake" \
        "from the repository root, or set WIDTHLAB_SOURCE to the checkout" >&2
    exit 1
fi
python -m pip install --quiet --no-deps --no-build-isolation --editable "$source_dir"
