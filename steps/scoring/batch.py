"""Scoring an input batch by batch: answers written in input order, every row not scored named with why.

A row is not scored when the reader cannot read it (an undecodable image, a NaN in a feature column) or
the model refuses it (`refused`: the exception type the model raises for bad input). A batch the model
refuses is scored again row by row, so the refusal names its rows and the rest of the batch is kept.
`on_error="fail"` stops at the first such row (InputRefused naming it); "skip" lists them all in the
Outcome. Nothing is ever dropped without a name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from steps.scoring.readers import Batch, Id, Input
from steps.scoring.writer import ScoresWriter

if TYPE_CHECKING:
    import pandas as pd

OnError = Literal["skip", "fail"]
ANSWER_COLUMNS = ("label", "class_index")
_MESSAGE_CHARS = 300  # MLflow's schema errors can quote the whole batch


class InputRefused(ValueError):
    """A row cannot be scored and errors are not skipped, or no row can be; the message names the row."""


@dataclass
class Outcome:
    scored: int = 0
    errors: list[tuple[Id, str]] = field(default_factory=list)


def score(source: Input, predict: Callable, refused: type[BaseException] | tuple[type[BaseException], ...],
          out: ScoresWriter, on_error: OnError = "fail", advance: Callable[[int], object] = lambda rows: None
          ) -> Outcome:
    """Score every batch of `source` with `predict` into `out`; `advance(rows)` after each batch (a progress bar)."""
    outcome = Outcome()
    for batch in source.batches:
        _record(batch.errors, source, on_error, outcome)
        if batch.data is not None:
            ids, answers, errors = _predict(batch, predict, refused)
            if not ids and len(errors) > 1 and outcome.scored == 0 and len({why for _, why in errors}) == 1:
                # the same refusal of every row of the first batch is the model's answer to the input, not to a row
                raise InputRefused(f"{source.path}: the model refused every row of the first batch alike "
                                   f"({errors[0][1]})")
            _record(errors, source, on_error, outcome)
            if ids:
                out.write(with_ids(ids, answers))
                outcome.scored += len(ids)
        advance(batch.rows)
    return outcome


def _record(errors: list[tuple[Id, str]], source: Input, on_error: OnError, outcome: Outcome) -> None:
    if errors and on_error == "fail":
        row, why = errors[0]
        raise InputRefused(f"{source.path}: {row}: {why} (--on-error skip scores the other rows and lists these)")
    outcome.errors += errors


def _predict(batch: Batch, predict: Callable, refused) -> tuple[list[Id], pd.DataFrame | None, list[tuple[Id, str]]]:
    """(ids scored, their answers, (id, why) refused): the whole batch at once, row by row if the model refuses it."""
    try:
        return batch.ids, _checked(predict(batch.data), len(batch.ids)), []
    except refused:
        pass
    import pandas as pd

    ids, answers, errors = [], [], []
    for i, row_id in enumerate(batch.ids):
        row = batch.data.iloc[[i]] if isinstance(batch.data, pd.DataFrame) else batch.data[i:i + 1]
        try:
            answers.append(_checked(predict(row), 1))
        except refused as err:
            errors.append((row_id, f"refused by the model: {_short(err)}"))
            continue
        ids.append(row_id)
    return ids, (pd.concat(answers, ignore_index=True) if answers else None), errors


def _short(err: BaseException) -> str:
    text = " ".join((getattr(err, "message", None) or str(err)).split())
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "..."


def _checked(answers, rows: int) -> pd.DataFrame:
    """The model's answers, held to the contract: a DataFrame, one row per input row, label and class_index."""
    missing = [c for c in ANSWER_COLUMNS if c not in getattr(answers, "columns", ())]
    if missing or len(answers) != rows:
        raise RuntimeError(f"the model answered {type(answers).__name__} of {len(answers)} rows for {rows} "
                           f"(missing columns {missing}); expected a DataFrame with {list(ANSWER_COLUMNS)} and one "
                           "probability column per class, a row per input row")
    return answers.reset_index(drop=True)


def with_ids(ids: list[Id], answers: pd.DataFrame) -> pd.DataFrame:
    """The output rows: `id` first, then the model's answers as they are."""
    if "id" in answers.columns:
        raise RuntimeError("the model's answers have a column named 'id' (a class named 'id'?), which would "
                           "collide with the input's id column")
    frame = answers.copy()
    frame.insert(0, "id", ids)
    return frame
