"""The text source: tables of texts (CSV, Parquet, JSON Lines) and class folders of .txt files, their labels, the
tokenizer (trained on the training split, or loaded from a path), truncation, and bad input refused by file, row and
column. Text goes with the hf family (tests/steps/test_hf_teacher.py); the data stage alone runs on it whatever
the model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer
from typer.testing import CliRunner

from flows.cli import app
from steps import config, data, sources
from steps.core import datasets
from steps.core.layout import DATA_DIR, MANIFEST
from steps.core.stage import run_stage_main
from steps.sources import tokens
from steps.sources.base import DataError, SourceOptions, TokenizerOptions
from tests.helpers import tiny_params, write_params

HAM = ["lunch meeting notes", "see you at the meeting", "notes from lunch today", "the agenda for monday",
       "minutes of the weekly meeting", "can we move lunch", "thanks for the notes", "meeting room booked"]
SPAM = ["win money now", "cheap pills offer", "claim your prize money", "free offer win big", "money money money",
        "limited offer click now", "you win a cheap prize", "act now free money"]
WORDPIECE = {"train": {"kind": "wordpiece", "vocab_size": 120}}
TABLE = {"text_column": "body", "label_column": "kind"}


def rows(n_per_class: int = 8) -> pd.DataFrame:
    """Ham and spam texts alternating, `n_per_class` of each."""
    texts = [text for pair in zip(HAM, SPAM, strict=True) for text in pair][: 2 * n_per_class]
    return pd.DataFrame({"body": texts, "kind": ["ham", "spam"] * n_per_class})


def params(path: Path, stage: str | None = "data", **data_keys) -> config.Params:
    raw = tiny_params(path)
    raw["data"] = {"source": "text", "path": str(path), "val_size": 4, "max_length": 12, "tokenizer": WORDPIECE,
                   **data_keys}
    return config.validate(raw, stage=stage)


def options(**keys) -> SourceOptions:
    return SourceOptions(max_length=12, tokenizer=TokenizerOptions(kind="wordpiece", vocab_size=120),
                         test_fraction=0.25, **keys)


def split(root: Path, name: str) -> dict[str, np.ndarray]:
    with np.load(root / DATA_DIR / f"{name}.npz") as npz:
        return {key: npz[key] for key in npz.files}


def test_a_csv_of_texts_becomes_token_ids_masks_and_a_manifest(tmp_path: Path):
    rows().to_csv(tmp_path / "mail.csv", index=False)
    manifest = data.run(params(tmp_path / "mail.csv", max_length=32, **TABLE), tmp_path)
    assert manifest.kind == "text" and manifest.classes == ["ham", "spam"] and manifest.input_shape == [32]
    assert {f: e["rows"] for f, e in manifest.files.items()} == {"train.npz": 8, "val.npz": 4, "test.npz": 4}
    train = split(tmp_path, "train")
    assert list(train) == ["input_ids", "attention_mask", "labels"]
    assert train["input_ids"].dtype == np.int32 and train["attention_mask"].dtype == np.uint8
    assert train["input_ids"].shape == train["attention_mask"].shape == (8, 32)
    specials = manifest.tokenizer["special_tokens"]
    assert {role: t["token"] for role, t in specials.items()} == {
        "pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
    ids, mask = train["input_ids"], train["attention_mask"]
    assert (ids[:, 0] == specials["cls"]["id"]).all()  # [CLS] text [SEP] [PAD]...: pads exactly where the mask is 0
    assert ((ids == specials["pad"]["id"]) == (mask == 0)).all()
    lengths = mask.sum(1)
    assert (ids[np.arange(8), lengths - 1] == specials["sep"]["id"]).all()
    written = tmp_path / DATA_DIR / "tokenizer.json"
    assert manifest.tokenizer["sha256"] == hashlib.sha256(written.read_bytes()).hexdigest()
    tokenizer = Tokenizer.from_file(str(written))
    assert manifest.tokenizer["vocab_size"] == tokenizer.get_vocab_size() <= 120
    assert manifest.tokenizer["trained"] == {"kind": "wordpiece", "vocab_size": 120}
    # the ids decode back to the texts (lower-cased by BERT's normaliser): what the hf family will read
    assert {tokenizer.decode(row.tolist()) for row in ids} <= set(rows()["body"])
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert on_disk["truncated"] == {"train": 0, "val": 0, "test": 0} and on_disk["max_length"] == 32


def test_the_tokenizer_learns_from_the_training_split_only(tmp_path: Path):
    """A word only the test texts hold is not in the vocabulary; every training word is (the vocabulary is large
    enough for all of them)."""
    train_words = ["meeting", "lunch", "money", "prize"] * 2  # twice: the validation rows cannot take a word away
    for part, words in (("train", train_words), ("test", ["zyzzyva", "quokka"])):
        for cls in ("ham", "spam"):
            for i, word in enumerate(words):
                (tmp_path / "mail" / part / cls).mkdir(parents=True, exist_ok=True)
                (tmp_path / "mail" / part / cls / f"{i}.txt").write_text(f"{word} {cls}")
    manifest = data.run(params(tmp_path / "mail", val_size=2, tokenizer={"train": {"kind": "wordpiece",
                                                                                    "vocab_size": 400}}), tmp_path)
    vocab = Tokenizer.from_file(str(tmp_path / DATA_DIR / "tokenizer.json")).get_vocab()
    assert {"meeting", "lunch", "money", "prize", "ham", "spam"} <= set(vocab)
    assert not {"zyzzyva", "quokka"} & set(vocab)
    assert manifest.files["test.npz"]["rows"] == 4  # the given test split, kept as it is


def test_wordpiece_training_is_deterministic():
    """tokenizers' WordPiece trainer names its ## pieces in hash-map order (huggingface/tokenizers#1794): without
    the fix in tokens.wordpiece, trainings on the same texts differ about every other time."""
    texts = [f"{a} {b}" for a in HAM for b in SPAM]
    trained = {tokens.train(TokenizerOptions(kind="wordpiece", vocab_size=150), texts)[1] for _ in range(6)}
    assert len(trained) == 1
    vocab = Tokenizer.from_str(trained.pop().decode()).get_vocab()
    assert "##s" in vocab and "[PAD]" in vocab


def test_a_trained_bpe_tokenizer_frames_texts_as_roberta_does(tmp_path: Path):
    rows().to_parquet(tmp_path / "mail.parquet")
    manifest = data.run(params(tmp_path / "mail.parquet", tokenizer={"train": {"kind": "bpe", "vocab_size": 300}},
                               max_length=40, **TABLE), tmp_path)
    specials = {role: t["id"] for role, t in manifest.tokenizer["special_tokens"].items()}
    assert specials == {"cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": 4}  # <s> <pad> </s> <unk> <mask>
    ids = split(tmp_path, "val")["input_ids"]
    assert (ids[:, 0] == 0).all() and (ids == 2).sum() == len(ids)
    tokenizer = Tokenizer.from_file(str(tmp_path / DATA_DIR / "tokenizer.json"))
    assert {tokenizer.decode(row.tolist()) for row in ids} <= set(rows()["body"])  # byte-level: nothing unknown


def test_a_tokenizer_from_a_path_is_copied_beside_the_splits_as_it_is(tmp_path: Path):
    saved = tmp_path / "saved_tokenizer"
    saved.mkdir()
    tokenizer, raw = tokens.train(TokenizerOptions(kind="wordpiece", vocab_size=100), rows()["body"].tolist())
    (saved / "tokenizer.json").write_bytes(raw)
    config_file = {"pad_token": "[PAD]", "mask_token": {"content": "[MASK]"}}  # as save_pretrained writes them
    (saved / "tokenizer_config.json").write_text(json.dumps(config_file))
    rows().to_json(tmp_path / "mail.jsonl", orient="records", lines=True)
    for given in (saved, saved / "tokenizer.json"):  # a save_pretrained folder, or the tokenizer.json itself
        manifest = data.run(params(tmp_path / "mail.jsonl", tokenizer={"path": str(given)}, **TABLE), tmp_path)
        assert (tmp_path / DATA_DIR / "tokenizer.json").read_bytes() == raw
        assert manifest.tokenizer["sha256"] == hashlib.sha256(raw).hexdigest() and manifest.tokenizer["trained"] is None
        assert manifest.tokenizer["special_tokens"]["pad"] == {"token": "[PAD]", "id": tokenizer.token_to_id("[PAD]")}
    relative = params(Path("mail.jsonl"), tokenizer={"path": "saved_tokenizer"}, **TABLE)  # relative to the root
    assert data.run(relative, tmp_path).tokenizer["sha256"] == hashlib.sha256(raw).hexdigest()
    (saved / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<nothing>"}))
    with pytest.raises(DataError, match=r"saved_tokenizer: its pad_token '<nothing>' is not in the vocabulary"):
        data.run(params(tmp_path / "mail.jsonl", tokenizer={"path": str(saved)}, **TABLE), tmp_path)


def test_truncation_is_counted_per_split_and_keeps_the_special_tokens(tmp_path: Path, caplog):
    """Texts of 1..12 one-letter words are 3..14 tokens with [CLS] and [SEP] (a letter is one token, or [UNK]):
    10 words fit max_length 12 exactly, 11 and 12 lose tokens."""
    letters = "abcdefghijkl"
    frame = pd.DataFrame({"body": [" ".join(letters[: 1 + i % 12]) for i in range(24)], "kind": ["x", "y"] * 12})
    frame.to_csv(tmp_path / "letters.csv", index=False)
    p = params(tmp_path / "letters.csv", **TABLE)
    manifest = data.run(p, tmp_path)
    texts = data.split(sources.read("text", tmp_path / "letters.csv", data.source_options(p.data, p.seed)), p.data,
                       p.seed)  # which texts each split holds
    expected = {name: sum(len(text.split()) > 10 for text in x) for name, (x, _) in texts.items()}
    assert manifest.truncated == expected and sum(expected.values()) == 4
    sep = manifest.tokenizer["special_tokens"]["sep"]["id"]
    for name, count in expected.items():
        arrays = split(tmp_path, name)
        full = arrays["attention_mask"].all(axis=1)
        assert full.sum() == count + sum(len(text.split()) == 10 for text in texts[name][0])
        assert (arrays["input_ids"][full, -1] == sep).all()  # truncated, yet still framed by [SEP]
    assert "texts truncated to data.max_length=12 tokens" in caplog.text


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_integer_labels_sort_numerically_or_are_named(tmp_path: Path, fmt):
    frame = rows().assign(kind=[2, 10] * 8)
    path = tmp_path / f"mail.{fmt}"
    {"csv": lambda p: frame.to_csv(p, index=False), "parquet": frame.to_parquet,
     "jsonl": lambda p: frame.to_json(p, orient="records", lines=True)}[fmt](path)
    assert sources.read("text", path, options(**TABLE)).class_names == ("2", "10")


def test_integer_labels_as_class_indices_named_by_params_or_classes_txt(tmp_path: Path):
    path = tmp_path / "indexed.csv"
    rows().assign(kind=[0, 1] * 8).to_csv(path, index=False)
    named = sources.read("text", path, options(**TABLE, class_names=("ham", "spam")))
    assert named.class_names == ("ham", "spam") and named.num_classes == 2
    (tmp_path / "classes.txt").write_text("ham\nspam\n")
    from_file = sources.read("text", path, options(**TABLE))
    assert from_file.class_names == ("ham", "spam") and tmp_path / "classes.txt" in from_file.raw_files
    texts = np.concatenate([from_file.train[0], from_file.test[0]])
    labels = np.concatenate([from_file.train[1], from_file.test[1]])
    assert all((text in SPAM) == bool(label) for text, label in zip(texts, labels, strict=True))
    with pytest.raises(DataError, match=r"classes.txt and data.class_names both name the classes"):
        sources.read("text", path, options(**TABLE, class_names=("ham", "spam")))


def test_a_folder_of_tables_and_both_class_folder_layouts(tmp_path: Path):
    frame = rows()
    folder = tmp_path / "tables"
    folder.mkdir()
    frame[:6].to_csv(folder / "a.csv", index=False)
    frame[6:12].to_parquet(folder / "b.parquet")
    frame[12:].to_json(folder / "c.jsonl", orient="records", lines=True)
    read = sources.read("text", folder, options(**TABLE))
    assert len(read.train[1]) + len(read.test[1]) == 16 and len(read.raw_files) == 3 and read.name == "tables"
    flat = tmp_path / "flat"
    for i, (text, kind) in enumerate(zip(frame["body"], frame["kind"], strict=True)):
        (flat / kind / "sub").mkdir(parents=True, exist_ok=True)
        (flat / kind / ("sub" if i % 3 else "") / f"{i}.txt").write_text(text)
    (flat / "ham" / ".hidden.txt").write_text("   ")  # hidden files are skipped
    read = sources.read("text", flat, options())
    assert read.class_names == ("ham", "spam") and np.bincount(read.test[1]).tolist() == [2, 2]
    assert sorted(np.concatenate([read.train[0], read.test[0]])) == sorted(frame["body"])
    with pytest.raises(ValueError, match=r"class folders of .txt files name their classes; data.text_column"):
        sources.read("text", flat, options(text_column="body"))


@pytest.mark.parametrize(("content", "match"), [
    (b"body,kind\nhello there,ham\n,spam\nbye,ham\n", r"mail.csv: row 2, column 'body': empty text"),
    (b"body,kind\nhello there,ham\n   ,spam\n", r"mail.csv: row 2, column 'body': whitespace-only text"),
    (b"body,kind\nhello,ham\ncaf\xe9 au lait,spam\n", r"mail.csv: byte offset 23 \(line 3\) is not UTF-8"),
    (b"text,kind\nhello,ham\n", r"mail.csv: no 'body' column \(data.text_column\); columns present: \['text', 'kind"),
    (b"body,label\nhello,ham\n", r"mail.csv: no 'kind' column \(data.label_column\)"),
    (b"body,kind\nhello,ham\nbye,\n", r"mail.csv: row 2, column 'kind': missing label"),
    (b"body,kind\nhello,ham\nhi,ham\nbye,spam\n", r"class 'spam' has 1 row\(s\); a stratified split"),
])
def test_bad_csv_input_is_refused_naming_file_row_and_column(tmp_path: Path, content, match):
    (tmp_path / "mail.csv").write_bytes(content)
    with pytest.raises(DataError, match=match):
        sources.read("text", tmp_path / "mail.csv", options(**TABLE))


def test_bad_jsonl_parquet_and_txt_input_is_refused_by_name(tmp_path: Path):
    (tmp_path / "mail.jsonl").write_text('{"body": "hi", "kind": "ham"}\n\n{"body": " \\t", "kind": "spam"}\n')
    with pytest.raises(DataError, match=r"mail.jsonl: line 3, column 'body': whitespace-only text"):
        sources.read("text", tmp_path / "mail.jsonl", options(**TABLE))
    (tmp_path / "mail.jsonl").write_text('{"body": "hi", "kind": "ham"}\n{"text": "yo", "kind": "spam"}\n')
    with pytest.raises(DataError, match=r"mail.jsonl: line 2 has no 'body' field"):
        sources.read("text", tmp_path / "mail.jsonl", options(**TABLE))
    pd.DataFrame({"body": [b"fine", b"caf\xe9"], "kind": ["ham", "spam"]}).to_parquet(tmp_path / "mail.parquet")
    with pytest.raises(DataError, match=r"mail.parquet: row 2, column 'body': byte offset 3 of the value is not UTF-8"):
        sources.read("text", tmp_path / "mail.parquet", options(**TABLE))
    for name, body in (("good.txt", b"fine"), ("bad.txt", b"ok\nfine\n\xff\xfe")):
        (tmp_path / "docs" / "ham" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / "ham" / name).write_bytes(body)
        (tmp_path / "docs" / "spam" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / "spam" / name).write_bytes(b"spam text")
    with pytest.raises(DataError, match=r"ham/bad.txt: byte offset 8 \(line 3\) is not UTF-8"):
        sources.read("text", tmp_path / "docs", options())
    (tmp_path / "docs" / "ham" / "bad.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"ham/bad.txt: whitespace-only text"):
        sources.read("text", tmp_path / "docs", options())


def test_labels_and_names_that_disagree_are_refused(tmp_path: Path):
    rows().to_csv(tmp_path / "mail.csv", index=False)
    with pytest.raises(DataError, match=r"data.class_names names integer class indices, but the labels are text"):
        sources.read("text", tmp_path / "mail.csv", options(**TABLE, class_names=("a", "b")))
    rows().assign(kind=[0, 2] * 8).to_csv(tmp_path / "mail.csv", index=False)
    with pytest.raises(DataError, match=r"label 2 out of range 0..1 \(2 classes\)"):
        sources.read("text", tmp_path / "mail.csv", options(**TABLE, class_names=("a", "b")))


def test_a_tokenizer_folder_that_is_not_one_is_refused_before_reading(tmp_path: Path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "vocab.txt").write_text("[PAD]\n")
    (tmp_path / "mail.csv").write_bytes(b"body,kind\n\xff")  # not read: the tokenizer is refused first
    bad = SourceOptions(max_length=12, tokenizer=TokenizerOptions(path=str(tmp_path / "model")), **TABLE)
    with pytest.raises(DataError, match=r"model: not a tokenizer folder \(no tokenizer.json\)"):
        sources.read("text", tmp_path / "mail.csv", bad)
    (tmp_path / "model" / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    rows().to_csv(tmp_path / "mail.csv", index=False)
    with pytest.raises(DataError, match=r"model/tokenizer.json: not a tokenizers tokenizer.json"):
        data.run(params(tmp_path / "mail.csv", tokenizer={"path": str(tmp_path / "model")}, **TABLE), tmp_path)


def test_params_refuse_text_with_an_image_model_and_unknown_tokenizer_keys(tmp_path: Path):
    rows().to_csv(tmp_path / "mail.csv", index=False)
    with pytest.raises(config.ConfigError, match=r"teacher.arch.name 'cnn' .*data.source 'text' gives token ids: "
                                                 r"use name: hf"):
        params(tmp_path / "mail.csv", stage=None, **TABLE)
    for tokenizer, match in (({"path": "x", "lowercase": True}, r"data.tokenizer.lowercase: unknown key"),
                             ({"path": "x", "train": WORDPIECE["train"]}, r"exactly one of path .* and train"),
                             ({"train": {"kind": "unigram", "vocab_size": 9}}, r"data.tokenizer.train.kind")):
        with pytest.raises(config.ConfigError, match=match):
            params(tmp_path / "mail.csv", tokenizer=tokenizer, **TABLE)
    raw = tiny_params(tmp_path / "mail.csv")
    raw["data"] = {"source": "text", "path": "mail.csv", "val_size": 4, **TABLE}
    with pytest.raises(config.ConfigError, match=r"the text source needs data.tokenizer and data.max_length"):
        config.validate(raw, stage="data")


def test_shrinkflow_run_refuses_text_and_the_data_stage_alone_runs(tmp_path: Path):
    rows().to_csv(tmp_path / "mail.csv", index=False)
    raw = tiny_params(tmp_path / "mail.csv")
    raw["data"] = {"source": "text", "path": "mail.csv", "val_size": 4, "max_length": 12, "tokenizer": WORDPIECE,
                   **TABLE}
    write_params(tmp_path, raw)
    result = CliRunner().invoke(app, ["run", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "data.source" in result.output and "name: hf" in result.output
    assert not (tmp_path / DATA_DIR).exists()
    run_stage_main("data", data.run, ["--root", str(tmp_path)])  # what `python -m steps.data` runs
    assert json.loads((tmp_path / MANIFEST).read_text())["kind"] == "text"


def test_image_manifests_hold_no_text_fields(tmp_path: Path, idx_dir: Path):
    """Their manifests, and so their digests, stay what they were before text existed."""
    data.run(config.validate(tiny_params(idx_dir)), tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["kind"] == "image" and not {"tokenizer", "max_length", "truncated"} & set(manifest)


def test_downstream_reads_text_splits_and_the_tokenizer_hash_checked(tmp_path: Path):
    """steps.core.datasets: what the hf family will read; a changed split or tokenizer.json is refused by name."""
    rows().to_csv(tmp_path / "mail.csv", index=False)
    data.run(params(tmp_path / "mail.csv", max_length=32, **TABLE), tmp_path)
    manifest = datasets.read_manifest(tmp_path)
    ids, mask, labels = datasets.load_text(tmp_path, "val", manifest)
    assert ids.shape == mask.shape == (4, 32) and sorted(labels.tolist()) == [0, 0, 1, 1]  # stratified
    file = datasets.tokenizer_file(tmp_path, manifest)
    assert Tokenizer.from_file(str(file)).get_vocab_size() == manifest["tokenizer"]["vocab_size"]
    with pytest.raises(DataError, match=r"token ids and attention masks; read them with load_text"):
        datasets.load_arrays(tmp_path, "val", manifest)
    file.write_bytes(file.read_bytes() + b" ")
    with pytest.raises(DataError, match=r"tokenizer.json: sha256 does not match"):
        datasets.tokenizer_file(tmp_path, manifest)
