# Two entry points for a fresh machine (see README):
#   make pretrain   set up .venv and run the main job (pretraining on bundled yeast chr I)
#   make test       set up .venv and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU build that lies on local disk here; on a GPU cluster use environment.yml.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup pretrain test lint clean

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

lint: setup
	$(VENV)/bin/ruff check hnet_dna tests benchmarks pipelines

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
