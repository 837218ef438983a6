"""The embed / score-variants / probe entry points: outputs, exit codes, error messages."""

from __future__ import annotations

import argparse
import re

import numpy as np
import polars as pl
import pysam
import pytest
import torch
from eval_data import CHR20_VCF

from hnet_dna.evaluation.cli import main_embed, main_probe, main_score_variants
from hnet_dna.evaluation.embeddings import read_boundaries_bed


def test_embed_fasta_bed(saved_model, fasta_copy, tmp_path, capsys):
    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t180\tfirst\nz\t5000\t5300\tsecond\n")
    out = tmp_path / "emb.parquet"
    rc = main_embed(["--model", str(saved_model), "--fasta", str(fasta_copy), "--bed", str(bed),
                     "--out", str(out), "--depth", "final", "--depth", "main",
                     "--strand-average", "--window", "128", "--overlap", "32",
                     "--boundaries-bed", str(tmp_path / "b.bed"), "--no-progress"])
    assert rc == 0
    df = pl.read_parquet(out)
    assert df["name"].to_list() == ["first", "second"] and df["length"].to_list() == [80, 300]
    assert np.stack(df["emb_main"].to_numpy()).shape == (2, 64)
    bounds = read_boundaries_bed(tmp_path / "b.bed")
    assert bounds and all(100 <= b.position < 180 or 5000 <= b.position < 5300 for b in bounds)
    assert "bases/s" in capsys.readouterr().out


