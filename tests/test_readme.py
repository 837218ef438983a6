"""Every README example keeps working: each ```python block runs (in a temporary folder, with the
Hugging Face Hub served from a local cache and uploads recorded), and each command line of the
```bash blocks names a real command, script or make target with options its parser accepts.

Blocks are found by their fence, so sections added later are checked without touching this file.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from hnet_dna.cli import COMMANDS
from hnet_dna.cli import main as cli_main
from hnet_dna.training.pretrain import CONF_DIR, load_pretrain_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# hydra's own flags on `hnet-dna pretrain`
HYDRA_FLAGS = {"--help", "-h", "--hydra-help", "--multirun", "-m", "--cfg", "--info", "-c"}


def _blocks(language: str) -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == language]


# example values of the environment variables README commands use (SLURM array recipe)
EXAMPLE_ENV = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "100"}


def _commands() -> list[tuple[str, list[str]]]:
    """(README line, argv) of each command in the bash blocks (continuations joined, known
    environment variables replaced by example values)."""
    found = []
    for line_no, block in _blocks("bash"):
        for i, line in enumerate(block.replace("\\\n", " ").splitlines()):
            line = re.sub(r"\$\{?(\w+)\}?", lambda m: EXAMPLE_ENV.get(m[1], m[0]), line)
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv:
                    found.append((f"README.md:{line_no + 1 + i}", argv))
    return found


PYTHON_BLOCKS = _blocks("python")
COMMAND_LINES = _commands()


def test_readme_has_examples():
    assert PYTHON_BLOCKS and COMMAND_LINES
    assert any(argv[0] == "hnet-dna" for _, argv in COMMAND_LINES)


# ------------------------------------------------------------------------ python blocks
class _RecordingHfApi:
    uploads: list[Path] = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kwargs):
        pass

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        kept = Path(self.root) / f"upload-{len(self.uploads)}"
        shutil.copytree(folder_path, kept)
        self.uploads.append(kept)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Hub calls served from a cache under tmp_path: every `org/name` the README loads is a tiny
    model, saved there as huggingface_hub lays out a downloaded snapshot."""
    import huggingface_hub
    from huggingface_hub import constants

    from hnet_dna import HNetConfig, HNetForCausalLM

    cache = tmp_path / "hub-cache"
    text = README.read_text()
    torch.manual_seed(0)
    tiny = HNetForCausalLM(HNetConfig(
        arch_layout=["m1", ["T1"], "m1"], d_model=[32, 64], d_intermediate=[0, 128],
        attn_cfg={"num_heads": [2], "rotary_emb_dim": [8], "window_size": [-1]},
        ssm_cfg={"d_state": 16, "headdim": 16},
    ))
    for repo in set(re.findall(r"from_pretrained\(\s*\"([\w.-]+/[\w.-]+)\"", text)):
        repo_dir = cache / f"models--{repo.replace('/', '--')}"
        commit = "0" * 40
        tiny.save_pretrained(repo_dir / "snapshots" / commit)
        (repo_dir / "refs").mkdir(parents=True)
        for ref in ("main", *re.findall(r"revision=\"([\w.-]+)\"", text)):
            (repo_dir / "refs" / ref).write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingHfApi)
    _RecordingHfApi.uploads, _RecordingHfApi.root = [], str(tmp_path)
    return _RecordingHfApi


@pytest.mark.parametrize("block", [b for _, b in PYTHON_BLOCKS],
                         ids=[f"README.md:{line}" for line, _ in PYTHON_BLOCKS])
def test_python_block_runs(block, tmp_path, monkeypatch, offline_hub):
    # README examples run from a checkout: they may read the repository's tests/data.
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    for folder in offline_hub.uploads:  # whatever the README pushes is a loadable model folder
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                             "model.safetensors"]


# ------------------------------------------------------------------------ bash blocks
class _Parsed(BaseException):  # not an Exception: the CLI reports those as errors
    """Raised instead of running a command once its arguments parsed."""


