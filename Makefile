# Two entry points for a fresh machine (see README):
#   make pretrain   set up .venv and run the main job (pretraining on bundled yeast chr I)
#   make test       set up .venv and run the test suite
# Optional: make test-min  the suite in .venv-min at the lowest versions pyproject.toml allows
#   (torch 2.7 comes from PyPI as its CUDA build: ~3 GB of wheels; CPU-only runs are fine).
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU build that lies on local disk here; on a GPU cluster use environment.yml.
TORCH_SPEC ?= torch==2.13.0

MIN_VENV ?= .venv-min

.PHONY: setup pretrain test test-min lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

pretrain: setup
	$(VENV)/bin/hnet-dna pretrain $(ARGS)

test: setup
	$(VENV)/bin/python -m pytest -q $(ARGS)

test-min:
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip packaging
	$(MIN_VENV)/bin/python scripts/lowest_requirements.py > $(MIN_VENV)/lowest.txt
	$(MIN_VENV)/bin/python -m pip install -q -r $(MIN_VENV)/lowest.txt
	$(MIN_VENV)/bin/python -m pip install -q --no-deps -e .
	$(MIN_VENV)/bin/python -m pip check
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(ARGS)

lint: setup
	$(VENV)/bin/ruff check hnet_dna tests benchmarks pipelines

clean:
	rm -rf $(VENV) $(MIN_VENV) *.egg-info .pytest_cache .ruff_cache
