"""The served language model (steps/serving/generator.py) as MLflow loads it from a saved folder: prompts in, the
continuations the evaluation's generation loop gives out, params checked and named, the loop carried in code/."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from tokenizers import Tokenizer

from steps import tracking
from steps.compression import generation
from steps.serving import generator
from tests.compression.lm import SEPARATOR, tiny_bpe, tiny_llama

PROMPTS = ["the river", "a stone"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny Llama's save_pretrained folder with its tokenizer.json, eos the tokenizer's <|endoftext|>."""
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("lm") / "hf"
    model = tiny_llama()
    model.config.eos_token_id = SEPARATOR
    model.save_pretrained(path)
    tiny_bpe().save(str(path / "tokenizer.json"))
    return path


@pytest.fixture(scope="module")
def saved(folder) -> Path:
    path = folder.parent / "served"
    mlflow.pyfunc.save_model(str(path), **tracking.generator_model(folder, example=["the river"]))
    return path


@pytest.fixture(scope="module")
def served(saved):
    return tracking.load_pyfunc(str(saved))


@pytest.fixture(scope="module")
def reference(folder):
    """The saved model as built (the same seed) and its tokenizer, for generation's own functions."""
    model = tiny_llama()
    model.config.eos_token_id = SEPARATOR
    return model, Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_greedy_continuations_are_generations_own(served, reference):
    answer = served.predict(PROMPTS, params={"max_new_tokens": 5})
    expected = generation.greedy_generations(*reference, PROMPTS, 5, eos_id=SEPARATOR)
    assert list(answer.columns) == ["prompt", "generated"]
    assert answer["prompt"].tolist() == PROMPTS
    assert answer["generated"].tolist() == expected
    assert any(text.strip() for text in expected)  # something was generated to compare


def test_every_form_of_a_prompt_batch_gives_the_same_answer(served):
    expected = served.predict(PROMPTS, params={"max_new_tokens": 3})
    for batch in (np.array(PROMPTS, dtype=object), pd.Series(PROMPTS), pd.DataFrame({"prompt": PROMPTS})):
        pd.testing.assert_frame_equal(served.predict(batch, params={"max_new_tokens": 3}), expected)


def test_sampling_is_reproducible_by_seed(served, reference):
    params = {"max_new_tokens": 8, "temperature": 1.5, "seed": 3}
    first = served.predict(PROMPTS, params=params)["generated"].tolist()
    assert served.predict(PROMPTS, params=params)["generated"].tolist() == first
    assert first == generation.generate(*reference, PROMPTS, 8, temperature=1.5, seed=3, eos_id=SEPARATOR)
    other = served.predict(PROMPTS, params={**params, "seed": 4})["generated"].tolist()
    assert other != first


@pytest.mark.parametrize(("prompts", "params", "named"), [
    (["the river", "  "], {}, "prompt 1: empty"),
    (["the river", None], {}, "prompt 1: expected a string"),
    (PROMPTS, {"max_new_tokens": 0}, "params.max_new_tokens 0"),
    (PROMPTS, {"max_new_tokens": 63}, "past the model's max_position_embeddings 64"),
    (PROMPTS, {"temperature": -0.5}, "params.temperature -0.5"),
    (PROMPTS, {"seed": -1}, "params.seed -1"),
])
def test_bad_prompts_and_params_are_refused_by_name(served, prompts, params, named):
    with pytest.raises(MlflowException, match=named) as refused:
        served.predict(prompts, params={"max_new_tokens": 5, **params})
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_an_empty_batch_is_refused(served):
    """MLflow refuses an empty list itself (no input column); the model refuses one that reaches it."""
    with pytest.raises(MlflowException, match="empty batch: no prompts"):
        served.unwrap_python_model().predict(None, [])


def test_too_long_names_the_prompt_and_the_most_it_may_ask(served):
    with pytest.raises(MlflowException, match=r"prompt 0: 2 tokens \+ params.max_new_tokens 63 .* at most 62"):
        served.predict(["the cat"], params={"max_new_tokens": 63})


def test_the_signature_lists_the_params_and_their_defaults(served):
    schema = served.metadata.get_params_schema()
    assert {p.name: p.default for p in schema.params} == {"max_new_tokens": 32, "temperature": 0.0, "seed": 0}
    assert served.metadata.get_input_schema().input_types() == [mlflow.types.DataType.string]
    assert served.predict(["the river"])["generated"].tolist() == served.predict(
        ["the river"], params={"max_new_tokens": 32})["generated"].tolist()


def test_the_generation_loop_runs_from_the_saved_code_folder(served, saved):
    """Served without the project: the loop the model runs is the copy in its code/ folder, which imports nothing
    of shrinkflow."""
    carried = saved / "code" / "generation.py"
    assert Path(sys.modules[served.unwrap_python_model().generate.__module__].__file__) == carried
    imported = [node.module for node in ast.walk(ast.parse(carried.read_text()))
                if isinstance(node, ast.ImportFrom) and node.module]
    assert not [name for name in imported if name.split(".")[0] == "steps"]
    assert (saved / "code" / "serving" / "generator_entry.py").is_file()


def test_a_folder_without_its_tokenizer_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        tracking.generator_model(tmp_path)


def test_thread_count_comes_from_the_environment_variable():
    assert generator.threads(None) == 1
    assert generator.threads("3") == 3
    with pytest.raises(ValueError, match="SHRINKFLOW_TORCH_THREADS='0'"):
        generator.threads("0")


def test_the_scoring_servers_payload_is_taken(served):
    """The JSON a client posts to `mlflow models serve`, through the scoring server's own handler (no server)."""
    payload = json.dumps({"inputs": PROMPTS, "params": {"max_new_tokens": 4}})
    answer = scoring_server.invocations(payload, "application/json", served, served.metadata.get_input_schema())
    assert answer.status == 200
    expected = served.predict(PROMPTS, params={"max_new_tokens": 4})
    assert json.loads(answer.response)["predictions"] == expected.to_dict(orient="records")
    refused = json.dumps({"inputs": PROMPTS, "params": {"max_new_tokens": 0}})
    with pytest.raises(MlflowException, match="params.max_new_tokens 0") as error:
        scoring_server.invocations(refused, "application/json", served, served.metadata.get_input_schema())
    assert error.value.get_http_status_code() == 400


def test_log_generator_registers_a_version_that_answers_alike(folder, served, tmp_path):
    tracking.use_store(tmp_path)
    with mlflow.start_run(experiment_id=tracking.experiment_id("served-lm")):
        version = tracking.log_generator(folder, "lm", example=["the river"])
    registered = tracking.load_pyfunc(f"models:/lm/{version}")
    assert version == 1
    assert registered.metadata.metadata == {"shrinkflow_task": "causal_lm"}
    pd.testing.assert_frame_equal(registered.predict(PROMPTS, params={"max_new_tokens": 5}),
                                  served.predict(PROMPTS, params={"max_new_tokens": 5}))
