"""The similarity stage's vocabulary (torch-free): estimator codes and their readable names."""

from __future__ import annotations

#: an estimator code with this suffix is the same estimator on layers whose first principal
#: component was removed (Nguyen et al.: removing PC1 removes the block)
PC1_REMOVED_SUFFIX = "_pc1_removed"

ESTIMATOR_NAMES = {
    "linear": "linear CKA, biased HSIC (rises with width on its own)",
    "debiased": "linear CKA, unbiased HSIC₁ on all probe examples",
    "minibatch": "linear CKA, minibatch-accumulated unbiased HSIC₁",
    "rbf": "RBF CKA, biased HSIC",
}


def estimator_name(estimator: str) -> str:
    """A readable description of an estimator code (``<est>_pc1_removed`` included)."""
    base = estimator.removesuffix(PC1_REMOVED_SUFFIX)
    name = ESTIMATOR_NAMES.get(base, base)
    return f"{name}, PC1 removed from every layer" if estimator != base else name
