"""The cluster tier (``make test-cluster``): skipped unless scripts/cluster/run_tier.sh runs it.

SLURM tests need the tier's localhost cluster (``HNET_CLUSTER_TESTS=1`` and ``SLURM_CONF``);
the multi-node torchrun tests only need ``HNET_CLUSTER_TESTS=1``.
"""

from __future__ import annotations

import os
import time

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("HNET_CLUSTER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="cluster tier: run `make test-cluster`")
    for item in items:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _report_time(request):
    started = time.perf_counter()
    yield
    print(f"\n[cluster tier] {request.node.name}: {time.perf_counter() - started:.1f} s",
          flush=True)
