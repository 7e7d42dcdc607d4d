"""The configuration guide (``docs/config.md``), written from the schema alone.

    python -m widthlab.config_doc > docs/config.md

Every key of ``schemas/config.schema.yaml`` gets a row (full key, type, default, description);
a test regenerates the guide and compares, so the schema and the guide cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from widthlab.config import load_schema

HEADER = """# Configuration reference

Every key of the workflow's config, with its type, default and meaning, generated from
`schemas/config.schema.yaml` (the schema is enforced at start-up: an unknown key or a wrong
type stops the run naming the key). Regenerate with
`python -m widthlab.config_doc > docs/config.md`; `tests/unit/test_config_doc.py` fails when
this file and the schema differ. `config.yaml` is the default study; a `--configfile`
replaces it, and the schema fills whatever a config leaves out. `<name>` stands for a name
you choose (a grid, a regime).
"""


def _resolve(schema: Mapping, node: Mapping) -> Mapping:
    """``node`` with a ``$ref`` to ``#/definitions/…`` replaced by its target (own keys win)."""
    if "$ref" not in node:
        return node
    target = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return {**_resolve(schema, target), **{k: v for k, v in node.items() if k != "$ref"}}


def _type(node: Mapping) -> str:
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "anyOf" in node:
        return " or ".join(_type(option) for option in node["anyOf"])
    kind = node.get("type", "object" if "properties" in node else "any")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join("null" if k == "null" else k for k in kinds)
    if "array" in kinds and isinstance(node.get("items"), Mapping):
        text = text.replace("array", f"list of {_type(node['items'])}")
    bounds = [
        f"{symbol} {node[key]}"
        for key, symbol in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if key in node
    ]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _text(value: Any) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def rows(schema: Mapping, node: Mapping, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """(key, type, default, description) of every key under ``node``, depth first."""
    node = _resolve(schema, node)
    for name, child in node.get("properties", {}).items():
        child = _resolve(schema, child)
        key = f"{prefix}{name}"
        nested = "properties" in child or isinstance(child.get("additionalProperties"), Mapping)
        default = "" if nested or "default" not in child else json.dumps(child["default"])
        yield (
            f"`{key}`",
            _text(_type(child)),
            _text(default),
            _text(child.get("description", "")),
        )
        if nested:
            yield from rows(schema, child, f"{key}.")
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping):
        extra = _resolve(schema, extra)
        yield from rows(schema, extra, f"{prefix}<name>.")


def guide(schema: Mapping | None = None) -> str:
    """The Markdown guide: one section per top-level key, one table row per key under it."""
    schema = schema or load_schema()
    parts = [HEADER]
    for name, node in schema["properties"].items():
        node = _resolve(schema, node)
        parts.append(f"## `{name}`\n\n{_text(node.get('description', ''))}".rstrip() + "\n")
        table = ["| key | type | default | description |", "|---|---|---|---|"]
        top = (f"`{name}`", _text(_type(node)), "", "")
        nested = list(rows(schema, node, f"{name}."))
        if not nested:
            default = json.dumps(node.get("default")) if "default" in node else ""
            top = (*top[:2], _text(default), "")
        table += [f"| {' | '.join(row)} |" for row in [top, *nested]]
        parts.append("\n".join(table) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(guide())
