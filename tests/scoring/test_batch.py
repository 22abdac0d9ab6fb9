"""The scoring loop: answers in input order with their ids, and a batch the model refuses split into its rows,
so the refused ones are named and the others kept (skip) or the run stops at the first (fail)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steps.scoring.batch import InputRefused, score
from steps.scoring.readers import Batch, Input
from steps.scoring.writer import ScoresWriter


class Refused(ValueError):
    pass


def predict(batch: np.ndarray) -> pd.DataFrame:
    """A stand-in for the model: refuses rows holding a negative value, answers the row's first value."""
    if (batch < 0).any():
        raise Refused(f"negative values in {len(batch)} rows")
    first = batch[:, 0]
    return pd.DataFrame({"label": np.where(first > 5, "big", "small"), "class_index": (first > 5).astype(int),
                         "small": (first <= 5).astype(float), "big": (first > 5).astype(float)})


def source(*batches: Batch) -> Input:
    return Input(path="rows.npz", what="rows", total=sum(b.rows for b in batches), batches=iter(batches))


def rows(*values: float) -> np.ndarray:
    return np.array([[v] for v in values])


def run(tmp_path, src, on_error):
    advanced = []
    with ScoresWriter(tmp_path / "out.csv") as out:
        outcome = score(src, predict, Refused, out, on_error, advance=advanced.append)
        out.commit()
    return outcome, pd.read_csv(tmp_path / "out.csv"), advanced


def test_answers_follow_the_input_order_with_their_ids(tmp_path):
    src = source(Batch([0, 1], rows(1, 9)), Batch([2], rows(7), [(3, "unreadable")]))
    outcome, written, advanced = run(tmp_path, src, "skip")
    assert written["id"].tolist() == [0, 1, 2] and written["label"].tolist() == ["small", "big", "big"]
    assert outcome.scored == 3 and outcome.errors == [(3, "unreadable")] and advanced == [2, 2]


def test_a_refused_batch_is_scored_row_by_row_and_the_refused_row_named(tmp_path):
    outcome, written, _ = run(tmp_path, source(Batch(["a", "b", "c"], rows(1, -1, 9))), "skip")
    assert written["id"].tolist() == ["a", "c"] and written["class_index"].tolist() == [0, 1]
    assert outcome.errors == [("b", "refused by the model: negative values in 1 rows")]


def test_fail_stops_at_the_first_row_not_scored_naming_it(tmp_path):
    with pytest.raises(InputRefused, match=r"rows.npz: b: refused by the model: negative values"):
        run(tmp_path, source(Batch(["a", "b"], rows(1, -1))), "fail")
    with pytest.raises(InputRefused, match=r"rows.npz: x.png: not a readable image"):
        run(tmp_path, source(Batch(["a"], rows(1), [("x.png", "not a readable image")])), "fail")
    assert not (tmp_path / "out.csv").exists()


def test_every_row_of_the_first_batch_refused_alike_is_the_models_answer_to_the_input(tmp_path):
    with pytest.raises(InputRefused, match="refused every row of the first batch alike"):
        run(tmp_path, source(Batch([0, 1, 2], rows(-1, -2, -3)), Batch([3], rows(1))), "skip")
