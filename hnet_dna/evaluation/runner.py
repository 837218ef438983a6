"""Run a causal H-Net over base windows and bring every output back to base resolution.

A window of bases ``b_0 .. b_{L-1}`` is fed as ``[BOS, b_0 .. b_{L-1}]`` (docs/architecture.md),
so the hidden state at input position ``t + 1`` (input token ``b_t``) is the representation of
base ``t`` (it has seen ``b_0 .. b_t``), and the logits at position ``t`` give
``log p(b_t | b_<t)``.

Depths (names accepted everywhere a ``depth`` is asked for), for a model with ``S`` stages:

* ``encoder.s`` / ``decoder.s`` (``s < S``): output of stage ``s``'s encoder / decoder, at the
  resolution of stage-``s`` tokens (stage 0 = bases);
* ``main``: output of the innermost network (stage ``S`` tokens, the coarsest chunks);
* ``final``: backbone output fed to the LM head (= ``decoder.0``; = ``main`` when ``S = 0``).

Inner-stage tensors are mapped back to bases through the boundary masks: stage-0 token ``t``
belongs to chunk ``cumsum(boundary_mask)[t] - 1``, composed stage by stage.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import BOS, DNA_VOCAB, PAD, N
from hnet_dna.genomics.framing import frame
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.hnet import HNet, select_rows
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.model.pretrained import is_repo_id
from hnet_dna.model.utils import accumulation_dtype
from hnet_dna.training.checkpoint import find_model_folder

log = logging.getLogger(__name__)

_DEPTH = re.compile(r"^(encoder|decoder)\.(\d+)$")


# ---------------------------------------------------------------------------- model loading
#: the ids every DNA command feeds (bases, N, framing), which a model's vocabulary must share
_DNA_TOKENS = ("A", "C", "G", "T", "N", "PAD", "BOS")


def check_dna_vocabulary(model: HNetForCausalLM, source: str | Path | None = None) -> None:
    """Refuse a model that does not read DNA ids (docs/architecture.md): one whose
    config.json records another vocabulary (e.g. ``utf8_bytes``, what ``convert-official``
    makes of the official text H-Nets), a ``dna`` one with other ids, or, when none is recorded
    (older folders), an embedding table of another size than the DNA vocabulary's.

    Every path that feeds DNA to a model calls it (:func:`load_model`, :class:`PerBaseForward`,
    fine-tuning); ``source`` (the folder or Hub name) starts the message.
    """
    where = f"{source}: " if source is not None else ""
    vocabulary, size = model.vocabulary, model.config.vocab_size
    if vocabulary is None:
        if size != DNA_VOCAB.size:
            raise InputError(
                f"{where}the model records no vocabulary and has {size} tokens, not the DNA "
                f"vocabulary's {DNA_VOCAB.size}; this command feeds DNA bases")
        return
    name = vocabulary.get("name", "")
    tokens = vocabulary.get("tokens", {})
    if name != DNA_VOCAB.name:
        raise InputError(
            f"{where}the model's vocabulary {name!r} ({size} tokens) is not the DNA vocabulary; "
            "this command feeds DNA bases as ids "
            + " ".join(f"{t}={DNA_VOCAB.tokens[t]}" for t in _DNA_TOKENS)
            + ": use a DNA model")
    differ = {t: tokens.get(t) for t in _DNA_TOKENS if tokens.get(t) != DNA_VOCAB.tokens[t]}
    if differ:
        got = " ".join(f"{t}={i}" for t, i in differ.items())
        want = " ".join(f"{t}={DNA_VOCAB.tokens[t]}" for t in differ)
        raise InputError(f"{where}the model's DNA vocabulary has other ids ({got}) than this "
                         f"hnet_dna feeds ({want})")


def load_model(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> HNetForCausalLM:
    """Load a saved model, the newest checkpoint of a run folder, or a Hugging Face Hub
    repository ``"org/name"`` / ``"org/name@revision"`` (a local path of that name wins; the
    Hub cache and ``HF_HUB_OFFLINE`` apply), in eval mode; a model that does not read DNA is
    refused (:func:`check_dna_vocabulary`)."""
    repo, _, revision = str(path).partition("@")
    if isinstance(path, str) and is_repo_id(repo) and not Path(path).exists():
        log.info("loading model from the Hub: %s (revision %s)", repo, revision or "main")
        model = HNetForCausalLM.from_pretrained(repo, device=device, revision=revision or None)
    else:
        folder = find_model_folder(path)
        log.info("loading model from %s", folder)
        model = HNetForCausalLM.from_pretrained(folder, device=device)
    check_dna_vocabulary(model, path)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


# ---------------------------------------------------------------------------- depths
def stage_module(model: HNetForCausalLM, stage: int) -> HNet:
    module = model.backbone
    for _ in range(stage):
        module = module.main_network
    return module


def available_depths(config: HNetConfig) -> list[str]:
    stages = config.num_stages
    return ([f"encoder.{s}" for s in range(stages)] + ["main"]
            + [f"decoder.{s}" for s in reversed(range(stages))] + ["final"])


def depth_level(depth: str, config: HNetConfig) -> int:
    """Resolution level of a depth: 0 = bases, s = stage-s tokens."""
    if depth == "final":
        return 0
    if depth == "main":
        return config.num_stages
    m = _DEPTH.match(depth)
    if not m or int(m.group(2)) >= config.num_stages:
        raise InputError(f"unknown depth {depth!r}; this model has {available_depths(config)}")
    return int(m.group(2))


def _depth_module(model: HNetForCausalLM, depth: str) -> nn.Module:
    config = model.config
    depth_level(depth, config)  # validates
    if depth == "main":
        return stage_module(model, config.num_stages).main_network
    if depth == "final":
        if config.num_stages == 0:
            return model.backbone.main_network
        return _depth_module(model, "decoder.0")
    kind, stage = depth.split(".")
    return getattr(stage_module(model, int(stage)), kind)


# ---------------------------------------------------------------------------- outputs
@dataclass
class WindowOutput:
    """Per-base outputs of one window of ``L`` bases (numpy, float32 unless noted).

    ``features[depth]``: ``(L, D)``; ``logp``: ``(L,)`` log p(b_t | b_<t) in nats (NaN where the
    base is N, which is never scored); ``chunk_start[k]``: ``(L,)`` bool, base starts a
    level-``k+1`` chunk (= is a stage-``k`` boundary); ``boundary_prob[k]``: ``(L,)`` p of the
    stage-``k`` router at the base's stage-``k`` token, NaN where the base is not a stage-``k``
    token. The chunk holding BOS starts before base 0, so base 0 is a boundary only if the
    router put one there.
    """

    features: dict[str, np.ndarray] = field(default_factory=dict)
    logp: np.ndarray | None = None
    chunk_start: list[np.ndarray] = field(default_factory=list)
    boundary_prob: list[np.ndarray] = field(default_factory=list)


def _token_maps(routing, row: int, length: int) -> tuple[list[np.ndarray], list[np.ndarray],
                                                          list[np.ndarray]]:
    """For stage-0 tokens ``0..length-1`` of ``row``: index of their level-k token (k = 0..S),
    per stage whether they are a boundary there, and the router probability there."""
    idx = np.arange(length)
    present = np.ones(length, dtype=bool)  # token exists at the current level
    indices, starts, probs = [idx], [], []
    for r in routing:
        bm = r.boundary_mask[row].cpu().numpy()
        p = r.boundary_prob[row].float().cpu().numpy()
        at = idx  # level-k token index of every stage-0 token
        is_boundary = present & bm[at]
        prob = np.where(present, p[at], np.nan)
        idx = np.cumsum(bm)[at] - 1
        present = is_boundary
        indices.append(idx)
        starts.append(is_boundary)
        probs.append(prob)
    return indices, starts, probs


def _suffix_token_maps(routing, row: int, length: int) -> list[np.ndarray]:
    """``_token_maps``' indices for the tokens of an ``extend``: -1 where a token belongs to the
    last level-k token of the cached prefix (no new boundary up to it at some stage)."""
    idx = np.arange(length)
    indices = [idx]
    for r in routing:
        level = np.cumsum(r.boundary_mask[row].cpu().numpy()) - 1
        idx = np.where(idx >= 0, level[np.maximum(idx, 0)], -1)
        indices.append(idx)
    return indices


def _pad_rows(rows: Sequence[np.ndarray], device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-padded ``(ids, mask)`` of token rows (no BOS)."""
    ids, mask = frame(rows, BOS, PAD)
    return ids[:, 1:].to(device), mask[:, 1:].to(device)


