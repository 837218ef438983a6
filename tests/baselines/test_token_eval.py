"""Bits per base are measured on the same bases whatever the tokenization."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hnet_dna.baselines.token_eval import TokenizedStream, tokenize_batch
from hnet_dna.baselines.tokenizers import BPETokenizer, KmerTokenizer, UnitTokenizer
from hnet_dna.genomics import alphabet
from hnet_dna.genomics.alphabet import DNA_VOCAB, PAD, N
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import CausalLMOutput, HNetForCausalLM
from hnet_dna.training.distributed import DistEnv
from hnet_dna.training.heldout import heldout_bits

UNIT = UnitTokenizer(DNA_VOCAB.size, DNA_VOCAB.pad_id, DNA_VOCAB.bos_id, (N,))


def _windows() -> dict[str, torch.Tensor]:
    """Three right-padded windows of 20 with N runs, k-mer tails and padding."""
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 4, (3, 20))
    rows[0, 5:8] = N
    rows[1, 13:] = PAD  # a short last window (13 bases)
    rows[2, 19] = N
    tokens = torch.from_numpy(rows)
    return {"tokens": tokens, "softmasked": torch.zeros_like(tokens, dtype=torch.bool),
            "loss_weight": ((tokens != PAD) & (tokens != N)).float()}


SCORED_BASES = 20 - 3 + 13 + 19  # every base but N and padding


class Uniform(nn.Module):
    """Equal logits over the vocabulary: every token costs exactly log2(V) bits."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.config = HNetConfig(arch_layout=["T1"], d_model=[8], vocab_size=vocab)  # 0 stages

    def forward(self, input_ids, mask=None):
        return CausalLMOutput(torch.zeros(*input_ids.shape, self.vocab), [])


def _bpe() -> BPETokenizer:
    rng = np.random.default_rng(1)
    texts = [alphabet.decode(rng.integers(0, 4, 200)) for _ in range(20)]
    return BPETokenizer.train(texts, "dna", vocab_size=64)


def test_same_bases_scored_for_every_tokenizer():
    batch = _windows()
    for tok in (UNIT, KmerTokenizer(3), KmerTokenizer(6), _bpe()):
        result = heldout_bits(Uniform(tok.vocab_size), [batch], DistEnv(), tok.vocabulary,
                              tokenize=lambda b, tok=tok: tokenize_batch(b, tok, PAD))
        assert result["bases"] == SCORED_BASES, tok.name
        # Uniform model: total bits = scored tokens * log2(V), divided by the scored bases.
        scored_tokens = float(tokenize_batch(batch, tok, PAD)["loss_weight"].sum())
        expected = scored_tokens * math.log2(tok.vocab_size) / SCORED_BASES
        assert math.isclose(result["bpb"], expected, rel_tol=1e-6), tok.name  # float32 CE
        tokens = tokenize_batch(batch, tok, PAD)["tokens"]
        real_tokens = int((tokens != tok.pad_id).sum())
        assert result["bases_per_token"] == (20 + 13 + 20) / real_tokens, tok.name


def test_kmer_tokens_cover_the_windows_exactly():
    batch = _windows()
    tok = KmerTokenizer(3)
    tb = tokenize_batch(batch, tok, PAD)
    for row, units in zip(tb["tokens"].numpy(), batch["tokens"].numpy(), strict=True):
        real = row[row != tok.pad_id]
        np.testing.assert_array_equal(tok.decode(real), units[units != PAD])
    assert int(tb["units"].sum()) == 20 + 13 + 20  # N included, padding not
    # Row 0: ACGT run of 5 -> one 3-mer + 2 singles, 3 N, run of 12 -> four 3-mers.
    assert int((tb["tokens"][0] != tok.pad_id).sum()) == 3 + 3 + 4


def test_unit_tokenizer_scores_what_the_base_level_scorer_scores():
    torch.manual_seed(0)
    config = HNetConfig(arch_layout=["m1", ["T1"], "m1"], d_model=[32, 32],
                        d_intermediate=[0, 64], vocab_size=16,
                        ssm_cfg={"d_state": 16, "headdim": 16, "chunk_size": 8},
                        attn_cfg={"num_heads": [2, 2], "rotary_emb_dim": [0, 0]})
    model = HNetForCausalLM(config)
    model.init_weights()
    batch = _windows()
    ours = heldout_bits(model, [batch], DistEnv(), UNIT.vocabulary,
                        tokenize=lambda b: tokenize_batch(b, UNIT, PAD))
    reference = heldout_bits(model, [batch], DistEnv(), DNA_VOCAB)
    assert ours["bases"] == reference["bases"] == SCORED_BASES
    assert math.isclose(ours["bpb"], reference["bpb"], rel_tol=1e-9)
    assert ours["bases_per_token"] == reference["bases_per_token"] == 1.0
    assert ours["compression_s0"] == reference["compression_s0"] >= 1.0


def test_tokenized_stream_delegates_position():
    class Stream:
        def __init__(self):
            self.state = {"taken": 0}

        def __next__(self):
            self.state["taken"] += 1
            return _windows()

        def state_dict(self):
            return dict(self.state)

        def load_state_dict(self, state):
            self.state = dict(state)

    stream = TokenizedStream(Stream(), KmerTokenizer(6), PAD)
    batch = next(stream)
    assert batch["tokens"].shape[0] == 3 and batch["loss_weight"].dtype == torch.float32
    assert stream.state_dict() == {"taken": 1}
    stream.load_state_dict({"taken": 5})
    assert stream.stream.state == {"taken": 5}
