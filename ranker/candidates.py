"""Candidate generators (content, co-visitation, popularity) and their merge.

Every generator answers for a batch of users with the shared top-k contract:
``(idx: int64 (n_q, k), scores: float32 (n_q, k))`` padded with -1 / -inf, and
drops the items in ``exclude`` (a users x items CSR, usually :func:`seen_matrix`).
Co-visitation lives in :mod:`ranker.covisit` and is re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import scipy.sparse as sp

from ranker.covisit import (
    check_exclude,
    check_k,
    covisitation_matrix,
    covisitation_scores,
    covisitation_topk,
    dense_topk,
    empty_topk,
    interaction_arrays,
    seen_matrix,
)

__all__ = [
    "content_topk",
    "covisitation_matrix",
    "covisitation_scores",
    "covisitation_topk",
    "dense_topk",
    "merge_candidates",
    "popularity_topk",
    "seen_matrix",
    "user_profiles",
]

log = logging.getLogger(__name__)

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
_US_PER_DAY = 86_400 * 1_000_000


def _epoch_us(moment: datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(
            f"{name}={moment!r} is a naive datetime; interactions are in UTC, "
            f"so pass a timezone-aware one, e.g. {name}.replace(tzinfo=timezone.utc)"
        )
    delta = moment.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return delta // timedelta(microseconds=1)


def user_profiles(
    interactions: pl.DataFrame,
    item_vectors: np.ndarray,
    *,
    n_users: int,
    half_life_days: float,
    now: datetime,
) -> np.ndarray:
    """Recency-weighted mean of each user's item vectors, L2-normalised.

    An interaction counts ``weight * 0.5 ** (age_days / half_life_days)``;
    users without history get a zero row. Interactions after ``now`` are
    refused: a profile built from the future leaks into training examples.
    """
    vectors = np.asarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"item_vectors must be 2-D (n_items, d), got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("item_vectors contain NaN/inf; replace missing item vectors with zeros")
    if not half_life_days > 0:
        raise ValueError(f"half_life_days={half_life_days!r} must be > 0 (use math.inf for no decay)")
    users, items, ts_us, weights = interaction_arrays(
        interactions, n_users=n_users, n_items=vectors.shape[0], with_ts=True
    )
    age_days = (_epoch_us(now, "now") - ts_us) / _US_PER_DAY
    if (age_days < 0).any():
        n_future = int((age_days < 0).sum())
        raise ValueError(
            f"{n_future} interactions are after now={now.isoformat()}; "
            "filter interactions to ts <= now before building profiles"
        )
    recency = (weights * 0.5 ** (age_days / half_life_days)).astype(np.float32)
    weight_matrix = sp.csr_matrix(
        (recency, (users, items)), shape=(n_users, vectors.shape[0]), dtype=np.float32
    )
    profiles = np.asarray(weight_matrix @ vectors, dtype=np.float32)
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    np.divide(profiles, norms, out=profiles, where=norms > 0)
    profiles[norms[:, 0] == 0] = 0.0
    return profiles


def popularity_topk(
    interactions: pl.DataFrame,
    *,
    n_items: int,
    user_idx: np.ndarray,
    k: int,
    since: datetime | None = None,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Most popular items (summed weight, optionally only ``ts >= since``), minus each user's excluded."""
    check_k(k)
    user_idx = np.asarray(user_idx, dtype=np.int64)
    check_exclude(exclude, user_idx, n_items)
    if since is not None:
        _epoch_us(since, "since")  # a naive datetime cannot be compared with UTC timestamps
    frame = interactions if since is None else interactions.filter(pl.col("ts") >= since)
    _, items, _, weights = interaction_arrays(frame, n_users=None, n_items=n_items)
    popularity = np.bincount(items, weights=weights, minlength=n_items).astype(np.float32)
    ranked = np.lexsort((np.arange(n_items), -popularity))
    ranked = ranked[popularity[ranked] > 0]  # no interactions: no popularity signal
    max_seen = 0 if exclude is None else int(np.diff(exclude.indptr)[user_idx].max(initial=0))
    pool = ranked[: k + max_seen]
    if exclude is None:
        blocked = np.zeros((len(user_idx), len(pool)), dtype=bool)
    else:
        blocked = exclude[user_idx][:, pool].toarray() != 0
    # a stable sort of the blocked flags keeps the allowed items in popularity order
    order = np.argsort(blocked, axis=1, kind="stable")[:, :k]
    idx, scores = empty_topk(len(user_idx), k)
    width = order.shape[1]
    picked = pool[order]
    allowed = ~np.take_along_axis(blocked, order, axis=1)
    idx[:, :width] = np.where(allowed, picked, -1)
    scores[:, :width] = np.where(allowed, popularity[picked], -np.inf)
    return idx, scores


