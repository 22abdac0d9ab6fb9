"""The hf family (issue 26): a transformers sequence classifier built from a config sized by the text data, or
loaded offline from a save_pretrained folder (safetensors only, no code shipped with the model), and its
checkpoint folder that stock `from_pretrained` reloads."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification, BertModel

from steps.compression.families import family_of
from steps.compression.families.hf.model import FAMILY, HFModelError, build, load, save
from steps.compression.families.spec import ModelSpec

TINY = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}
SPEC = ModelSpec(name="hf", hf_config=TINY, num_classes=3, vocab_size=50, pad_token_id=0, max_length=12,
                 in_channels=0, image_size=0, input_shape=[12])
FOLDER = ["config.json", "model.safetensors", "shrinkflow.json", "tokenizer.json"]


def batch(spec: ModelSpec = SPEC, rows: int = 4) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, spec.vocab_size, (rows, spec.max_length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    ids[:, 8:], mask[:, 8:] = spec.pad_token_id, 0  # the padded tail a tokenised text has
    return {"input_ids": ids, "attention_mask": mask}


def bert_config(**keys) -> BertConfig:
    sizes = {k: v for k, v in TINY.items() if k != "model_type"}
    return BertConfig(**sizes, vocab_size=50, max_position_embeddings=32, **keys)


def logits(model, x) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**x)


def test_building_from_a_config_sizes_the_model_from_the_data():
    torch.manual_seed(0)
    model = build(SPEC)
    config = model.hf.config
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("bert", 32, 2)
    assert (config.num_labels, config.vocab_size, config.pad_token_id) == (3, 50, 0)
    assert config.max_position_embeddings >= SPEC.max_length
    assert model.hf.bert.embeddings.word_embeddings.num_embeddings == 50
    assert logits(model, batch()).shape == (4, 3)
    assert family_of(model) is FAMILY and not FAMILY.needs_images and FAMILY.prune_methods == {"transformer", "wanda", "magnitude"}
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by the family (and every load is local_files_only)


def test_a_config_transformers_cannot_build_is_refused_naming_the_key():
    with pytest.raises(HFModelError, match=r"teacher.arch.config: BertConfig has no \['hidden_sizes'\]"):
        build(dataclasses.replace(SPEC, hf_config={**TINY, "hidden_sizes": 32}))
    with pytest.raises(HFModelError, match=r"teacher.arch.config: model_type 'nonsense'"):
        build(dataclasses.replace(SPEC, hf_config={"model_type": "nonsense"}))
    with pytest.raises(HFModelError, match=r"max_position_embeddings 8 is below the data's max_length 12"):
        build(dataclasses.replace(SPEC, hf_config={**TINY, "max_position_embeddings": 8}))
    longer = build(dataclasses.replace(SPEC, hf_config=TINY, max_length=600))  # BERT's 512 positions: widened
    assert longer.hf.config.max_position_embeddings >= 600


def test_a_bare_encoder_gets_a_new_head_for_the_data_classes(tmp_path: Path, caplog):
    torch.manual_seed(1)
    encoder = BertModel(bert_config())
    encoder.save_pretrained(tmp_path / "encoder")
    with caplog.at_level(logging.WARNING, logger="steps.compression.families.hf.model"):
        model = build(dataclasses.replace(SPEC, hf_config={}, hf_path=str(tmp_path / "encoder")))
    assert "no classification head" in caplog.text and "new head for the data's 3 classes" in caplog.text
    assert model.hf.classifier.out_features == 3
    assert torch.equal(model.hf.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    assert torch.equal(model.hf.bert.encoder.layer[1].output.dense.weight, encoder.encoder.layer[1].output.dense.weight)


def test_a_classifier_for_the_data_classes_keeps_its_head(tmp_path: Path, caplog):
    torch.manual_seed(2)
    trained = BertForSequenceClassification(bert_config(num_labels=3))
    trained.save_pretrained(tmp_path / "clf")
    with caplog.at_level(logging.WARNING, logger="steps.compression.families.hf.model"):
        model = build(dataclasses.replace(SPEC, hf_config={}, hf_path=str(tmp_path / "clf")))
    assert "new head" not in caplog.text
    x = batch()
    assert torch.allclose(logits(model, x), logits(trained, x).logits, atol=1e-6)


def test_a_pickled_checkpoint_is_refused_naming_the_file(tmp_path: Path):
    folder = tmp_path / "old"
    BertForSequenceClassification(bert_config(num_labels=3)).save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not read: refused by name first")
    with pytest.raises(HFModelError, match=r"old/pytorch_model.bin: a pickle \(torch.save\), which shrinkflow never"):
        build(dataclasses.replace(SPEC, hf_config={}, hf_path=str(folder)))


def test_a_config_naming_remote_code_is_refused_naming_auto_map(tmp_path: Path):
    folder = tmp_path / "remote"
    BertForSequenceClassification(bert_config(num_labels=3)).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(HFModelError, match=r"remote/config.json: auto_map .*never runs it \(no trust_remote_code\)"):
        build(dataclasses.replace(SPEC, hf_config={}, hf_path=str(folder)))
    with pytest.raises(HFModelError, match=r"nowhere: not a folder"):
        build(dataclasses.replace(SPEC, hf_config={}, hf_path=str(tmp_path / "nowhere")))


def test_the_checkpoint_folder_reloads_with_stock_from_pretrained_and_through_the_family(tmp_path: Path):
    torch.manual_seed(3)
    model = build(SPEC)
    (tmp_path / "tokenizer.json").write_text('{"stands": "for the data\'s tokenizer"}')
    (tmp_path / "models" / "teacher").mkdir(parents=True)
    (tmp_path / "models" / "teacher" / "left.over").write_text("an older checkpoint's file")
    folder = tmp_path / "models" / "teacher"
    save(model, SPEC, folder, {"stage": "teacher"}, {"tokenizer.json": tmp_path / "tokenizer.json"})
    assert sorted(p.name for p in folder.iterdir()) == FOLDER
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["teacher"]  # no temporary folder left beside it
    x = batch()
    stock = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    assert torch.equal(logits(stock, x).logits, logits(model, x))
    again, spec = load(folder)
    assert torch.equal(logits(again, x), logits(model, x))
    assert (spec.num_classes, spec.vocab_size, spec.max_length, spec.hf_path) == (3, 50, 12, str(folder))
    assert FAMILY.load_checkpoint is load and FAMILY.save_checkpoint is save
    with pytest.raises(HFModelError, match="matched layer by layer"):
        FAMILY.pooled_layer(model)
