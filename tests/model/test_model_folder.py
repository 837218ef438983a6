"""Self-describing model folders, loaded from disk or from a Hugging Face Hub cache (offline), and
pushed to the Hub (HfApi replaced by a recorder: no network in tests)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hnet_dna
from hnet_dna import HNetConfig, HNetForCausalLM
from hnet_dna.genomics import alphabet
from hnet_dna.genomics.alphabet import DNA_VOCAB

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT_V1 = "fedcba9876543210fedcba9876543210fedcba98"
TRAINING = {"data": "yeast_chrI (train split)", "step": 30, "metrics": {"bpb": 1.95}}


def _model(seed=0) -> HNetForCausalLM:
    torch.manual_seed(seed)
    config = HNetConfig(
        arch_layout=["m1", ["T1"], "m1"], d_model=[32, 64], d_intermediate=[0, 128],
        attn_cfg={"num_heads": [2], "rotary_emb_dim": [8], "window_size": [-1]},
        ssm_cfg={"d_state": 16, "headdim": 16},
    )
    model = HNetForCausalLM(config)
    model.init_weights()
    return model.eval()


def _ids():
    return torch.randint(0, 4, (2, 24), generator=torch.Generator().manual_seed(1))


def _logits(model):
    with torch.no_grad():
        return model(_ids()).logits


def _hub_cache(tmp_path, repo="org/tiny-hnet", models=None) -> Path:
    """The huggingface_hub cache layout: refs/<branch-or-tag> -> commit -> snapshots/<commit>/."""
    cache = tmp_path / "hub"
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    for ref, commit, model in models:
        model.save_pretrained(repo_dir / "snapshots" / commit, DNA_VOCAB.for_model_folder())
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
    return cache


def test_folder_describes_itself(tmp_path):
    model = _model()
    folder = model.save_pretrained(tmp_path / "m", DNA_VOCAB.for_model_folder(), TRAINING)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model_type"] == "hnet_dna"
    assert meta["hnet_dna_version"] == hnet_dna.__version__
    tokens = meta["vocabulary"]["tokens"]
    assert meta["vocabulary"]["name"] == "dna"
    assert [tokens[t] for t in "ACGTN"] == [alphabet.A, alphabet.C, alphabet.G, alphabet.T,
                                            alphabet.N]
    assert (tokens["BOS"], tokens["PAD"], tokens["EOS"]) == (alphabet.BOS, alphabet.PAD,
                                                             alphabet.EOS)
    assert meta["training"] == TRAINING
    card = (folder / "README.md").read_text()
    for fact in ("library_name: hnet-dna", "- dna", '["m1", ["T1"], "m1"]', "A=0, C=1",
                 "yeast_chrI (train split)", "| bpb | 1.9500 |"):
        assert fact in card, fact
    loaded = HNetForCausalLM.from_pretrained(folder)
    assert loaded.vocabulary == meta["vocabulary"] and loaded.training_info == TRAINING
    assert torch.equal(_logits(loaded), _logits(model))
    # Saving a loaded model keeps its description.
    again = loaded.save_pretrained(tmp_path / "again")
    assert json.loads((again / "config.json").read_text()) == meta


def test_older_folders_without_metadata_still_load(tmp_path):
    model = _model()
    folder = model.save_pretrained(tmp_path / "m")
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    loaded = HNetForCausalLM.from_pretrained(folder)
    assert loaded.vocabulary is None and torch.equal(_logits(loaded), _logits(model))
    (folder / "config.json").write_text(json.dumps({**meta, "model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama' is not 'hnet_dna'"):
        HNetForCausalLM.from_pretrained(folder)


def test_vocabulary_ids_must_fit_the_model(tmp_path):
    with pytest.raises(ValueError, match=r"ids outside 0\.\.15: \{'X': 16\}"):
        _model().save_pretrained(tmp_path / "m", {"name": "dna", "tokens": {"A": 0, "X": 16}})


def test_from_hub_cache_offline_with_revisions(tmp_path):
    main, v1 = _model(0), _model(1)
    cache = _hub_cache(tmp_path, models=[("main", COMMIT, main), ("v1", COMMIT_V1, v1)])
    kw = {"cache_dir": cache, "local_files_only": True}
    loaded = HNetForCausalLM.from_pretrained("org/tiny-hnet", **kw)
    assert torch.equal(_logits(loaded), _logits(main))
    assert loaded.vocabulary["tokens"]["BOS"] == alphabet.BOS
    for revision, expected in (("v1", v1), (COMMIT_V1, v1), (COMMIT, main)):
        got = HNetForCausalLM.from_pretrained("org/tiny-hnet", revision=revision, **kw)
        assert torch.equal(_logits(got), _logits(expected)), revision
    with pytest.raises(FileNotFoundError, match="'org/other'.*Hugging Face Hub.*revision main"):
        HNetForCausalLM.from_pretrained("org/other", **kw)
    with pytest.raises(FileNotFoundError, match="revision v2"):
        HNetForCausalLM.from_pretrained("org/tiny-hnet", revision="v2", **kw)


def test_local_path_wins_over_a_hub_name(tmp_path, monkeypatch):
    model = _model()
    model.save_pretrained(tmp_path / "org" / "tiny-hnet")
    monkeypatch.chdir(tmp_path)
    loaded = HNetForCausalLM.from_pretrained("org/tiny-hnet")  # an existing folder: no Hub call
    assert torch.equal(_logits(loaded), _logits(model))
    with pytest.raises(FileNotFoundError, match="not a saved model folder"):
        HNetForCausalLM.from_pretrained(tmp_path / "org")


def test_hf_hub_offline_and_default_cache_in_a_fresh_process(tmp_path):
    model = _model()
    cache = _hub_cache(tmp_path, models=[("main", COMMIT, model)])
    torch.save(_logits(model), tmp_path / "expected.pt")
    script = (
        "import torch; from hnet_dna import HNetForCausalLM\n"
        "m = HNetForCausalLM.from_pretrained('org/tiny-hnet').eval()\n"
        "ids = torch.randint(0, 4, (2, 24), generator=torch.Generator().manual_seed(1))\n"
        f"assert torch.equal(m(ids).logits, torch.load({str(tmp_path / 'expected.pt')!r}))\n"
        "print('offline ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "offline ok" in done.stdout


class _RecordingHfApi:
    """Stands in for huggingface_hub.HfApi: records calls, keeps a copy of the uploaded folder."""

    calls: list = []
    uploaded: Path

    def __init__(self, token=None):
        self.calls.append(("init", token))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        self.calls.append(("upload_folder", repo_id, kwargs))
        shutil.copytree(folder_path, type(self).uploaded)
        return "commit-info"


def test_push_to_hub_uploads_the_self_describing_folder(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingHfApi)
    _RecordingHfApi.calls, _RecordingHfApi.uploaded = [], tmp_path / "uploaded"
    model = _model()
    info = model.push_to_hub("org/tiny-hnet", private=True, token="tok",
                             vocabulary=DNA_VOCAB.for_model_folder(), training=TRAINING)
    assert info == "commit-info"
    init, create, upload = _RecordingHfApi.calls
    assert init == ("init", "tok")
    assert create == ("create_repo", "org/tiny-hnet",
                      {"private": True, "repo_type": "model", "exist_ok": True})
    assert upload[1] == "org/tiny-hnet" and upload[2]["repo_type"] == "model"
    folder = _RecordingHfApi.uploaded
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                         "model.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["model_type"] == "hnet_dna" and meta["vocabulary"]["name"] == "dna"
    assert "| bpb | 1.9500 |" in (folder / "README.md").read_text()
    assert torch.equal(_logits(HNetForCausalLM.from_pretrained(folder)), _logits(model))


def test_saved_files_get_umask_permissions_and_no_temporaries(tmp_path):
    previous = os.umask(0o022)
    try:
        folder = _model().save_pretrained(tmp_path / "m")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    # safetensors alone creates its file 0600; every file is written whole, then renamed
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644, "README.md": 0o644}
