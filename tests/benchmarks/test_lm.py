"""benchmarks/lm.py's own functions on a tiny random Llama and a tiny BPE written to tmp_path, standing in for
SmolLM2 and Brown (which the real run reads from the asset cache): every row runs, prunes what it says, and the
goals and table come out of the rows. No network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import lm
from tests.compression.lm import SENTENCES, packed_split, tiny_bpe, tiny_llama

BLOCK = 8


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(folder)
    tiny_bpe().save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def result(model_folder):
    torch.manual_seed(0)
    test = packed_split(documents=12, block_size=BLOCK, seed=1)
    calibration = torch.randint(1, 64, (4, BLOCK))
    rows = lm.with_ratios(lm.evaluate(model_folder, test, calibration, batch_size=4, log=lambda line: None))
    return {"rows": rows, "goals": lm.goals(rows)}


def test_spaced_documents_cover_the_list_ends_included():
    assert lm.spaced(100, 8).tolist() == [0, 14, 28, 42, 57, 71, 85, 99]
    assert lm.spaced(100, 1).tolist() == [0]
    with pytest.raises(ValueError, match="--test-documents"):
        lm.spaced(5, 6)


def test_calibration_blocks_are_distinct_seeded_training_blocks():
    train = {"input_ids": np.arange(20 * BLOCK, dtype=np.int32).reshape(20, BLOCK)}
    ids = lm.calibration_blocks(train, 5)
    assert ids.dtype == torch.int64 and ids.shape == (5, BLOCK)
    firsts = (ids[:, 0] // BLOCK).tolist()
    assert firsts == sorted(set(firsts))  # distinct blocks, in stream order
    assert torch.equal(ids, lm.calibration_blocks(train, 5))
    with pytest.raises(ValueError, match="--calibration-blocks"):
        lm.calibration_blocks(train, 21)


def test_prepare_splits_by_document_and_separates_with_the_tokenizers_end_of_text(tmp_path, model_folder):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"d{i:02d}.txt").write_text(" ".join(SENTENCES[j % 6] for j in range(i, i + 4)) + "\n")
    test, calibration, chosen = lm.prepare(corpus, model_folder, test_documents=2, calibration=3, block_size=BLOCK,
                                           val_size=4)
    assert chosen["split"] == {"train": 12, "val": 4, "test": 4}
    assert chosen["separator"]["token"] == "<|endoftext|>" and len(chosen["test_documents"]) == 2
    assert len(test["document_bytes"]) == 2 and len(test["document_starts"]) == 3
    assert calibration.shape == (3, BLOCK)
    sizes = [len((corpus / f"{d}.txt").read_bytes()) for d in chosen["test_documents"]]
    assert test["document_bytes"].tolist() == sizes


def test_every_row_prunes_what_it_names(result):
    rows = result["rows"]
    dense = rows["dense"]
    assert set(rows) == set(lm.ROWS)
    assert dense["nonzeros"] == dense["parameters"] and dense["compressed_bytes"] == dense["dense_bytes"]
    for name in ("magnitude 50%", "Wanda 50%", "magnitude 2:4", "Wanda 2:4"):
        assert rows[name]["parameters"] == dense["parameters"]
        assert rows[name]["nonzeros"] < dense["nonzeros"] * 0.8, name
    assert rows["Wanda 2:4"]["compressed_bytes"] < 0.8 * dense["dense_bytes"]
    assert rows["depth 1/3, last layers"]["layers_removed"] == [1]
    assert rows["depth 1/3, Block Importance"]["layers"] == 1 and dense["layers"] == 2
    assert rows["magnitude 50%"]["metrics"]["perplexity"] != dense["metrics"]["perplexity"]


def test_ratios_pair_documents_and_dense_is_one(result):
    rows = result["rows"]
    assert rows["dense"]["ratio_vs_dense"]["estimate"] == pytest.approx(1.0)
    for name, r in rows.items():
        q, ppl = r["ratio_vs_dense"], r["metrics"]["perplexity"]
        assert q["low"] <= q["estimate"] <= q["high"], name
        assert q["estimate"] == pytest.approx(ppl / rows["dense"]["metrics"]["perplexity"], rel=1e-9), name


def test_goal_a_is_the_share_of_magnitudes_increase():
    ppl = {"dense": 10.0, "magnitude 50%": 40.0, "Wanda 50%": 19.0}
    assert lm.increase_share(ppl, "Wanda 50%", "magnitude 50%") == pytest.approx(0.3)
    assert lm.increase_share({**ppl, "Wanda 50%": 21.0}, "Wanda 50%", "magnitude 50%") > 1 / 3
    assert lm.increase_share({**ppl, "magnitude 50%": 9.0}, "Wanda 50%", "magnitude 50%") == math.inf
    assert lm.increase_share(lm.WANDA_PAPER, "Wanda 50%", "magnitude 50%") == pytest.approx(1.30 / 9.77)


def test_numbers_keep_three_digits_at_any_scale():
    assert [lm._num(x) for x in (55.6034, 2109187920.98, 9.29e-08, 1.0)] == ["55.603", "2.11e+09", "9.29e-08", "1.000"]


def test_goals_and_table_follow_the_rows(result):
    g = result["goals"]
    ppl = {name: r["metrics"]["perplexity"] for name, r in result["rows"].items()}
    assert g["wanda_met"] == (g["wanda_share_50"] <= 1 / 3)
    better = ppl["depth 1/3, Block Importance"] < ppl["depth 1/3, last layers"]
    assert g["block_importance_met"] == better
    text = lm.table(result)
    assert f"| Wanda 2:4 | 2 | {lm._num(ppl['Wanda 2:4'])} |" in text
    assert ("(goal <= 33.3%): met" in text) == g["wanda_met"]
