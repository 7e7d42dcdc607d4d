"""Provenance: who made an artifact, from what, with which code, where and when.

A record (:func:`record`) holds the rule, wildcards, params, config (and its hash), every input's
path and SHA-256, the code version (git commit + dirty flag), package versions, device, seed,
host, SLURM job id and start/end time. It travels inside the artifact: Parquet schema metadata
key ``widthlab.provenance``, NPZ entry ``provenance``, or a ``<file>.prov.json`` sidecar for any
other file (which also records the file's own hash). :func:`chain` walks a record back to the raw
data; :func:`audit` checks every artifact, its inputs and the code and configs they came from.

Input paths are stored as given (relative paths are relative to the workflow directory, the
working directory of the job). Readers resolve them against the workflow directory, which they
infer from where the artifact now lies and the path it was recorded under, so a results tree
copied elsewhere together with its inputs still checks out.

Modules: :mod:`.environment` (hashes, code, packages, device), :mod:`.records` (records,
sidecars, chains), :mod:`.checks` (the audit), :mod:`.job` (what workflow scripts use). This
package never imports Snakemake.
"""

from widthlab.provenance.checks import (
    Problem,
    Report,
    audit,
    audit_report,
    check_artifact,
    dag_problems,
    study_configfile,
    workflow_problems,
)
from widthlab.provenance.environment import (
    PACKAGES,
    SLURM_VARIABLES,
    _code_version,
    _digest,
    code_version,
    config_hash,
    cpu_model,
    device_info,
    flatten,
    input_entry,
    iso,
    now,
    package_versions,
    sha256_file,
    slurm_info,
)
from widthlab.provenance.job import Job
from widthlab.provenance.records import (
    RECORD_KEY,
    SCHEMA_VERSION,
    SIDECAR_SUFFIX,
    chain,
    read_provenance,
    record,
    sidecar_path,
    workflow_root,
    write_sidecar,
)

__all__ = [
    "PACKAGES",
    "RECORD_KEY",
    "SCHEMA_VERSION",
    "SIDECAR_SUFFIX",
    "SLURM_VARIABLES",
    "Job",
    "Problem",
    "Report",
    "_code_version",
    "_digest",
    "audit",
    "audit_report",
    "check_artifact",
    "dag_problems",
    "study_configfile",
    "workflow_problems",
    "chain",
    "code_version",
    "config_hash",
    "cpu_model",
    "device_info",
    "flatten",
    "input_entry",
    "iso",
    "now",
    "package_versions",
    "read_provenance",
    "record",
    "sha256_file",
    "sidecar_path",
    "slurm_info",
    "workflow_root",
    "write_sidecar",
]
