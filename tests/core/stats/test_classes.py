"""steps/core/stats/classes.py: recall per class by hand, and the per-class intervals against published values."""

from __future__ import annotations

import numpy as np
import pytest

from steps.core.stats import classes as stats

# --- per-class recall ------------------------------------------------------------------------------------


def test_per_class_recall_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    recall = stats.per_class_recall(y_true, y_pred, num_classes=4)
    np.testing.assert_allclose(recall[:3], [2 / 3, 1 / 2, 1.0])
    assert np.isnan(recall[3])  # class 3 never occurs in y_true


@pytest.mark.parametrize(("y_true", "y_pred", "message"), [
    (np.array([0, 1, 4]), np.array([0, 1, 2]), "outside"),
    (np.array([0, 1, 2]), np.array([0.0, 1.0, 2.0]), "integer"),
    (np.array([0, 1, 2]), np.array([0, 1]), "same shape"),
])
def test_per_class_recall_rejects_bad_labels(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        stats.per_class_recall(y_true, y_pred, num_classes=4)


def test_wilson_and_newcombe_against_published_values():
    """Newcombe (1998), Stat Med 17:873, table II: 56/70 vs 48/80 -> 95% CI of the difference 0.0524 to 0.3339;
    Wilson for 81/263 at 95%: 0.2553 to 0.3662 (his table I)."""
    low, high = stats.wilson_interval(81, 263, 0.95)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # equal n only: his exact counts are used below
    [drop] = stats.class_drops_unpaired([56 / 70], [48 / 80], [70], ["a"], 0.95)
    assert drop.drop_pt == pytest.approx(20.0)
    r_low, _ = stats.wilson_interval(56, 70, 0.95)
    _, c_high = stats.wilson_interval(48, 80, 0.95)
    newcombe_low = 0.2 - ((0.8 - r_low) ** 2 + (c_high - 0.6) ** 2) ** 0.5
    assert round(newcombe_low, 4) == 0.0524
    [perfect] = stats.class_drops_unpaired([1.0], [11 / 16], [16], ["x"], 0.9)  # Wald's interval collapses at 1.0
    assert 0 < perfect.drop_low_pt < perfect.drop_pt
