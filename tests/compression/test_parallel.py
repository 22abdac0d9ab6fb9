"""steps/compression/parallel.py in one process: who is a rank (torchrun's TORCHELASTIC_RUN_ID, as for the launcher,
never a stray WORLD_SIZE), each rank bound to its own GPU whatever the backend, and BatchNorm layers swapped for
SyncBatchNorm and back with the same tensors. A real gloo group of one rank forms here; the two-rank runs are in
tests/core/test_launch.py and tests/steps/test_distill_ranks.py."""

from __future__ import annotations

import socket

import pytest
import torch
from torch import nn

from steps import config
from steps.compression import parallel, torchrun_env
from steps.core import launch

CPU = torch.device("cpu")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def torchrun_rank(monkeypatch):
    """This process as torchrun makes a rank: a world of one (so that its group forms here), local rank 1 (the
    second process on its machine, as in a two-GPU run)."""
    for key, value in {"TORCHELASTIC_RUN_ID": "test", "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)


def test_a_stray_world_size_makes_no_rank(monkeypatch):
    monkeypatch.delenv(torchrun_env.TORCHRUN_ENV, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")  # left by another launcher; no MASTER_ADDR: a group would fail to form
    monkeypatch.setenv("RANK", "1")
    assert not torchrun_env.inside_torchrun() and torchrun_env.world_size() == 1
    with parallel.process_group("gloo", CPU):
        assert not parallel.active() and parallel.world_size() == 1 and parallel.is_main()
    assert launch.needed(config.ResourcesConfig(processes=2))  # the launcher agrees: not a rank, so it starts them


def test_a_torchrun_rank_of_a_world_of_one_joins_its_group(torchrun_rank):
    assert not launch.needed(config.ResourcesConfig(processes=1))  # a rank already: nothing to start
    with parallel.process_group("gloo", CPU):
        assert parallel.active() and parallel.world_size() == 1 and parallel.is_main()
    assert not parallel.active()  # destroyed after


def test_gloo_on_cuda_binds_each_rank_to_its_own_gpu(torchrun_rank, monkeypatch):
    bound: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", bound.append)  # no GPU here: what would be bound is recorded
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with parallel.process_group("gloo", CPU):
        pass
    assert bound == []  # a CPU run touches no GPU
    with parallel.process_group("gloo", torch.device("cuda")):
        assert parallel.active()
    assert bound == [torchrun_env.local_rank()] == [1]


def _with_batchnorm() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.BatchNorm1d(8)), nn.Linear(8, 2))


def test_batchnorm_becomes_syncbatchnorm_and_back_with_the_same_tensors():
    model = _with_batchnorm()
    originals = (model[1], model[3][2])
    tensors = [*model.parameters(), *model.buffers()]
    swapped = parallel.sync_batchnorm(model)
    assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[3][2], nn.SyncBatchNorm)
    # the same Parameter and buffer objects: the optimizer built on the model's parameters still trains them
    assert all(a is b for a, b in zip([*model.parameters(), *model.buffers()], tensors, strict=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    model(torch.randn(6, 1, 6, 6)).sum().backward()  # no process group: SyncBatchNorm runs as BatchNorm
    optimizer.step()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    parallel.local_batchnorm(swapped)
    assert (model[1], model[3][2]) == originals
    assert [type(m) for m in (model[1], model[3][2])] == [nn.BatchNorm2d, nn.BatchNorm1d]
    assert all(a is b for a, b in zip([*model.parameters(), *model.buffers()], tensors, strict=True))
    state = model.state_dict()
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in state)
    assert int(state["1.num_batches_tracked"]) == 1 and model[1].training


def test_replicas_on_cpu_keep_batchnorm_because_torch_syncs_gpus_only(torchrun_rank):
    model = _with_batchnorm()
    with parallel.process_group("gloo", CPU):
        replicas = parallel.Replicas(model, torch.optim.SGD(model.parameters(), lr=0.1))
        assert type(model[1]) is nn.BatchNorm2d and replicas.swapped == []
        synced = nn.SyncBatchNorm(4).train()
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            synced(torch.randn(2, 4, 3, 3))  # were a CPU ever allowed, this would be worth doing there too


def test_more_processes_than_gpus_is_refused_naming_the_key(torchrun_rank, monkeypatch):
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("bound a GPU that is not there"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # local rank 1 of a machine with one GPU
    with pytest.raises(ValueError, match=r"^resources.processes: local rank 1 needs GPU 1, and this machine has 1 "
                                         r"visible"):
        with parallel.process_group("gloo", torch.device("cuda")):
            pass
    assert not parallel.active()
