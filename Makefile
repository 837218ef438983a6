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

.PHONY: setup pretrain test test-kernels test-cluster test-min lint clean

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

# Opt-in kernel tier: the real mamba_ssm / flash-attn Triton code under TRITON_INTERPRET=1 on CPU,
# in its own venv so triton and mamba-ssm never enter the main one (README "Kernel tests").
KVENV ?= .venv-kernels
KPY := $(KVENV)/bin/python
TRITON_SPEC ?= triton==3.9.0
MAMBA_SPEC ?= mamba-ssm==2.3.2.post1
CONV_SPEC ?= causal-conv1d==1.5.2
FLASH_SPEC ?= flash-attn==2.8.3

$(KVENV)/.installed: pyproject.toml
	test -x $(KPY) || python3 -m venv $(KVENV)
	$(KPY) -m pip install -q --upgrade pip
	$(KPY) -m pip install -q "$(TORCH_SPEC)"
	$(KPY) -m pip install -q -e '.[dev]'
	$(KPY) -m pip install -q "$(TRITON_SPEC)" einops packaging setuptools wheel
	# Python/Triton parts only: the CUDA extensions are skipped (stand-ins in tests/kernels).
	MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE \
		$(KPY) -m pip install -q --no-build-isolation --no-deps "$(MAMBA_SPEC)"
	CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE \
		$(KPY) -m pip install -q --no-build-isolation --no-deps "$(CONV_SPEC)"
	FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE FLASH_ATTENTION_FORCE_BUILD=TRUE \
		$(KPY) -m pip install -q --no-build-isolation --no-deps "$(FLASH_SPEC)"
	touch $@

test-kernels: $(KVENV)/.installed
	HNET_KERNEL_TESTS=1 TRITON_INTERPRET=1 $(KPY) -m pytest -q -p no:cacheprovider tests/kernels $(ARGS)

# Cluster tier: a localhost SLURM cluster (slurm-wlm, munge, slurmdbd + MariaDB; apt-get installs
# them when absent, as root) and two-node torchrun rendezvous (README "Running on a SLURM cluster").
$(VENV)/.slurm-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[slurm]'
	touch $@

test-cluster: $(VENV)/.slurm-installed
	scripts/cluster/run_tier.sh $(abspath $(PY)) $(ARGS)

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
	rm -rf $(VENV) $(KVENV) $(MIN_VENV) *.egg-info .pytest_cache .ruff_cache
