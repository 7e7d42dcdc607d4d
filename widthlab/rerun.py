"""`widthlab rerun STAGE…` as one valid Snakemake call: a stage's rules from the rule graph, and
``--forcerun`` of them with ``--until`` naming only the last ones (torch-free)."""

from __future__ import annotations

import re

# A stage whose rules are not all named after it: the cross-paper report is the headline rule
# and the joint analysis; `training` is the training summary (`train` the trainings).
STAGE_ALIASES = {"report": ("headline", "joint")}


def _matches(rule: str, stage: str) -> bool:
    return rule == stage or rule.startswith(f"{stage}_")


def stage_rules(rules: list[str], stages: list[str]) -> list[str]:
    """The rules of ``stages``: a stage's rules are named after it (``units_model_0``,
    ``units_summary``, ``train_pack6_…``); a name that is itself a rule is taken as it is."""
    prefixes = [p for s in stages for p in STAGE_ALIASES.get(s, (s,))]
    unknown = [
        s
        for s in stages
        if not any(_matches(r, p) for r in rules for p in STAGE_ALIASES.get(s, (s,)))
    ]
    if unknown:
        raise ValueError(f"no rules of {unknown} in this workflow; its rules are {sorted(rules)}")
    return [r for r in rules if any(_matches(r, p) for p in prefixes)]


_NODE = re.compile(r"^\s*(\d+)\s*\[\s*label\s*=\s*\"([^\"]+)\"", re.MULTILINE)
_EDGE = re.compile(r"^\s*(\d+)\s*->\s*(\d+)", re.MULTILINE)


def parse_rulegraph(dot: str) -> tuple[list[str], set[tuple[str, str]]]:
    """(rules, {(producer, consumer)}) from the dot text of ``snakemake --rulegraph``."""
    names = {number: label for number, label in _NODE.findall(dot)}
    edges = {(names[a], names[b]) for a, b in _EDGE.findall(dot) if a in names and b in names}
    return list(names.values()), edges


def last_rules(chosen: list[str], edges: set[tuple[str, str]]) -> list[str]:
    """The rules of ``chosen`` whose output no other chosen rule reads: what ``--until`` names.

    Naming a rule and a rule downstream of it together in ``--until`` makes Snakemake stop with
    "BUG: Out of jobs ready to be started"; the last rules alone reach every chosen one."""
    inner = {a for a, b in edges if a in chosen and b in chosen and a != b}
    return [rule for rule in chosen if rule not in inner]


def rerun_command(chosen: list[str], edges: set[tuple[str, str]], extra: list[str]) -> list[str]:
    """One Snakemake call that reruns the jobs of ``chosen`` (and nothing downstream of them)."""
    return ["snakemake", "--forcerun", *chosen, "--until", *last_rules(chosen, edges), *extra]
