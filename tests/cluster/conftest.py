"""The cluster tier (``make test-cluster``): skipped unless scripts/cluster/run_tier.sh runs it.

SLURM tests need the tier's localhost cluster (``HNET_CLUSTER_TESTS=1`` and ``SLURM_CONF``);
the multi-node torchrun tests only need ``HNET_CLUSTER_TESTS=1``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cluster_helpers import TWO_RANK_ARGS, python_env, run, torchrun


def pytest_collection_modifyitems(config, items):
    if os.environ.get("HNET_CLUSTER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="cluster tier: run `make test-cluster`")
    here = Path(__file__).parent
    for item in items:  # this hook sees the whole session's items: only ours are skipped
        if here in Path(item.path).parents:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _report_time(request):
    started = time.perf_counter()
    yield
    print(f"\n[cluster tier] {request.node.name}: {time.perf_counter() - started:.1f} s",
          flush=True)


@pytest.fixture(scope="session")
def two_rank_reference(tmp_path_factory) -> Path:
    """Run folder of one uninterrupted two-rank torchrun (one node) of ``TWO_RANK_ARGS``."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    started = time.perf_counter()
    run([*torchrun("--standalone", "--nproc-per-node", "2"), f"hydra.run.dir={run_dir}",
         *TWO_RANK_ARGS], env=python_env(), timeout=600)
    print(f"\n[cluster tier] two-rank reference run: {time.perf_counter() - started:.1f} s")
    return run_dir
