"""resources.strategy fsdp without torchrun: which modules are sharded one by one, the sharded copy's weights and
the optimizer retargeted to it (on a world of one rank, a gloo group in this process), what the config and
train_epochs refuse, and what the strategy adds to a stage's code key. Two real ranks: tests/steps/test_fsdp_ranks.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from steps import config
from steps.compression import parallel, sharded
from steps.compression.precision import Precision
from steps.compression.training import train_epochs
from steps.core.dag import stage
from tests.helpers import default_params

TINY = {"vocab_size": 40, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2}


@pytest.fixture(scope="module")
def one_rank():
    """A process group of this process alone (no torchrun, no port): what fully_shard needs to shard over."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(),
                         nn.Sequential(nn.Linear(16, 16), nn.ReLU()), nn.Linear(16, 3))


class Tied(nn.Module):
    """An embedding whose weight the output layer reuses: sharding the embedding alone would split the tie."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.body = nn.Linear(8, 8)
        self.out = nn.Linear(8, 10, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(self.embed(ids)))


def test_units_are_a_hf_models_declared_layers_else_the_layers_with_parameters():
    llama = LlamaForCausalLM(LlamaConfig(**TINY, num_key_value_heads=1))
    assert [type(u).__name__ for u in sharded.units(llama)] == ["LlamaDecoderLayer"] * 2
    bert = BertForSequenceClassification(BertConfig(**TINY, num_labels=3))
    assert [type(u).__name__ for u in sharded.units(bert)] == ["BertEmbeddings", "BertLayer", "BertLayer"]
    mlp = _mlp()  # the Sequentials opened: their layers with parameters (no Flatten, no ReLU)
    assert sharded.units(mlp) == [mlp[1], mlp[2], mlp[4][0], mlp[5]]
    tied = Tied()  # the tied embedding and head stay with the root
    assert sharded.units(tied) == [tied.body]


def test_the_sharded_copy_computes_what_the_model_computes_and_trains_as_it(one_rank, one_thread):
    """On one rank FSDP shards nothing away: the copy trained 3 steps, gathered, equals the model trained alone."""
    model, alone = _mlp(), _mlp()
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    regressor = nn.Linear(3, 3)  # a parameter outside the model (a distillation term's), kept whole
    optimizer = torch.optim.AdamW([*model.parameters(), *regressor.parameters()], lr=0.01, weight_decay=0.1,
                                  fused=True)
    copied_regressor = copy.deepcopy(regressor)
    reference = torch.optim.AdamW([*alone.parameters(), *copied_regressor.parameters()], lr=0.01,
                                  weight_decay=0.1, fused=True)
    shards = sharded.Sharded(model, optimizer)
    assert all(isinstance(p, DTensor) for p in optimizer.param_groups[0]["params"])
    assert optimizer.param_groups[1]["params"] == list(regressor.parameters()) == shards.others
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.01, 0.1)] * 2
    for net, opt, head in ((shards.model, optimizer, regressor), (alone, reference, copied_regressor)):
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(head(net(x)), y).backward()
            opt.step()
    shards.gather()
    for (name, p), q in zip(model.named_parameters(), alone.parameters(), strict=True):
        assert not isinstance(p, DTensor) and torch.equal(p, q), name
    assert torch.equal(model[2].running_mean, alone[2].running_mean)  # the buffers too
    assert torch.equal(regressor.weight, copied_regressor.weight)
    shards.close()  # the optimizer's own groups back, the sharded moments dropped
    assert optimizer.param_groups[0]["params"] == [*model.parameters(), *regressor.parameters()]
    assert set(optimizer.state) == set(regressor.parameters())


def test_bf16_autocasts_around_the_sharded_copy(one_rank, one_thread):
    """resources.precision bf16 with fsdp: autocast sees the gathered weights as it sees a plain model's."""
    model = _mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, fused=True)
    shards = sharded.Sharded(model, optimizer)
    before = model[1].weight.detach().clone()
    with Precision("bf16", torch.device("cpu")).autocast():
        out = shards.model(torch.randn(8, 12))
    assert out.dtype == torch.bfloat16
    out.float().pow(2).mean().backward()
    optimizer.step()
    shards.gather()
    assert not torch.equal(model[1].weight, before)


def test_a_stepped_optimizer_is_refused(one_rank):
    model = _mlp()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)  # its moments are the plain parameters'
    model(torch.randn(4, 12)).sum().backward()
    optimizer.step()
    with pytest.raises(ValueError, match="fsdp .resources.strategy. shards a fresh optimizer"):
        sharded.Sharded(model, optimizer)


def test_train_epochs_refuses_fsdp_with_an_after_step_hook(monkeypatch):
    """A hook re-masking pruned weights would mask the model while its sharded copy trains."""
    monkeypatch.setattr(parallel, "world_size", lambda: 2)
    model = _mlp()
    with pytest.raises(ValueError, match="resources.strategy fsdp trains a copy of the model, and after_step"):
        train_epochs(model, torch.optim.SGD(model.parameters(), lr=0.1), 8, 4, 1, lambda m, idx: m(idx),
                     generator=torch.Generator(), description="t", after_step=lambda: None, strategy="fsdp")


def _params(**resources) -> dict:
    raw = default_params()
    raw["resources"] = resources
    return raw


def test_fsdp_refuses_fp16_and_the_teachers_l1_naming_the_keys():
    with pytest.raises(config.ConfigError, match="resources.strategy fsdp with resources.precision fp16"):
        config.validate({**_params(strategy="fsdp", processes=2, precision="fp16"), "device": "cuda"})
    raw = _params(strategy="fsdp", nodes=2)
    raw["teacher"]["train"]["l1"] = {"coefficient": 0.001, "target": "weights"}
    with pytest.raises(config.ConfigError, match=r"resources.strategy fsdp cannot add teacher.train.l1"):
        config.validate(raw)
    assert config.validate(raw, stage="distill").resources.strategy == "fsdp"  # distill adds no L1
    raw["resources"]["nodes"] = 1  # one process: fsdp unused, the L1 penalty trains as always
    assert config.validate(raw).resources.strategy == "fsdp"


def test_fsdp_is_code_of_the_training_stages_only_when_ranks_run_it():
    """sharded.py joins the teacher's and distill's code keys with fsdp on several processes; one process trains
    the model itself whatever the strategy, and ddp never runs it."""
    module = "steps/compression/sharded.py"
    for name in ("teacher", "distill"):
        assert module in stage(name).code(config.validate(_params(strategy="fsdp", processes=2))), name
        assert module not in stage(name).code(config.validate(_params(strategy="fsdp"))), name
        assert module not in stage(name).code(config.validate(_params(processes=2))), name
    assert module not in stage("prune").code(config.validate(_params(strategy="fsdp", processes=2)))
