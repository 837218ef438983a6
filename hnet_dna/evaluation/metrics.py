"""Metrics (scikit-learn): label rules and AUROC/AUPRC for variant scores, classifier metrics."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import polars as pl
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    matthews_corrcoef,
    roc_auc_score,
)

from hnet_dna.errors import InputError

# +1: a higher score should mean "positive" (e.g. rare / deleterious); -1: a lower one should.
SCORE_DIRECTIONS: dict[str, int] = {
    "llr": -1, "llr_fwd": -1, "llr_rev": -1, "llr_mean": -1, "cos_dist": 1, "l2_dist": 1,
}
_RULE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_OPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


def parse_rule(rule: str) -> pl.Expr:
    """``"AF<0.001"`` or ``"consequence==missense"`` -> a polars boolean expression."""
    m = _RULE.match(rule)
    if not m:
        raise InputError(f"bad label rule {rule!r}: expected FIELD OP VALUE, OP one of "
                         f"{list(_OPS)}")
    field, op, raw = m.groups()
    try:
        value: float | str = float(raw)
    except ValueError:
        value = raw.strip("'\"")
    return getattr(pl.col(field), _OPS[op])(value)


def label_by_rules(table: pl.DataFrame, positive: str, negative: str,
                   name: str = "label") -> pl.DataFrame:
    """Add ``name``: 1 where ``positive`` holds, 0 where ``negative`` holds, null otherwise.

    A row matching both rules is an error (the rules must not overlap).
    """
    for rule in (positive, negative):
        field = _RULE.match(rule).group(1) if _RULE.match(rule) else rule
        if field not in table.columns:
            raise InputError(f"label rule {rule!r}: no column {field!r} "
                           f"(columns: {table.columns})")
    pos, neg = parse_rule(positive).fill_null(False), parse_rule(negative).fill_null(False)
    both = table.filter(pos & neg).height
    if both:
        raise InputError(f"{both} rows match both {positive!r} and {negative!r}")
    return table.with_columns(
        pl.when(pos).then(1).when(neg).then(0).otherwise(None).alias(name)
    )


def score_aucs(table: pl.DataFrame, label: str = "label",
               scores: Iterable[str] = SCORE_DIRECTIONS,
               directions: Mapping[str, int] = SCORE_DIRECTIONS) -> pl.DataFrame:
    """AUROC and AUPRC of each score for the 0/1 ``label`` (rows with a null label or score
    are left out and the counts say how many remain). Scores are oriented by ``directions``."""
    rows = []
    for s in scores:
        if s not in table.columns:
            continue
        sub = table.filter(pl.col(label).is_not_null() & pl.col(s).is_not_null()
                           & pl.col(s).is_not_nan())
        y, x = sub[label].to_numpy(), sub[s].to_numpy() * directions.get(s, 1)
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        ok = n_pos > 0 and n_neg > 0
        rows.append({"score": s, "direction": "higher" if directions.get(s, 1) > 0 else "lower",
                     "n_pos": n_pos, "n_neg": n_neg,
                     "auroc": float(roc_auc_score(y, x)) if ok else None,
                     "auprc": float(average_precision_score(y, x)) if ok else None,
                     "prevalence": n_pos / max(n_pos + n_neg, 1)})
    return pl.DataFrame(rows)


def pairwise_class_aurocs(table: pl.DataFrame, column: str, score: str,
                          pairs: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """For each ``(a, b)``: AUROC that class ``a`` scores *below* class ``b`` on ``score``
    (0.5 = no separation; e.g. ``("missense_variant", "synonymous_variant")`` on ``llr``
    should exceed 0.5)."""
    rows = []
    for a, b in pairs:
        xa = table.filter((pl.col(column) == a) & pl.col(score).is_not_null())[score].to_numpy()
        xb = table.filter((pl.col(column) == b) & pl.col(score).is_not_null())[score].to_numpy()
        auc = None
        if len(xa) and len(xb):
            y = np.r_[np.ones(len(xa)), np.zeros(len(xb))]
            auc = float(roc_auc_score(y, -np.r_[xa, xb]))
        rows.append({"low": a, "high": b, "score": score, "n_low": len(xa), "n_high": len(xb),
                     "auroc": auc})
    return pl.DataFrame(rows)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           proba: np.ndarray | None = None) -> dict[str, float]:
    """MCC, accuracy, macro-F1 and AUROC (binary: on P(class 1); multiclass: one-vs-rest
    macro).

    With a single class in ``y_true`` only accuracy is defined: MCC, macro-F1 and AUROC are
    NaN (scikit-learn would report a perfect F1 and MCC 0 for a constant prediction of it).
    """
    out = {
        "mcc": float("nan"),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float("nan"),
        "auroc": float("nan"),
    }
    if len(np.unique(y_true)) < 2:
        return out
    out["mcc"] = float(matthews_corrcoef(y_true, y_pred))
    out["macro_f1"] = float(f1_score(y_true, y_pred, average="macro"))
    if proba is not None:
        if proba.shape[1] == 2:
            out["auroc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            out["auroc"] = float(roc_auc_score(y_true, proba, multi_class="ovr",
                                               labels=np.arange(proba.shape[1])))
    return out
