#!/usr/bin/env bash
# Step 2 of the GPU environment (step 1: environment.yml): install the CUDA kernels hnet-dna uses
# when present (causal-conv1d, mamba-ssm, flash-attn) into the active Python environment.
#
# Their READMEs install them after torch and with --no-build-isolation, so that setup.py sees the
# installed torch: it then downloads the project's prebuilt wheel for this torch / CUDA / Python /
# C++-ABI combination (published for the versions below), and only when none matches compiles
# the kernels, which needs a CUDA compiler of the same major version as torch's CUDA
# (--with-nvcc installs one from NVIDIA's conda channel; set MAX_JOBS to bound the build's memory).
#
#   bash scripts/install_cuda_kernels.sh [--with-nvcc] [--dry-run]
#
# Targets (tests/test_packaging.py checks these against environment.yml and pyproject.toml):
TORCH_VERSION=2.7.1
CUDA_VERSION=12.6
NVCC_CHANNEL=nvidia/label/cuda-12.6.3
# Order from the mamba README: causal-conv1d before mamba-ssm.
KERNELS=(causal-conv1d==1.5.2 mamba-ssm==2.2.5 flash-attn==2.8.3)

set -euo pipefail
PYTHON=${PYTHON:-python}
with_nvcc=0
dry_run=0
for arg in "$@"; do
    case "$arg" in
        --with-nvcc) with_nvcc=1 ;;
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "install_cuda_kernels.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

run() {
    echo "+ $*"
    if [ "$dry_run" = 0 ]; then "$@"; fi
}

if [ "$dry_run" = 0 ]; then
    "$PYTHON" - "$TORCH_VERSION" "$CUDA_VERSION" <<'PY'
import sys
want_torch, want_cuda = sys.argv[1], sys.argv[2]
try:
    import torch
except ImportError:
    sys.exit("torch is not installed: create the environment from environment.yml first")
have_torch = torch.__version__.split("+")[0]
if have_torch != want_torch or (torch.version.cuda or "") != want_cuda:
    sys.exit(
        f"expected torch {want_torch} built for CUDA {want_cuda}, found torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}); the kernel versions below are chosen for the former"
    )
PY
fi

if [ "$with_nvcc" = 1 ]; then
    run conda install -y -c "$NVCC_CHANNEL" cuda-nvcc cuda-libraries-dev
    export CUDA_HOME=${CONDA_PREFIX:?activate the conda environment first}
elif ! command -v nvcc > /dev/null; then
    echo "note: no nvcc on PATH; fine while prebuilt wheels match, rerun with --with-nvcc if a build starts"
fi

for kernel in "${KERNELS[@]}"; do
    run "$PYTHON" -m pip install --no-build-isolation "$kernel"
done
run "$PYTHON" -c "import causal_conv1d, mamba_ssm, flash_attn; print('CUDA kernels import')"
