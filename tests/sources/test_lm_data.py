"""Language-model data (data.task: causal_lm): documents of the text source split by document, tokenised and packed
into blocks of data.block_size tokens (steps/sources/documents.py, blocks.py), the manifest's per-split counts, the
loaders, and bad input refused by key or file. The classification path is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from steps import config, data
from steps.core import datasets
from steps.core.layout import DATA_DIR, MANIFEST
from steps.sources import blocks, documents, tokens
from steps.sources.base import DataError, SourceOptions, TokenizerOptions
from tests.helpers import tiny_params

WORDS = ["river", "stone", "café", "lantern", "north", "señor", "garden", "quiet", "ember", "harbour", "wolf", "ink"]
BPE = {"train": {"kind": "bpe", "vocab_size": 300}}
LM_KEYS = {"task", "block_size", "separator", "documents", "tokens", "bytes", "dropped"}
CLASSIFY_TEXT_KEYS = {"classes", "dataset", "feature_names", "files", "input_shape", "kind", "max_length",
                      "normalization", "raw", "raw_sha256", "resize", "seed", "source", "text_column", "tokenizer",
                      "truncated"}
"""A text classification manifest's keys, as they were before language models."""


def document(i: int, words: int = 12) -> str:
    """Document i: opens with its own marker, then `words` words (some not ASCII, so bytes and characters differ)."""
    return f"doc{i:02d} " + " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words)) + " ✓\n"


def write_documents(folder: Path, texts: list[str]) -> Path:
    for i, text in enumerate(texts):
        sub = folder / ("part" if i % 2 else "")  # subfolders are read too, in sorted path order
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"d{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder


def lm_params(path: Path, seed: int = 0, stage: str | None = "data", **keys) -> config.Params:
    raw = tiny_params(path)
    raw["seed"] = seed
    raw["data"] = {"source": "text", "task": "causal_lm", "path": str(path), "val_size": 2, "block_size": 8,
                   "tokenizer": BPE, "test_fraction": 0.25, **keys}
    return config.validate(raw, stage=stage)


