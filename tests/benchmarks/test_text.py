"""benchmarks/text.py on tiny settings: class folders of texts the test writes and a tiny BERT written by
save_pretrained stand in for SpamAssassin and all-MiniLM-L6-v2 (which the real run fetches)."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from tests.benchmarks.quick import ONE_TIMING, assert_timing, run_quick, written

HAM = "lunch meeting notes agenda monday minutes weekly room booked thanks team report".split()
SPAM = "win money now cheap pills offer claim prize free click limited act".split()
PLANS = ("heads+hidden", "ffn", "depth", "combined")


def class_folders(root: Path) -> Path:
    rng = random.Random(0)
    for split, per_class in (("train", 120), ("test", 30)):
        for label, pool in (("ham", HAM), ("spam", SPAM)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                (folder / f"{i}.txt").write_text(" ".join(rng.choices(pool, k=rng.randint(3, 9))))
    return root


def tiny_bert(folder: Path, texts: list[str]) -> Path:
    from transformers import BertConfig, BertModel

    from steps.sources import tokens

    tokenizer = tokens.wordpiece(80, texts)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                         pad_token_id=0)).save_pretrained(folder)  # a bare encoder, as all-MiniLM-L6-v2 is
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_text_benchmark_runs_quick(tmp_path):
    data = class_folders(tmp_path / "mail")
    model = tiny_bert(tmp_path / "bert", [p.read_text() for p in (data / "train").rglob("*.txt")])
    result = run_quick("text.py", "--data-path", str(data), "--model", str(model), "--out", str(tmp_path / "out"),
                       "--assets", str(tmp_path / "assets"), "-S", "teacher.train.epochs=5",
                       "-S", "teacher.train.batch_size=8", "-S", "teacher.train.lr=0.005", *ONE_TIMING)
    assert result.returncode == 0, result.stderr[-3000:]
    report = written(tmp_path / "out", "text")
    rows, goals = report["rows"], report["goals"]
    expected = {"teacher", "combined shape, scratch", *(f"{p} pruned" for p in PLANS),
                *(f"{p} pruned+KD s0" for p in PLANS)}  # one seed under --quick
    assert set(rows) == expected
    teacher = rows["teacher"]
    for name, row in rows.items():
        assert set(row["formats"]) == {"fp32", "dynamic"}, name
        for fmt, f in row["formats"].items():
            assert 0 <= f["accuracy"] <= 1 and 0 <= f["macro_f1"] <= 1, (name, fmt)
            assert len(f["predicted"]) == len(report["test_labels"]) == 60
            for batch in ("batch_1", "batch_32"):
                assert_timing(f[batch], calls=1)
        assert row["formats"]["dynamic"]["file_bytes"] < row["formats"]["fp32"]["file_bytes"], name
        if name != "teacher":
            assert row["non_embedding"] < teacher["non_embedding"], name
    assert rows["depth pruned"]["shape"]["num_hidden_layers"] == 1
    assert rows["heads+hidden pruned"]["shape"]["hidden_size"] == 16
    assert rows["combined shape, scratch"]["shape"] == rows["combined pruned"]["shape"]
    assert teacher["formats"]["fp32"]["accuracy"] > 0.9  # the two classes share no word
    assert len(goals["kd_vs_scratch"]) == 1 and set(goals["kd_macro_f1"]) == set(PLANS)
