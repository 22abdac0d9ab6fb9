"""Language-model data (`data.task: causal_lm`): documents tokenised and packed into blocks of `data.block_size`.

Documents are read and split by document (steps/sources/documents.py), then tokenised with the text source's
tokenizer rules (steps/sources/tokens.py: `data.tokenizer: {path}`, or `{train: {kind, vocab_size}}` trained on
the training documents only; `kind` defaults to bpe here), without the tokenizer's framing (no [CLS]/<s>): each
split's documents are concatenated in order, each followed by one end-of-document separator, and the stream is
cut into consecutive blocks of block_size tokens (GPT-2's and nanoGPT's packing: a block may cross a document
boundary, which the separator marks). The last partial block of each split is dropped, and its tokens counted.

The separator is the tokenizer's end of text: the eos_token its save_pretrained folder names, else its sep token
(</s> or [SEP], as tokens.special_tokens finds it), else <|endoftext|> (GPT-2's).

Each split's .npz holds:

    input_ids        int32 (N, block_size)  the blocks
    document         int64 (N,)             the split's document each block starts in (0..D-1, the split's order)
    document_starts  int64 (D + 1,)         where each document's tokens start in the split's stream (the last
                                            entry: the stream's length), so every token's document is known
    document_bytes   int64 (D,)             each document's UTF-8 bytes

The manifest records, per split, documents, tokens (the stream, separators included), bytes (UTF-8, the
documents as written: bits per byte divides by them) and dropped (the tail's tokens), with block_size, the
separator and the task. There are no labels: the targets are the ids themselves, shifted by the model.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from steps.sources import documents, tokens
from steps.sources.base import DataError, Encoded, SourceOptions

TASK = "causal_lm"
SEPARATORS = ("<|endoftext|>",)
"""End-of-text tokens looked for after a configured eos_token and the sep token (GPT-2's)."""

logger = logging.getLogger(__name__)


def separator(tokenizer: Tokenizer, folder: Path | None, specials: dict[str, dict], where: str) -> dict:
    """{"token", "id"}: the end-of-document token (see the module's docstring); DataError naming the tokenizer when
    it has none."""
    named = tokens.configured(folder, ("eos",)) if folder is not None and folder.is_dir() else {}
    if "eos" in named:
        token = named["eos"]
        if tokenizer.token_to_id(token) is None:
            raise DataError(f"{folder}: its eos_token {token!r} is not in the vocabulary of {tokens.FILE}")
        return {"token": token, "id": tokenizer.token_to_id(token)}
    if "sep" in specials:
        return specials["sep"]
    for token in SEPARATORS:
        if tokenizer.token_to_id(token) is not None:
            return {"token": token, "id": tokenizer.token_to_id(token)}
    raise DataError(f"{where}: has no end-of-text token to separate documents (no eos_token in its config files, "
                    f"no [SEP] or </s>, no {' or '.join(SEPARATORS)})")


def tokenise(tokenizer: Tokenizer, texts: np.ndarray) -> list[list[int]]:
    """Each text's token ids, without the tokenizer's framing, truncation or padding."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return [e.ids for e in tokenizer.encode_batch(texts.tolist(), add_special_tokens=False)]


def pack(ids: list[list[int]], separator_id: int, block_size: int) -> dict[str, np.ndarray]:
    """Documents' ids, each followed by the separator, end to end and cut into blocks of `block_size`: the split's
    arrays (see the module's docstring) and, under "dropped", how many tail tokens no block holds."""
    lengths = np.array([len(d) + 1 for d in ids], dtype=np.int64)
    starts = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    stream = np.concatenate([np.array([*d, separator_id], dtype=np.int32) for d in ids])
    blocks = len(stream) // block_size
    first = np.arange(blocks, dtype=np.int64) * block_size
    return {"input_ids": stream[: blocks * block_size].reshape(blocks, block_size),
            "document": np.searchsorted(starts, first, side="right") - 1, "document_starts": starts,
            "dropped": np.int64(len(stream) - blocks * block_size)}


def _full_blocks(counts: dict[str, int], block_size: int, docs: dict[str, int]) -> None:
    """Refuse a block_size that leaves a split without one full block, naming the key and the split."""
    short = [name for name, n in counts.items() if n < block_size]
    if not short:
        return
    if len(short) == len(counts):
        most = max(counts, key=counts.get)
        raise DataError(f"data.block_size={block_size} is larger than every split's token count (the most: "
                        f"{most}'s {counts[most]}); lower data.block_size")
    name = short[0]
    raise DataError(f"data.block_size={block_size}: the {name} split's {counts[name]} tokens ({docs[name]} "
                    f"documents) make no full block; lower data.block_size or give the {name} split more documents")


def encode(splits: dict[str, documents.Documents], options: SourceOptions, block_size: int) -> Encoded:
    """Each split's documents as blocks of token ids, the tokenizer loaded or trained on splits["train"]."""
    if options.tokenizer is None:
        raise ValueError("data.task causal_lm needs data.tokenizer")
    tokenizer, raw, specials, trained = tokens.tokenizer_for(options.tokenizer, splits["train"].texts)
    folder = Path(options.tokenizer.path) if options.tokenizer.path is not None else None
    where = options.tokenizer.path or f"the tokenizer trained here ({options.tokenizer.kind})"
    sep = separator(tokenizer, folder, specials, where)
    ids = {name: tokenise(tokenizer, docs.texts) for name, docs in splits.items()}
    counts = {name: sum(len(d) for d in doc_ids) + len(doc_ids) for name, doc_ids in ids.items()}
    doc_counts = {name: len(docs) for name, docs in splits.items()}
    _full_blocks(counts, block_size, doc_counts)
    arrays, dropped, sizes = {}, {}, {}
    for name, docs in splits.items():
        packed = pack(ids[name], sep["id"], block_size)
        dropped[name] = int(packed.pop("dropped"))
        packed["document_bytes"] = np.array([len(t.encode("utf-8")) for t in docs.texts], dtype=np.int64)
        sizes[name] = int(packed["document_bytes"].sum())
        arrays[name] = packed
        if dropped[name]:
            logger.info("causal_lm: %s split, %d tail tokens dropped (short of a block of %d)", name, dropped[name],
                        block_size)
    manifest = {
        "task": TASK, "block_size": block_size, "separator": sep,
        "documents": doc_counts, "tokens": counts, "bytes": sizes, "dropped": dropped,
        "tokenizer": {"file": tokens.FILE, "sha256": hashlib.sha256(raw).hexdigest(),
                      "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
                      "special_tokens": specials, "trained": trained},
    }
    return Encoded(arrays=arrays, input_shape=(block_size,), files={tokens.FILE: raw}, manifest=manifest)


def prepare(path: Path, options: SourceOptions, *, block_size: int, val_size: int, train_limit: int | None = None,
            test_limit: int | None = None) -> tuple[documents.Documents, Encoded]:
    """The documents under `path` (the data stage's raw files and name) and their splits as blocks (data.task
    causal_lm's entry in steps.sources.TASKS)."""
    if options.tokenizer is not None and options.tokenizer.path is not None:
        tokens.tokenizer_file(Path(options.tokenizer.path))  # a bad tokenizer path is refused before any reading
    every = documents.read(path, options)
    parts = documents.split(len(every), options.test_fraction, val_size, options.seed, train_limit, test_limit)
    return every, encode({name: every.take(idx) for name, idx in parts.items()}, options, block_size)
