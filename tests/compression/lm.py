"""What the language-model tests share: a tiny seeded Llama, a tiny BPE tokenizer, and a packed split of random
documents (steps/sources/blocks.py's arrays)."""

from __future__ import annotations

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

from steps.sources import blocks

VOCAB = 64
SEPARATOR = 0
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "the bird sang at dawn",
             "we read the book by the fire", "rain fell on the old town", "the sun set over the sea"]


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def tiny_bpe() -> Tokenizer:
    """A BPE of at most VOCAB pieces (Metaspace, so decoding gives the words back), "<|endoftext|>" as id 0."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<|endoftext|>", "<unk>"], show_progress=False))
    assert tokenizer.get_vocab_size() <= VOCAB and tokenizer.token_to_id("<|endoftext|>") == SEPARATOR
    return tokenizer


def packed_split(documents: int, block_size: int, seed: int) -> dict[str, np.ndarray]:
    """Random documents of 2 to 12 tokens (ids 1..VOCAB-1) packed as the data stage packs them, with made-up byte
    counts (3 to 6 bytes a token) so documents differ in bytes per token."""
    rng = np.random.default_rng(seed)
    ids = [rng.integers(1, VOCAB, size=int(rng.integers(2, 13))).tolist() for _ in range(documents)]
    packed = blocks.pack(ids, SEPARATOR, block_size)
    packed["document_bytes"] = np.array([len(d) * int(rng.integers(3, 7)) for d in ids], dtype=np.int64)
    return packed
