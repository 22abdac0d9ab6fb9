"""Issue 27's "done when": a folder of text documents and a `save_pretrained` causal LM run the whole pipeline from
params.yaml alone, through the real CLI (Prefect, MLflow's SQLite registry, DVC), to a registered champion that
stock `transformers` reloads and whose served pyfunc generates text; a worse student is then refused by the paired
perplexity gate against that champion."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.checkout import copy_project
from steps import config, evaluate, export, promote, quantize, tracking
from steps.compression.families import CHECKPOINT_RECORD
from steps.core.dag import STAGE_NAMES
from steps.core.layout import REPORT, model_dir
from steps.core.names import ModelRole, Tag
from steps.serving.classifier import HF_ARTIFACT
from tests.helpers import shrinkflow, stage_states, tiny_params

pytestmark = pytest.mark.integration

WORDS = "the river stone lantern north garden quiet ember harbour wolf ink runs over under a bright cold night".split()
NAME = "tales-student"
LLAMA = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 64}


def documents(folder: Path, count: int = 40) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"tale{i:02d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(60)) + ".\n")
    return folder


def pretrained_llama(folder: Path, corpus: list[str]) -> Path:
    """What a team brings: a Llama (grouped-query attention) written by save_pretrained, its tokenizer beside it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.ByteLevel(), decoders.ByteLevel()
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=120, show_progress=False,
                                                              special_tokens=["<|endoftext|>", "<unk>"]))
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.get_vocab_size(), eos_token_id=0, bos_token_id=0,
                                 pad_token_id=0, **LLAMA)).save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def lm_params(docs: Path, teacher: Path) -> dict:
    raw = tiny_params(docs, experiment="lm-integration")
    raw["data"] = {"source": "text", "task": "causal_lm", "path": str(docs), "val_size": 4, "block_size": 32,
                   "test_fraction": 0.2}  # the tokenizer: the teacher folder's
    raw["teacher"] = {"arch": {"name": "hf", "path": str(teacher)},
                      "train": {**raw["teacher"]["train"], "epochs": 3, "batch_size": 8, "lr": 0.003}}
    raw["prune"].update(method="transformer", rounds=1,
                        transformer={**raw["prune"]["transformer"], "heads": 0.5, "mlp": 0.5,
                                     "importance": "output_norm"})
    raw["prune"]["finetune"].update(epochs=1, batch_size=8, lr=0.002)
    raw["distill"].update(teacher="teacher", student={"name": "pruned"})
    raw["distill"]["train"].update(epochs=2, batch_size=8, lr=0.002)
    raw["quantize"].update(methods=["dynamic"], deploy="dynamic", max_accuracy_drop=0.2)
    raw["evaluate"].update(prompts=["the river", "a quiet night"], generation_tokens=6)
    raw["threads"] = 1
    raw["promote"].update(max_perplexity_ratio=1.5, max_param_ratio=1.0, model_name=NAME)
    return raw


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("lm-inputs")
    docs = documents(source / "tales")
    teacher = pretrained_llama(source / "llama", [p.read_text() for p in sorted(docs.iterdir())])
    return copy_project(tmp_path_factory.mktemp("lm-project"), lm_params(docs, teacher))


@pytest.fixture(scope="module")
def first_run(project: Path):
    result = shrinkflow(project, "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_the_whole_pipeline_runs_on_documents_and_a_pretrained_llama(project: Path, first_run):
    assert stage_states(first_run.stdout) == {name: "Completed" for name in STAGE_NAMES}
    assert f"promoted: {NAME} v1 -> @champion" in first_run.stdout
    report = json.loads((project / REPORT).read_text())
    assert report["models"]["student"]["perplexity"] < report["models"]["pruned"]["perplexity"] * 1.05
    tracking.use_store(project)
    tags = tracking.model_version(NAME, 1).tags
    assert float(tags[Tag.PERPLEXITY]) == report["models"]["student"]["perplexity"]


def test_the_champion_reloads_with_stock_transformers_in_its_pruned_shape(project: Path, first_run, tmp_path):
    from transformers import AutoModelForCausalLM

    tracking.use_store(project)
    folder = tracking.served_artifacts(NAME, 1, tmp_path)[HF_ARTIFACT]
    stock = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    config_ = stock.config
    assert (config_.num_attention_heads, config_.num_key_value_heads, config_.intermediate_size) == (2, 1, 32)


def test_the_served_champion_generates_what_evaluate_read(project: Path, first_run):
    import mlflow

    tracking.use_store(project)
    report = json.loads((project / REPORT).read_text())
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    answers = served.predict(report["language"]["prompts"], params={"max_new_tokens": 6})
    assert answers["generated"].tolist() == report["language"]["generations"]["student"]
    assert answers["prompt"].tolist() == ["the river", "a quiet night"]


def test_mlflows_scoring_server_generates_over_http_and_refuses_a_blank_prompt(project: Path, first_run, tmp_path):
    """`shrinkflow serve-model` (MLflow's scoring server): prompts and params as a client sends them."""
    from tests.serving.test_http import post
    from tests.servers import scoring_server

    report = json.loads((project / REPORT).read_text())
    with scoring_server(project, f"{NAME}/1", tmp_path) as server:
        status, body = post(server.url, {"inputs": report["language"]["prompts"], "params": {"max_new_tokens": 6}})
        assert status == 200, body
        assert [a["generated"] for a in body["predictions"]] == report["language"]["generations"]["student"]
        status, body = post(server.url, {"inputs": ["the river", " "]})
        assert status == 400 and "prompt 1: empty" in body["message"]


def test_a_champion_reading_another_tokenizers_ids_is_refused_or_left_out_on_purpose(project: Path, first_run):
    """Today's token ids mean other strings to a champion trained with another tokenizer: its scores would be
    garbage, so it is not compared; refused unless promote.replace_contract starts a new line."""
    from steps.promote.language import check_same_line

    tracking.use_store(project)
    ours = tracking.model_version(NAME, 1).tags[Tag.TOKENIZER_SHA256]
    assert check_same_line(NAME, ours, replace=False)
    with pytest.raises(ValueError, match=rf"the champion v1 cannot be compared with this candidate \(it reads the "
                                         rf"token ids of tokenizer sha256 {ours}, the data's tokenizer is 0+\)"):
        check_same_line(NAME, "0" * 64, replace=False)
    assert not check_same_line(NAME, "0" * 64, replace=True)


def test_a_worse_student_is_refused_by_the_paired_perplexity_gate(project: Path, first_run):
    """The student's output layer flattened (its logits scaled down): the same shape, a worse perplexity on every
    document; evaluated and promoted by the stages, it must not take @champion."""
    from transformers import AutoModelForCausalLM

    folder = project / model_dir(ModelRole.STUDENT)
    record = (folder / CHECKPOINT_RECORD).read_text()
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.3)
    model.save_pretrained(folder)
    (folder / CHECKPOINT_RECORD).write_text(record)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["promote"]["max_perplexity_ratio"] = 100.0  # only the champion may refuse it
    for name, stage in (("export", export), ("quantize", quantize), ("evaluate", evaluate), ("promote", promote)):
        decision = stage.run(config.validate(raw, stage=name), project)
    assert not decision.promoted and decision.failed_gates == ["beat_champion"]
    assert decision.statistics["perplexity_ratio_low"] > 1  # worse beyond noise
    tracking.use_store(project)
    assert int(tracking.alias_version(NAME, "champion").version) == 1
