"""params.yaml `data:`: where the raw data is and how to read it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from steps.config.base import Section as _Section
from steps.config.base import choice
from steps.sources import CLASSIFY, OPTIONS, READS, SOURCES, TASKS, TOKENIZERS, UNLABELLED, option_help, refusal


class TokenizerTraining(_Section):
    """data.tokenizer.train: a tokenizer trained on the training split (steps/sources/tokens.py)."""

    kind: choice(TOKENIZERS) = Field(description="wordpiece (BERT's recipe) | bpe (RoBERTa's byte-level recipe)")
    vocab_size: int = Field(ge=1, description="the vocabulary's size, special tokens included")


class TokenizerConfig(_Section):
    """data.tokenizer: exactly one of `path` (a saved tokenizer) and `train`."""

    path: str | None = Field(default=None, min_length=1, description="a folder written by save_pretrained "
                             "(holding tokenizer.json), or a tokenizer.json")
    train: TokenizerTraining | None = None

    @model_validator(mode="after")
    def _one_way(self) -> TokenizerConfig:
        if (self.path is None) == (self.train is None):
            raise ValueError("data.tokenizer needs exactly one of path (a saved tokenizer) and train "
                             "({kind: wordpiece | bpe, vocab_size: N})")
        return self


class DataConfig(_Section):
    """Where the raw data is and how to read it (steps/sources/ has one module per source)."""

    source: choice(SOURCES) = Field(default="idx", description="which reader: " + " | ".join(SOURCES))
    path: str = Field(min_length=1, description="the source's folder or file (data.raw_dir is the old name)")
    val_size: int = Field(ge=1, description="training rows (causal_lm: documents) held out for validation")
    val_split: Literal["stratified", "random"] = Field(
        default="stratified", description="stratified per class, or a plain seeded permutation (the pre-16 split)")
    # The keys only some sources read (steps.sources.OPTIONS); defined after `source`, which their check reads.
    image_size: int | None = Field(default=None, ge=1, description=option_help("image_size"))
    channels: Literal["grayscale", "rgb"] | None = Field(default=None, description=option_help("channels"))
    label_column: str | None = Field(default=None, min_length=1, description=option_help("label_column"))
    feature_columns: list[str] | None = Field(default=None, description=option_help("feature_columns"))
    class_names: list[str] | None = Field(default=None, description=option_help("class_names"))
    text_column: str | None = Field(default=None, min_length=1, description=option_help("text_column"))
    max_length: int | None = Field(default=None, ge=1, description=option_help("max_length"))
    tokenizer: TokenizerConfig | None = Field(default=None, description=option_help("tokenizer"))
    task: Literal[CLASSIFY] | choice(TASKS) = Field(
        default=CLASSIFY, description="classify (labelled samples) | causal_lm (documents of the text source, split "
        "by document and packed into data.block_size token blocks: steps/sources/blocks.py)")
    block_size: int | None = Field(default=None, ge=2, description="causal_lm: tokens per block")
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="held out as test when a source has none "
                                 "(causal_lm: a fraction of the documents)")
    train_limit: int | None = Field(default=None, ge=1, description="use only this many training rows (documents)")
    test_limit: int | None = Field(default=None, ge=1, description="use only this many test rows (documents)")

    @model_validator(mode="before")
    @classmethod
    def _raw_dir_is_path(cls, raw: Any) -> Any:
        """`raw_dir` (the key before data sources existed) is read as `path`; when both are given, raw_dir
        wins, so old overrides (-S data.raw_dir=...) keep working. DVC's dependency template reads
        data.path from params.yaml itself, so new projects should write path."""
        if isinstance(raw, dict) and "raw_dir" in raw:
            raw = {**raw, "path": raw["raw_dir"]}
            del raw["raw_dir"]
        return raw

    @field_validator(*OPTIONS)
    @classmethod
    def _read_by_the_source(cls, value: Any, info: ValidationInfo) -> Any:
        """A key the chosen source does not read is refused here, before any work, as a bad key
        (data.<key>: ... naming the source), not when the data stage calls the reader."""
        source = info.data.get("source")  # absent when data.source itself is invalid: that error is reported
        if value is not None and source in READS and info.field_name not in READS[source]:
            raise ValueError(refusal(source, info.field_name))
        return value

    @model_validator(mode="before")
    @classmethod
    def _documents_default_to_bpe(cls, raw: Any) -> Any:
        """causal_lm: data.tokenizer.train.kind defaults to bpe (byte-level: any text, nothing unknown, case
        kept), the usual tokenizer of a language model; classification keeps kind required."""
        if not isinstance(raw, dict) or raw.get("task") != "causal_lm":
            return raw
        tokenizer = raw.get("tokenizer")
        train = tokenizer.get("train") if isinstance(tokenizer, dict) else None
        if isinstance(train, dict) and "kind" not in train:
            return {**raw, "tokenizer": {**tokenizer, "train": {**train, "kind": "bpe"}}}
        return raw

    @model_validator(mode="after")
    def _task_keys(self) -> DataConfig:
        """causal_lm reads documents of the text source into blocks; the keys of labelled samples are refused by
        key, and block_size is refused without it."""
        if self.task == CLASSIFY:
            if self.block_size is not None:
                raise ValueError("data.block_size is for data.task causal_lm (packed token blocks); remove it")
            return self
        if self.source != "text":
            raise ValueError(f"data.task {self.task} reads documents of the text source; data.source is "
                             f"{self.source!r}: use data.source: text")
        for key in UNLABELLED:
            if getattr(self, key) is not None:
                raise ValueError(f"data.{key}: data.task {self.task} reads documents, which have no labels and are "
                                 "packed into data.block_size tokens; remove it")
        missing = [f"data.{k}" for k in ("tokenizer", "block_size") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"data.task {self.task} needs {' and '.join(missing)} (how documents become token ids, "
                             "and how many tokens a block holds)")
        return self

    @model_validator(mode="after")
    def _table_needs_label(self) -> DataConfig:
        if self.source == "table" and self.label_column is None:
            raise ValueError("the table source needs data.label_column (the column holding the labels)")
        if self.source == "text" and self.task == CLASSIFY and (self.tokenizer is None or self.max_length is None):
            missing = " and ".join(f"data.{k}" for k in ("tokenizer", "max_length") if getattr(self, k) is None)
            raise ValueError(f"the text source needs {missing} (how texts become token ids, and how many of them; "
                             "without data.tokenizer, an hf teacher.arch.path's tokenizer is used)")
        return self