def content_topk(
    profiles: np.ndarray,
    search: SearchFn,
    user_idx: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest items to each user's profile through ``search(queries, k) -> (idx, scores)``.

    Over-fetches by the largest number of excluded items among the queried
    users so that k results survive the exclusion. Users with a zero profile
    (no history) get padding rather than arbitrary neighbours.
    """
    check_k(k)
    user_idx = np.asarray(user_idx, dtype=np.int64)
    idx_out, scores_out = empty_topk(len(user_idx), k)
    queried = np.flatnonzero(np.abs(profiles[user_idx]).sum(axis=1) > 0)
    if len(queried) == 0:
        return idx_out, scores_out
    users = user_idx[queried]
    fetch = k
    if exclude is not None:
        check_exclude(exclude, user_idx, exclude.shape[1])
        fetch = min(k + int(np.diff(exclude.indptr)[users].max()), exclude.shape[1])
    queries = np.ascontiguousarray(profiles[users], dtype=np.float32)
    found_idx, found_scores = search(queries, fetch)
    found_idx = np.asarray(found_idx, dtype=np.int64)
    found_scores = np.asarray(found_scores, dtype=np.float32)
    blocked = found_idx < 0
    if exclude is not None:
        rows = np.repeat(users, found_idx.shape[1])
        cols = np.where(blocked, 0, found_idx).ravel()
        seen = np.asarray(exclude[rows, cols]).reshape(found_idx.shape) != 0
        blocked |= seen
    order = np.argsort(blocked, axis=1, kind="stable")[:, :k]
    allowed = ~np.take_along_axis(blocked, order, axis=1)
    width = order.shape[1]
    idx_out[queried, :width] = np.where(allowed, np.take_along_axis(found_idx, order, 1), -1)
    scores_out[queried, :width] = np.where(
        allowed, np.take_along_axis(found_scores, order, 1), -np.inf
    )
    return idx_out, scores_out


def _source_frame(name: str, user_idx: np.ndarray, idx: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
    user_idx = np.asarray(user_idx, dtype=np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    if idx.ndim != 2 or idx.shape != scores.shape or idx.shape != (len(user_idx), idx.shape[1]):
        raise ValueError(
            f"source {name!r}: expected user_idx (n_q,), idx and scores (n_q, k); got "
            f"{user_idx.shape}, {idx.shape}, {scores.shape}"
        )
    ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1, dtype=np.int32), idx.shape)
    keep = idx >= 0
    frame = pl.DataFrame(
        {
            "user_idx": np.repeat(user_idx, idx.shape[1])[keep.ravel()],
            "item_idx": idx[keep],
            f"{name}_score": scores[keep],
            f"{name}_rank": ranks[keep],
        },
        schema={"user_idx": pl.Int64, "item_idx": pl.Int64,
                f"{name}_score": pl.Float32, f"{name}_rank": pl.Int32},
    )
    if len(np.unique(user_idx)) < len(user_idx):  # a user queried twice keeps the pair's best rank
        frame = frame.sort(f"{name}_rank").unique(["user_idx", "item_idx"], keep="first", maintain_order=True)
    return frame


def merge_candidates(
    sources: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> pl.DataFrame:
    """Union of every source's (user, item) pairs with per-source score and 1-based rank.

    Columns: ``user_idx, item_idx, sources`` (sorted names of the sources that
    proposed the pair), then ``{s}_score: Float32`` and ``{s}_rank: Int32`` per
    source (null where s did not propose it). Sorted by (user_idx, item_idx).
    """
    if not sources:
        raise ValueError("merge_candidates needs at least one source, got an empty mapping")
    bad = [name for name in sources if not isinstance(name, str) or not name]
    if bad:
        raise ValueError(f"source names must be non-empty strings, got {bad!r}")
    names = sorted(sources)
    merged = _source_frame(names[0], *sources[names[0]])
    for name in names[1:]:
        merged = merged.join(
            _source_frame(name, *sources[name]), on=["user_idx", "item_idx"], how="full", coalesce=True
        )
    # tag pairs through a bitmask of proposing sources: joining a tiny code -> names table is far
    # faster than building a list per row
    code = pl.sum_horizontal(
        pl.col(f"{n}_rank").is_not_null().cast(pl.Int64) * (1 << bit) for bit, n in enumerate(names)
    ).alias("_code")
    merged = merged.with_columns(code)
    codes = merged["_code"].unique().sort().to_list()
    tags = pl.DataFrame(
        {"_code": codes, "sources": [[n for bit, n in enumerate(names) if c >> bit & 1] for c in codes]},
        schema={"_code": pl.Int64, "sources": pl.List(pl.String)},
    )
    return (
        merged.join(tags, on="_code", how="left")
        .select("user_idx", "item_idx", "sources", *[f"{n}_{kind}" for n in names for kind in ("score", "rank")])
        .sort(["user_idx", "item_idx"])
    )
