"""The ``widthlab`` command: ``summary [DIR]``, ``provenance PATH``, ``audit [DIR]``,
``rerun STAGE``, ``plan --configfile X``, ``slurm-check``.

A subcommand is one entry of :data:`COMMANDS`: a help line, a function that adds its arguments
to an ``argparse`` parser, and a handler ``(args) -> exit status``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from widthlab import __version__, headline, provenance, rerun
from widthlab.io import ArtifactError, read_parquet


@dataclass(frozen=True)
class Command:
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ------------------------------------------------------------------------------ provenance


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(started: str | None, ended: str | None) -> str:
    try:
        seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    except (TypeError, ValueError):
        return ""
    return f" ({seconds:.1f} s)"


def describe_step(step: dict) -> list[str]:
    """The lines that show one step of a provenance chain (without indentation)."""
    lines = [step["path"]]
    rec = step["provenance"]
    recorded = step["recorded"] or {}
    if not step["exists"]:
        lines.append("MISSING" + (f" (looked for {step['resolved']})"))
        return lines
    if step.get("changed"):
        lines[0] += f"  CHANGED since it was read ({step['changed']})"
    if step.get("content"):
        lines.append(f"CONTENT CHANGED: {step['content']}")
    if step["error"]:
        lines.append(f"UNREADABLE: {step['error']}")
        return lines
    if rec is None:
        sha = recorded.get("sha256") or provenance.input_entry(step["resolved"])["sha256"]
        lines.append(f"raw file, no provenance; sha256 {sha[:12]}")
        return lines
    wildcards = " ".join(f"{k}={v}" for k, v in (rec.get("wildcards") or {}).items())
    started, ended = rec.get("started"), rec.get("ended")
    lines.append(
        f"rule {rec.get('rule')}{' ' + wildcards if wildcards else ''}, "
        f"{started} → {ended}{_duration(started, ended)}"
    )
    code = rec.get("code") or {}
    dirty = {True: " (dirty)", False: "", None: ""}.get(code.get("dirty"), "")
    device = rec.get("device") or {}
    device_text = device.get("type") or "?"
    if device.get("name"):
        device_text += f" ({device['name']})"
    details = [
        f"code {str(code.get('commit', 'unknown'))[:12]}{dirty}",
        f"device {device_text}",
        f"seed {'-' if rec.get('seed') is None else rec['seed']}",
        f"host {rec.get('host')}",
    ]
    if rec.get("slurm_job_id"):
        details.append(f"slurm job {rec['slurm_job_id']}")
    lines.append(", ".join(details))
    lines.append(f"config {str(rec.get('config_hash'))[:12]}, widthlab {rec.get('widthlab')}")
    inputs = rec.get("inputs") or []
    lines.append(f"inputs ({len(inputs)}):" if inputs else "inputs: none")
    for entry in inputs:
        sha = (entry.get("sha256") or "missing at record time")[:12]
        lines.append(f"  {entry.get('path')}  {sha}  {_size(entry.get('bytes'))}")
    return lines


def run_provenance(args: argparse.Namespace) -> int:
    try:
        steps = provenance.chain(args.path, root=args.root)
    except ArtifactError as error:
        print(f"widthlab provenance: {error}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(steps, sys.stdout, indent=2)
        print()
        return 0
    if steps[0]["provenance"] is None:
        print(f"{args.path}: carries no provenance (a raw file, or written outside widthlab)")
        return 0
    for step in steps:
        depth = step["depth"]
        head, *rest = describe_step(step)
        print(("   " * (depth - 1) + "└─ " if depth else "") + head)
        for line in rest:
            print(" " * (3 * depth + 2) + line)
    return 0


def provenance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="an artifact (Parquet, NPZ, or any file with a .prov.json)")
    parser.add_argument("--json", action="store_true", help="print the chain as JSON")
    parser.add_argument(
        "--root", help="workflow directory for relative input paths (default: inferred)"
    )


# ----------------------------------------------------------------------------------- audit


def _progress(done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        end = "\n" if done == total else ""
        print(f"\rwidthlab audit: {done}/{total} files checked", end=end, file=sys.stderr)


def run_audit(args: argparse.Namespace) -> int:
    show = _progress if sys.stderr.isatty() and not args.json else None
    try:
        report = provenance.audit_report(
            args.directory, root=args.root, allow_mixed=args.allow_mixed, progress=show
        )
    except ArtifactError as error:
        print(f"widthlab audit: {error}", file=sys.stderr)
        return 2
    problems = report.problems
    compared = None
    if not args.no_dag and Path("Snakefile").is_file():
        known = {(p.artifact, p.kind) for p in problems}  # a missing file reported once
        found, compared = provenance.workflow_problems(
            args.directory, args.snakemake, report.run_config()
        )
        problems += [
            p for p in found if not (p.kind == "missing" and (p.artifact, "orphan") in known)
        ]
    if args.json:
        out = {
            "artifacts": report.artifacts,
            "problems": [asdict(p) for p in problems],
            "code_versions": dict(report.code_versions),
            "config_hashes": dict(report.config_hashes),
            "dirty": report.dirty,
            "compared_under": compared,
        }
        json.dump(out, sys.stdout)
        print()
        return 1 if problems else 0
    for problem in problems:
        print(problem.message)
    if report.dirty:
        print(
            f"note: {len(report.dirty)} of {len(report.artifacts)} artifacts were made from a "
            "checkout with uncommitted changes (code " + ", ".join(report.code_versions) + ")"
        )
    if problems:
        artifacts = len({problem.artifact for problem in problems})
        print(f"{len(problems)} problem(s) in {artifacts} of {len(report.artifacts)} artifacts")
    else:
        versions = ", ".join(report.code_versions) or "none"
        print(
            f"{len(report.artifacts)} artifacts, all intact, all inputs match; "
            f"code {versions}; config {', '.join(report.config_hashes) or 'none'}"
            + (f"; the workflow agrees under {compared}" if compared else "")
        )
    return 1 if problems else 0


def audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="results", help="default: results")
    parser.add_argument("--json", action="store_true", help="print artifacts and problems as JSON")
    parser.add_argument(
        "--root", help="workflow directory for relative input paths (default: inferred)"
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="accept artifacts made by several code versions or configs",
    )
    parser.add_argument(
        "--no-dag",
        action="store_true",
        help="skip the comparison with the current workflow (snakemake --summary), which runs "
        "when a Snakefile is in the current directory",
    )
    parser.epilog = (
        "The workflow is compared under the study's config file (config.yaml or the one of "
        "configs/*.yaml whose results folder holds DIRECTORY); arguments after -- go to "
        "snakemake --summary, e.g. -- --configfile x.yaml"
    )


# --------------------------------------------------------------------------------- summary


def run_summary(args: argparse.Namespace) -> int:
    summary = os.path.join(args.directory, "summary")
    combined = os.path.join(summary, "headline.parquet")
    try:
        if os.path.exists(combined):
            table = read_parquet(combined)
        else:  # before the report stage ran: whatever stages have finished
            stages = sorted(glob.glob(os.path.join(summary, "*_headline.parquet")))
            if not stages:
                print(
                    f"widthlab summary: no headline tables under {summary}/ yet; run the "
                    "analysis stages (snakemake --workflow-profile profiles/local)",
                    file=sys.stderr,
                )
                return 2
            table = headline.collect(
                {
                    os.path.basename(p).removesuffix("_headline.parquet"): read_parquet(p)
                    for p in stages
                }
            )
    except (ArtifactError, ValueError) as error:
        print(f"widthlab summary: {error}", file=sys.stderr)
        return 2
    if args.format == "csv":
        table.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(table.to_json(orient="records", indent=2))
    else:
        print(headline.as_text(table))
    return 0


def summary_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="results", help="default: results")
    parser.add_argument("--format", choices=("text", "csv", "json"), default="text")


# --------------------------------------------------------------------------------- publish


def run_publish(args: argparse.Namespace) -> int:
    from widthlab import publish

    if not (args.page or args.readme):
        print("widthlab publish: give --page PATH and/or --readme PATH", file=sys.stderr)
        return 2
    compare = {}
    for item in args.compare:
        label, sep, path = item.partition("=")
        if not sep:
            print(f"widthlab publish: --compare wants LABEL=RESULTS, got {item!r}", file=sys.stderr)
            return 2
        compare[label] = path
    try:
        if args.page:
            intro = open(args.intro).read() if args.intro else ""
            page = publish.study_page(
                args.directory, args.page, args.title, args.figure, intro, compare
            )
            print(f"wrote {page}")
        if args.readme:
            block = publish.findings_block(args.directory, args.title, compare)
            publish.update_block(args.readme, args.block, block)
            print(f"updated the {args.block} block of {args.readme}")
    except (ArtifactError, ValueError, OSError) as error:
        print(f"widthlab publish: {error}", file=sys.stderr)
        return 2
    return 0


def publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", default="results", help="default: results")
    parser.add_argument("--title", default="widthlab study", help="the run's name on the page")
    parser.add_argument("--page", help="write a study page here, e.g. docs/studies/x.md")
    parser.add_argument("--figure", action="append", default=[], help="figures/<this> to show")
    parser.add_argument("--intro", help="a Markdown file whose text opens the page")
    parser.add_argument("--readme", help="replace the marked findings block of this file")
    parser.add_argument("--block", default="findings", help="the block's name (default findings)")
    parser.add_argument(
        "--compare", action="append", default=[], help="LABEL=RESULTS: verdicts side by side"
    )


# ------------------------------------------------------------------------------ slurm-check


def run_slurm_check(args: argparse.Namespace) -> int:
    from widthlab.cluster import slurm_problems

    problems = slurm_problems()
    for problem in problems:
        print(f"widthlab slurm-check: {problem}", file=sys.stderr)
    if not problems:
        print("ready for snakemake --workflow-profile profiles/slurm")
    return 1 if problems else 0


# ---------------------------------------------------------------------------------- rerun


def run_rerun(args: argparse.Namespace) -> int:
    extra = args.snakemake
    listed = subprocess.run(
        ["snakemake", "--rulegraph", *_without_dry_run(extra)],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        print(listed.stdout + listed.stderr, file=sys.stderr)
        return listed.returncode
    rules, edges = rerun.parse_rulegraph(listed.stdout)
    try:
        chosen = rerun.stage_rules(rules, args.stages)
    except ValueError as error:
        print(f"widthlab rerun: {error}", file=sys.stderr)
        return 2
    print(f"widthlab rerun: {' '.join(chosen)}", flush=True)
    status = subprocess.run(rerun.rerun_command(chosen, edges, extra), check=False).returncode
    later = sorted({b for a, b in edges if a in chosen and b not in chosen})
    if status == 0 and later and _without_dry_run(extra) == extra:
        print(
            f"widthlab rerun: done; {' '.join(later)} read these outputs and now run again "
            "with the next plain `snakemake`",
            flush=True,
        )
    return status


def _without_dry_run(extra: list[str]) -> list[str]:
    return [a for a in extra if a not in ("-n", "--dry-run", "--dryrun")]


def rerun_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stages", nargs="+", metavar="STAGE", help="e.g. activations units")
    parser.epilog = "Arguments after -- go to snakemake, e.g. -- --cores 2 --configfile x.yaml"


# ----------------------------------------------------------------------------------- plan


def workflow_root() -> Path:
    """The repository checkout that holds the workflow (Snakefile, rules/, schemas/): the one
    this package was imported from (an editable install), else the current directory."""
    for folder in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (folder / "Snakefile").is_file() and (folder / "schemas").is_dir():
            return folder
    raise FileNotFoundError(
        "needs the repository checkout (Snakefile, rules/, schemas/), and neither this "
        "package's folder nor the current one holds it: an installed wheel has the Python "
        "package only; clone the repository, pip install -e . there, and run from it"
    )


def run_plan(args: argparse.Namespace) -> int:
    from widthlab import plan

    try:
        root = workflow_root()
        studies = []
        for configfile in map(Path, args.configfile):
            jobs = plan.parse_dry_run(plan.dry_run(root, configfile, *args.snakemake))
            studies.append((str(configfile), jobs))
    except (FileNotFoundError, RuntimeError) as error:
        print(f"widthlab plan: {error}", file=sys.stderr)
        return 2
    if len(studies) == 1 and not args.docs:
        name, jobs = studies[0]
        print(f"{name}: {plan.trainings(jobs)} trainings in {len(jobs)} jobs\n")
        print(plan.format_table(plan.plan_rows(jobs)))
        return 0
    table = plan.format_studies(studies)
    print(table)
    if args.docs:
        from widthlab import publish

        publish.update_block(args.docs, "studies", table)
    return 0


def plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--configfile",
        action="append",
        required=True,
        help="a study config; give several for one row per config",
    )
    parser.add_argument(
        "--docs",
        metavar="PATH",
        help="also write the per-config table into the `studies` block of this Markdown file "
        "(docs/running.md), so the study table is generated, never typed",
    )
    parser.epilog = (
        "GPU-hours are the cost model's estimates; requests add cluster.safety. Arguments "
        "after -- go to snakemake, e.g. -- --config device=cpu"
    )


COMMANDS: dict[str, Command] = {
    "summary": Command(
        "print the headline table: each paper's claim, what this run measured, does it hold",
        summary_arguments,
        run_summary,
    ),
    "provenance": Command(
        "print an artifact's provenance chain back to the raw data",
        provenance_arguments,
        run_provenance,
    ),
    "rerun": Command(
        "rerun every rule of the given stages (and only those), e.g. after changing their code",
        rerun_arguments,
        run_rerun,
    ),
    "plan": Command(
        "print every rule's jobs, GPU-hours and largest cluster request for a config",
        plan_arguments,
        run_plan,
    ),
    "slurm-check": Command(
        "check that this machine can run the workflow on SLURM; say what to install if not",
        lambda parser: None,
        run_slurm_check,
    ),
    "audit": Command(
        "check every artifact's own hash, its inputs, code version and config; exit 1 on any "
        "problem",
        audit_arguments,
        run_audit,
    ),
    "publish": Command(
        "write a finished run's headline (and figures) as Markdown, naming its commit and config",
        publish_arguments,
        run_publish,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="widthlab", description="widthlab: the width study's headline, provenance and audit"
    )
    parser.add_argument("--version", action="version", version=f"widthlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tail = argv.index("--") if "--" in argv else len(argv)
    args = build_parser().parse_args(argv[:tail])
    args.snakemake = argv[tail + 1 :]
    try:
        return COMMANDS[args.command].run(args)
    except BrokenPipeError:  # `widthlab provenance x | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
