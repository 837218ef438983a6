"""HNetForCausalLM: token embedding -> recursive H-Net backbone -> LM head, plus decoding."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from hnet_dna.model import pretrained
from hnet_dna.model.chunking import RoutingOutput
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.files import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from hnet_dna.model.hnet import HNet, HNetCache
from hnet_dna.model.utils import accumulation_dtype
from hnet_dna.model.weights import load_model_files
from hnet_dna.outputs import atomic_output

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "CausalLMOutput", "HNetForCausalLM", "sample_next"]


@dataclass
class CausalLMOutput:
    logits: Tensor  # (B, L, V) float32 (float64 for float64 models)
    routing: list[RoutingOutput]  # one per stage, outer -> inner
    hidden_states: Tensor | None = None  # (B, L, D0) backbone output before the head


class HNetForCausalLM(nn.Module):
    def __init__(
        self,
        config: HNetConfig,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        factory = {"device": device, "dtype": dtype}
        d0 = config.stage_cfg(0)["d_model"]
        self.embeddings = nn.Embedding(config.vocab_size, d0, **factory)
        self.backbone = HNet(config, stage_idx=0, **factory)
        self.lm_head = nn.Linear(d0, config.vocab_size, bias=False, **factory)
        if config.tie_embeddings:
            self.lm_head.weight = self.embeddings.weight
        # What a saved folder records besides the weights (see save_pretrained).
        self.vocabulary: dict[str, Any] | None = None
        self.training_info: dict[str, Any] | None = None

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def init_weights(self, initializer_range: float = 0.02) -> None:
        """Initialise for training from scratch, as the official ``init_weights`` does.

        Linear layers of every isotropic stack get N(0, r); output projections (``out_proj``,
        ``fc2``) get N(0, r / sqrt(n_res)) where n_res counts residual adds from the outermost
        stage inward. Routing projections and ``residual_proj`` (flagged ``_no_reinit``), Mamba's
        A_log / D / dt_bias / conv and the norms keep their constructor init.
        """
        nn.init.normal_(self.embeddings.weight, std=1.0)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=initializer_range)
        n_res = self.backbone.residual_heights()
        for stage, stack in self.backbone.isotropic_stacks():
            for name, module in stack.named_modules():
                if not isinstance(module, nn.Linear) or getattr(module.weight, "_no_reinit", False):
                    continue
                std = initializer_range
                if name.endswith("out_proj") or name.endswith("fc2"):
                    std = initializer_range / math.sqrt(n_res[stage])
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: Tensor,  # (B, L) int64
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        cache: HNetCache | None = None,
        output_hidden_states: bool = False,
    ) -> CausalLMOutput:
        return self._run(input_ids, mask, output_hidden_states, seq_idx=seq_idx, cache=cache)

    def extend(
        self,
        input_ids: Tensor,  # (B, L) new tokens
        cache: HNetCache,
        mask: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> CausalLMOutput:
        """Continue each row from ``cache`` over new tokens (right-padded by ``mask``): the
        logits equal those of the full forward over cached + new tokens at the new positions,
        and the cache moves past each row's new valid tokens. A cache fresh from
        ``allocate_inference_cache`` makes this a forward pass that fills it (a prefill);
        ``hnet.select_rows`` copies a cache's rows so that one prefix feeds several suffixes.
        """
        return self._run(input_ids, mask, output_hidden_states, cache=cache, extend=True)

    def _run(self, input_ids: Tensor, mask: Tensor | None, output_hidden_states: bool,
             **backbone_args) -> CausalLMOutput:
        """Embedding -> backbone (``forward`` or ``extend`` arguments) -> head."""
        if mask is not None and mask.shape != input_ids.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} != input shape {tuple(input_ids.shape)}"
            )
        hidden = self.embeddings(input_ids)
        hidden, routing = self.backbone(hidden, mask=mask, **backbone_args)
        logits = self.lm_head(hidden)
        logits = logits.to(accumulation_dtype(logits.dtype))
        return CausalLMOutput(logits, routing, hidden if output_hidden_states else None)

    # ------------------------------------------------------------------ decoding
    def allocate_inference_cache(
        self,
        batch_size: int,
        max_seqlen: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> HNetCache:
        device = device or self.embeddings.weight.device
        dtype = dtype or self.embeddings.weight.dtype
        return self.backbone.allocate_cache(batch_size, max_seqlen, device=device, dtype=dtype)

    def step(self, input_ids: Tensor, cache: HNetCache, active: Tensor | None = None) -> Tensor:
        """Next-token logits ``(B, V)`` for one new token per row ``(B,)`` or ``(B, 1)``."""
        ids = input_ids.reshape(-1, 1)
        hidden = self.backbone.step(self.embeddings(ids), cache, active)
        logits = self.lm_head(hidden[:, 0])
        return logits.to(accumulation_dtype(logits.dtype))

    @torch.no_grad()
    def generate(
        self,
        prompts: Tensor | list[list[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Sample continuations for a batch of prompts (of possibly different lengths).

        The common prefix length is prefilled in one forward pass; rows whose prompt is longer
        are then teacher-forced token by token while the others sample. ``temperature=0`` is
        greedy. Returns each row's prompt plus its continuation (stopping after ``eos``).
        """
        listed = prompts.tolist() if isinstance(prompts, Tensor) else prompts
        rows = [list(map(int, p)) for p in listed]
        if not rows or min(len(r) for r in rows) == 0:
            raise ValueError("generate() needs at least one non-empty prompt")
        device = self.embeddings.weight.device
        common = min(len(r) for r in rows)
        total = max(len(r) for r in rows) + max_new_tokens
        cache = self.allocate_inference_cache(len(rows), total, device=device)
        logits = self.forward(torch.tensor([r[:common] for r in rows], device=device), cache=cache)
        logits = logits.logits[:, -1]
        out = [list(r) for r in rows]
        finished = [max_new_tokens == 0] * len(rows)
        for pos in range(common, total):
            sampled = sample_next(logits, temperature, top_k, top_p, generator).tolist()
            next_ids = []
            for i, row in enumerate(rows):
                if pos < len(row):  # still inside this row's prompt: teacher-force it
                    next_ids.append(row[pos])
                    continue
                if not finished[i]:
                    out[i].append(sampled[i])
                    generated = len(out[i]) - len(row)
                    finished[i] = generated >= max_new_tokens or sampled[i] == eos_token_id
                next_ids.append(sampled[i])
            if all(finished):
                break
            active = torch.tensor([not f for f in finished], device=device)
            logits = self.step(torch.tensor(next_ids, device=device), cache, active=active)
        return out

    # ------------------------------------------------------------------ bookkeeping
    def stage_parameters(self) -> list[list[tuple[str, nn.Parameter]]]:
        """(name, parameter) per stage; embeddings and head act at stage 0 (base resolution)."""
        stages = self.backbone.stage_parameters("backbone.")
        stages[0] = [("embeddings.weight", self.embeddings.weight), *stages[0]]
        if not self.config.tie_embeddings:
            stages[0].append(("lm_head.weight", self.lm_head.weight))
        return stages

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(
        self,
        path: str | Path,
        vocabulary: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a self-describing model folder: ``config.json``, ``model.safetensors``, and a
        ``README.md`` model card (see ``hnet_dna.model.pretrained``).

        ``vocabulary`` (``{"name": ..., "tokens": {token: id}}``) and ``training`` (``data``,
        ``step``, ``metrics``) default to ``self.vocabulary`` / ``self.training_info``, which
        ``from_pretrained`` restores, so a loaded model saves the same description.
        """
        vocabulary = self.vocabulary if vocabulary is None else vocabulary
        training = self.training_info if training is None else training
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = pretrained.folder_config(self.config, vocabulary, training)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        if self.config.tie_embeddings:
            state.pop("lm_head.weight", None)
        # Each file whole or not at all, with umask permissions (safetensors alone gives 0600).
        with atomic_output(path / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        with atomic_output(path / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        card = pretrained.model_card(
            self.config, self.num_parameters(), meta.get("vocabulary"), meta.get("training")
        )
        with atomic_output(path / CARD_NAME) as tmp:
            tmp.write_text(card)
        return path

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: torch.device | str | None = None,
        strict: bool = True,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> HNetForCausalLM:
        """Load a model folder, or a Hugging Face Hub repository ``"org/name"``.

        Hub repositories go through huggingface_hub's cache (``cache_dir``, default
        ``HF_HUB_CACHE``) at ``revision``; ``local_files_only=True`` or ``HF_HUB_OFFLINE=1``
        reads the cache without the network.
        """
        path = pretrained.resolve_folder(
            name_or_path, revision, cache_dir, local_files_only=local_files_only, token=token
        )
        _, metadata = pretrained.read_folder_config(path)  # model_type, vocabulary, training
        # validated: config vs the file's tensor shapes (before building), corrupt file, NaN/inf
        config, state = load_model_files(path, cls, str(device or "cpu"), strict)
        model = cls(config, device=device)
        if config.tie_embeddings:
            state["lm_head.weight"] = state["embeddings.weight"]
        model.load_state_dict(state, strict=strict)
        model.vocabulary = metadata.get("vocabulary")
        model.training_info = metadata.get("training")
        return model

    def push_to_hub(
        self,
        repo_id: str,
        *,
        vocabulary: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        **upload: Any,
    ) -> Any:
        """Upload the ``save_pretrained`` folder to the Hub repository ``repo_id`` (created if
        missing) as one commit; returns huggingface_hub's ``CommitInfo``. ``upload`` goes to
        :func:`hnet_dna.model.pretrained.upload_folder` (``commit_message``, ``private``,
        ``revision``, ``create_pr``, ``token``)."""
        with tempfile.TemporaryDirectory(prefix="hnet-dna-push-") as tmp:
            folder = self.save_pretrained(tmp, vocabulary=vocabulary, training=training)
            return pretrained.upload_folder(folder, repo_id, **upload)

    @classmethod
    def from_official(
        cls,
        config_path: str | Path,
        weights_path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> HNetForCausalLM:
        """Load a checkpoint of the official H-Net release (JSON config + ``.pt`` state dict).

        The weights are read with ``weights_only=True`` and must match the model the config
        describes name for name and shape for shape (strict). The official text models use
        UTF-8 bytes (BOS 254, EOS 255): a 256-token model gets that vocabulary recorded.
        """
        config = pretrained.official_config(config_path)
        state = pretrained.official_state_dict(weights_path)
        model = cls(config, device=device, dtype=dtype)
        pretrained.check_state_keys(model.state_dict(), state, str(weights_path))
        model.load_state_dict(state, strict=True)
        if config.vocab_size == pretrained.OFFICIAL_VOCAB_SIZE:
            model.vocabulary = dict(pretrained.BYTE_VOCABULARY)
        model.training_info = {"data": f"official H-Net release ({Path(weights_path).name})"}
        return model


def sample_next(
    logits: Tensor,  # (B, V)
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample one token per row with temperature / top-k / nucleus filtering (0 = greedy)."""
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop tokens once the mass *before* them already reaches top_p (keeps at least one).
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(1, sorted_idx, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
