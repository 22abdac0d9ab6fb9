"""The hf family on documents (data.task causal_lm): a transformers AutoModelForCausalLM on blocks of token ids.

Built from `arch.config` (Llama, Qwen2, Mistral, GPT-2, ...: `model_type` and its sizes), sized by the data's
manifest (vocab_size from its tokenizer, the separator as eos and bos, max_position_embeddings at least the
block size), or loaded from `arch.path`: a local `save_pretrained` folder in safetensors, or a GGUF file in it
(`arch.gguf_file`; dequantised to float32 by families/hf/gguf.py with the `gguf` package, and every
checkpoint after is safetensors). Loading is as offline and as safe as the classifier's (families/hf/model.py):
no hub, no pickle, no code shipped with a model.

The stages see `HFCausalLM`: token ids (and an optional attention mask) in, logits per token (B, T, V) out;
position t's logits predict token t + 1 (`training.next_token`). Its checkpoint is the folder stock
`AutoModelForCausalLM.from_pretrained` reloads.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from steps.compression.families.hf import gguf
from steps.compression.families.spec import ModelSpec

logger = logging.getLogger(__name__)

TASK = "causal_lm"
FROM_DATA = ("eos_token_id", "bos_token_id")
"""A language model's config keys the data decide (its end-of-document separator), besides the classifier's."""


class HFCausalLM(nn.Module):
    """A transformers causal language model as the stages take any model: (input_ids, attention_mask) -> logits
    (B, T, V). No KV cache here (training and scoring see whole blocks); generation uses `hf.generate`."""

    shrinkflow_family = "hf"
    task = TASK

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.hf = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def size_to_data(config, spec: ModelSpec) -> None:
    """A config built from params: the data's vocabulary, padding and end of text (which also begins nothing: the
    blocks carry no framing, so bos is the same separator)."""
    config.vocab_size = spec.vocab_size
    config.pad_token_id = spec.pad_token_id
    config.eos_token_id = config.bos_token_id = spec.eos_token_id
    config.use_cache = True  # generation; the forward above asks for none


def from_config(config) -> nn.Module:
    return AutoModelForCausalLM.from_config(config)


def load_pretrained(folder: Path, spec: ModelSpec, error: type[Exception]) -> nn.Module:
    """The causal LM of a save_pretrained `folder` (or of its `spec.hf_gguf_file`, dequantised to float32 by
    families/hf/gguf.py), offline, refused unless its vocabulary and positions hold the data's tokens and blocks."""
    if spec.hf_gguf_file and not (folder / spec.hf_gguf_file).is_file():
        raise error(f"{folder / spec.hf_gguf_file}: no such GGUF file (teacher.arch.gguf_file)")
    try:
        config = (gguf.read_config(folder, spec.hf_gguf_file) if spec.hf_gguf_file
                  else AutoConfig.from_pretrained(folder, local_files_only=True))
    except gguf.GGUFError as err:
        raise error(str(err)) from None
    except (OSError, ValueError, ImportError) as err:
        raise error(f"{folder}: transformers cannot read its config: {err}") from None
    vocabulary = getattr(config, "vocab_size", None)
    if vocabulary is not None and vocabulary < spec.vocab_size:
        raise error(f"{folder}: its vocabulary holds {vocabulary} tokens, the data's tokenizer {spec.vocab_size}: "
                    "tokenize with this model's tokenizer (data.tokenizer.path)")
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and positions < spec.max_length:
        raise error(f"{folder}: max_position_embeddings {positions} is below data.block_size {spec.max_length}")
    if spec.hf_gguf_file:
        try:
            return ending_documents(gguf.dequantised(folder, spec.hf_gguf_file, config), spec)
        except gguf.GGUFError as err:
            raise error(str(err)) from None
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, config=config, local_files_only=True,
                                                     dtype=torch.float32, use_safetensors=True)
    except (OSError, ValueError, ImportError) as err:
        raise error(f"{folder}: transformers cannot load it as a causal language model: {err}") from None
    return ending_documents(model, spec)


def ending_documents(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """`model` with the data's end-of-document separator as its end of text (config and generation config), so
    the served model stops where evaluate's generations stop (a pretrained config may name other or several end
    tokens: Llama-3's three)."""
    if spec.eos_token_id is not None:
        model.config.eos_token_id = spec.eos_token_id
        if model.generation_config is not None:
            model.generation_config.eos_token_id = spec.eos_token_id
        if model.config.pad_token_id is None:
            model.config.pad_token_id = spec.pad_token_id
    return model


def example_input(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """One block of separators, block_size long."""
    ids = torch.full((1, spec.max_length), spec.eos_token_id or 0, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
