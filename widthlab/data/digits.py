"""scikit-learn's 8×8 digits (bundled with scikit-learn; split 80/20, stratified, seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from widthlab.data.raw import SPLIT, Raw, random_stream


def load_digits(seed: int) -> Raw:
    """The 1,797 digits (1 × 8 × 8, values 0..16), split 80/20 stratified by the seed's stream."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # 1797 × 1 × 8 × 8, values 0..16
    y = bunch.target.astype(np.int64)
    split = int(random_stream(seed, SPLIT).integers(2**31 - 1))
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=split
    )
    return Raw(x_train, y_train, x_test, y_test, [str(c) for c in range(10)])


def digits_files() -> list[str]:
    """The file scikit-learn reads the digits from (for provenance), if it is there."""
    import sklearn.datasets

    bundled = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    return [str(bundled)] if bundled.is_file() else []
