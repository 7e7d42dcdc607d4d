"""Chunk accuracy, three methods, on the train and test splits.

``head``: the trained head restricted to the chunk's columns plus the full bias,
logits = H[:, c] W[:, c]ᵀ + b (the paper's measure, no retraining, no rescaling).
``head_rescaled``: the same with the chunk's term multiplied by W / w (bias unscaled): the right
normalisation if the full logit is a sum over W / w equivalent clones.
``readout``: a retrained multinomial logistic regression on the chunk's standardised units
(standardised with train statistics), fitted on train, scored on train and test (weakly
regularised, C = ``readout_c``, so that separable chunks reach zero training error). Readouts
are the costly estimator (one lbfgs fit per chunk), so fewer chunks get one; the heads are
evaluated for all chunks of a size at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from widthlab.clones.chunks import chunk_blocks
from widthlab.clones.tensors import ArrayLike, as_float64, as_labels, as_numpy64


def head_accuracy(
    h: ArrayLike,
    y: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    rescale: bool = False,
    device=None,
) -> np.ndarray:
    """Accuracy of the trained head restricted to each chunk (plus the full bias).

    ``rescale``: multiply the chunk's contribution by W / w (the bias is not rescaled).
    """
    plain, rescaled = head_accuracies(h, y, weight, bias, chunks, device)
    return rescaled if rescale else plain


def head_accuracies(
    h: ArrayLike,
    y: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """(restricted head, rescaled head) accuracy of each chunk, from one batched product per
    block of equal-size chunks (the chunk's logits are computed once for both)."""
    h, w, y = as_float64(h, device), as_float64(weight, device), as_labels(y, device)
    b = as_float64(bias, device).reshape(-1)
    width = h.shape[1]
    h_t = h.T.contiguous()  # W × n: gathering rows is cheap
    plain, rescaled = np.empty(len(chunks)), np.empty(len(chunks))
    for positions, block in chunk_blocks(chunks, lambda size: size * h.shape[0]):
        idx = torch.as_tensor(block, device=h.device)
        logits = torch.bmm(w[:, idx].permute(1, 0, 2), h_t[idx])  # k × C × n
        # classes last and contiguous: the same values, but argmax over a contiguous axis is
        # several times faster than over the strided middle one
        logits = logits.transpose(1, 2).contiguous()  # k × n × C
        for out, factor in ((plain, None), (rescaled, width / idx.shape[1])):
            scores = (logits if factor is None else logits * factor) + b
            hits = (scores.argmax(dim=2) == y[None, :]).double().mean(dim=1)
            out[positions] = hits.cpu().numpy()
    return plain, rescaled


def fit_logistic(
    x: np.ndarray, y: np.ndarray, c: float = 100.0, max_iter: int = 200, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with an unpenalised intercept, (weight D×K, bias K) for
    the classes 0..K-1, K = max(y) + 1: scikit-learn's ``LogisticRegression(C=c)`` objective
    with its lbfgs settings, (1/n) Σ cross-entropy + ‖W‖² / (2 C n), scipy's L-BFGS-B from zero
    with gtol = ``tol`` — written out so that a per-model job need not import scikit-learn."""
    from scipy.optimize import minimize

    n, d = x.shape
    k = int(y.max()) + 1
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    strength = 1.0 / (c * n)

    def loss_grad(params):
        weight, bias = params[: d * k].reshape(d, k), params[d * k :]
        z = x @ weight + bias
        z -= z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        prob = np.exp(z - lse[:, None])
        loss = (lse.sum() - (z * onehot).sum()) / n + 0.5 * strength * (weight * weight).sum()
        diff = (prob - onehot) / n
        grad = np.concatenate([(x.T @ diff + strength * weight).ravel(), diff.sum(axis=0)])
        return loss, grad

    options = {"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps}
    result = minimize(loss_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options=options)
    return result.x[: d * k].reshape(d, k), result.x[d * k :]


def readout_accuracy(
    h_train: ArrayLike,
    y_train: ArrayLike,
    h_test: ArrayLike,
    y_test: ArrayLike,
    chunks: np.ndarray | Sequence[Sequence[int]],
    c: float = 100.0,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test accuracy of a multinomial logistic regression refitted on each chunk
    (:func:`fit_logistic`, i.e. scikit-learn's ``LogisticRegression(C=c)`` with lbfgs).

    Units are standardised with train statistics (constant units are left at zero). A
    single-class training set predicts that class.
    """
    from threadpoolctl import threadpool_limits

    h_train = as_numpy64(h_train)
    h_test = as_numpy64(h_test)
    y_train = np.asarray(y_train).reshape(-1)
    y_test = np.asarray(y_test).reshape(-1)
    train_acc = np.empty(len(chunks))
    test_acc = np.empty(len(chunks))
    classes, codes = np.unique(y_train, return_inverse=True)
    # one BLAS thread: these fits are small, and threaded BLAS on them is many times slower (and
    # oversubscribes the cores that parallel jobs share); entering threadpool_limits scans the
    # loaded libraries (tens of ms), so it is entered once for all chunks
    with threadpool_limits(1):
        for k, chunk in enumerate(chunks):
            chunk = np.asarray(chunk)
            x_tr, x_te = h_train[:, chunk], h_test[:, chunk]
            mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
            std = np.where(std > 0, std, 1.0)
            x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
            if classes.size < 2:
                train_acc[k] = np.mean(y_train == classes[0])
                test_acc[k] = np.mean(y_test == classes[0])
                continue
            weight, bias = fit_logistic(x_tr, codes, c, max_iter)
            train_acc[k] = np.mean(classes[(x_tr @ weight + bias).argmax(axis=1)] == y_train)
            test_acc[k] = np.mean(classes[(x_te @ weight + bias).argmax(axis=1)] == y_test)
    return train_acc, test_acc
