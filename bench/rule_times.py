"""Per-rule job times of a finished run, from Snakemake's `benchmark:` files, as a markdown table.

    python bench/rule_times.py [RESULTS]        # default: results

One row per rule: jobs, mean / max / total wall seconds, and the total CPU seconds; the last row
sums every rule. (Wall time of the whole run: `time snakemake --cores 2`.)
"""

import sys
from pathlib import Path

import pandas as pd


def rule_times(results: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(results.glob("benchmarks/*/*.tsv")):
        bench = pd.read_csv(tsv, sep="\t")
        rows.append(
            {"rule": tsv.parent.name, "s": bench["s"].iloc[-1], "cpu": bench["cpu_time"].iloc[-1]}
        )
    if not rows:
        raise SystemExit(f"no benchmark files under {results}/benchmarks/")
    jobs = pd.DataFrame(rows)
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("s", "size"),
        mean_s=("s", "mean"),
        max_s=("s", "max"),
        total_s=("s", "sum"),
        cpu_s=("cpu", "sum"),
    )
    table.loc["all rules"] = [
        table["jobs"].sum(),
        jobs["s"].mean(),
        jobs["s"].max(),
        table["total_s"].sum(),
        table["cpu_s"].sum(),
    ]
    return table


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    table = rule_times(results)
    print("| rule | jobs | mean s | max s | total s | cpu s |")
    print("|---|---|---|---|---|---|")
    for rule, r in table.iterrows():
        numbers = " | ".join(f"{v:.1f}" for v in (r.mean_s, r.max_s, r.total_s, r.cpu_s))
        print(f"| {rule} | {int(r.jobs)} | {numbers} |")


if __name__ == "__main__":
    main()
