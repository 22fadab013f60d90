"""Top-k evaluation: per-user accuracy metrics, beyond-accuracy metrics, a cold-start slice.

Binary relevance. For a user with relevant set R and a list L (padding -1 never counts; a repeated item
counts once, at its first position):
  Recall@k  = hits@k / |R|
  NDCG@k    = sum_{hit ranks r<k} 1/log2(r+2)  /  sum_{r<min(k,|R|)} 1/log2(r+2)
  MAP@k     = sum_{hit ranks r<k} precision@(r+1)  /  min(k, |R|)
  HitRate@k = 1 if hits@k > 0
Users with no relevant item are left out (they carry no signal); ``EvalResult.user_pos`` says who is in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ranker.errors import RankerError

logger = logging.getLogger(__name__)
ACCURACY_METRICS = ("recall", "ndcg", "map", "hitrate")
_DIVERSITY_CHUNK = 2048


class MetricsError(RankerError):
    """Inputs the evaluator cannot score; the message names the value and the fix."""


@dataclass(frozen=True)
class EvalResult:
    """Per-user metric arrays (aligned with ``user_pos``) plus catalog-level metrics and a cold slice."""

    user_pos: np.ndarray
    per_user: dict[str, np.ndarray]
    catalog: dict[str, float] = field(default_factory=dict)
    cold: EvalResult | None = None

    @property
    def n_users(self) -> int:
        return int(self.user_pos.size)

    def summary(self) -> dict[str, float]:
        """Flat dict: '<metric>@k' mean, '<metric>@k_stderr' (std/sqrt(n), NaN for n < 2), catalog metrics,
        'n_users', and the cold slice under a 'cold/' prefix."""
        out: dict[str, float] = {"n_users": float(self.n_users)}
        for name, values in self.per_user.items():
            mean, stderr = mean_stderr(values)
            out[name], out[f"{name}_stderr"] = mean, stderr
        out.update(self.catalog)
        if self.cold is not None:
            out.update({f"cold/{k}": v for k, v in self.cold.summary().items()})
        return out


def mean_stderr(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the finite values (NaN where undefined)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    stderr = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan
    return float(values.mean()), stderr


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of a - b over users, for per-user metrics of two models on the same users."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise MetricsError(
            f"per-user arrays have shapes {a.shape} and {b.shape}; pass 1-D arrays over the same users "
            "(evaluate both models on the same topk rows and relevant sets)"
        )
    return mean_stderr(a - b)


def _check_topk(topk_idx: np.ndarray, relevant: Sequence[np.ndarray], ks: Sequence[int], n_items: int) -> np.ndarray:
    topk_idx = np.asarray(topk_idx)
    if topk_idx.ndim != 2 or not np.issubdtype(topk_idx.dtype, np.integer):
        raise MetricsError(f"topk_idx has shape {topk_idx.shape} dtype {topk_idx.dtype}; expected int (n_users, K)")
    if len(relevant) != topk_idx.shape[0]:
        raise MetricsError(f"{len(relevant)} relevant sets for {topk_idx.shape[0]} topk rows; pass one per user row")
    if not ks or min(ks) < 1 or max(ks) > topk_idx.shape[1]:
        raise MetricsError(f"ks={tuple(ks)} must lie in [1, K={topk_idx.shape[1]}]; ask the model for more items")
    if topk_idx.size and (topk_idx.max() >= n_items or topk_idx.min() < -1):
        raise MetricsError(
            f"topk_idx holds values outside [-1, n_items={n_items}): min {topk_idx.min()}, max {topk_idx.max()}"
        )
    return topk_idx.astype(np.int64)


def _first_occurrence(topk_idx: np.ndarray) -> np.ndarray:
    """Bool (n, K): True at the first position of each distinct valid item in its row."""
    order = np.argsort(topk_idx, axis=1, kind="stable")
    sorted_vals = np.take_along_axis(topk_idx, order, axis=1)
    repeat = np.zeros_like(sorted_vals, dtype=bool)
    repeat[:, 1:] = sorted_vals[:, 1:] == sorted_vals[:, :-1]
    first = np.empty_like(repeat)
    np.put_along_axis(first, order, ~repeat, axis=1)
    return first & (topk_idx >= 0)


def _hit_matrix(topk_idx: np.ndarray, relevant: list[np.ndarray], n_items: int) -> np.ndarray:
    """Bool (n, K): position holds a relevant item (first occurrence only)."""
    rel_keys = np.concatenate([u * n_items + r for u, r in enumerate(relevant)]) if relevant else np.zeros(0, np.int64)
    keys = np.arange(topk_idx.shape[0], dtype=np.int64)[:, None] * n_items + topk_idx
    return np.isin(keys, rel_keys) & _first_occurrence(topk_idx)


def _accuracy(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, np.ndarray]:
    h = hits[:, :k].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_len = np.minimum(n_rel, k)
    idcg = np.cumsum(discounts)[ideal_len - 1]
    precision_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    return {
        f"recall@{k}": h.sum(axis=1) / n_rel,
        f"ndcg@{k}": (h * discounts).sum(axis=1) / idcg,
        f"map@{k}": (precision_at * h).sum(axis=1) / ideal_len,
        f"hitrate@{k}": (h.sum(axis=1) > 0).astype(np.float64),
    }


def _relevant_sets(relevant: Sequence[np.ndarray], n_items: int, keep: np.ndarray | None) -> list[np.ndarray]:
    sets = []
    for row, rel in enumerate(relevant):
        rel = np.unique(np.asarray(rel, dtype=np.int64))
        if rel.size and (rel.min() < 0 or rel.max() >= n_items):
            raise MetricsError(f"relevant items of user row {row} fall outside [0, {n_items}): {rel[:5].tolist()}")
        sets.append(rel if keep is None else rel[keep[rel]])
    return sets


def accuracy_metrics(topk_idx: np.ndarray, relevant: list[np.ndarray], ks: Sequence[int], n_items: int):
    """(positions of users with >= 1 relevant item, {metric@k: per-user array}) for unique relevant sets."""
    n_rel = np.array([r.size for r in relevant], dtype=np.int64)
    user_pos = np.flatnonzero(n_rel > 0)
    hits = _hit_matrix(topk_idx[user_pos], [relevant[u] for u in user_pos], n_items)
    per_user: dict[str, np.ndarray] = {}
    for k in sorted(ks):
        per_user.update(_accuracy(hits, n_rel[user_pos], k))
    return user_pos, per_user


def coverage(topk_idx: np.ndarray, k: int, n_items: int) -> float:
    """Distinct items recommended in the first k positions of any list, over n_items."""
    shown = topk_idx[:, :k]
    return float(np.unique(shown[shown >= 0]).size / n_items)


def intra_list_diversity(topk_idx: np.ndarray, item_vectors: np.ndarray, k: int) -> np.ndarray:
    """Per list: mean pairwise cosine distance of its distinct valid items; NaN for fewer than 2 items."""
    vectors = np.asarray(item_vectors, dtype=np.float32)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    out = np.full(topk_idx.shape[0], np.nan)
    for start in range(0, topk_idx.shape[0], _DIVERSITY_CHUNK):
        idx = topk_idx[start : start + _DIVERSITY_CHUNK, :k]
        valid = _first_occurrence(idx).astype(np.float32)
        v = unit[np.where(idx >= 0, idx, 0)] * valid[:, :, None]
        sims = np.einsum("nkd,njd->nkj", v, v)
        pair_mask = valid[:, :, None] * valid[:, None, :] * (1 - np.eye(idx.shape[1], dtype=np.float32))
        n_pairs = pair_mask.sum(axis=(1, 2))
        mean_sim = (sims * pair_mask).sum(axis=(1, 2)) / np.maximum(n_pairs, 1)
        out[start : start + len(idx)] = np.where(n_pairs > 0, 1.0 - mean_sim, np.nan)
    return out


def novelty(topk_idx: np.ndarray, item_popularity: np.ndarray, k: int) -> np.ndarray:
    """Per list: mean -log2(p_i), p_i = count_i / total; unseen items count as 1 so p_i stays > 0."""
    counts = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
    self_info = -np.log2(counts / counts.sum())
    idx = topk_idx[:, :k]
    valid = _first_occurrence(idx)
    values = np.where(valid, self_info[np.where(idx >= 0, idx, 0)], 0.0)
    n_valid = valid.sum(axis=1)
    return np.where(n_valid > 0, values.sum(axis=1) / np.maximum(n_valid, 1), np.nan)


def _check_item_array(name: str, values: np.ndarray | None, n_items: int, ndim: int) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.ndim != ndim or values.shape[0] != n_items:
        want = "(n_items,)" if ndim == 1 else "(n_items, d)"
        raise MetricsError(f"{name} has shape {values.shape}; expected {want} with n_items={n_items}")
    return values


def _cold_slice(topk_idx, relevant: Sequence[np.ndarray], ks, n_items: int, cold_items, lists) -> EvalResult:
    """Accuracy restricted to relevant cold items, over users with at least one; coverage@k of the cold
    items by the evaluated users' ``lists`` (the share of cold items anyone is shown)."""
    cold_idx = np.unique(np.asarray(cold_items, dtype=np.int64))
    if cold_idx.size and (cold_idx.min() < 0 or cold_idx.max() >= n_items):
        raise MetricsError(f"cold_items fall outside [0, {n_items}): {cold_idx[:5].tolist()}")
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold_idx] = True
    user_pos, per_user = accuracy_metrics(topk_idx, _relevant_sets(relevant, n_items, is_cold), ks, n_items)
    catalog = {}
    for k in ks:
        shown = np.unique(lists[:, :k][lists[:, :k] >= 0])
        catalog[f"coverage@{k}"] = float(is_cold[shown].sum() / max(cold_idx.size, 1))
    return EvalResult(user_pos=user_pos, per_user=per_user, catalog=catalog)


