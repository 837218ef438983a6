"""Multi-node rendezvous without SLURM: two torchrun launchers on this host act as two nodes
(c10d rendezvous on 127.0.0.1), and an elastic restart after a killed worker resumes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from cluster_helpers import (
    TWO_RANK_ARGS,
    TWO_RANK_STEPS,
    assert_same_weights,
    free_port,
    python_env,
    torchrun,
    wait_for,
    weights,
)

# torch's agents share one TCPStore across restart rounds by default, and the workers' keys in
# it are not per round (pytorch/pytorch#135712): a restarted gloo group can read a dead
# worker's address (connection refused) or wait for a key under another prefix. The opt-out
# gives every round a fresh store on a fresh port, hosted by the new rank 0 worker.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def two_nodes(run_dir: Path, *extra: str) -> list[subprocess.Popen]:
    endpoint = f"127.0.0.1:{free_port()}"
    return [subprocess.Popen(
        [*torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "hnet",
                   *extra),
         f"hydra.run.dir={run_dir}", *TWO_RANK_ARGS],
        env=python_env(**ELASTIC_ENV), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
        for node in (0, 1)]


class LauncherFailed(AssertionError):
    """A torchrun launcher exited non-zero or hung (both nodes' logs in the message)."""


def finish(nodes: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    """Both launchers' output once they exit; a hung one is killed and both logs are shown."""
    logs = []
    for node in nodes:
        try:
            logs.append(node.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for other in nodes:
                other.kill()
            logs = [other.communicate()[0] for other in nodes]
            raise LauncherFailed("a launcher hung:\n" + "\n".join(
                f"== node {i}\n{log[-4000:]}" for i, log in enumerate(logs))) from None
    if any(node.returncode != 0 for node in nodes):  # one node's failure often ends the other's
        raise LauncherFailed("a launcher failed:\n" + "\n".join(
            f"== node {i} (exit {node.returncode})\n{log[-8000:]}"
            for i, (node, log) in enumerate(zip(nodes, logs, strict=True))))
    return logs


def test_two_launchers_as_two_nodes_match_one_node(tmp_path, two_rank_reference):
    run_dir = tmp_path / "run"
    finish(two_nodes(run_dir))
    assert_same_weights(weights(run_dir, TWO_RANK_STEPS),
                        weights(two_rank_reference, TWO_RANK_STEPS))


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _kill_and_restart(run_dir: Path) -> list[str]:
    """Two nodes with one restart allowed; node 1's worker is killed after the step-50
    checkpoint. Returns both launchers' logs."""
    nodes = two_nodes(run_dir, "--max-restarts", "1")
    checkpoint = run_dir / "checkpoints" / f"step-{50:08d}" / "training_state.pt"

    def ready() -> bool:
        for node in nodes:
            assert node.poll() is None, node.communicate()[0][-5000:]
        return checkpoint.is_file()

    wait_for(ready, f"checkpoint {checkpoint}", timeout=300, every=0.1)
    [worker] = _children(nodes[1].pid)  # node 1's only worker
    os.kill(worker, signal.SIGKILL)
    return finish(nodes)


def test_killed_worker_restarts_the_group_and_resumes(tmp_path, two_rank_reference):
    """Node 1's worker is killed after the step-50 checkpoint: both agents restart the group
    (node 0's on seeing the new rendezvous round), which resumes and ends bit-identical.

    With the per-round store the scenario passed 29 of 30 runs here; the one launcher failure
    left no explanation. So a launcher failure (never a weight mismatch) is shown and the
    scenario runs once more in a fresh folder, so that a rare infrastructure hiccup does not
    decide CI while a real regression (it fails every time) still does."""
    try:
        run_dir = tmp_path / "run"
        logs = _kill_and_restart(run_dir)
    except LauncherFailed as failure:
        print(f"elastic restart: first attempt failed, running once more:\n{failure}")
        run_dir = tmp_path / "run-again"
        logs = _kill_and_restart(run_dir)
    # Each round had its own store (ELASTIC_ENV), so rank 0 did not warn about the shared one.
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in logs[0] + logs[1]
    # Node 1's agent saw its worker die; both nodes' new workers resumed from a checkpoint.
    assert "failed (exitcode: -9)" in logs[1], logs[1][-5000:]
    for log in logs:
        assert f"resumed from {run_dir / 'checkpoints'}/step-" in log, log[-5000:]
    steps = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert steps[0] == f"step-{50:08d}"
    assert_same_weights(weights(run_dir, TWO_RANK_STEPS),
                        weights(two_rank_reference, TWO_RANK_STEPS))
