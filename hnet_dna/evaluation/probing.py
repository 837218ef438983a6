"""Probes on frozen features (scikit-learn) and full fine-tuning with a classification head.

* ``logreg``: L2 logistic regression on standardised features (sparse k-mer frequencies are
  scaled per column without centring, which keeps them sparse and, with the unpenalised
  intercept, fits the same model). The inverse regularisation C (grid ``CS``) is
  chosen on the ``dev`` split when the task has one (one fit per C on train, warm-started from
  the previous C, best dev log-loss wins; no refit), else by stratified 5-fold cross-validation
  on train (log-loss) and refit on all of it. Fits stop when the loss changes by less than
  ``tol`` (lbfgs), at most ``MAX_ITER`` iterations.
* ``mlp``: standardised features (as above), one hidden layer of 256 ReLU units, early
  stopping on 10 % of the training split.

Both are fitted on ``train`` and scored on ``test``. A seed changes the CV folds / MLP
initialisation, so the spread over seeds is the probe's own variance; a ``logreg`` with C chosen
on ``dev`` is deterministic and is fitted once (one row, seed = the first seed). Each head shows
a progress report with an ETA (a bar on a terminal, log lines otherwise: hnet_dna.progress).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import BOS, PAD, encode
from hnet_dna.genomics.framing import frame
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.progress import progress as progress_bar
from hnet_dna.training.config import ScheduleConfig
from hnet_dna.training.optim import build_param_groups
from hnet_dna.training.schedule import build_scheduler
from hnet_dna.training.trainer import optimizer_step

from .embeddings import Embedder
from .metrics import classification_metrics
from .runner import check_dna_vocabulary
from .tasks import Task

log = logging.getLogger(__name__)

HEADS: tuple[str, ...] = ("logreg", "mlp")
METRICS: tuple[str, ...] = ("mcc", "accuracy", "macro_f1", "auroc")
#: C grid of the logistic regression (standardised features)
CS = np.logspace(-5, 2, 8)
MAX_ITER = 1000
TOL = 1e-4


def _scaler(X) -> list:
    return [StandardScaler(with_mean=not sparse.issparse(X))]


def make_head(head: str, seed: int, X=None) -> Pipeline:
    """The head fitted on train when C is chosen by CV (no dev split), or the MLP."""
    if head == "logreg":
        return make_pipeline(*_scaler(X), LogisticRegressionCV(
            Cs=CS, cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="neg_log_loss",
            max_iter=MAX_ITER, tol=TOL))
    if head == "mlp":
        return make_pipeline(*_scaler(X), MLPClassifier(
            hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=True, max_iter=300,
            random_state=seed))
    raise InputError(f"unknown probe head {head!r}; choose from {HEADS}")


def fit_logreg_on_dev(X: Mapping, y: Mapping, progress: bool = True, desc: str = "logreg"
                      ) -> tuple[Pipeline, float]:
    """Fit one L2 logistic regression per C on train (warm-started along the grid) and keep
    the one with the lowest dev log-loss; returns ``(fitted pipeline, C)``."""
    [scaler] = _scaler(X["train"])
    Xtr = scaler.fit_transform(X["train"])
    Xdev = scaler.transform(X["dev"])
    clf = LogisticRegression(C=CS[0], max_iter=MAX_ITER, tol=TOL, warm_start=True)
    best = (np.inf, None, None)
    labels = np.arange(max(y["train"].max(), y["dev"].max()) + 1)
    for C in progress_bar(CS, desc=f"{desc}: C on dev", unit="C", disable=not progress,
                          leave=False):
        clf.set_params(C=C)
        clf.fit(Xtr, y["train"])
        loss = log_loss(y["dev"], clf.predict_proba(Xdev), labels=labels)
        log.info("%s C=%g: dev log-loss %.4f (%d iterations)", desc, C, loss,
                 int(np.max(clf.n_iter_)))
        if loss < best[0]:
            best = (loss, C, copy.deepcopy(clf))
    return make_pipeline(scaler, best[2]), float(best[1])


def probe_features(features: str, X: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray],
                   heads: Sequence[str] = HEADS, seeds: Sequence[int] = (0, 1, 2),
                   progress: bool = False) -> list[dict]:
    """Fit every head on ``X['train']`` (C on ``X['dev']`` when given); one row of test
    metrics per fit. ``X`` values may be dense arrays or scipy sparse matrices."""
    for split in ("train", "test"):
        if split not in X:
            raise InputError(f"features {features!r}: no {split!r} split")
    rows = []
    for head in heads:
        make_head(head, 0)  # validates the name before any fit
        on_dev = head == "logreg" and "dev" in X
        runs = seeds[:1] if on_dev else seeds
        bar = progress_bar(runs, desc=f"{features}/{head}", unit="fit", disable=not progress)
        for seed in bar:
            with warnings.catch_warnings():
                # sklearn 1.8+ announces LogisticRegressionCV attribute/default changes that do
                # not affect an L2 fit read through predict_proba and C_
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", ConvergenceWarning)  # logged via n_iter below
                if on_dev:
                    clf, C = fit_logreg_on_dev(X, y, progress, f"{features}/{head}")
                else:
                    clf = make_head(head, seed, X["train"]).fit(X["train"], y["train"])
                    C = float(np.ravel(clf[-1].C_)[0]) if head == "logreg" else None
            proba = clf.predict_proba(X["test"])
            row = {"features": features, "head": head, "seed": seed}
            row.update(classification_metrics(y["test"], proba.argmax(1), proba))
            if head == "logreg":
                row["C"] = C
                row["c_from"] = "dev" if on_dev else "cv5"
                n_iter = int(np.max(clf[-1].n_iter_))
                if n_iter >= MAX_ITER:
                    log.warning("%s/%s: not converged in %d iterations", features, head,
                                MAX_ITER)
            rows.append(row)
            log.info("%s/%s seed %d: %s", features, head, seed,
                     {m: round(row[m], 4) for m in METRICS})
    return rows


def summarize(rows: Sequence[dict] | pl.DataFrame) -> pl.DataFrame:
    """Mean and standard deviation (over seeds) of each metric per features x head."""
    df = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(list(rows))
    aggs = [pl.len().alias("seeds")]
    for m in METRICS:
        aggs += [pl.col(m).mean().alias(f"{m}_mean"), pl.col(m).std().alias(f"{m}_std")]
    keys = (["task"] if "task" in df.columns else []) + ["features", "head"]
    return df.group_by(keys, maintain_order=True).agg(aggs)


def embed_task(embedder: Embedder, task: Task) -> dict[str, np.ndarray]:
    """Pooled embeddings per split, the embedder's depths concatenated."""
    out = {}
    for split, data in task.splits.items():
        seqs = ((f"{split}{i}", encode(s)[0]) for i, s in enumerate(data.sequences))
        embs = list(embedder.embed(seqs, total=len(data)))
        out[split] = np.stack([np.concatenate([e.pooled[d] for d in embedder.depths])
                               for e in embs])
    return out


