"""The job of a rule as workflow scripts see it: logging to the rule's log file and writing
artifacts with their provenance records."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from widthlab import io
from widthlab.provenance.environment import code_version, flatten, iso, now
from widthlab.provenance.records import RECORD_KEY, record, write_sidecar

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Job:
    """One job of a rule: logs to its log file and writes artifacts with their provenance.

    ``Job.from_snakemake(snakemake)`` in a workflow script; ``Job.standalone(...)`` elsewhere.
    ``inputs`` is a plain list of paths (extend it with files read that the rule does not
    declare, e.g. raw data); ``seed`` and ``device`` may be set once known.
    """

    def __init__(
        self,
        rule: str,
        *,
        wildcards: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        inputs: Any = (),
        outputs: Any = (),
        log_file: str | os.PathLike | None = None,
    ):
        self.rule = rule
        self.wildcards = dict(wildcards or {})
        self.params = dict(params or {})
        self.config = dict(config or {})
        self.inputs: list[str] = flatten(inputs)
        self.outputs: list[str] = flatten(outputs)
        self.log_file = None if log_file is None else os.fspath(log_file)
        self.seed: Any = None
        self.device: Any = None
        self.started = now()
        self.log = logging.getLogger(f"widthlab.job.{rule}")
        self._handler: logging.Handler | None = None
        self._excepthook = None
        if self.log_file is not None:
            self._start_logging()
        wildcards_text = "".join(f" {k}={v}" for k, v in self.wildcards.items())
        self.log.info(
            "rule %s%s on %s, code %s, started %s",
            rule,
            wildcards_text,
            socket.gethostname(),
            code_version()["commit"][:12],
            iso(self.started),
        )

    @classmethod
    def from_snakemake(cls, snakemake: Any) -> Job:
        """From the ``snakemake`` object of a ``script:`` rule (logging → ``snakemake.log[0]``)."""
        logs = flatten(getattr(snakemake, "log", None))
        return cls(
            snakemake.rule,
            wildcards=_named(getattr(snakemake, "wildcards", None)),
            params=_named(getattr(snakemake, "params", None)),
            config=getattr(snakemake, "config", None),
            inputs=getattr(snakemake, "input", ()),
            outputs=getattr(snakemake, "output", ()),
            log_file=logs[0] if logs else None,
        )

    @classmethod
    def standalone(
        cls,
        rule: str,
        inputs: Any = (),
        params: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        wildcards: Mapping[str, Any] | None = None,
        outputs: Any = (),
        log_file: str | os.PathLike | None = None,
    ) -> Job:
        """A job outside Snakemake (CLI, notebooks, tests); logs to ``log_file`` if given."""
        return cls(
            rule,
            wildcards=wildcards,
            params=params,
            config=config,
            inputs=inputs,
            outputs=outputs,
            log_file=log_file,
        )

    # -- logging

    def _start_logging(self) -> None:
        Path(self.log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_LOG_FORMAT))
        handler.setLevel(logging.INFO)
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        self._handler = handler
        previous = sys.excepthook

        def log_then_raise(kind, value, traceback):  # the failure lands in the rule's log too
            self.log.critical("failed", exc_info=(kind, value, traceback))
            handler.flush()
            previous(kind, value, traceback)

        self._excepthook = previous
        sys.excepthook = log_then_raise

    def close(self) -> None:
        """Detach the log file (a script's end does this implicitly)."""
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._excepthook is not None:
            sys.excepthook = self._excepthook
            self._excepthook = None

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- records and writers

    @contextlib.contextmanager
    def for_model(self, model_id: str, inputs: Iterable[str | os.PathLike]) -> Iterator[Job]:
        """Within: records describe one model's share of a job over several models (a pack, a
        stage's job of several models): only ``inputs`` (which must be inputs of the job) and
        ``model`` among the wildcards, so auditing one model's artifacts ignores the others."""
        inputs = flatten(inputs)
        foreign = [path for path in inputs if path not in self.inputs]
        if foreign:
            raise ValueError(f"{foreign} are not inputs of this job of rule {self.rule}")
        saved = self.inputs, self.wildcards
        self.inputs, self.wildcards = inputs, {**self.wildcards, "model": model_id}
        try:
            yield self
        finally:
            self.inputs, self.wildcards = saved

    def record(self, artifact: str | os.PathLike | None = None) -> dict[str, Any]:
        """A fresh record for ``artifact`` (end time now)."""
        return record(
            rule=self.rule,
            wildcards=self.wildcards,
            params=self.params,
            config=self.config,
            inputs=self.inputs,
            outputs=self.outputs,
            seed=self.seed,
            device=self.device,
            started=self.started,
            ended=now(),
            artifact=artifact,
        )

    def _wrote(self, path) -> None:
        self.log.info("wrote %s (%d bytes)", path, os.path.getsize(path))

    def write_parquet(self, df, path: str | os.PathLike) -> None:
        rec = json.dumps(self.record(path))
        io.write_parquet(df, path, {RECORD_KEY: rec})
        self._wrote(path)

    def save_npz(self, path: str | os.PathLike, arrays: Mapping[str, Any], **kwargs) -> None:
        io.save_npz(path, arrays, self.record(path), **kwargs)
        self._wrote(path)

    def save_json(self, path: str | os.PathLike, obj: Any) -> None:
        io.save_json(path, obj)
        self.sidecar(path)

    def save_torch(self, obj: Any, path: str | os.PathLike) -> None:
        import torch

        with io.atomic_path(path) as tmp:
            torch.save(obj, tmp)
        self.sidecar(path)

    def save_figure(self, fig, path: str | os.PathLike, dpi: int = 150) -> None:
        """``fig`` as PNG (or the format of the suffix) at ``dpi``; the figure is closed."""
        import matplotlib.pyplot as plt

        kind = Path(path).suffix.lstrip(".") or "png"
        try:
            with io.atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=dpi, format=kind, bbox_inches="tight")
        finally:
            plt.close(fig)
        self.sidecar(path)

    def sidecar(self, path: str | os.PathLike) -> Path:
        """Record ``path`` (written by other code) in ``<path>.prov.json``."""
        target = write_sidecar(path, self.record(path))
        self._wrote(path)
        return target


def _named(namedlist: Any) -> dict[str, Any]:
    """The named entries of a Snakemake Namedlist (or any mapping / object with ``items()``)."""
    if namedlist is None:
        return {}
    if isinstance(namedlist, Mapping):
        return dict(namedlist)
    items = getattr(namedlist, "items", None)
    return dict(items()) if callable(items) else {}