def arrays(root: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(root / DATA_DIR / f"{name}.npz") as npz:
        return {key: npz[key] for key in npz.files}


def tokenizer(root: Path) -> Tokenizer:
    return Tokenizer.from_file(str(root / DATA_DIR / tokens.FILE))


def split_texts(root: Path, texts: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Each split's documents, in order, as the split rule picks them (12 documents, test_fraction 0.25, val 2)."""
    parts = documents.split(len(texts), 0.25, 2, seed)
    return {name: [texts[i] for i in idx] for name, idx in parts.items()}


def test_documents_are_packed_into_blocks_and_never_straddle_splits(tmp_path: Path):
    texts = [document(i, words=8 + i) for i in range(12)]
    folder = write_documents(tmp_path / "docs", texts)
    manifest = data.run(lm_params(folder), tmp_path)
    assert manifest.task == "causal_lm" and manifest.kind == "text" and manifest.input_shape == [8]
    assert manifest.documents == {"train": 7, "val": 2, "test": 3} and manifest.classes == []
    tok, sep = tokenizer(tmp_path), manifest.separator
    assert sep == {"token": "</s>", "id": tok.token_to_id("</s>")}  # a trained bpe's end of text
    # the files are listed in sorted path order (d01.txt sorts after d00 ... d10 once in part/): map back by marker
    by_marker = {t.split()[0]: t for t in texts}
    seen: dict[str, str] = {}
    for name in ("train", "val", "test"):
        split = arrays(tmp_path, name)
        assert "labels" not in split and split["input_ids"].dtype == np.int32
        stream = tok.decode(split["input_ids"].ravel().tolist(), skip_special_tokens=False)
        *whole, tail = stream.split(sep["token"])
        assert len(whole) <= manifest.documents[name] and len(whole) >= manifest.documents[name] - 1
        for piece in whole:  # every complete document of the stream is one document, found in one split only
            marker = piece.split()[0]
            assert by_marker[marker] == piece and marker not in seen
            seen[marker] = name
    assert len(seen) >= 12 - 3  # at most each split's last document loses its tail to the dropped block


def test_the_split_is_seeded_and_by_document(tmp_path: Path):
    texts = [document(i) for i in range(12)]
    folder = write_documents(tmp_path / "docs", texts)
    assert all((a == b).all() for a, b in zip(documents.split(12, 0.25, 2, 7).values(),
                                               documents.split(12, 0.25, 2, 7).values(), strict=True))
    runs = {}
    for seed, root in ((0, tmp_path / "a"), (0, tmp_path / "b"), (1, tmp_path / "c")):
        data.run(lm_params(folder, seed=seed), root)
        runs[root.name] = {name: arrays(root, name)["input_ids"] for name in ("train", "val", "test")}
    same, other = runs["a"], runs["c"]
    assert all((same[n] == runs["b"][n]).all() for n in same)  # same seed: the same blocks
    assert any(same[n].shape != other[n].shape or (same[n] != other[n]).any() for n in same)
    chosen = {seed: {n: set(idx.tolist()) for n, idx in documents.split(12, 0.25, 2, seed).items()} for seed in (0, 1)}
    assert chosen[0] != chosen[1]
    for parts in chosen.values():  # every document in exactly one split
        assert sorted(i for idx in parts.values() for i in idx) == list(range(12))


def test_packing_reproduces_the_tokenised_documents_in_consecutive_blocks(tmp_path: Path):
    """By hand: documents [5 6 7], [8], [9 10] with separator 2 are 5 6 7 2 8 2 9 10 2; blocks of 4 keep 8 tokens."""
    packed = blocks.pack([[5, 6, 7], [8], [9, 10]], 2, 4)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 2], [8, 2, 9, 10]] and int(packed["dropped"]) == 1
    assert packed["document"].tolist() == [0, 1] and packed["document_starts"].tolist() == [0, 4, 6, 9]
    # blocks of 3: 5 6 7 | 2 8 2 | 9 10 2: a block starting on a separator starts in the document it ends
    assert blocks.pack([[5, 6, 7], [8], [9, 10]], 2, 3)["document"].tolist() == [0, 0, 2]
    texts = [document(i, words=5 + 2 * i) for i in range(12)]
    manifest = data.run(lm_params(write_documents(tmp_path / "docs", texts), block_size=5), tmp_path)
    tok, sep = tokenizer(tmp_path), manifest.separator["id"]
    ordered = sorted(texts, key=lambda t: f"{int(t[3:5]) % 2}{t}")  # the sorted paths: d00, d02, ..., part/d01, ...
    for name, docs in split_texts(tmp_path, ordered).items():
        split = arrays(tmp_path, name)
        ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
        stream = [t for d in ids for t in (*d, sep)]  # the tokenised documents, each followed by the separator
        n = len(split["input_ids"])
        assert split["input_ids"].ravel().tolist() == stream[: n * 5]  # consecutive cuts of that stream
        assert manifest.dropped[name] == len(stream) - n * 5 < 5 and manifest.tokens[name] == len(stream)
        assert split["document_starts"].tolist() == np.cumsum([0] + [len(d) + 1 for d in ids]).tolist()
        assert manifest.files[f"{name}.npz"]["rows"] == n


def test_the_manifest_counts_documents_tokens_and_utf8_bytes_per_split(tmp_path: Path):
    """A JSON Lines table of documents, one per row of data.text_column; counts by hand."""
    texts = [document(i) for i in range(12)]
    pd.DataFrame({"body": texts, "kind": ["a", "b"] * 6}).to_json(tmp_path / "docs.jsonl", orient="records",
                                                                   lines=True, force_ascii=False)
    manifest = data.run(lm_params(tmp_path / "docs.jsonl", text_column="body"), tmp_path)
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    tok = tokenizer(tmp_path)
    for name, docs in split_texts(tmp_path, texts).items():
        assert on_disk["documents"][name] == len(docs)
        assert on_disk["bytes"][name] == sum(len(t.encode("utf-8")) for t in docs) > sum(len(t) for t in docs)
        assert on_disk["tokens"][name] == sum(len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in docs)
        assert arrays(tmp_path, name)["document_bytes"].tolist() == [len(t.encode("utf-8")) for t in docs]
    assert on_disk["block_size"] == 8 and on_disk["task"] == "causal_lm" and manifest.tokenizer["trained"] == {
        "kind": "bpe", "vocab_size": 300}
    assert on_disk["raw"].keys() == {"docs.jsonl"}