def _to_numpy(t: Tensor) -> np.ndarray:
    """float32 numpy, or float64 for float64 models (exactness checks)."""
    return t.detach().to(accumulation_dtype(t.dtype)).cpu().numpy()


@contextmanager
def _capture_depths(model: nn.Module, depths: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """The outputs of the depth modules of one forward, by depth name (hooks removed after)."""
    captured: dict[str, Tensor] = {}
    hooks = []
    for depth in depths:
        def hook(_m, _inp, output, depth=depth):
            captured[depth] = output[0] if isinstance(output, tuple) else output
        hooks.append(_depth_module(model, depth).register_forward_hook(hook))
    try:
        yield captured
    finally:
        for h in hooks:
            h.remove()


class PerBaseForward:
    """Batched no-grad forward passes with hooks on the requested depths.

    Windows may have different lengths: they are right-padded with PAD and masked. ``autocast``
    (bf16) is used on CUDA when ``amp`` is true.
    """

    def __init__(self, model: HNetForCausalLM, batch_size: int = 16, amp: bool = True) -> None:
        check_dna_vocabulary(model)
        self.model = model.eval()
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.amp = amp and self.device.type == "cuda"

    @property
    def config(self) -> HNetConfig:
        return self.model.config

    @torch.no_grad()
    def run(self, windows: Sequence[np.ndarray], depths: Sequence[str] = (),
            logp: bool = True) -> list[WindowOutput]:
        """Outputs for each window (uint8/int base ids 0-4), in input order."""
        out: list[WindowOutput | None] = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))  # less padding
        for a in range(0, len(order), self.batch_size):
            chunk = order[a:a + self.batch_size]
            for i, res in zip(chunk, self._run_batch([windows[i] for i in chunk], depths, logp),
                              strict=True):
                out[i] = res
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def run_shared(self, windows: Sequence[np.ndarray], shared: Sequence[int],
                   depths: Sequence[str] = ()) -> list[WindowOutput]:
        """``run(windows, depths)``'s ``logp`` and ``features`` (not ``chunk_start`` /
        ``boundary_prob``), computing shared prefixes once.

        ``shared[i]``: how many leading bases window ``i`` may share with others. Windows with
        the same ``shared`` value and the same bases up to it form a group: its prefix
        ``[BOS, b_0 .. b_{p-1}]`` runs once into an inference cache, and each window's remaining
        bases continue from a copy of it (``HNetForCausalLM.extend``), so a causal model gives
        the outputs of ``run`` (to float rounding) for a fraction of the work: REF and ALT
        windows of a variant share everything before it. Up to ``batch_size`` prefixes run
        together, their continuations ``2 * batch_size`` at a time (each is part of a window).
        """
        if len(shared) != len(windows):
            raise ValueError(f"{len(shared)} shared lengths for {len(windows)} windows")
        groups: dict[tuple[int, bytes], list[int]] = {}
        for i, (w, p) in enumerate(zip(windows, shared, strict=True)):
            if len(w) == 0:
                raise ValueError("cannot run an empty window")
            p = max(0, min(int(p), len(w) - 1))  # at least one base continues
            groups.setdefault((p, np.asarray(w[:p], np.uint8).tobytes()), []).append(i)
        keys = sorted(groups)  # by prefix length: less padding
        out: list[WindowOutput | None] = [None] * len(windows)
        for a in range(0, len(keys), self.batch_size):
            chunk = keys[a:a + self.batch_size]
            self._run_group(windows, [k[0] for k in chunk], [groups[k] for k in chunk],
                            depths, out)
        return out  # type: ignore[return-value]

    def _forward(self, ids: Tensor, cache, mask: Tensor | None, depths: Sequence[str]):
        """``model.extend`` with the depth modules' outputs captured."""
        with _capture_depths(self.model, depths) as captured, \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            result = self.model.extend(ids, cache, mask=mask)
        return result, {d: _to_numpy(captured[d]) for d in depths}

    def _run_group(self, windows: Sequence[np.ndarray], prefix: list[int],
                   members: list[list[int]], depths: Sequence[str],
                   out: list[WindowOutput | None]) -> None:
        """One batch of prefixes (``prefix[g]`` bases, shared by the windows ``members[g]``),
        then all their continuations; fills ``out``."""
        levels = {d: depth_level(d, self.config) for d in depths}
        longest = max(len(windows[i]) for m in members for i in m)
        cache = self.model.allocate_inference_cache(len(members), longest + 1)
        ids, mask = frame([windows[m[0]][:p] for p, m in zip(prefix, members, strict=True)],
                          BOS, PAD)
        ids, mask = ids.to(self.device), mask.to(self.device)
        result, feats = self._forward(ids, cache, mask, depths)
        # log p of every prefix position: position t predicts base t (t = p: the first base
        # after the prefix, which differs between the group's windows)
        prefix_lp = torch.log_softmax(result.logits.float(), -1).cpu().numpy()
        heads = []  # per group: per-base prefix features, and the last token's per depth
        for g, p in enumerate(prefix):
            indices, _, _ = _token_maps(result.routing, g, p + 1)
            heads.append({d: (feats[d][g][indices[levels[d]][1:]],
                              feats[d][g][indices[levels[d]][p]]) for d in depths})
        rows = [(g, i) for g, m in enumerate(members) for i in m]
        step = 2 * self.batch_size
        for a in range(0, len(rows), step):
            part = rows[a:a + step]
            tails = [windows[i][prefix[g]:] for g, i in part]
            ids, mask = _pad_rows(tails, self.device)
            parents = torch.tensor([g for g, _ in part], device=self.device)
            result, feats = self._forward(ids, select_rows(cache, parents), mask, depths)
            lp = torch.log_softmax(result.logits.float(), -1)
            lp = lp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1).cpu().numpy()
            for r, (g, i) in enumerate(part):
                w, p, n = np.asarray(windows[i]), prefix[g], len(tails[r])
                row = np.concatenate([prefix_lp[g, np.arange(p + 1), w[:p + 1]],
                                      lp[r, :n - 1]]).astype(np.float64)
                row[w == N] = np.nan  # N is never scored (it has loss weight 0 in training)
                res = WindowOutput(logp=row)
                indices = _suffix_token_maps(result.routing, r, n)
                for d in depths:
                    head, last = heads[g][d]
                    tail = np.concatenate([last[None], feats[d][r]])[indices[levels[d]] + 1]
                    res.features[d] = np.concatenate([head, tail])
                out[i] = res

    def _run_batch(self, windows: list[np.ndarray], depths: Sequence[str],
                   want_logp: bool) -> list[WindowOutput]:
        lengths = [len(w) for w in windows]
        if min(lengths) == 0:
            raise ValueError("cannot run an empty window")
        width = max(lengths) + 1
        ids, mask = frame(windows, BOS, PAD)
        ids, mask = ids.to(self.device), mask.to(self.device)
        with _capture_depths(self.model, depths) as captured, \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            full = all(n == width - 1 for n in lengths)
            result = self.model(ids, mask=None if full else mask)
        lp = None
        if want_logp:
            logprobs = torch.log_softmax(result.logits.float(), -1)
            lp = logprobs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1).cpu().numpy()
        feats = {d: _to_numpy(captured[d]) for d in depths}
        levels = {d: depth_level(d, self.config) for d in depths}
        outputs = []
        for r, n in enumerate(lengths):
            indices, starts, probs = _token_maps(result.routing, r, n + 1)
            res = WindowOutput()
            for d in depths:
                res.features[d] = feats[d][r][indices[levels[d]][1:]]
            if lp is not None:
                row = lp[r, :n].astype(np.float64)
                # N is never scored (it has loss weight 0 in training)
                row[np.asarray(windows[r]) == N] = np.nan
                res.logp = row
            res.chunk_start = [s[1:] for s in starts]
            res.boundary_prob = [p[1:] for p in probs]
            outputs.append(res)
        return outputs
