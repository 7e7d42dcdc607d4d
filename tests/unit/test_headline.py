import math

import pytest

from widthlab import stats
from widthlab.headline import HEADLINE_COLUMNS, claim, headline_table, not_measured, t_interval


def test_t_interval_matches_the_textbook_value():
    # mean 2, sd 1, n 3: half-width t_{0.975, 2} / sqrt(3) with t_{0.975, 2} = 4.302653
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6)
    assert high == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-6)


def test_t_interval_needs_two_finite_values():
    assert all(math.isnan(v) for v in t_interval([1.0, float("nan")]))


def test_headline_rows_keep_the_contract():
    row = claim("P", "claim", "q", "est", stats.SeedValues({0: 0.5, 1: 0.7, 2: 0.6}), 0.0, 1, "d")
    table = headline_table([row, not_measured("P", "c", "q", "no table")])
    assert list(table.columns) == HEADLINE_COLUMNS
    assert table.loc[0, "value"] == pytest.approx(0.6) and table.loc[0, "n"] == 3
    assert table.loc[0, "holds"] == "yes" and table.loc[0, "unit"] == "seeds"
    assert table.loc[1, "holds"] == "n/a" and table.loc[1, "reason"] == "no table"
    with pytest.raises(ValueError, match="unknown"):
        headline_table([{**row, "verdict": "maybe"}])
