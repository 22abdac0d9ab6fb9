"""Several ranks without torchrun: validation split across ranks adds up to one process's numbers, and the
distillation terms over a padded text's tokens are weighted by each rank's share of the tokens, not of the rows.
Ranks are simulated by patching parallel's rank, world size and all-reduce; a one-rank gloo group runs the real
all-reduce. Real ranks run in tests/steps/test_distill_ranks.py and tests/core/test_launch.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributed as dist
from torch import nn

from steps.compression import parallel, training
from steps.compression.distillation.hidden_states import HiddenStates
from steps.compression.distillation.objective import WeightedSum, WeightedTerm
from steps.compression.distillation.soft_targets import SoftTargets
from steps.compression.training import Split, TokenMean, accuracy, adam, fraction, train_epochs, validation_scores
from tests.compression import two_ranks
from tests.compression.lm import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def as_rank(monkeypatch, rank: int, world: int, sums: list | None = None, reduced=None) -> None:
    """This process plays `rank` of `world`; all_reduce_sums records what it is given in `sums` and returns
    `reduced(values)` (the values themselves by default)."""
    monkeypatch.setattr(parallel, "world_size", lambda: world)
    monkeypatch.setattr(parallel, "rank", lambda: rank)

    def all_reduce_sums(*values):
        if sums is not None:
            sums.append(values)
        return values if reduced is None else reduced(values)

    monkeypatch.setattr(parallel, "all_reduce_sums", all_reduce_sums)


def classifier() -> tuple[nn.Module, Split]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5)), two_ranks.split()


class Logits(nn.Module):
    """A causal LM returning its logits tensor, as the hf family's wrapper does."""

    def __init__(self) -> None:
        super().__init__()
        self.lm = tiny_llama()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids).logits


