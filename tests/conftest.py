"""Suite-wide isolation: a test that runs a hydra app (which configures logging) must not leave
handlers on the root logger bound to pytest's per-test captured streams, which are closed
afterwards; later tests would then log "I/O operation on closed file" into their stderr."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
