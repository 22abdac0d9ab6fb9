"""The hf family on documents (data.task causal_lm, families/hf/causal.py): a causal LM built from a config sized by
the data's tokenizer, or loaded offline from a save_pretrained folder, the folders and GGUF names it refuses by
name, and its checkpoint folder reloading through the family with its task and the same logits."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from steps.compression.families import family_of
from steps.compression.families.hf.causal import HFCausalLM
from steps.compression.families.hf.config import HFConfig
from steps.compression.families.hf.model import FAMILY, HFModelError, build, example_input
from steps.compression.families.spec import ModelSpec
from tests.compression.lm import SEPARATOR, VOCAB, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}
BLOCK = 16
SPEC = ModelSpec(name="hf", task="causal_lm", hf_config=LLAMA, vocab_size=VOCAB, pad_token_id=SEPARATOR,
                 eos_token_id=SEPARATOR, max_length=BLOCK, in_channels=0, image_size=0, input_shape=[BLOCK])


def ids(rows: int = 3) -> torch.Tensor:
    return torch.randint(1, VOCAB, (rows, BLOCK), generator=torch.Generator().manual_seed(4))


def logits(model, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(input_ids=x)
    return out if isinstance(out, torch.Tensor) else out.logits


def folder_spec(folder: Path, **changes) -> ModelSpec:
    """SPEC loading `folder` (arch.path) instead of building from the config."""
    return dataclasses.replace(SPEC, hf_config={}, hf_path=str(folder), **changes)


def test_built_from_a_config_it_takes_the_datas_vocabulary_and_separator():
    torch.manual_seed(0)
    model = build(SPEC)
    assert isinstance(model, HFCausalLM) and model.task == "causal_lm" and family_of(model) is FAMILY
    c = model.hf.config
    assert (c.model_type, c.hidden_size, c.num_hidden_layers, c.num_key_value_heads) == ("llama", 32, 2, 2)
    assert (c.vocab_size, c.eos_token_id, c.bos_token_id, c.pad_token_id) == (VOCAB, SEPARATOR, SEPARATOR, SEPARATOR)
    assert c.max_position_embeddings >= BLOCK
    assert model.hf.get_input_embeddings().num_embeddings == VOCAB
    assert logits(model, ids()).shape == (3, BLOCK, VOCAB)  # logits per token, not per text
    example = example_input(SPEC)
    assert example["input_ids"].shape == (1, BLOCK) and bool((example["input_ids"] == SEPARATOR).all())


def test_a_save_pretrained_folder_loads_with_its_weights(tmp_path):
    stock = tiny_llama(seed=1)
    stock.save_pretrained(tmp_path)
    model = build(folder_spec(tmp_path))
    assert isinstance(model, HFCausalLM)
    assert torch.equal(logits(model, ids()), logits(stock, ids()))


def test_a_folder_whose_vocabulary_is_smaller_than_the_datas_is_refused_naming_it(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    named = re.escape(str(tmp_path))
    with pytest.raises(HFModelError, match=rf"{named}: its vocabulary holds {VOCAB} tokens.*{VOCAB + 36}"):
        build(folder_spec(tmp_path, vocab_size=VOCAB + 36))


def test_a_folder_with_fewer_positions_than_the_block_is_refused_naming_the_key(tmp_path):
    tiny_llama().save_pretrained(tmp_path)  # 64 positions
    named = re.escape(str(tmp_path))
    with pytest.raises(HFModelError, match=rf"{named}: max_position_embeddings 64 is below data\.block_size 65"):
        build(folder_spec(tmp_path, max_length=65))


def test_a_folder_of_pickled_weights_is_refused_naming_the_file(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")  # the name is what is refused
    with pytest.raises(HFModelError, match=r"pytorch_model\.bin: a pickle"):
        build(folder_spec(tmp_path))


def test_a_missing_gguf_file_is_refused_naming_it(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    with pytest.raises(HFModelError, match=rf"{re.escape(str(tmp_path / 'model.gguf'))}: no such GGUF file.*gguf_file"):
        build(folder_spec(tmp_path, hf_gguf_file="model.gguf"))


def test_a_gguf_file_without_a_path_is_refused():
    with pytest.raises(ValidationError, match=r"gguf_file 'x\.gguf' names a file inside path"):
        HFConfig(name="hf", gguf_file="x.gguf")
    with pytest.raises(ValidationError, match="gguf_file"):
        HFConfig(name="hf", path="models/base", gguf_file="sub/x.gguf")  # its name alone, inside path
    assert HFConfig(name="hf", path="models/base", gguf_file="x.gguf").spec_fields("/p")["hf_gguf_file"] == "x.gguf"


def test_the_family_checkpoint_keeps_the_task_and_the_logits(tmp_path):
    torch.manual_seed(2)
    model = build(SPEC)
    folder = tmp_path / "models" / "teacher"
    folder.parent.mkdir(parents=True)
    FAMILY.save_checkpoint(model, SPEC, folder, {"stage": "teacher"}, {})
    again, spec = FAMILY.load_checkpoint(folder)
    assert isinstance(again, HFCausalLM) and not again.training
    assert (spec.task, spec.vocab_size, spec.eos_token_id, spec.max_length) == ("causal_lm", VOCAB, SEPARATOR, BLOCK)
    assert spec.hf_path == str(folder) and spec.hf_config["model_type"] == "llama"
    assert torch.equal(logits(again, ids()), logits(model, ids()))
    stock = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    assert torch.equal(logits(stock, ids()), logits(model, ids()))
    assert (stock.config.eos_token_id, stock.config.bos_token_id) == (SEPARATOR, SEPARATOR)


def test_a_loaded_model_ends_text_at_the_datas_separator(tmp_path):
    """A pretrained config may name other end tokens (Llama-3 names three): the served model must stop where
    evaluate's generations stop, at the data's separator."""
    stock = tiny_llama(seed=1)
    stock.config.eos_token_id = stock.generation_config.eos_token_id = [5, 7]
    stock.save_pretrained(tmp_path)
    model = build(folder_spec(tmp_path))
    assert model.hf.config.eos_token_id == model.hf.generation_config.eos_token_id == SEPARATOR


def test_end_of_text_keys_in_a_language_models_config_are_refused_naming_them():
    spec = dataclasses.replace(SPEC, hf_config={**SPEC.hf_config, "eos_token_id": 3})
    with pytest.raises(HFModelError, match=r"teacher.arch.config keys \['eos_token_id'\] come from the data"):
        build(spec)