def _check_hnet_dna(where: str, args: list[str], monkeypatch) -> None:
    name, rest = args[0], args[1:]
    assert name in COMMANDS, f"{where}: `hnet-dna {name}` is not a command"
    if name == "pretrain":
        _check_pretrain(where, rest)
        return

    def parse_only(self, argv=None, namespace=None):
        namespace, extra = self.parse_known_args(argv, namespace)
        if extra:
            raise AssertionError(f"{where}: unknown arguments {extra} for hnet-dna {name}")
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    monkeypatch.setattr(argparse.ArgumentParser, "exit", _exit_fails(where))
    with pytest.raises(_Parsed):
        cli_main(args)


def _exit_fails(where: str):
    def fail(self, status=0, message=None):
        if status == 0:  # --help
            raise _Parsed
        raise AssertionError(f"{where}: {self.prog} rejected its arguments: {message}")

    return fail


def _check_pretrain(where: str, overrides: list[str]) -> None:
    flags = [o for o in overrides if o.startswith("-")]
    assert set(flags) <= HYDRA_FLAGS, f"{where}: unknown flags {set(flags) - HYDRA_FLAGS}"
    plain = [o for o in overrides if not o.startswith("-") and not o.startswith("hydra")]
    parse_config(load_pretrain_config(plain))  # composes, validates into the dataclasses
    launcher = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra/launcher=")),
                    None)
    if launcher is not None:
        path = CONF_DIR / "hydra" / "launcher" / f"{launcher}.yaml"
        assert path.is_file(), f"{where}: no launcher config {path}"
        keys = set(re.findall(r"^(\w+):", path.read_text(), re.MULTILINE))
        for o in overrides:
            if o.startswith("hydra.launcher."):
                key = o.split("=", 1)[0].removeprefix("hydra.launcher.")
                assert key in keys, f"{where}: {path.name} has no key {key}"


# SLURM's own commands in the README: subcommands allowed first (an option may come first too)
SLURM_COMMANDS = {"scontrol": {"requeue", "show"}, "scancel": set(), "sacct": set()}


def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


@pytest.mark.parametrize(("where", "argv"), COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_command_line_is_valid(where, argv, monkeypatch):
    program, args = argv[0], argv[1:]
    if program == "torchrun":  # torchrun [its options] -m hnet_dna.cli ARGS
        assert "-m" in args and args[args.index("-m") + 1] == "hnet_dna.cli", where
        program, args = "hnet-dna", args[args.index("-m") + 2:]
    if program == "hnet-dna":
        _check_hnet_dna(where, args, monkeypatch)
    elif program == "make":
        targets = [a for a in args if "=" not in a and not a.startswith("-")]
        assert set(targets) <= _make_targets(), f"{where}: no make target {targets}"
    elif program in ("python", "bash") and args:
        if args[0] == "-m":
            module = args[1].replace(".", "/")
            assert (ROOT / f"{module}.py").is_file() or (ROOT / module).is_dir(), where
        else:
            assert (ROOT / args[0]).is_file(), f"{where}: no file {args[0]}"
    elif program == "sbatch":  # sbatch [its options] SCRIPT [pretrain overrides]
        script = next(a for a in args if not a.startswith("-"))
        assert (ROOT / script).is_file(), f"{where}: no file {script}"
        _check_pretrain(where, args[args.index(script) + 1:])
    elif program in SLURM_COMMANDS:
        first = args[0] if args else ""
        assert first.startswith("-") or first in SLURM_COMMANDS[program], (
            f"{where}: `{program} {first}` is not a use of {program} the README knows")
    elif program == "export":  # environment for the commands after it: NAME=VALUE only
        assert args and all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S+", a) for a in args), where
    elif program in ("conda", "pip"):
        for a in args:  # files they are pointed at exist (environment.yml, ...)
            if a.endswith((".yml", ".yaml", ".txt")):
                assert (ROOT / a).is_file(), f"{where}: no file {a}"
    else:
        pytest.fail(f"{where}: the README runs `{program}`; teach tests/test_readme.py to check it")