# ---------------------------------------------------------------------------- fine-tuning
class SequenceClassifier(nn.Module):
    """H-Net backbone + linear head on the mean of the final hidden states over the bases."""

    def __init__(self, lm: HNetForCausalLM, num_classes: int) -> None:
        super().__init__()
        self.lm = lm
        d0 = lm.config.stage_cfg(0)["d_model"]
        self.head = nn.Linear(d0, num_classes, device=lm.embeddings.weight.device)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.lm(ids, mask=mask, output_hidden_states=True).hidden_states
        valid = mask.clone()
        valid[:, 0] = False  # BOS is not a base
        w = valid[..., None].to(hidden.dtype)
        pooled = (hidden * w).sum(1) / w.sum(1).clamp(min=1)
        return self.head(pooled.to(self.head.weight.dtype))


def _batch(seqs: Sequence[str], device) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = frame([encode(s)[0] for s in seqs], BOS, PAD)
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _predict(clf: SequenceClassifier, seqs: Sequence[str], batch_size: int) -> np.ndarray:
    clf.eval()
    device = clf.head.weight.device
    out = [F.softmax(clf(*_batch(seqs[a:a + batch_size], device)).float(), -1).cpu().numpy()
           for a in range(0, len(seqs), batch_size)]
    return np.concatenate(out)


def finetune(lm: HNetForCausalLM, task: Task, epochs: int = 3, lr: float = 3e-4,
             batch_size: int = 16, weight_decay: float = 0.01, seed: int = 0,
             max_train: int | None = None, progress: bool = True) -> dict[str, float]:
    """Fine-tune a copy of ``lm`` with a classification head.

    Uses the pretraining recipe's pieces: parameter groups from
    ``hnet_dna.training.optim.build_param_groups`` (every stage at the same LR; no weight decay on
    norms/biases/embeddings), AdamW, the warmup-stable-decay schedule of
    ``hnet_dna.training.schedule``, and the trainer's update (``optimizer_step``: gradient
    clipping at 1, a NaN/inf loss stops with ``NonFiniteLossError``). The epoch with the best
    dev MCC (train MCC when the task has no dev split) is evaluated on test.
    """
    check_dna_vocabulary(lm)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SequenceClassifier(copy.deepcopy(lm).train(), len(task.classes))
    stages = model.lm.stage_parameters()
    groups = build_param_groups(stages, [1.0] * len(stages), weight_decay)
    head = list(model.head.named_parameters())
    groups.append({"params": [p for _, p in head], "param_names": [f"head.{n}" for n, _ in head],
                   "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr)
    train = task.splits["train"]
    order = np.arange(len(train)) if max_train is None else np.arange(min(max_train, len(train)))
    steps_per_epoch = -(-len(order) // batch_size)
    scheduler = build_scheduler(opt, ScheduleConfig(name="wsd"), epochs * steps_per_epoch)
    select = task.splits.get("dev", train)
    device = model.head.weight.device
    best, best_state = -np.inf, None
    opt.zero_grad(set_to_none=True)
    for epoch in range(epochs):
        model.train()
        perm = rng.permutation(order)
        bar = progress_bar(range(0, len(perm), batch_size), desc=f"finetune epoch {epoch}",
                   disable=not progress)
        for a in bar:
            idx = perm[a:a + batch_size]
            ids, mask = _batch([train.sequences[i] for i in idx], device)
            loss = F.cross_entropy(model(ids, mask).float(),
                                   torch.as_tensor(train.labels[idx], device=device))
            loss.backward()
            value = float(loss.detach())
            optimizer_step(model, opt, scheduler, 1.0, value, where=f"in fine-tuning epoch {epoch}")
            bar.set_postfix(loss=value)
        proba = _predict(model, select.sequences, batch_size * 2)
        score = classification_metrics(select.labels, proba.argmax(1), proba)["mcc"]
        log.info("finetune epoch %d: selection MCC %.4f", epoch, score)
        if score > best:
            best, best_state = score, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test = task.splits["test"]
    proba = _predict(model, test.sequences, batch_size * 2)
    return classification_metrics(test.labels, proba.argmax(1), proba)
