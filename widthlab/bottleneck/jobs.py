"""Which jobs the bottleneck stage runs and exactly which settings each depends on.

Read by ``rules/bottleneck.smk`` while the DAG is built, so this module stays free of torch.
"""

from __future__ import annotations

from collections.abc import Mapping

from widthlab.bottleneck.settings import REGIME_DEFAULTS
from widthlab.sizes import bottleneck_index

# the section's keys every job of a regime depends on (a regime may override some)
_SHARED = (
    "dataset",
    "n_train",
    "n_test",
    "depth",
    "sigma_w2",
    "sigma_b2",
    "lr",
    "lr_fraction",
    "steps",
    "threshold_fraction",
    "seeds",
    "kernel_subset",
    "curve_points",
)
#: the section's keys only the summary (the headline rows) depends on
SUMMARY_KEYS = ("bottlenecks", "primary_k", "change_tolerance", "regimes", "linear")


def _check_regime(section: Mapping, regime: str) -> None:
    if regime not in section["regimes"]:
        raise KeyError(f"analyses.bottleneck.regimes has no regime {regime!r}")


def job_names(section: Mapping, regime: str) -> list[str]:
    """The jobs of one regime: ``ntk``, one ``w<width>`` per width (bottleneck nets for every
    k, and the no-bottleneck net where width ≤ ``finite_max_width``) and ``limit`` (the
    infinitely wide encoder) when ``limit_decoder_width`` > 0."""
    _check_regime(section, regime)
    names = ["ntk", *(f"w{int(w)}" for w in section["widths"])]
    return names + (["limit"] if section.get("limit_decoder_width") else [])


def job_settings(section: Mapping, regime: str, job: str) -> dict:
    """Exactly the settings one job depends on (so that Snakemake reruns only what changed);
    :meth:`widthlab.bottleneck.settings.JobSettings.from_dict` reads them."""
    _check_regime(section, regime)
    spec = {**REGIME_DEFAULTS, **section["regimes"][regime]}
    settings = {key: spec.get(key, section.get(key)) for key in _SHARED}
    settings.update(regime=regime, **{k: spec[k] for k in REGIME_DEFAULTS})
    ks = [int(k) for k in spec.get("bottlenecks", section["bottlenecks"])]
    if job == "ntk":
        return settings
    if job == "limit":
        if bottleneck_index(int(settings["depth"])) < 1:
            raise ValueError(
                f"analyses.bottleneck: regime {regime!r} has depth {settings['depth']}: the "
                "infinitely wide encoder needs depth ≥ 2 (or set limit_decoder_width: 0)"
            )
        return {**settings, "bottlenecks": ks, "decoder_width": int(section["limit_decoder_width"])}
    if job.startswith("w") and job[1:].isdigit():
        width = int(job[1:])
        finite = bool(section.get("finite_max_width")) and width <= section["finite_max_width"]
        return {**settings, "bottlenecks": ks, "width": width, "finite": finite}
    raise ValueError(f"unknown bottleneck job {job!r}: expected ntk, limit or w<width>")


def linear_settings(section: Mapping) -> dict:
    """The deep linear study's settings (``analyses.bottleneck.linear``, without ``enabled``)."""
    return {k: v for k, v in section["linear"].items() if k != "enabled"}


def summary_settings(section: Mapping) -> dict:
    """What the summary's headline rows depend on (declared k, tolerance, the regimes)."""
    return {key: section[key] for key in SUMMARY_KEYS if key in section}
