"""docs/config.md is the schema's guide: regenerated it is unchanged, it names every key, and
its defaults are the ones Snakemake's validation fills in."""

import json
import re
from pathlib import Path

from widthlab.config import SCHEMA, load_schema
from widthlab.config_doc import guide

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "config.md"


def documented() -> dict[str, str]:
    """{key: default column} of the guide's tables."""
    rows = re.findall(r"^\| `([^`]+)` \| .*? \| (.*?) \| .*\|$", DOC.read_text(), re.MULTILINE)
    return dict(rows)


def test_the_guide_is_generated_from_the_schema():
    assert DOC.read_text() == guide(), "run: python -m widthlab.config_doc > docs/config.md"


def test_every_schema_key_is_documented():
    schema = load_schema()

    def keys(node, prefix):
        if "$ref" in node:
            node = {**schema["definitions"][node["$ref"].split("/")[-1]], **node}
        for name, child in node.get("properties", {}).items():
            yield prefix + name
            yield from keys(child, f"{prefix}{name}.")
        if isinstance(node.get("additionalProperties"), dict):
            yield from keys(node["additionalProperties"], f"{prefix}<name>.")

    missing = set(keys(schema, "")) - set(documented())
    assert not missing


def test_documented_defaults_are_what_validation_fills_in():
    from snakemake.utils import validate

    config = {"grids": {"main": {"dataset": "digits", "width": [8], "depth": [1]}}}
    validate(config, str(SCHEMA))
    rows = documented()

    def leaves(value, prefix):
        if isinstance(value, dict) and not prefix.startswith(("grids", "analyses.bottleneck.r")):
            for key, child in value.items():
                yield from leaves(child, f"{prefix}.{key}" if prefix else key)
        else:
            yield prefix, value

    checked = 0
    for key, value in leaves(config, ""):
        if key in rows and rows[key]:
            assert json.loads(rows[key].replace("\\|", "|")) == value, key
            checked += 1
    assert checked > 150
