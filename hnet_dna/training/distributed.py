"""Process-group setup (torchrun or SLURM via submitit) and DDP / FSDP2 model wrapping."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from hnet_dna.training.config import DistributedConfig

log = logging.getLogger(__name__)


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``,
    checked to exist on this machine (``ValueError`` saying what is missing otherwise).

    The one parser of a device setting: trainer, sweep and every evaluation command use it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: no CUDA device is available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise ValueError(f"device {name!r} is not available; use auto, cpu or cuda[:N]")


def _export_submitit_env() -> None:
    # Under SLURM through hydra-submitit, each task only knows its SLURM variables; submitit
    # translates them into the RANK / WORLD_SIZE / MASTER_ADDR variables torch expects.
    if "RANK" in os.environ or "SLURM_JOB_ID" not in os.environ:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError:
        return
    with contextlib.suppress(RuntimeError):  # not running inside a submitit job
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


_rank_tag = ""  # "[rank N] " once this process is rank N of several, else ""


def rank_tag() -> str:
    """``"[rank N] "`` in a process group of several ranks, ``""`` otherwise."""
    return _rank_tag


Factory = Callable[..., logging.LogRecord]


def _tagged_record_factory(base: Factory) -> Factory:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        if _rank_tag and not str(record.msg).startswith(_rank_tag):
            record.msg = f"{_rank_tag}{record.msg}"
        return record

    factory.hnet_dna_rank_tag = True  # type: ignore[attr-defined]
    return factory


def _tagged_formatwarning(base: Callable[..., str]) -> Callable[..., str]:
    def formatwarning(*args: Any, **kwargs: Any) -> str:
        return f"{_rank_tag}{base(*args, **kwargs)}"

    formatwarning.hnet_dna_rank_tag = True  # type: ignore[attr-defined]
    return formatwarning


def tag_logs_with_rank(rank: int, world_size: int) -> None:
    """Prefix this process's log records and Python warnings with ``[rank N] `` when it is one
    of several ranks (every rank's warnings and errors then say whose they are, also in a
    job log that interleaves ranks); no prefix for a single process. Idempotent."""
    global _rank_tag
    _rank_tag = f"[rank {rank}] " if world_size > 1 else ""
    if not _rank_tag:
        return
    if not getattr(logging.getLogRecordFactory(), "hnet_dna_rank_tag", False):
        logging.setLogRecordFactory(_tagged_record_factory(logging.getLogRecordFactory()))
    if not getattr(warnings.formatwarning, "hnet_dna_rank_tag", False):
        warnings.formatwarning = _tagged_formatwarning(warnings.formatwarning)


def elastic_store_warning(environ: dict[str, str] | os._Environ = os.environ) -> str | None:
    """Why an elastic restart of this torchrun group may fail to reconnect, or ``None``.

    With ``--max-restarts`` > 0 and the c10d rendezvous, torch's agents hand every restart round
    the same shared TCPStore, whose process-group keys are not per round (pytorch/pytorch#135712):
    a restarted gloo/NCCL group can read a dead worker's address (connection refused) or wait on
    a key another rank set under a different prefix until the collective timeout. Exporting
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` to torchrun gives each round a fresh store on a
    fresh port, hosted by that round's rank 0 worker."""
    if environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    if int(environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) <= 0:
        return None
    return ("torchrun --max-restarts > 0 with the agent's shared TCPStore: a restarted group may "
            "fail to reconnect (pytorch/pytorch#135712); export "
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 to torchrun")


def init_distributed(cfg: DistributedConfig, device_name: str = "auto") -> DistEnv:
    """Join the process group when launched with several processes; a no-op otherwise.

    With several ranks, every log record and warning of this process is tagged with its rank
    (:func:`tag_logs_with_rank`)."""
    _export_submitit_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        tag_logs_with_rank(0, 1)
        return DistEnv(device=device)
    rank = int(os.environ["RANK"])
    tag_logs_with_rank(rank, world_size)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if rank == 0 and (problem := elastic_store_warning()):
        log.warning(problem)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistEnv(rank, world_size, local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv, cfg: DistributedConfig, bf16: bool) -> nn.Module:
    """DDP or FSDP2 (``fully_shard``) around ``model`` when running with several processes.

    FSDP2 shards in place: the returned module is ``model`` itself with DTensor parameters, so
    the optimizer must be built *after* this call.
    """
    if not env.enabled:
        return model
    if cfg.strategy == "ddp":
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32
        )
        units = set(cfg.fsdp_unit_classes)
        for module in list(model.modules())[1:]:
            if type(module).__name__ in units:
                fully_shard(module, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    raise ValueError(f"unknown distributed.strategy {cfg.strategy!r}; expected ddp or fsdp")


def unwrap(model: nn.Module) -> nn.Module:
    """The user module behind a DDP wrapper (FSDP2 modules are not wrapped)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on accumulation micro-batches (sync only on the last)."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not enabled:
        with model.no_sync():
            yield
        return
    if is_fsdp(model):
        model.set_requires_gradient_sync(enabled)
    yield


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """In-place sum across ranks (identity when single-process)."""
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, env: DistEnv) -> object:
    """Rank 0's ``obj`` on every rank."""
    if not env.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: object, env: DistEnv) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not env.enabled:
        return [obj]
    out: list[object] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out
