# widthlab: what does making a neural network wider do to what it learns?
# One DAG: data → train → activations → analyses (one rules/<stage>.smk each) → report.
from snakemake.utils import min_version

min_version("9.0")


# A --configfile replaces config.yaml instead of merging into it: every config file describes a
# whole study, and the schema fills what it leaves out.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/activations.smk"
include: "rules/similarity.smk"
include: "rules/units.smk"
include: "rules/clones.smk"
include: "rules/transfer.smk"
include: "rules/bottleneck.smk"
include: "rules/report.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),