def test_the_loaders_give_blocks_as_input_and_target(tmp_path: Path):
    manifest = data.run(lm_params(write_documents(tmp_path / "docs", [document(i) for i in range(12)])), tmp_path)
    splits = datasets.load_splits(tmp_path)
    train = splits["train"]
    assert set(train.x) == {"input_ids"} and train.x["input_ids"].dtype == torch.int64
    assert train.x["input_ids"].shape == (manifest.files["train.npz"]["rows"], 8)
    assert (train.y == train.x["input_ids"]).all()
    read = datasets.read_manifest(tmp_path)
    test = datasets.load_blocks(tmp_path, "test", read)
    assert test["document"].max() < read["documents"]["test"] and (np.diff(test["document"]) >= 0).all()
    with pytest.raises(DataError, match=r"test.npz: causal_lm splits hold blocks of token ids and no labels; read them "
                                        r"with load_blocks"):
        datasets.load_text(tmp_path, "test", read)
    (tmp_path / DATA_DIR / "val.npz").write_bytes((tmp_path / DATA_DIR / "test.npz").read_bytes())
    with pytest.raises(DataError, match=r"val.npz: sha256 does not match"):
        datasets.load_splits(tmp_path)


def test_the_separator_is_the_eos_token_a_tokenizer_folder_names(tmp_path: Path):
    tok, _ = tokens.train(TokenizerOptions(kind="bpe", vocab_size=300), [document(i) for i in range(12)])
    tok.add_special_tokens(["<|endoftext|>"])
    saved = tmp_path / "gpt"
    saved.mkdir()
    (saved / tokens.FILE).write_text(tok.to_str())
    (saved / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    folder = write_documents(tmp_path / "docs", [document(i) for i in range(12)])
    manifest = data.run(lm_params(folder, tokenizer={"path": str(saved)}), tmp_path)
    assert manifest.separator == {"token": "<|endoftext|>", "id": tok.token_to_id("<|endoftext|>")}
    assert manifest.tokenizer["trained"] is None
    bare = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}, unk_token="[UNK]"))
    bare.pre_tokenizer = pre_tokenizers.Whitespace()
    bare.save(str(tmp_path / "bare.json"))
    with pytest.raises(DataError, match=r"bare.json: has no end-of-text token to separate documents"):
        data.run(lm_params(folder, tokenizer={"path": str(tmp_path / "bare.json")}), tmp_path)


def test_the_classification_path_is_unchanged(tmp_path: Path):
    """The text source on a CSV with data.task unset: no language-model key in its manifest, and the same files
    and manifest as with task: classify written out."""
    texts = [document(i) for i in range(12)]
    pd.DataFrame({"body": texts, "kind": ["a", "b"] * 6}).to_csv(tmp_path / "mail.csv", index=False)
    runs = {}
    for task in (None, "classify"):
        raw = tiny_params(tmp_path / "mail.csv")
        raw["data"] = {"source": "text", "path": str(tmp_path / "mail.csv"), "val_size": 2, "max_length": 16,
                       "tokenizer": {"train": {"kind": "wordpiece", "vocab_size": 120}}, "text_column": "body",
                       "label_column": "kind", **({"task": task} if task else {})}
        root = tmp_path / str(task)
        data.run(config.validate(raw, stage="data"), root)
        manifest = json.loads((root / MANIFEST).read_text())
        for entry in manifest.pop("files").values():
            entry.pop("sha256")  # np.savez stamps the time into its zip entries
        runs[task] = manifest, {name: arrays(root, name) for name in ("train", "val", "test")}
    manifest, files = runs[None]
    assert set(manifest) | {"files"} == CLASSIFY_TEXT_KEYS and not LM_KEYS & set(manifest)
    assert list(files["train"]) == ["input_ids", "attention_mask", "labels"]
    assert manifest == runs["classify"][0]
    assert all((files[n][k] == runs["classify"][1][n][k]).all() for n in files for k in files[n])


