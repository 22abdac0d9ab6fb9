"""A caller's raw texts -> the token ids and attention mask the model's ONNX graph takes, or an InputError naming
what is wrong.

Texts: a list of strings (or one string), a 1-D array or Series of strings, or a table with the contract's
text column first (MLflow passes a model only a table's first column, see table_column). Tokenised by
the `tokenizers` library with the version's own tokenizer.json, exactly as the data stage tokenised the
splits (steps/sources/tokens.py: truncated on the right, padded to max_length with the pad token, so
even a short text costs max_length tokens: the served model computes what was evaluated, to the last
bit). No torch, no transformers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from .contract import Contract
from .inputs import InputError

ONNX_INPUTS = ("input_ids", "attention_mask")


BLANK, MISSING = "blank", "a missing value"


def problem_of(text) -> str | None:
    """Why the model refuses one text: MISSING, "a <type>" for a value that is not a string, BLANK for
    whitespace only; None for a text it takes (the served model and batch scoring judge texts alike)."""
    if not isinstance(text, str):
        missing = text is None or (isinstance(text, float) and np.isnan(text))
        return MISSING if missing else f"a {type(text).__name__}"
    return BLANK if not text.strip() else None


def check_strings(values: list, noun: str, wanted: str) -> None:
    """InputError naming the first of `values` that is missing, blank or not a string (`noun` i: what it holds;
    `wanted`: what the model takes instead)."""
    for i, text in enumerate(values):
        problem = problem_of(text)
        if problem == BLANK:
            raise InputError(f"{noun} {i}: empty (only whitespace); {wanted}")
        if problem is not None:
            raise InputError(f"{noun} {i}: expected a string, got {problem}")


def texts(data, contract: Contract) -> list[str]:
    """The texts of `data`, each a non-blank string; InputError naming the column, the row and what it holds."""
    column = text_values(data, contract)
    check_strings(column, "text", "the model takes texts with words in them")
    if not column:
        raise InputError("empty batch: no texts to score")
    return column


def text_values(data, contract: Contract) -> list:
    """The raw values of the texts column, or of the list/array/Series sent in its place."""
    if isinstance(data, pd.DataFrame):
        return table_column(data, contract).tolist()
    values = sequence_values(data, "texts")
    if values is None:
        raise InputError(f"expected a list of strings or a table with the column {contract.text_column!r}, "
                         f"got {type(data).__name__}")
    return values


def sequence_values(data, noun: str) -> list | None:
    """One string, a list or tuple, a Series or a 1-D array as a list of its values; None for anything else (a
    table is read by its column). InputError for an array of more dimensions, naming `noun`."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, pd.Series | list | tuple):
        return list(data)
    if isinstance(data, np.ndarray):
        if data.ndim != 1:
            raise InputError(f"{noun} of shape {tuple(data.shape)}: expected a list of strings (one dimension)")
        return data.tolist()
    return None


def table_column(frame: pd.DataFrame, contract: Contract) -> pd.Series:
    """The contract's text column, or the one column a list of strings becomes (named 0).

    MLflow's signature for texts is one unnamed string column, the only kind that takes a bare list of
    strings; it hands the model a table's first column alone. So a table whose first column is not the
    text column arrives as that other column, and is refused naming both rather than scored.
    """
    names = [str(c) for c in frame.columns]
    if contract.text_column in names:
        return frame[frame.columns[names.index(contract.text_column)]]
    if len(names) == 1 and isinstance(frame.columns[0], int | np.integer):
        return frame.iloc[:, 0]
    raise InputError(f"missing the text column {contract.text_column!r}: the model received the column(s) {names} "
                     f"(a table's first column is what it reads: send the texts as a list, or as a table whose "
                     f"first column is {contract.text_column!r})")


class TextEncoder:
    """The version's tokenizer.json, set to truncate and pad as the data stage did: raw texts -> ONNX feeds."""

    def __init__(self, tokenizer_file: Path, contract: Contract) -> None:
        from tokenizers import Tokenizer

        digest = hashlib.sha256(Path(tokenizer_file).read_bytes()).hexdigest()
        if digest != contract.tokenizer_sha256:
            raise ValueError(f"{tokenizer_file}: sha256 {digest}, but the model's contract was made with the tokenizer "
                             f"of sha256 {contract.tokenizer_sha256}: the token ids would mean other words")
        self.contract = contract
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(contract.max_length)
        self.tokenizer.enable_padding(length=contract.max_length, pad_id=contract.pad_id,
                                      pad_token=contract.pad_token)

    def __call__(self, data) -> dict[str, np.ndarray]:
        """{"input_ids", "attention_mask"}: int64 (N, max_length) for the texts of `data`."""
        encodings = self.tokenizer.encode_batch(texts(data, self.contract))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return dict(zip(ONNX_INPUTS, (ids, mask), strict=True))