def test_embed_boundaries_bgzip_bed_is_indexed(saved_model, fasta_copy, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t180\tfirst\nz\t5000\t5300\tsecond\n")
    common = ["--model", str(saved_model), "--fasta", str(fasta_copy), "--bed", str(bed),
              "--window", "128", "--overlap", "32", "--no-progress"]
    assert main_embed([*common, "--out", str(tmp_path / "a.parquet"),
                       "--boundaries-bed", str(tmp_path / "b.bed")]) == 0
    assert main_embed([*common, "--out", str(tmp_path / "c.parquet"),
                       "--boundaries-bed", str(tmp_path / "b.bed.gz")]) == 0
    plain = read_boundaries_bed(tmp_path / "b.bed")
    assert read_boundaries_bed(tmp_path / "b.bed.gz") == plain
    # bgzip + .tbi: a region query returns exactly the boundaries inside the region
    with pysam.TabixFile(str(tmp_path / "b.bed.gz")) as tbx:
        hits = [int(row.split("\t")[1]) for row in tbx.fetch("z", 5000, 5300)]
    assert hits == sorted(b.position for b in plain if b.position >= 5000) and hits


def test_embed_sequence_table_npy(saved_model, tmp_path):
    table = tmp_path / "s.tsv"
    table.write_text("name\tsequence\na\tACGTACGTAA\nb\tGGGCCCAANT\n")
    out = tmp_path / "emb.npy"
    assert main_embed(["--model", str(saved_model), "--sequences", str(table), "--out", str(out),
                       "--per-base", "--no-progress"]) == 0
    assert np.load(out).shape == (2, 32)
    assert np.load(tmp_path / "emb.final.per_base.npy").shape == (20, 32)


def test_embed_bad_input_exit_code(saved_model, fasta_copy, tmp_path, capsys):
    bed = tmp_path / "bad.bed"
    bed.write_text("z\t100\t50\n")
    rc = main_embed(["--model", str(saved_model), "--fasta", str(fasta_copy), "--bed", str(bed),
                     "--out", str(tmp_path / "x.parquet")])
    assert rc == 2 and "bad.bed:1" in capsys.readouterr().err


def test_score_variants_end_to_end(saved_model, fasta_copy, tmp_path, capsys):
    out = tmp_path / "scored.vcf.gz"
    rc = main_score_variants(["--model", str(saved_model), "--vcf", str(CHR20_VCF), "--fasta",
                              str(fasta_copy), "--out", str(out), "--window", "32",
                              "--max-variants", "40", "--info", "AF",
                              "--label-positive", "AF<0.001", "--label-negative", "AF>=0.05",
                              "--no-progress"])
    assert rc == 0
    table = pl.read_parquet(tmp_path / "scored.parquet")
    assert table.height == 40 and table["AF"].is_not_null().all()
    with pysam.VariantFile(str(out)) as vf:
        assert sum(1 for _ in vf) == 40
    text = capsys.readouterr().out
    assert "scored: 40" in text and "auroc" in text
    assert re.search(r"40 ALTs in [0-9.]+ s \([0-9.]+ variants/s\)", text)  # the rate
    rc = main_score_variants(["--model", str(saved_model), "--vcf", str(CHR20_VCF), "--fasta",
                              str(fasta_copy), "--out", str(tmp_path / "b"), "--window", "32",
                              "--max-variants", "3", "--label-column", "AF", "--no-progress"])
    assert rc == 2 and "--label-column 'AF' is not in the table" in capsys.readouterr().err


def test_score_variants_usage_errors(saved_model, fasta_copy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main_score_variants(["--model", str(saved_model), "--fasta", str(fasta_copy),
                             "--out", str(tmp_path / "o")])  # neither --vcf nor --saturate-cds
    rc = main_score_variants(["--model", str(saved_model), "--fasta", str(tmp_path / "no.fa"),
                              "--vcf", str(CHR20_VCF), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no.fa" in capsys.readouterr().err


def test_probe_csv_task_kmer_only(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "task"
    folder.mkdir()
    for split, n in (("train", 40), ("test", 20)):
        rows = ["sequence,label"]
        for i in range(n):
            alphabet = "AT" if i % 2 else "GC"
            rows.append("".join(rng.choice(list(alphabet), 30)) + f",{i % 2}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "res.parquet"
    rc = main_probe(["--task", f"csv:{folder}", "--kmer-k", "2", "--heads", "logreg",
                     "--seeds", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = pl.read_parquet(out)
    assert res.height == 2 and (res["accuracy"] == 1.0).all()
    assert "mcc_mean" in capsys.readouterr().out


def test_probe_bad_task_exit_code(tmp_path, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train.csv").write_text("sequence,label\nACGT,0\nAZGT,1\n")
    (tmp_path / "t" / "test.csv").write_text("sequence,label\nACGT,0\n")
    assert main_probe(["--task", f"csv:{tmp_path / 't'}"]) == 2
    assert "train.csv:3: invalid base 'Z'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- conventions
def _write_task(folder, splits=(("train", 40), ("dev", 20), ("test", 20)), length=30, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for split, n in splits:
        rows = ["sequence,label"]
        for i in range(n):
            rows.append("".join(rng.choice(list("AT" if i % 2 else "GC"), length)) + f",{i % 2}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_version_and_usage(capsys):
    from hnet_dna import __version__
    from hnet_dna.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hnet-dna {__version__}"
    assert main([]) == 0 and "track" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["embed", "track", "score_variants", "probe"])
def test_every_option_has_help_and_shows_its_default(name):
    import importlib

    parser = importlib.import_module(f"hnet_dna.evaluation.commands.{name}").build_parser()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings} has no help"
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            assert f"(default: {action.default})" in " ".join(text.split()), action.dest


def test_probe_task_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        main_probe([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--task" in err and "required" in err and "usage:" in err


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    (["--device", "tpu"], "--device: unknown device 'tpu'"),
    (["--window", "1"], "--window: must be at least 8 bases"),
    (["--kmer-k", "14"], "--kmer-k must be distinct values in 1..8, got [14]"),
    (["--kmer-k", "4,x"], "--kmer-k: comma-separated integers"),
    (["--heads", "svm"], "--heads: choose from"),
])
def test_probe_option_validation_one_line_exit_2(tmp_path, capsys, args, message):
    task = _write_task(tmp_path / "t")
    with pytest.raises(SystemExit) as exc:
        main_probe(["--task", f"csv:{task}", "--no-progress", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("hnet-dna probe: error:")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_unavailable_cuda_device_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main_embed(["--model", "m", "--sequences", "s.csv", "--out", "o.npy",
                    "--device", "cuda:1"])
    assert exc.value.code == 2
    assert "cuda:1: no CUDA device is available here" in capsys.readouterr().err


def test_internal_error_exit_1_traceback_only_with_verbose(tmp_path, capsys, monkeypatch):
    from hnet_dna.evaluation import tasks

    def broken(spec, root=None):
        raise KeyError("a bug")

    monkeypatch.setattr(tasks, "load_task", broken)
    task = _write_task(tmp_path / "t")
    assert main_probe(["--task", f"csv:{task}", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "KeyError" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert main_probe(["--task", f"csv:{task}", "--no-progress", "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_binary_and_non_utf8_task_files_are_named(tmp_path, capsys):
    task = _write_task(tmp_path / "t")
    (task / "dev.csv").write_bytes(b"sequence,label\nAC\x00\x01GT,0\n")
    assert main_probe(["--task", f"csv:{task}", "--no-progress"]) == 2
    assert f"{task / 'dev.csv'}: a binary file" in capsys.readouterr().err
    (task / "dev.csv").write_bytes(b"sequence,label\nACGT,0\nAC\xe9GT,1\n")
    assert main_probe(["--task", f"csv:{task}", "--no-progress"]) == 2
    assert f"{task / 'dev.csv'}:3: not UTF-8 text" in capsys.readouterr().err


def test_probe_refuses_a_test_split_without_every_class(tmp_path, capsys):
    task = _write_task(tmp_path / "t")
    lines = (task / "test.csv").read_text().splitlines()
    (task / "test.csv").write_text("\n".join([lines[0]] + [x for x in lines[1:]
                                                           if x.endswith(",0")]) + "\n")
    assert main_probe(["--task", f"csv:{task}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{task / 'test.csv'}: the test split has no example of class(es) ['1']" in err


def test_single_class_metrics_are_undefined_not_perfect():
    from hnet_dna.evaluation.metrics import classification_metrics

    m = classification_metrics(np.zeros(4, int), np.zeros(4, int), np.tile([0.9, 0.1], (4, 1)))
    assert m["accuracy"] == 1.0
    assert np.isnan(m["mcc"]) and np.isnan(m["macro_f1"]) and np.isnan(m["auroc"])


def test_probe_gue_tasks_by_name_one_summary_table(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    _write_task(root / "GUE" / "prom" / "prom_core_all")
    _write_task(root / "GUE" / "EMP" / "H3", seed=1)
    out = tmp_path / "res.parquet"
    monkeypatch.setenv("HNET_DNA_TASK_ROOT", str(root))
    rc = main_probe(["--task", "gue:prom_core_all", "--task", "gue:EMP/H3", "--kmer-k", "2",
                     "--heads", "logreg", "--seeds", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = pl.read_parquet(out)
    # a dev split: C chosen on it, deterministic, one fit per task
    assert res["task"].to_list() == ["gue:prom_core_all", "gue:EMP/H3"]
    assert res["c_from"].to_list() == ["dev", "dev"] and (res["accuracy"] == 1.0).all()
    text = capsys.readouterr().out
    assert text.count("gue:prom_core_all") >= 2 and "gue:EMP/H3" in text  # tasks + table
    # an unknown name, and no root
    assert main_probe(["--task", "gue:prom_300_all", "--no-progress"]) == 2
    assert "no folder 'prom_300_all' with a train.csv under" in capsys.readouterr().err
    monkeypatch.delenv("HNET_DNA_TASK_ROOT")
    assert main_probe(["--task", "gue:prom_core_all", "--no-progress"]) == 2
    assert "--task-root or HNET_DNA_TASK_ROOT" in capsys.readouterr().err
    # --out exists: refused before any work
    assert main_probe(["--task", f"csv:{root / 'GUE' / 'EMP' / 'H3'}", "--kmer-k", "2",
                       "--out", str(out), "--no-progress"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_probe_without_dev_uses_cv_and_every_seed(tmp_path):
    task = _write_task(tmp_path / "t", splits=(("train", 40), ("test", 20)))
    out = tmp_path / "r.parquet"
    assert main_probe(["--task", f"csv:{task}", "--kmer-k", "2", "--heads", "logreg",
                       "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    res = pl.read_parquet(out)
    assert res["seed"].to_list() == [0, 1] and res["c_from"].to_list() == ["cv5", "cv5"]


def test_embed_refuses_existing_and_input_outputs_before_work(saved_model, tmp_path, capsys):
    table = tmp_path / "s.tsv"
    table.write_text("name\tsequence\na\tACGTACGTAA\n")
    out = tmp_path / "emb.npy"
    out.write_bytes(b"keep me")
    args = ["--model", str(saved_model), "--sequences", str(table), "--out", str(out),
            "--no-progress"]
    assert main_embed(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    # a later output (the BED) naming the input: refused before the first is written
    assert main_embed([*args, "--overwrite", "--boundaries-bed", str(table)]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me" and table.read_text().startswith("name")
    # a directory as --out
    (tmp_path / "d.npy").mkdir()
    assert main_embed([*args[:-2], str(tmp_path / "d.npy"), "--no-progress"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main_embed([*args, "--overwrite"]) == 0 and np.load(out).shape == (1, 32)


def test_embed_failure_leaves_no_partial_files(saved_model, tmp_path, capsys, monkeypatch):
    from hnet_dna.evaluation import embeddings

    table = tmp_path / "s.tsv"
    table.write_text("name\tsequence\na\tACGTACGTAA\nb\tGGGGCCCCAA\n")
    real = embeddings.Embedder._embed_group
    calls = []

    def fail_second(self, group):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(self, group)

    monkeypatch.setattr(embeddings.Embedder, "_embed_group", fail_second)
    monkeypatch.setattr(embeddings.Embedder, "__init__", _small_groups(
        embeddings.Embedder.__init__))
    rc = main_embed(["--model", str(saved_model), "--sequences", str(table),
                     "--out", str(tmp_path / "e.npy"), "--per-base", "--no-progress",
                     "--boundaries-bed", str(tmp_path / "b.bed")])
    assert rc == 2 and "disk full while writing" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tsv"]


def _small_groups(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.group_bases = 1  # one sequence per group
    return wrapped


def test_embed_minus_strand_bed_region_is_the_reverse_complement(saved_model, fasta_copy,
                                                                 tmp_path):
    from hnet_dna.genomics.fasta import Genome

    seq = Genome(fasta_copy).fetch("z", 300, 420).upper()
    rc_seq = seq[::-1].translate(str.maketrans("ACGT", "TGCA"))
    bed = tmp_path / "r.bed"
    bed.write_text("z\t300\t420\tfwd\t0\t+\nz\t300\t420\trev\t0\t-\n")
    table = tmp_path / "s.csv"
    table.write_text(f"name,sequence\nfwd,{seq}\nrev,{rc_seq}\n")
    common = ["--model", str(saved_model), "--no-progress", "--per-base"]
    assert main_embed([*common, "--fasta", str(fasta_copy), "--bed", str(bed),
                       "--out", str(tmp_path / "bed.npy"),
                       "--boundaries-bed", str(tmp_path / "b.bed")]) == 0
    assert main_embed([*common, "--sequences", str(table), "--out", str(tmp_path / "seq.npy")]
                      ) == 0
    np.testing.assert_allclose(np.load(tmp_path / "bed.npy"), np.load(tmp_path / "seq.npy"),
                               rtol=1e-5, atol=1e-6)
    index = pl.read_csv(tmp_path / "bed.index.tsv", separator="\t")
    assert index["strand"].to_list() == ["+", "-"]
    # the minus region is read on the minus strand: its boundaries are '-', at the genome
    # positions of the reverse-complement pass's chunk starts
    from hnet_dna.evaluation.runner import PerBaseForward, load_model
    from hnet_dna.genomics.alphabet import encode

    [out] = PerBaseForward(load_model(saved_model)).run([encode(rc_seq)[0]])
    expected = sorted(419 - int(t) for t in np.flatnonzero(out.chunk_start[0]))
    bounds = read_boundaries_bed(tmp_path / "b.bed")
    assert expected and sorted(b.position for b in bounds if b.strand == "-") == expected
    assert all(300 <= b.position < 420 for b in bounds)


def test_model_from_hub_cache_by_name_and_revision(saved_model, fasta_copy, tmp_path,
                                                   monkeypatch, capsys):
    """--model org/name[@revision] reads the huggingface_hub cache (offline here) and gives
    the same embeddings as the folder it was made from; an unknown name is one line, exit 2."""
    from eval_data import tiny_model

    cache = tmp_path / "hub" / "models--org--tiny-hnet"
    for ref, commit, folder in (("main", "a" * 40, saved_model), ("v1", "b" * 40, None)):
        snapshot = cache / "snapshots" / commit
        if folder is None:
            tiny_model(1, seed=5).save_pretrained(snapshot)
        else:
            snapshot.mkdir(parents=True)
            for f in folder.iterdir():
                (snapshot / f.name).write_bytes(f.read_bytes())
        (cache / "refs").mkdir(exist_ok=True)
        (cache / "refs" / ref).write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no local org/tiny-hnet folder
    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t180\tfirst\n")
    common = ["--fasta", str(fasta_copy), "--bed", str(bed), "--window", "128", "--overlap", "32",
              "--no-progress"]
    embeddings = {}
    for name, model in (("local", str(saved_model)), ("hub", "org/tiny-hnet"),
                        ("v1", "org/tiny-hnet@v1")):
        out = tmp_path / f"{name}.parquet"
        assert main_embed(["--model", model, *common, "--out", str(out)]) == 0, name
        embeddings[name] = np.stack(pl.read_parquet(out)["emb_final"].to_numpy())
    assert np.array_equal(embeddings["hub"], embeddings["local"])
    assert not np.allclose(embeddings["v1"], embeddings["local"])
    capsys.readouterr()
    assert main_embed(["--model", "org/missing", *common, "--out", str(tmp_path / "x.parquet")]
                      ) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'org/missing'" in err[0] and "Hugging Face Hub" in err[0]


# ---------------------------------------------------------------------------- model matches input
BYTE_VOCABULARY = {"name": "utf8_bytes", "tokens": {"BOS": 254, "EOS": 255}}


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory):
    """What convert-official makes of an official text H-Net: 256 tokens, UTF-8 bytes."""
    from eval_data import tiny_config

    from hnet_dna.model.lm import HNetForCausalLM

    config = tiny_config(1)
    config.vocab_size = 256
    torch.manual_seed(0)
    model = HNetForCausalLM(config)
    model.init_weights()
    return model.save_pretrained(tmp_path_factory.mktemp("bytes") / "m",
                                 vocabulary=BYTE_VOCABULARY)


def _dna_commands(model, fasta, tmp_path):
    from hnet_dna.evaluation.cli import main_track

    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t180\n")
    table = tmp_path / "s.csv"
    table.write_text("name,sequence\na,ACGTACGTAA\n")
    vcf = tmp_path / "in.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
    task = _write_task(tmp_path / "task", splits=(("train", 10), ("test", 6)))
    out = tmp_path / "out"
    common = ["--model", str(model), "--no-progress"]
    return {
        "embed": (main_embed, [*common, "--sequences", str(table), "--out", str(out / "e.npy")]),
        "track": (main_track, [*common, "--fasta", str(fasta), "--bed", str(bed),
                               "--out", str(out / "t")]),
        "score-variants": (main_score_variants, [*common, "--fasta", str(fasta),
                                                 "--vcf", str(vcf), "--out", str(out / "v")]),
        "probe": (main_probe, [*common, "--task", f"csv:{task}", "--kmer-k", "2",
                               "--out", str(out / "p.parquet")]),
    }


@pytest.mark.parametrize("command", ["embed", "track", "score-variants", "probe"])
def test_every_dna_command_refuses_a_byte_vocabulary_model(byte_model, fasta_copy, tmp_path,
                                                           capsys, command):
    main, args = _dna_commands(byte_model, fasta_copy, tmp_path)[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {byte_model}: ")
    assert "vocabulary 'utf8_bytes' (256 tokens) is not the DNA vocabulary" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_dna_runner_refuses_a_model_of_another_vocabulary(byte_model):
    from hnet_dna.errors import InputError
    from hnet_dna.evaluation.runner import PerBaseForward
    from hnet_dna.model.lm import HNetForCausalLM

    model = HNetForCausalLM.from_pretrained(byte_model)
    with pytest.raises(InputError, match="vocabulary 'utf8_bytes' .* is not the DNA vocabulary"):
        PerBaseForward(model)
    # a DNA name with other ids, and an unnamed table of another size, are refused too
    model.vocabulary = {"name": "dna", "tokens": {"A": 65, "C": 67, "G": 71, "T": 84}}
    with pytest.raises(InputError, match="A=65"):
        PerBaseForward(model)
    model.vocabulary = None
    with pytest.raises(InputError, match="records no vocabulary and has 256 tokens"):
        PerBaseForward(model)
    # a DNA model passes: recorded (what the trainer writes) or, in older folders, not recorded
    from eval_data import tiny_model

    from hnet_dna.genomics.alphabet import DNA_VOCAB

    dna = tiny_model(1)
    assert dna.vocabulary is None and PerBaseForward(dna).model is dna
    dna.vocabulary = DNA_VOCAB.for_model_folder()
    assert PerBaseForward(dna).model is dna


def test_config_json_that_is_a_list_is_one_line_exit_2(saved_model, tmp_path, capsys):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(saved_model, model)
    (model / "config.json").write_text("[1, 2, 3]\n")
    main, args = _dna_commands(model, None, tmp_path)["embed"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{model / 'config.json'}: " in err and "JSON object" in err


# ---------------------------------------------------------------------------- probe options
def test_probe_same_task_twice_is_refused(tmp_path, capsys):
    task = _write_task(tmp_path / "t")
    for second in (f"csv:{task}", str(task), f"csv:{task}/"):
        with pytest.raises(SystemExit) as exc:
            main_probe(["--task", f"csv:{task}", "--task", second, "--kmer-k", "2",
                        "--no-progress"])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"--task {second}" in err and "same task" in err
    # two tasks of the same name would be merged in the summary
    other = _write_task(tmp_path / "other" / "t", seed=1)
    with pytest.raises(SystemExit):
        main_probe(["--task", f"csv:{task}", "--task", f"csv:{other}", "--kmer-k", "2",
                    "--no-progress"])
    assert "both named 't'" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--max-per-class", "5"], ["--task-window", "100"],
                                    ["--fasta", "g.fa"], ["--gff", "g.gff"], ["--block", "10"]])
def test_probe_build_options_without_a_build_task_are_refused(tmp_path, capsys, monkeypatch,
                                                              option):
    _write_task(tmp_path / "GUE" / "H3")
    monkeypatch.setenv("HNET_DNA_TASK_ROOT", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main_probe(["--task", "gue:H3", "--kmer-k", "2", "--no-progress", *option])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{option[0]} only applies to build:KIND tasks" in err


@pytest.mark.parametrize("column", ["label", "sequence"])
def test_probe_csv_with_a_duplicated_column_is_refused(tmp_path, capsys, column):
    task = _write_task(tmp_path / "t")
    train = task / "train.csv"
    lines = train.read_text().splitlines()
    extra = "0" if column == "label" else "ACGT"
    train.write_text("\n".join([lines[0] + f",{column}"] + [x + f",{extra}" for x in lines[1:]])
                     + "\n")
    assert main_probe(["--task", f"csv:{task}", "--kmer-k", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {train}:1: column {column!r} appears 2 times in the header\n"