def test_bad_documents_are_refused_naming_the_file(tmp_path: Path):
    folder = write_documents(tmp_path / "docs", [document(i) for i in range(12)])
    (folder / "d04.txt").write_text("")
    with pytest.raises(DataError, match=r"docs/d04.txt: empty text"):
        data.run(lm_params(folder), tmp_path)
    (folder / "d04.txt").write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"docs/d04.txt: byte offset 8 \(line 2\) is not UTF-8"):
        data.run(lm_params(folder), tmp_path)
    (folder / "d04.txt").write_text(document(4))
    (tmp_path / "rows.csv").write_text('body\nfine words here\n"  "\n')
    with pytest.raises(DataError, match=r"rows.csv: row 2, column 'body': whitespace-only text"):
        documents.read(tmp_path / "rows.csv", SourceOptions(text_column="body"))
    with pytest.raises(ValueError, match=r"needs data.text_column"):
        documents.read(tmp_path / "rows.csv", SourceOptions())
    with pytest.raises(ValueError, match=r"data.label_column: data.task causal_lm reads documents"):
        documents.read(tmp_path / "rows.csv", SourceOptions(text_column="body", label_column="kind"))


def test_a_block_size_without_full_blocks_is_refused_by_key(tmp_path: Path):
    texts = [document(i) for i in range(12)]
    folder = write_documents(tmp_path / "docs", texts)
    with pytest.raises(DataError, match=r"data.block_size=5000 is larger than every split's token count \(the most: "
                                        r"train's \d+\)"):
        data.run(lm_params(folder, block_size=5000), tmp_path)
    ordered = sorted(range(12), key=lambda i: f"{i % 2}{i:02d}")  # file order: d00, d02, ..., part/d01, ...
    val = [ordered[i] for i in documents.split(12, 0.25, 2, 0)["val"]]
    for i in val:  # the validation documents: a few tokens each
        (folder / ("part" if i % 2 else "") / f"d{i:02d}.txt").write_text("ink")
    with pytest.raises(DataError, match=r"data.block_size=64: the val split's \d+ tokens \(2 documents\) make no "
                                        r"full block"):
        data.run(lm_params(folder, block_size=64), tmp_path)
    with pytest.raises(DataError, match=r"data.val_size=20 leaves no training documents: 12 documents, 3 of them"):
        data.run(lm_params(folder, val_size=20), tmp_path)


@pytest.mark.parametrize(("keys", "match"), [
    ({"label_column": "kind"}, r"data.label_column: data.task causal_lm reads documents, which have no labels"),
    ({"class_names": ["a", "b"]}, r"data.class_names: data.task causal_lm reads documents"),
    ({"max_length": 32}, r"data.max_length: data.task causal_lm reads documents"),
    ({"block_size": None}, r"data.task causal_lm needs data.block_size"),
    ({"block_size": 1}, r"data.block_size"),
    ({"tokenizer": None}, r"data.task causal_lm needs data.tokenizer"),
    ({"source": "table", "label_column": "kind", "tokenizer": None},
     r"data.task causal_lm reads documents of the text source"),
])
def test_params_that_do_not_fit_causal_lm_are_refused_by_key(tmp_path: Path, keys, match):
    with pytest.raises(config.ConfigError, match=match):
        lm_params(tmp_path, **keys)


def test_params_defaults_and_block_size_only_with_causal_lm(tmp_path: Path):
    """A trained tokenizer is bpe unless told otherwise (classification still names its kind); block_size is
    refused without causal_lm; a whole run takes the task (tests/flows/test_lm_pipeline.py runs one)."""
    assert lm_params(tmp_path, tokenizer={"train": {"vocab_size": 500}}).data.tokenizer.train.kind == "bpe"
    raw = tiny_params(tmp_path)
    raw["data"] = {"source": "text", "path": str(tmp_path), "val_size": 2, "max_length": 8, "block_size": 8,
                   "tokenizer": BPE, "text_column": "body", "label_column": "kind"}
    with pytest.raises(config.ConfigError, match=r"data.block_size is for data.task causal_lm"):
        config.validate(raw, stage="data")
    with pytest.raises(config.ConfigError, match=r"teacher.arch.name 'cnn' reads images or feature vectors, but "
                                                 r"data.source 'text' gives token ids"):
        lm_params(tmp_path, stage=None)  # a whole run: the teacher must read the blocks (name: hf)
