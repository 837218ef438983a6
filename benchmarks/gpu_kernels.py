"""The fast paths on the device machine: installing them from a carried folder, importing
mamba-ssm's Triton kernels without its CUDA-only ``__init__``, compiling causal_conv1d for the
GPU at hand, and switching or counting the paths hnet_dna dispatches to (``gpu_check.py``).

The device machine reaches no registry: ``prepare`` (here) downloads what it needs into a folder
that travels with the working tree (``carry``), and ``setup_carry`` (there) installs it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from benchmarks.timing import REPO

WORK = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/gpu_check"))  # installs and builds
MAMBA_SSM = "mamba-ssm==2.3.2.post1"
CAUSAL_CONV1D = "causal-conv1d==1.7.0"
BIOPYTHON = "biopython==1.85"  # FASTA reading where pysam is absent (the device image)


def import_without_init(package: str) -> ModuleType:
    """Register ``package`` in ``sys.modules`` without running its ``__init__``.

    mamba_ssm's ``__init__`` imports its Mamba-1 CUDA extension (``selective_scan_cuda``), which
    an install without the CUDA build lacks and hnet_dna never calls; its Triton SSD kernels,
    which hnet_dna does call, are plain submodules that import fine once the package is known.
    """
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]  # a half-imported package from the failed attempt
    spec = importlib.util.find_spec(package)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(f"{package} is not an importable package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    return module


def import_submodule(module: str) -> str:
    """Import ``module``; where its top-level package's ``__init__`` fails on a missing compiled
    extension (not on the package itself), register the package without running that
    ``__init__`` and import ``module`` again. Says which of the two happened."""
    package = module.split(".")[0]
    try:
        importlib.import_module(module)
        return f"{module} imported"
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing == package or missing.startswith(package + ".") or not missing:
            raise
    import_without_init(package)
    importlib.import_module(module)
    return f"{module} imported without {package}/__init__ ({missing} is absent)"


MAMBA_TRITON = "mamba_ssm.ops.triton.ssd_combined"


def _extract(archive: Path, dest: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / archive.name.removesuffix(".tar.gz")


def conv_build_command(src: Path, build_dir: Path, arch: str) -> list[str]:
    """A python command that JIT-compiles causal_conv1d's CUDA extension for one architecture
    (the flags of its setup.py, one ``-gencode`` instead of nine)."""
    sources = [str(src / "csrc" / f) for f in ("causal_conv1d.cpp", "causal_conv1d_fwd.cu",
                                                "causal_conv1d_bwd.cu", "causal_conv1d_update.cu")]
    nvcc = ["-O3", "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
            "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
            "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
            "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
            "--threads", "4", "-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    code = ("import torch.utils.cpp_extension as c; "
            f"c.load(name='causal_conv1d_cuda', sources={sources!r}, extra_cflags=['-O3'], "
            f"extra_cuda_cflags={nvcc!r}, build_directory={str(build_dir)!r}, verbose=True)")
    return [sys.executable, "-c", code]


def setup_carry(carry: Path | None,
                device: torch.device) -> tuple[dict[str, Any], subprocess.Popen | None]:
    """Install what ``prepare`` put in ``carry`` (wheels; mamba-ssm and causal-conv1d sources)
    and, on a CUDA ``device``, start compiling causal_conv1d's extension in the background.
    Returns what was done and the build process (None if none was started)."""
    info: dict[str, Any] = {"carry": None if carry is None else str(carry)}
    build = None
    if carry is None:
        return info, build
    if not carry.is_dir():
        info["error"] = f"--carry {carry}: no such folder (make it with --prepare)"
        return info, build
    WORK.mkdir(parents=True, exist_ok=True)
    wheels = sorted(str(p) for p in carry.glob("*.whl"))
    if wheels:
        site = WORK / "site"
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                               "--no-deps", "--no-compile", "--upgrade", "--target", str(site),
                               *wheels], capture_output=True, text=True)
        info["wheels"] = [Path(w).name for w in wheels]
        if proc.returncode:
            info["wheels_error"] = proc.stderr[-2000:]
        sys.path.insert(0, str(site))
    for archive in sorted(carry.glob("*.tar.gz")):
        root = _extract(archive, WORK / "src")
        sys.path.insert(0, str(root))
        info.setdefault("sources", []).append(archive.name)
        if archive.name.startswith("causal_conv1d") and device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(device)
            build_dir = WORK / "build" / "causal_conv1d"
            build_dir.mkdir(parents=True, exist_ok=True)
            log = open(WORK / "causal_conv1d_build.log", "w")  # noqa: SIM115 (closed by the OS)
            env = {**os.environ, "MAX_JOBS": str(os.cpu_count() or 4)}
            build = subprocess.Popen(conv_build_command(root, build_dir, f"{major}{minor}"),
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
            info["causal_conv1d_build"] = f"started for sm_{major}{minor} in {build_dir}"
    importlib.invalidate_caches()
    return info, build


def finish_conv_build(build: subprocess.Popen, started: float, wait_s: float) -> str:
    """Wait up to ``wait_s`` for the background causal_conv1d ``build`` (begun at ``started``,
    a ``perf_counter`` time), then import it and reload mamba_ssm's SSD module, which looked for
    causal_conv1d when it was first imported. A build still running then is stopped: the rest
    of a run must not change kernels midway."""
    try:
        code = build.wait(timeout=max(0.1, wait_s))
    except subprocess.TimeoutExpired:
        build.kill()
        return f"build stopped unfinished after {time.perf_counter() - started:.0f} s"
    log = (WORK / "causal_conv1d_build.log").read_text(errors="replace")
    if code:
        return f"build failed (exit {code}): {log[-1500:]}"
    built = sorted((WORK / "build" / "causal_conv1d").glob("causal_conv1d_cuda*.so"))
    if not built:
        return "build finished but left no causal_conv1d_cuda*.so"
    spec = importlib.util.spec_from_file_location("causal_conv1d_cuda", built[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["causal_conv1d_cuda"] = module
    combined = sys.modules.get("mamba_ssm.ops.triton.ssd_combined")
    if combined is not None:
        importlib.reload(combined)
    return (f"built {built[0].name} for this GPU in {time.perf_counter() - started:.0f} s "
            "and imported it")


def fast_paths(refresh: bool = False) -> dict[str, str]:
    """Which fast paths import now (``refresh`` clears hnet_dna's cached look-ups first)."""
    from hnet_dna.model import attention, mamba2
    from hnet_dna.model.ops import ssd

    if refresh:  # the loaders cache their first answer (functools.lru_cache)
        for loader in (ssd.load_chunk_scan_kernel, mamba2._load_fused_kernel):
            getattr(loader, "cache_clear", lambda: None)()
        if attention.flash_attn_func is None:
            with contextlib.suppress(ImportError, OSError):
                from flash_attn import flash_attn_func, flash_attn_varlen_func

                attention.flash_attn_func = flash_attn_func
                attention.flash_attn_varlen_func = flash_attn_varlen_func

    def status(ok: bool, what: str) -> str:
        return "available" if ok else f"unavailable: {what}"

    return {
        "ssd_triton": status(ssd.load_chunk_scan_kernel() is not None,
                             "mamba_ssm.ops.triton.ssd_combined does not import"),
        "mamba2_fused": status(mamba2._load_fused_kernel() is not None,
                               "mamba_split_conv1d_scan_combined or causal_conv1d missing"),
        "flash_attn": status(attention.flash_attn_func is not None,
                             "flash_attn does not import (no prebuilt wheel on PyPI; its source"
                             " build takes hours)"),
        "selective_state_update": "not used: Mamba2.step (decoding) is pure torch",
    }


# ----------------------------------------------------------------------------- path switches
@contextlib.contextmanager
def torch_paths() -> Iterator[None]:
    """Force every pure-torch path (the mamba_ssm switch ``HNET_DNA_DISABLE_KERNELS`` and no
    flash-attn) for the duration."""
    from hnet_dna.model import attention

    saved_env = os.environ.get("HNET_DNA_DISABLE_KERNELS")
    saved_flash = attention.flash_attn_func
    os.environ["HNET_DNA_DISABLE_KERNELS"] = "1"
    attention.flash_attn_func = None
    try:
        yield
    finally:
        attention.flash_attn_func = saved_flash
        if saved_env is None:
            os.environ.pop("HNET_DNA_DISABLE_KERNELS", None)
        else:
            os.environ["HNET_DNA_DISABLE_KERNELS"] = saved_env


@contextlib.contextmanager
def count_kernel_calls() -> Iterator[dict[str, int]]:
    """Count calls of each fast path while inside (evidence of which path actually ran).

    hnet_dna reaches its kernels through module attributes: the cached loaders
    ``load_chunk_scan_kernel`` (ssd, and ema which imports it) and ``_load_fused_kernel``
    (mamba2), and the ``flash_attn_*`` functions (attention). Each is swapped for a counting
    stand-in that returns or calls the same kernel, and put back afterwards.
    """
    from hnet_dna.model import attention, mamba2
    from hnet_dna.model.ops import ema, ssd

    calls = {"ssd_triton": 0, "mamba2_fused": 0, "flash_attn": 0}

    def counted(fn: Callable | None, key: str) -> Callable | None:
        if fn is None:
            return None

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    scan = counted(ssd.load_chunk_scan_kernel(), "ssd_triton")
    fused = counted(mamba2._load_fused_kernel(), "mamba2_fused")
    swaps = [(ssd, "load_chunk_scan_kernel", lambda: scan),
             (ema, "load_chunk_scan_kernel", lambda: scan),
             (mamba2, "_load_fused_kernel", lambda: fused),
             (attention, "flash_attn_func", counted(attention.flash_attn_func, "flash_attn")),
             (attention, "flash_attn_varlen_func",
              counted(attention.flash_attn_varlen_func, "flash_attn"))]
    swaps = [(m, name, new) for m, name, new in swaps if hasattr(m, name)]
    saved = [(m, name, getattr(m, name)) for m, name, _ in swaps]
    for m, name, new in swaps:
        setattr(m, name, new)
    try:
        yield calls
    finally:
        for m, name, old in saved:
            setattr(m, name, old)


def prepare(folder: Path) -> None:
    """Download what the device machine cannot (it reaches no registry) into ``folder`` and
    keep it out of git: mamba-ssm and causal-conv1d sources, a Python 3.12 biopython wheel."""
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(folder)]
    env = {**os.environ, "MAMBA_SKIP_CUDA_BUILD": "TRUE", "CAUSAL_CONV1D_SKIP_CUDA_BUILD": "TRUE"}
    subprocess.run([*pip, "--no-binary", ":all:", "--no-build-isolation", MAMBA_SSM,
                    CAUSAL_CONV1D], check=True, env=env)
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                             "manylinux2014_x86_64") for a in ("--platform", p)]
    subprocess.run([*pip, "--only-binary", ":all:", "--python-version", "3.12",
                    "--implementation", "cp", *platforms, BIOPYTHON], check=True)
    folder = folder.resolve()
    if folder.is_relative_to(REPO):  # only what git ignores travels as `carry`
        exclude = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=REPO,
                                 capture_output=True, text=True, check=True).stdout.strip()
        exclude_path = REPO / exclude
        entry = f"/{folder.relative_to(REPO)}/"
        lines = exclude_path.read_text().splitlines() if exclude_path.exists() else []
        if entry not in lines:
            exclude_path.parent.mkdir(parents=True, exist_ok=True)
            exclude_path.write_text("\n".join([*lines, entry]) + "\n")
        print(f"{entry} added to {exclude_path}")
    print(f"prepared {folder}; on the device machine, with it carried:\n"
          f"  python3 benchmarks/gpu_check.py --carry {folder.name} --out $OUT")
