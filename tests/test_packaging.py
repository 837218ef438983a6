"""pyproject.toml and environment.yml must pin the same dependency set."""

from pathlib import Path

import tomllib
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_env() -> tuple[list[str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, pip


def test_environment_yml_pins_same_set_as_pyproject():
    project = _pyproject()["project"]
    expected = [
        *project["dependencies"],
        *project["optional-dependencies"]["cuda"],
        *project["optional-dependencies"]["slurm"],
    ]
    torch_req = next(r for r in expected if Requirement(r).name == "torch")
    expected_pip = {str(Requirement(r)) for r in expected if r != torch_req}
    conda, pip = _conda_env()
    assert {str(Requirement(r)) for r in pip} == expected_pip
    # torch comes from conda as `pytorch`, with the same lower bound.
    conda_torch = next(d for d in conda if d.startswith("pytorch") and "cuda" not in d)
    assert conda_torch.replace("pytorch", "torch") == str(Requirement(torch_req))


def test_console_script_points_at_cli():
    assert _pyproject()["project"]["scripts"]["hnet-dna"] == "hnet_dna.cli:main"