def evaluate_topk(
    topk_idx: np.ndarray,
    relevant: Sequence[np.ndarray],
    *,
    ks: Sequence[int] = (10, 20),
    n_items: int,
    item_vectors: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    cold_items: np.ndarray | None = None,
) -> EvalResult:
    """Score top-k lists (int (n_users, K), -1 padded) against each user's relevant item_idx.

    Accuracy metrics per user (users without relevant items left out); coverage@k of the evaluated
    users' lists; diversity@k if ``item_vectors`` (n_items, d); novelty@k if ``item_popularity``
    (n_items,) train counts; the cold slice (``.cold``) if ``cold_items`` is given.
    """
    ks = tuple(int(k) for k in ks)
    topk_idx = _check_topk(topk_idx, relevant, ks, n_items)
    item_vectors = _check_item_array("item_vectors", item_vectors, n_items, 2)
    item_popularity = _check_item_array("item_popularity", item_popularity, n_items, 1)
    user_pos, per_user = accuracy_metrics(topk_idx, _relevant_sets(relevant, n_items, None), ks, n_items)
    if user_pos.size == 0:
        raise MetricsError("no user has a relevant item; check that relevant holds the test interactions' item_idx")
    lists = topk_idx[user_pos]
    catalog = {f"coverage@{k}": coverage(lists, k, n_items) for k in ks}
    for k in ks:
        if item_vectors is not None:
            per_user[f"diversity@{k}"] = intra_list_diversity(lists, item_vectors, k)
        if item_popularity is not None:
            per_user[f"novelty@{k}"] = novelty(lists, item_popularity, k)
    cold = None if cold_items is None else _cold_slice(topk_idx, relevant, ks, n_items, cold_items, lists)
    logger.info("evaluated %d of %d users at ks=%s", user_pos.size, topk_idx.shape[0], ks)
    return EvalResult(user_pos=user_pos, per_user=per_user, catalog=catalog, cold=cold)
