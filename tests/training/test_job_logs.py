"""Logs that suit batch jobs: plain progress lines, from rank 0 only, ranks on warnings."""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

import torch.multiprocessing as mp
from test_distributed import ListStream, free_port, global_batches, trainer_config
from training_helpers import tiny_model, tiny_model_config, tiny_pretrain_config

from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.training.distributed import init_distributed, shutdown_distributed
from hnet_dna.training.pretrain import run_pretrain
from hnet_dna.training.trainer import Trainer

PROGRESS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d pretrain: (\d+)/(\d+) step \(\d+%\), "
                      r"[\d.]+ (step/s|s/step), elapsed [\d:]+, (ETA [\d:]+|done)(.*)$")


def progress_steps(text: str) -> list[int]:
    return [int(m.group(1)) for m in map(PROGRESS.match, text.splitlines()) if m]


def test_training_in_a_job_log_writes_plain_progress_lines(tmp_path, capsys):
    # capsys: stderr is not a terminal, like a SLURM job's stderr file
    cfg = tiny_pretrain_config(max_steps=4, progress_bar=True, progress_interval=0)
    cfg.trainer.eval_every = 2
    run_pretrain(cfg, tiny_model_config(), tmp_path / "run")
    err = capsys.readouterr().err
    assert "\r" not in err
    # one line per step (interval 0), then the last line; bpb from the first log_every step on
    assert progress_steps(err) == [1, 2, 3, 4, 4]
    lines = [line for line in err.splitlines() if PROGRESS.match(line)]
    assert all("bpb=" in line and "lr=" in line for line in lines)
    assert "ETA" in lines[0] and lines[-1].split(", ")[3] == "done"
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d step 2: held-out bits per base \d\.\d{4}$",
                     err, re.MULTILINE)


def test_progress_interval_limits_the_lines(tmp_path, capsys):
    cfg = tiny_pretrain_config(max_steps=3, progress_bar=True, progress_interval=3600)
    run_pretrain(cfg, tiny_model_config(), tmp_path / "run")
    err = capsys.readouterr().err
    assert progress_steps(err) == [3] and "\r" not in err  # only the last line


def ddp_worker(rank: int, port: int, out_dir: str) -> None:
    # Each rank's stderr goes to its own file (the job log would interleave them).
    sys.stderr = open(os.path.join(out_dir, f"stderr.{rank}"), "w", buffering=1)  # noqa: SIM115
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    cfg = trainer_config("ddp", 1)
    cfg.progress_bar, cfg.progress_interval, cfg.eval_every = True, 0, 1
    env = init_distributed(cfg.distributed, "cpu")
    try:
        stream = ListStream([step[rank] for step in global_batches()])
        trainer = Trainer(cfg, tiny_model(), stream, DNA_VOCAB, out_dir, env,
                          evaluators={"heldout": lambda trainer: {"bpb": 2.0}})
        trainer.fit()
        logging.getLogger("hnet_dna.test").warning("a warning from rank %d", rank)
        logging.getLogger("hnet_dna.test").error("an error")
        warnings.warn("a Python warning", UserWarning, stacklevel=1)
    finally:
        shutdown_distributed()
        sys.stderr.close()


def test_ddp_only_rank_0_reports_progress_and_every_rank_tags_its_warnings(tmp_path):
    mp.spawn(ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = ((tmp_path / f"stderr.{r}").read_text() for r in (0, 1))
    assert "\r" not in rank0
    assert progress_steps(rank0) == [1, 2, 3, 3]
    assert "step 1: held-out bits per base 2.0000" in rank0
    assert progress_steps(rank1) == [] and "held-out" not in rank1
    for rank, text in ((0, rank0), (1, rank1)):
        assert f"[rank {rank}] a warning from rank {rank}\n" in text
        assert f"[rank {rank}] an error\n" in text
        assert re.search(rf"^\[rank {rank}\] .*test_job_logs.py:\d+: UserWarning: a Python "
                         "warning$", text, re.MULTILINE)
