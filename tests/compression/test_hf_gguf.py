"""families/hf/gguf.py: a tiny Llama written as llama.cpp's converter writes it (GGUFWriter, llama metadata, F32
tensors under GGUF names, query and key rows permuted) reads back as the same float32 model, tied or not, and
the pipeline's build loads it from teacher.arch.gguf_file; a file that is not there, or one missing a weight,
is refused naming it."""

from __future__ import annotations

import re
from pathlib import Path

import gguf as gguf_package
import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steps.compression.families.hf import gguf
from steps.compression.families.hf.causal import HFCausalLM
from steps.compression.families.hf.model import HFModelError, build
from tests.compression.lm import SEPARATOR, VOCAB
from tests.compression.test_hf_causal import folder_spec, ids, logits

pytestmark = pytest.mark.usefixtures("one_thread")

FILE = "tiny.gguf"


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         rms_norm_eps=1e-5, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # norms away from their initial ones, so a norm read wrongly changes the logits
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    return model


def permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute: each head's rotary halves interleaved."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(model: LlamaForCausalLM, path: Path, skip: str | None = None) -> Path:
    """`model` as a GGUF file of F32 tensors with the llama metadata transformers' config reader maps, and the
    tokenizer's special ids; the tensor named `skip` left out."""
    c = model.config
    names = gguf_package.get_tensor_name_map(gguf_package.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    writer = gguf_package.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_vocab_size(c.vocab_size)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_rope_freq_base(float(c.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(c.vocab_size)])
    writer.add_eos_token_id(SEPARATOR)
    writer.add_bos_token_id(SEPARATOR)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and c.tie_word_embeddings:
            continue  # llama.cpp writes no output.weight for tied embeddings
        weights = tensor.numpy().astype(np.float32)
        if hf_name.endswith("q_proj.weight"):
            weights = permute(weights, c.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            weights = permute(weights, c.num_key_value_heads)
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        assert name is not None, hf_name
        if name != skip:
            writer.add_tensor(name, weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("tied", [False, True])
def test_a_gguf_file_reads_back_as_the_same_float32_model(tmp_path, tied):
    stock = tiny_llama(tied)
    write_gguf(stock, tmp_path / FILE)
    model = gguf.dequantised(tmp_path, FILE)
    c = model.config
    assert (c.model_type, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
            c.vocab_size, c.tie_word_embeddings) == ("llama", 32, 2, 4, 2, VOCAB, tied)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    torch.testing.assert_close(logits(model, ids()), logits(stock, ids()), atol=1e-5, rtol=0)


def test_the_pipeline_builds_the_teacher_from_arch_gguf_file(tmp_path):
    stock = tiny_llama(tied=False)
    write_gguf(stock, tmp_path / FILE)
    model = build(folder_spec(tmp_path, hf_gguf_file=FILE))
    assert isinstance(model, HFCausalLM) and model.hf.config.model_type == "llama"
    torch.testing.assert_close(logits(model, ids()), logits(stock, ids()), atol=1e-5, rtol=0)


def test_a_gguf_file_too_short_for_the_block_is_refused_naming_the_key(tmp_path):
    write_gguf(tiny_llama(tied=False), tmp_path / FILE)  # 64 positions
    with pytest.raises(HFModelError, match=r"max_position_embeddings 64 is below data\.block_size 65"):
        build(folder_spec(tmp_path, hf_gguf_file=FILE, max_length=65))


def test_a_gguf_file_missing_a_weight_is_refused_naming_the_file_and_the_weight(tmp_path):
    write_gguf(tiny_llama(tied=False), tmp_path / FILE, skip="blk.1.ffn_up.weight")
    named = re.escape(str(tmp_path / FILE))
    with pytest.raises(gguf.GGUFError, match=rf"{named}: weights missing \['model\.layers\.1\.mlp\.up_proj\.weight'\]"):
        gguf.dequantised(tmp_path, FILE)
    with pytest.raises(HFModelError, match=rf"{named}: weights missing"):
        build(folder_spec(tmp_path, hf_gguf_file=FILE))


def test_a_missing_gguf_file_is_refused_naming_it(tmp_path):
    with pytest.raises(gguf.GGUFError, match=rf"{re.escape(str(tmp_path / FILE))}: no such GGUF file"):
        gguf.dequantised(tmp_path, FILE)


def test_without_the_gguf_package_the_error_names_the_file_and_the_extra(tmp_path, monkeypatch):
    write_gguf(tiny_llama(tied=False), tmp_path / FILE)
    monkeypatch.setattr(gguf, "is_gguf_available", lambda: False)
    with pytest.raises(gguf.GGUFError, match=rf"{re.escape(str(tmp_path / FILE))}: .*pip install 'shrinkflow\[gguf\]'"):
        gguf.read_config(tmp_path, FILE)
