"""The registered language model as MLflow serves it: prompt strings in, the generated continuations out.

It loads the version's save_pretrained folder (HF_ARTIFACT: config.json, model.safetensors, tokenizer.json) with
stock transformers, offline and without code shipped with the model, and continues each prompt by the loop the
evaluation ran (steps/compression/generation.py, carried beside this package in the version's code/ folder), so
the served text is the evaluated text. Logged as MLflow "models from code" (generator_entry.py), so loading it
unpickles nothing.

The one served module that needs torch: a causal LM decodes token by token with a KV cache, which no ONNX graph
here does. It imports torch only when it loads a model, and no other served module imports it, so the
classifier's files stay torch-free.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema

from .classifier import HF_ARTIFACT
from .inputs import InputError
from .texts import check_strings, sequence_values

TOKENIZER_FILE = "tokenizer.json"
THREADS_VARIABLE = "SHRINKFLOW_TORCH_THREADS"
"""The torch threads a served model computes with (default 1: a server runs several workers side by side)."""
DEFAULTS = {"max_new_tokens": 32, "temperature": 0.0, "seed": 0}
"""params a request leaves out: 32 new tokens, greedy (temperature 0), seed 0 (read only when sampling)."""
COLUMNS = ("prompt", "generated")


def signature() -> ModelSignature:
    """One unnamed string column in (the one schema under which MLflow takes a bare list of strings as well as a
    table, see steps/tracking/models.py: signature), prompt and generated text out, and the three params with
    their defaults, which MLflow fills in when a request leaves them out."""
    types = {"max_new_tokens": DataType.long, "temperature": DataType.double, "seed": DataType.long}
    return ModelSignature(inputs=Schema([ColSpec(DataType.string)]),
                          outputs=Schema([ColSpec(DataType.string, name) for name in COLUMNS]),
                          params=ParamSchema([ParamSpec(name, types[name], DEFAULTS[name]) for name in DEFAULTS]))


class TextGenerator(mlflow.pyfunc.PythonModel):
    """A pyfunc model: `predict(prompts, params={"max_new_tokens", "temperature", "seed"}) -> DataFrame` with the
    columns prompt and generated (the new text only)."""

    # The signature is given when logging (signature() above): MLflow's type-hint inference does not apply.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        folder = Path(context.artifacts[HF_ARTIFACT])
        self.model, self.tokenizer = load_folder(folder)
        self.generate = _generate_function()

    def predict(self, context, model_input, params=None):
        try:
            prompts = prompts_of(model_input)
        except InputError as err:
            raise MlflowException.invalid_parameter_value(f"{err} (the model takes a list of prompt strings)")
        max_new_tokens, temperature, seed = settings(params)
        self.check_lengths(prompts, max_new_tokens)
        eos_id = stop_token(self.model.config.eos_token_id)
        generated = self.generate(self.model, self.tokenizer, prompts, max_new_tokens, temperature=temperature,
                                  seed=seed, eos_id=eos_id)
        return pd.DataFrame({"prompt": prompts, "generated": generated}, columns=list(COLUMNS))

    def check_lengths(self, prompts: list[str], max_new_tokens: int) -> None:
        """Refuse, naming the prompt, one that encodes to no tokens or whose tokens and max_new_tokens pass the
        positions the model was built for (its outputs there mean nothing), before generating anything."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        for i, prompt in enumerate(prompts):
            count = len(self.tokenizer.encode(prompt, add_special_tokens=False).ids)
            if count == 0:
                raise MlflowException.invalid_parameter_value(f"prompt {i} ({prompt!r}) encodes to no tokens")
            if limit is not None and count + max_new_tokens > limit:
                raise MlflowException.invalid_parameter_value(
                    f"prompt {i}: {count} tokens + params.max_new_tokens {max_new_tokens} = "
                    f"{count + max_new_tokens} positions, past the model's max_position_embeddings {limit}; "
                    f"shorten the prompt or ask for at most {limit - count} new tokens")


def load_folder(folder: Path):
    """(model, tokenizer) of a save_pretrained folder: stock AutoModelForCausalLM from safetensors, offline, no code
    shipped with the model run; the `tokenizers` library's own reader for tokenizer.json. Torch threads from
    SHRINKFLOW_TORCH_THREADS (default 1)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: it reads the switch once
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads(os.environ.get(THREADS_VARIABLE)))
    if not (folder / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(f"{folder}: no {TOKENIZER_FILE}; the served language model needs the tokenizer "
                                "saved beside its weights")
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.no_truncation()  # as generation encodes, so check_lengths counts the tokens it will see
    tokenizer.no_padding()
    return model.eval(), tokenizer


def threads(value: str | None) -> int:
    """The torch thread count SHRINKFLOW_TORCH_THREADS asks for; 1 when unset; ValueError naming it otherwise."""
    if value is None or not value.strip():
        return 1
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_VARIABLE}={value!r}: expected a whole number of threads >= 1")
    return int(value)


def prompts_of(data) -> list[str]:
    """The prompts of `data`: one string, a list or tuple, a 1-D array, a Series, or a table whose first column
    holds them (MLflow hands a model only a table's first column under this signature); InputError naming the row
    that is missing, blank or not a string."""
    values = _values(data)
    if not values:
        raise InputError("empty batch: no prompts to continue")
    check_strings(values, "prompt", "the model continues prompts with words in them")
    return values


def _values(data) -> list:
    if isinstance(data, pd.DataFrame):
        if len(data.columns) != 1:
            raise InputError(f"a table of the column(s) {[str(c) for c in data.columns]}: expected one column "
                             "of prompts")
        return data.iloc[:, 0].tolist()
    values = sequence_values(data, "prompts")
    if values is None:
        raise InputError(f"expected a list of prompt strings, got {type(data).__name__}")
    return values


def settings(params: dict | None) -> tuple[int, float, int]:
    """(max_new_tokens, temperature, seed) from a request's params, DEFAULTS for those left out; an
    invalid_parameter_value naming the param and its value otherwise (MLflow checks the types against the
    signature when serving; a direct call to predict is checked here)."""
    given = {**DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}}
    max_new_tokens, temperature, seed = given["max_new_tokens"], given["temperature"], given["seed"]
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise MlflowException.invalid_parameter_value(
            f"params.max_new_tokens {max_new_tokens!r}: expected a whole number >= 1")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float | np.number) \
            or not math.isfinite(temperature) or temperature < 0:
        raise MlflowException.invalid_parameter_value(
            f"params.temperature {temperature!r}: expected a number >= 0 (0: greedy)")
    if not _is_int(seed) or seed < 0:
        raise MlflowException.invalid_parameter_value(f"params.seed {seed!r}: expected a whole number >= 0")
    return int(max_new_tokens), float(temperature), int(seed)


def stop_token(eos) -> int | None:
    """The config's eos_token_id as the one stop token generation takes: the first of a list (a config may name
    several; generation stops at that one), None for none."""
    if isinstance(eos, list | tuple):
        return int(eos[0]) if eos else None
    return None if eos is None else int(eos)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _generate_function():
    """steps/compression/generation.py's `generate`: the copy carried in the version's code/ folder (importable as
    `generation`), or the project's own when the model runs inside the project (while it is being logged)."""
    try:
        from generation import generate
    except ModuleNotFoundError as err:
        if err.name != "generation":
            raise
        from steps.compression.generation import generate
    return generate
