"""params.yaml for an hf model: `{name: hf, config: {model_type: bert, ...}}` or `{name: hf, path: DIR}` (torch-free).

`config` holds the keys of a `transformers` config (`model_type` and the sizes); the data's manifest fills
the rest (num_labels from its classes, vocab_size and pad_token_id from its tokenizer, and
max_position_embeddings at least its max_length), so those keys are refused here rather than silently
overridden. `path` names a local folder written by `save_pretrained` (config.json and model.safetensors);
families/hf/model.py loads it offline, safetensors only, never running the folder's code.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from steps.compression.families.config import ArchSettings

FROM_DATA = ("num_labels", "id2label", "label2id", "vocab_size", "pad_token_id")
"""Config keys the data decide: the classes and the tokenizer's vocabulary and padding id (the manifest's)."""
REMOTE_CODE = "auto_map"
"""The config key that points transformers at Python files shipped with a model: never run here."""


class HFConfig(ArchSettings):
    """A transformers model, built from `config` or loaded from `path`: an AutoModelForSequenceClassification on
    labelled texts, an AutoModelForCausalLM on documents (data.task causal_lm)."""

    name: Literal["hf"]
    config: dict[str, Any] | None = Field(default=None, description="transformers config keys: model_type "
                                          "(bert, roberta, distilbert, ...) and its sizes; or neither this nor "
                                          "path, for a teacher from teacher.init")
    path: str | None = Field(default=None, min_length=1, description="a local save_pretrained folder "
                             "(config.json + model.safetensors), relative to the project root or absolute")
    gguf_file: str | None = Field(default=None, min_length=1, description="a GGUF file inside path to load "
                                  "(a causal LM packaged for llama.cpp): transformers dequantises it to float, and "
                                  "every checkpoint after is safetensors")

    saves_directory: ClassVar[bool] = True
    """Its checkpoint is a save_pretrained folder, not a .safetensors file with a .json spec beside it."""
    reads_text: ClassVar[bool] = True
    budget_ranks_by_transformer: ClassVar[bool] = True

    @model_validator(mode="after")
    def _one_source(self) -> HFConfig:
        if self.config is not None and self.path is not None:
            raise ValueError("an hf arch needs exactly one of config ({model_type: bert, hidden_size: ..., ...}) "
                             "and path (a save_pretrained folder)")
        if self.config is not None:
            _check_config(self.config)
        if self.gguf_file is not None and (self.path is None or "/" in self.gguf_file or "\\" in self.gguf_file):
            raise ValueError(f"gguf_file {self.gguf_file!r} names a file inside path (the folder that holds it, "
                             "with its name alone here)")
        return self

    @property
    def sourced(self) -> bool:
        """Whether it says where the model comes from (config or path); a teacher may leave both to teacher.init
        (a registered hf model), a student may not (steps/config/models.py, distill.py check)."""
        return self.config is not None or self.path is not None

    @property
    def files(self) -> tuple[str, ...]:
        """The save_pretrained folder the model is loaded from, when `path` names one."""
        return (self.path,) if self.path else ()

    def spec_fields(self, root) -> dict[str, Any]:
        """ModelSpec's names for these settings; `path` resolved against the project root."""
        from pathlib import Path

        path = None if self.path is None else str(Path(root) / self.path)  # an absolute path stays itself
        return {"name": self.name, "hf_config": dict(self.config or {}), "hf_path": path, "hf_gguf_file": self.gguf_file}


def _check_config(config: dict[str, Any]) -> None:
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ValueError("an hf config needs model_type (bert, roberta, distilbert, ...)")
    if REMOTE_CODE in config:
        raise ValueError(f"an hf config may not hold {REMOTE_CODE} (code shipped with a model is never run)")
    from_data = sorted(set(config) & set(FROM_DATA))
    if from_data:
        raise ValueError(f"hf config keys {from_data} come from the data (the manifest's classes and tokenizer): "
                         "remove them")
