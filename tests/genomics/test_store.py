"""Packed codes and the N-run index behind preloaded windows."""

import re
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hnet_dna.genomics import store
from hnet_dna.genomics.alphabet import DNA_VOCAB, encode
from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import Interval
from hnet_dna.genomics.items import CodeTables


@settings(max_examples=60, deadline=None)
@given(st.text("ACGTNacgtnR", min_size=1, max_size=60), st.integers(1, 9), st.data())
def test_n_counts_from_runs_match_brute_force(seq, chunk, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(seq)), min_size=2, max_size=6)))
    ivs = [Interval("x", a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    if not ivs:
        return
    with tempfile.TemporaryDirectory() as tmp:
        fa = Path(tmp) / "x.fa"
        fa.write_text(f">x\n{seq}\n")
        g = Genome(fa, backend="memory")
    tables = CodeTables(DNA_VOCAB, 0.5)
    old = store._CHUNK
    store._CHUNK = chunk  # runs cut by chunk borders must be joined again
    try:
        packed = store.PreloadedCodes([g], [(0, iv) for iv in ivs], tables)
    finally:
        store._CHUNK = old
    joined = "".join(seq[iv.start:iv.end] for iv in ivs)
    ids, soft = encode(joined)
    np.testing.assert_array_equal(packed.codes, ids + 16 * soft)
    n = len(joined)
    a = np.array([i for i in range(n + 1) for _ in range(i, n + 1)])
    b = np.array([j for i in range(n + 1) for j in range(i, n + 1)])
    expect = [len(re.findall("[NnR]", joined[i:j])) for i, j in zip(a, b, strict=True)]
    assert packed.zero_count(a, b).tolist() == expect


def test_code_tables_for_dna():
    t = CodeTables(DNA_VOCAB, 0.25)
    assert t.period == 16 and t.dtype == np.uint8 and t.minus_offset == 32
    codes = np.array([0, 1, 2, 3, 4, 16, 17, 18, 19, 20])  # ACGTN, then acgtn
    assert t.tokens[codes].tolist() == [0, 1, 2, 3, 4] * 2
    assert t.tokens[codes + 32].tolist() == [3, 2, 1, 0, 4] * 2  # complement half
    assert t.weight[codes].tolist() == [1, 1, 1, 1, 0, 0.25, 0.25, 0.25, 0.25, 0]
    assert t.soft[codes].tolist() == [False] * 5 + [True] * 5
    assert t.tokens[t.pad_code] == DNA_VOCAB.pad_id and t.weight[t.pad_code] == 0
