"""The sections of ``benchmarks/gpu_check.py`` (the one command and entry point), one module each:

* ``context.py``: what every section gets: the ``Plan`` (sizes, each section's time share, the
  run's budget), the ``Context`` (device, deadline, kernel set-up), ``Skip``, device helpers;
* ``environment.py``, ``parity.py``, ``throughput.py``, ``generation.py``,
  ``data_efficiency.py``: the sections, in the order they run;
* ``results.py``: ``gpu_check.json`` and ``gpu_check.md``.

A section module has ``run(ctx) -> dict`` (raising ``Skip`` with the reason when it cannot run),
``NEEDS_S`` (seconds of the budget it needs to start) and, for a table in ``gpu_check.md``,
``summary(result) -> list[str]``. A new section (say a variants/s row for ``score-variants``) is
a new module here, one entry in ``gpu_check.SECTION_MODULES`` and its time share in
``Plan.shares``. Sections import ``context`` / ``results`` and the shared ``benchmarks`` helpers
(``timing``, ``models``, ``gpu_kernels``), never ``gpu_check`` or each other.
"""
