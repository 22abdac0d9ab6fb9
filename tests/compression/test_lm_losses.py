"""A language model's losses and scores on blocks of token ids (data.task causal_lm): the training loss, the
validation accuracy and perplexity, and the distillation terms on logits per token, each against a hand computation
over the positions that predict a token of their block (every one but the last)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from steps.compression import training
from steps.compression.distillation.hard_labels import HardLabels
from steps.compression.distillation.soft_targets import SoftTargets
from steps.compression.families.hf.causal import HFCausalLM
from steps.compression.training import Split
from tests.compression.lm import VOCAB, packed_split, tiny_llama


@pytest.fixture
def model(one_thread) -> HFCausalLM:
    return HFCausalLM(tiny_llama()).eval()


@pytest.fixture
def split() -> Split:
    """Packed blocks of 9 tokens: the model's input ids and, as the data stage gives them, the same ids as y."""
    ids = torch.from_numpy(packed_split(documents=12, block_size=9, seed=3)["input_ids"]).long()
    return Split({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, ids.clone())


def logits_of(model: HFCausalLM, split: Split) -> torch.Tensor:
    with torch.no_grad():
        return model(**split.x)


def hand_losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Every position's next-token loss, -log p(ids[b, t + 1] | logits[b, t]), by a loop: (B, T - 1)."""
    log_p = logits.double().log_softmax(-1)
    return torch.tensor([[-log_p[b, t, ids[b, t + 1]].item() for t in range(ids.size(1) - 1)]
                         for b in range(ids.size(0))], dtype=torch.float64)


def test_the_split_is_a_language_models(split):
    assert training.is_language_model(split) and split.y.shape == split.x["input_ids"].shape
    assert len(split) >= 4 and split.y.size(1) == 9


def test_next_token_pairs_position_t_with_token_t_plus_one():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    ids = torch.tensor([[5, 6, 7, 8], [1, 2, 3, 4]])
    predicted, targets = training.next_token(logits, ids)
    assert predicted.shape == (2 * 3, 3) and torch.equal(predicted, training.predicting(logits))
    assert torch.equal(targets, torch.tensor([6, 7, 8, 2, 3, 4]))
    assert torch.equal(predicted[3], logits[1, 0])  # the second block's first position predicts its token 1
    assert not any(torch.equal(row, logits[0, 3]) for row in predicted)  # a block's last position predicts nothing


def test_the_training_loss_is_the_mean_next_token_cross_entropy(model, split):
    idx = torch.tensor([0, 2, 3])
    loss = training.cross_entropy_loss(split, torch.device("cpu"))(model, idx)
    logits, ids = logits_of(model, split)[idx], split.y[idx]
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    assert loss.requires_grad  # the stage backpropagates it
    assert torch.isclose(loss.detach(), expected, atol=1e-6)
    assert math.isclose(loss.item(), hand_losses(logits, ids).mean().item(), rel_tol=1e-5)
    # the ids as one label per block would be another (wrong) loss: the step really shifts by one token
    assert not torch.isclose(loss.detach(), F.cross_entropy(logits.reshape(-1, VOCAB), ids.reshape(-1)), atol=1e-4)


def test_scores_are_accuracy_and_the_exp_of_the_mean_loss_by_hand(model, split):
    logits, ids = logits_of(model, split), split.y
    right = (logits[:, :-1].argmax(-1) == ids[:, 1:]).double().mean().item()
    perplexity = math.exp(hand_losses(logits, ids).mean().item())
    scores = training.next_token_scores(model, split)
    assert set(scores) == {"accuracy", "perplexity"}
    assert math.isclose(scores["accuracy"], right, abs_tol=1e-12)
    assert math.isclose(scores["perplexity"], perplexity, rel_tol=1e-6)
    assert 1 < perplexity < 4 * VOCAB  # an untrained model guesses about uniformly over the vocabulary
    assert training.validation_scores(model, split) == {"val_accuracy": scores["accuracy"],
                                                        "val_perplexity": scores["perplexity"]}
    assert training.accuracy(model, split) == scores["accuracy"]


def test_scores_do_not_depend_on_the_scoring_batch(model, split, monkeypatch):
    whole = training.next_token_scores(model, split)
    # room for one block's logits (9 x VOCAB) and a little more: every batch holds one block
    monkeypatch.setattr(training, "LOGITS_PER_BATCH", 9 * VOCAB + 1)
    assert training.lm_batch_size(split, VOCAB) == 1
    one_by_one = training.next_token_scores(model, split)
    monkeypatch.setattr(training, "LOGITS_PER_BATCH", 2 * 9 * VOCAB)  # 2 blocks a batch and a short last one,
    assert len(split) % 2 and training.lm_batch_size(split, VOCAB) == 2  # where a mean of batch means would differ
    by_two = training.next_token_scores(model, split)
    for scores in (one_by_one, by_two):
        assert scores["accuracy"] == whole["accuracy"]
        assert math.isclose(scores["perplexity"], whole["perplexity"], rel_tol=1e-6)


def test_scoring_restores_training_mode(model, split):
    model.train()
    training.next_token_scores(model, split)
    assert model.training


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_soft_targets_average_the_kl_over_every_predicting_position(temperature):
    generator = torch.Generator().manual_seed(0)
    student, teacher = (torch.randn(3, 5, 7, generator=generator, dtype=torch.float64) for _ in range(2))
    kls = []
    for b in range(3):
        for t in range(5 - 1):  # the last position predicts nothing of its block
            p = F.softmax(teacher[b, t] / temperature, -1)
            q = F.softmax(student[b, t] / temperature, -1)
            kls.append((p * (p.log() - q.log())).sum())
    expected = torch.stack(kls).mean()
    term = SoftTargets(temperature)
    assert torch.isclose(term(student, teacher), expected, atol=1e-12)
    assert term.coefficient(0.5) == 0.5 * temperature ** 2
    # the last position counts for nothing: changing it leaves the term as it was
    moved = teacher.clone()
    moved[:, -1] += torch.randn(3, 7, generator=generator, dtype=torch.float64)
    assert torch.isclose(term(student, moved), expected, atol=1e-12)
    assert term(teacher, teacher).abs() < 1e-12


def test_hard_labels_on_logits_per_token_are_the_next_token_loss(model, split):
    logits, ids = logits_of(model, split), split.y
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    assert torch.isclose(HardLabels()(logits, ids), expected, atol=1e-6)
    assert math.isclose(HardLabels()(logits, ids).item(), hand_losses(logits, ids).mean().item(), rel_tol=1e-5)
    # a classifier's logits (B, C) with one label each are still the plain cross-entropy
    flat = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 5, 2, 2])
    assert torch.isclose(HardLabels()(flat, labels), F.cross_entropy(flat, labels))


def test_a_teachers_padded_vocabulary_is_cut_to_the_students_and_a_smaller_one_refused():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 10), torch.randn(2, 5, 12)
    term = SoftTargets(temperature=1.0)
    assert torch.equal(term(student, teacher), term(student, teacher[..., :10]))
    with pytest.raises(ValueError, match="the student's logits have 12 entries per token, the teacher's 10"):
        term(teacher, student)