def language_model() -> tuple[nn.Module, Split]:
    """9 blocks of random tokens, every other one the model's own next token, so that some are predicted right."""
    model = Logits()
    blocks = torch.randint(1, 64, (9, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for t in range(1, 15, 2):
            blocks[:, t + 1] = model(blocks[:, :t + 1])[:, -1].argmax(-1)
    return model, Split({"input_ids": blocks}, blocks)


def rank_sums(monkeypatch, score, world: int) -> list[tuple]:
    """What each of `world` ranks hands to the all-reduce when it runs `score()`."""
    sums = []
    for rank in range(world):
        as_rank(monkeypatch, rank, world, sums)
        score()
    return sums


def test_a_ranks_rows_are_its_contiguous_part_as_shard_splits_a_batch(monkeypatch):
    for world in (1, 2, 3, 4):
        for n in range(11):
            parts = []
            for rank in range(world):
                as_rank(monkeypatch, rank, world)
                parts.append(torch.arange(n)[parallel.my_rows(n)].tolist())
            assert parts == [part.tolist() for part in torch.arange(n).tensor_split(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_the_ranks_counts_add_up_to_one_process_accuracy(monkeypatch, world):
    model, split = classifier()
    one = accuracy(model, split)
    (alone,) = rank_sums(monkeypatch, lambda: accuracy(model, split, batch_size=16), 1)
    ranks = rank_sums(monkeypatch, lambda: accuracy(model, split, batch_size=16), world)
    right, total = (sum(column) for column in zip(*ranks, strict=True))
    assert [r[1] for r in ranks] == [len(p) for p in torch.arange(101).tensor_split(world)]
    assert (right, total) == alone and total == 101
    assert fraction(right, total) == one  # the same bits


def test_the_ranks_token_sums_add_up_to_one_process_scores(monkeypatch):
    model, split = language_model()
    monkeypatch.setattr(training, "LOGITS_PER_BATCH", 16 * 64 * 2)  # two blocks a batch: several batches a rank
    one = validation_scores(model, split)
    (alone,) = rank_sums(monkeypatch, lambda: validation_scores(model, split), 1)
    ranks = rank_sums(monkeypatch, lambda: validation_scores(model, split), 2)
    right, loss, total = (sum(column) for column in zip(*ranks, strict=True))
    assert (right, total) == (alone[0], alone[2]) and total == 9 * 15 and right >= 9 * 7
    assert loss == pytest.approx(alone[1], rel=1e-9)
    assert right / total == one["val_accuracy"]
    assert math.exp(loss / total) == pytest.approx(one["val_perplexity"], rel=1e-9)


def test_a_rank_beyond_the_last_row_scores_nothing(monkeypatch):
    model, split = classifier()
    small = Split(split.x[:2], split.y[:2])
    (sums,) = [s for s in rank_sums(monkeypatch, lambda: accuracy(model, small), 3)][2:]
    assert sums == (0, 0)


def test_a_rank_beyond_the_last_block_scores_no_block_of_a_language_model(monkeypatch):
    """Fewer validation blocks than ranks: the rank without one adds zeros (a Llama fed an empty batch raised,
    and the other ranks then waited in the all-reduce)."""
    from steps.compression.families.hf.causal import HFCausalLM
    from tests.compression.lm import VOCAB

    model = HFCausalLM(tiny_llama())
    blocks = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    small = Split({"input_ids": blocks}, blocks)
    sums = []
    for rank in range(3):  # the all-reduce answers with the whole split's sums, as the real one would
        as_rank(monkeypatch, rank, 3, sums, reduced=lambda values: (1, 1.0, 14))
        training.next_token_scores(model, small)
    assert sums[2] == (0, 0.0, 0) and all(total == 7 for _, _, total in sums[:2])


def test_a_one_rank_group_all_reduces_in_float64_and_scores_the_same_bits(tmp_path):
    model, split = classifier()
    lm, blocks = language_model()
    expected = accuracy(model, split), validation_scores(lm, blocks)
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        assert parallel.active()
        assert parallel.all_reduce_sums(3, 0.1, 2**40 + 1) == (3.0, 0.1, float(2**40 + 1))
        assert (accuracy(model, split), validation_scores(lm, blocks)) == expected
    finally:
        dist.destroy_process_group()
    assert parallel.all_reduce_sums(3, 0.1) == (3, 0.1)  # no group: the values themselves


# ---- distillation terms over tokens, weighted by tokens across ranks ---------------------------------------


def padded_batch():
    """4 texts of 6 positions whose real tokens fall unevenly: rows 0-1 (rank 0 of 2) 11 tokens, rows 2-3 3."""
    g = torch.Generator().manual_seed(0)
    mask = (torch.arange(6) < torch.tensor([6, 5, 1, 2])[:, None]).long()
    student = {"logits": torch.randn(4, 3, generator=g, requires_grad=True),
               "hidden": torch.randn(4, 6, 8, generator=g, requires_grad=True)}
    teacher = {"logits": torch.randn(4, 3, generator=g), "hidden": torch.randn(4, 6, 8, generator=g)}
    return student, teacher, mask


def text_objective() -> WeightedSum:
    """Soft targets (a mean over rows) and hidden states over real tokens (a mean over tokens)."""
    return WeightedSum([WeightedTerm("soft_targets", 0.5, [SoftTargets(2.0)]),
                        WeightedTerm("hidden_states", 1.0, [HiddenStates(8, 8)], [("h", "h")])])


def loss_of(objective: WeightedSum, student, teacher, mask, rows) -> TokenMean:
    return objective.token_mean(student["logits"][rows], teacher["logits"][rows], torch.zeros(len(rows)),
                                {"h": student["hidden"][rows]}, {"h": teacher["hidden"][rows]}, mask[rows])


def gradients(student, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, [student["logits"], student["hidden"]]))


def test_two_ranks_weigh_the_token_terms_by_their_tokens_so_they_add_up_to_the_batchs_loss(monkeypatch):
    objective = text_objective()
    student, teacher, mask = padded_batch()
    batch = torch.arange(4)
    whole = loss_of(objective, student, teacher, mask, batch)
    assert isinstance(whole, TokenMean) and whole.tokens.item() == 14
    ranks, rows_only = [], []
    for rank in range(2):
        as_rank(monkeypatch, rank, 2, reduced=lambda values: (float(mask.sum()),))  # the tokens of both ranks
        mine, weight, held = parallel.shard(batch)
        out = loss_of(objective, student, teacher, mask, mine)
        ranks.append(training._weighted(out, weight, held, len(batch))[1])
        rows_only.append(out.loss * weight)
    ddp_mean = (ranks[0] + ranks[1]) / 2  # DDP averages the ranks' gradients
    assert ddp_mean.item() == pytest.approx(whole.loss.item(), rel=1e-6)
    for ours, one in zip(gradients(student, ddp_mean), gradients(student, whole.loss), strict=True):
        torch.testing.assert_close(ours, one)
    # weighted by rows, the token terms would be the mean of the ranks' token means: 11 vs 3 tokens differ
    assert ((rows_only[0] + rows_only[1]) / 2).item() != pytest.approx(whole.loss.item(), rel=1e-2)


def test_a_rank_without_rows_counts_no_token_and_weighs_nothing(monkeypatch):
    sent = []
    as_rank(monkeypatch, 1, 2, sent, reduced=lambda values: (5.0,))
    assert parallel.token_weight(7.0, held=0) == 0.0 and sent == [(0.0,)]
    assert parallel.token_weight(5.0, held=1) == 2.0


def test_without_a_mask_or_a_token_term_the_objective_gives_its_plain_loss():
    objective = text_objective()
    student, teacher, mask = padded_batch()
    args = (student["logits"], teacher["logits"], torch.zeros(4), {"h": student["hidden"]}, {"h": teacher["hidden"]})
    assert isinstance(objective.token_mean(*args), torch.Tensor)
    logits_only = WeightedSum([WeightedTerm("soft_targets", 0.5, [SoftTargets(2.0)])])
    assert isinstance(logits_only.token_mean(*args[:3], mask=mask), torch.Tensor)
    with_mask = objective.token_mean(*args, mask)
    assert torch.equal(with_mask.loss, objective(*args, mask))  # the loss one process trains on, bit for bit


def test_one_process_trains_on_a_token_means_loss_bit_for_bit():
    split = Split(torch.randn(40, 4, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 3)
    plain = training.cross_entropy_loss(split, torch.device("cpu"))

    def token_mean(model, idx):
        loss = plain(model, idx)
        return TokenMean(loss, loss * 0.25, torch.tensor(7))  # a per-token part one process does not weigh

    trained, losses = [], []
    for step in (plain, token_mean):
        torch.manual_seed(0)
        model, seen = nn.Linear(4, 3), []
        train_epochs(model, adam(model.parameters(), 0.01, 0.0), len(split), 16, 2, step,
                     generator=torch.Generator().manual_seed(0), description="tiny",
                     on_epoch=lambda epoch, loss, seen=seen: seen.append(loss))
        trained.append(model.state_dict())
        losses.append(seen)
    assert losses[0] == losses[1]
    assert all(torch.equal(trained[0][k], trained[1][k]) for k in trained[0])



# ---- two real gloo processes: rank 0's statistics, then the split validation -------------------------------------


@pytest.mark.integration  # two spawned processes, each importing torch (~9 s on 2 busy cores): make test
def test_two_processes_take_rank_0s_statistics_and_score_as_one_process(tmp_path):
    """Without the broadcast rank 1 would keep the statistics of its own batch, and score its rows with them."""
    torch.multiprocessing.spawn(two_ranks.score, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]
    assert all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])
    model, split = two_ranks.batch_norm_classifier()
    model.load_state_dict(ranks[0]["state"])
    assert ranks[0]["accuracy"] == ranks[1]["accuracy"] == accuracy(model, split)
