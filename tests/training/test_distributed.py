"""Two gloo processes on CPU train exactly like one process with the same global batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp
from training_helpers import tiny_model

from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.training.config import TrainerConfig
from hnet_dna.training.distributed import (
    DistEnv,
    elastic_store_warning,
    init_distributed,
    shutdown_distributed,
    unwrap,
)
from hnet_dna.training.trainer import Trainer

STEPS = 3
STRATEGIES = ("ddp", "fsdp")
VOCAB = DNA_VOCAB


def global_batches() -> list[list[dict[str, torch.Tensor]]]:
    """Per step, two micro-batches of random bases with uneven soft-mask weights and padding."""
    gen = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(STEPS):
        micro = []
        for _ in range(2):
            tokens = torch.randint(0, 4, (2, 48), generator=gen)
            weight = torch.where(torch.rand(2, 48, generator=gen) < 0.3, 0.1, 1.0)
            tokens[1, 40:] = VOCAB.pad_id
            weight[1, 40:] = 0.0
            micro.append({"tokens": tokens, "loss_weight": weight,
                          "softmasked": weight < 1.0})
        steps.append(micro)
    return steps


class ListStream:
    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches, self.position = batches, 0

    def __next__(self) -> dict[str, torch.Tensor]:
        self.position += 1
        return self.batches[self.position - 1]

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = state["position"]


def trainer_config(strategy: str, grad_accum: int) -> TrainerConfig:
    cfg = TrainerConfig(max_steps=STEPS, grad_accum=grad_accum, log_every=1, progress_bar=False)
    cfg.distributed.strategy = strategy
    cfg.optim.lr = 1e-2
    return cfg


def train(stream: ListStream, cfg: TrainerConfig, env, run_dir: str) -> dict[str, torch.Tensor]:
    trainer = Trainer(cfg, tiny_model(), stream, VOCAB, run_dir, env)
    losses = [trainer.train_step(trainer.next_micro_batches())["loss"] for _ in range(STEPS)]
    model = unwrap(trainer.model)
    state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
             for k, v in model.state_dict().items()}
    state["__losses__"] = torch.tensor(losses, dtype=torch.float64)
    return state


def worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    env = init_distributed(trainer_config("ddp", 1).distributed, "cpu")
    try:
        # Both strategies in one pair of processes: spawning costs more than training here.
        for strategy in STRATEGIES:
            # Rank r takes micro-batch r of every global batch.
            stream = ListStream([step[rank] for step in global_batches()])
            state = train(stream, trainer_config(strategy, 1), env, out_dir)
            if rank == 0:
                torch.save(state, os.path.join(out_dir, f"{strategy}.pt"))
    finally:
        shutdown_distributed()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_and_fsdp_match_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    # One process, same global batch as two accumulated micro-batches.
    stream = ListStream([mb for step in global_batches() for mb in step])
    single = train(stream, trainer_config("ddp", 2), DistEnv(), str(tmp_path / "single"))
    single_losses = single.pop("__losses__")
    # The run moved the weights (the comparison is not between two untouched models).
    assert not torch.equal(single["lm_head.weight"], tiny_model().lm_head.weight.detach())
    for strategy in STRATEGIES:
        distributed = torch.load(tmp_path / f"{strategy}.pt", weights_only=True)
        torch.testing.assert_close(distributed.pop("__losses__"), single_losses,
                                   rtol=1e-6, atol=1e-7, msg=strategy)
        assert distributed.keys() == single.keys()
        for name in single:
            torch.testing.assert_close(distributed[name], single[name], rtol=1e-5, atol=1e-6,
                                       msg=f"{strategy}: {name}")


def test_elastic_restarts_on_the_shared_store_are_warned_about():
    """torchrun's agent store is shared across restart rounds (pytorch/pytorch#135712): only a
    group that may restart on it is told to opt out."""
    shared = {"TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_MAX_RESTARTS": "1"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in elastic_store_warning(shared)
    assert elastic_store_warning({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None
    assert elastic_store_warning({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) is None
    assert elastic_store_warning({}) is None  # not under torchrun
