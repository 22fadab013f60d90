"""Interaction arrays, the seen matrix, and co-visitation: co-consumption counts (whole histories or within a
few positions of each other) and the cosine item-item similarity built from them (item-kNN)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

log = logging.getLogger(__name__)



def _check_range(values: np.ndarray, upper: int | None, column: str, bound: str) -> None:
    if len(values) == 0:
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or (upper is not None and high >= upper):
        raise ValueError(
            f"interactions column {column!r} has values in [{low}, {high}] but must lie in "
            f"[0, {bound}); re-index with the same id maps used to size the model"
        )


def interaction_arrays(
    interactions: pl.DataFrame,
    *,
    n_users: int | None,
    n_items: int,
    with_ts: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(user_idx, item_idx, ts as epoch microseconds or None, weight) as numpy, validated."""
    needed = ["user_idx", "item_idx", "weight"] + (["ts"] if with_ts else [])
    missing = [c for c in needed if c not in interactions.columns]
    if missing:
        raise ValueError(
            f"interactions lack columns {missing}; expected user_idx, item_idx, ts, weight "
            f"(got {interactions.columns})"
        )
    nulls = [c for c in needed if interactions[c].null_count()]
    if nulls:
        raise ValueError(f"interactions columns {nulls} contain nulls; fill or drop those rows first")
    users = interactions["user_idx"].to_numpy().astype(np.int64, copy=False)
    items = interactions["item_idx"].to_numpy().astype(np.int64, copy=False)
    _check_range(users, n_users, "user_idx", f"n_users={n_users}")
    _check_range(items, n_items, "item_idx", f"n_items={n_items}")
    weights = interactions["weight"].to_numpy().astype(np.float32, copy=False)
    ts_us = None
    if with_ts:
        ts_us = interactions["ts"].dt.epoch("us").to_numpy().astype(np.int64, copy=False)
    return users, items, ts_us, weights


def seen_matrix(interactions: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users x items CSR (float32 ones) of every interacted pair: the exclusion mask."""
    users, items, _, _ = interaction_arrays(interactions, n_users=n_users, n_items=n_items)
    seen = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)), shape=(n_users, n_items)
    )
    seen.sum_duplicates()
    seen.data[:] = 1.0
    seen.sort_indices()
    return seen


def _window_pairs(users: np.ndarray, items: np.ndarray, ts_us: np.ndarray, window: int):
    """(user, item_a, item_b) for items at most ``window`` positions apart in a user's timeline."""
    order = np.lexsort((items, ts_us, users))
    users, items = users[order], items[order]
    pair_users, left, right = [], [], []
    for offset in range(1, min(window, max(len(users) - 1, 0)) + 1):
        same = users[offset:] == users[:-offset]
        pair_users.append(users[offset:][same])
        left.append(items[:-offset][same])
        right.append(items[offset:][same])
    if not pair_users:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(pair_users), np.concatenate(left), np.concatenate(right)


def _window_counts(
    user_rows: np.ndarray, items: np.ndarray, ts_us: np.ndarray, window: int, n_items: int
) -> sp.csr_matrix:
    """Distinct users per item pair seen within ``window`` positions, symmetric, as CSR."""
    pair_users, left, right = _window_pairs(user_rows, items, ts_us, window)
    distinct = left != right
    pair_users = np.concatenate([pair_users[distinct]] * 2)
    left, right = (np.concatenate([left[distinct], right[distinct]]),
                   np.concatenate([right[distinct], left[distinct]]))
    # count each user once per pair, like the whole-history product does
    order = np.lexsort((right, left, pair_users))
    pair_users, left, right = pair_users[order], left[order], right[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (np.diff(pair_users) != 0) | (np.diff(left) != 0) | (np.diff(right) != 0)
    counts = sp.csr_matrix(
        (np.ones(int(first.sum()), dtype=np.float32), (left[first], right[first])), shape=(n_items, n_items)
    )
    counts.sum_duplicates()
    return counts


def _prune_rows(matrix: sp.csr_matrix, max_neighbors: int) -> sp.csr_matrix:
    """Keep each row's ``max_neighbors`` largest entries (ties: the smaller column; indices are sorted)."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    lengths = np.diff(matrix.indptr)
    if lengths.max(initial=0) <= max_neighbors:
        return matrix
    keep = np.ones(matrix.nnz, dtype=bool)
    for row in np.flatnonzero(lengths > max_neighbors):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        values = matrix.data[lo:hi]
        # everything strictly above the k-th largest value stays; ties at it go to the smaller columns
        threshold = np.partition(values, len(values) - max_neighbors)[len(values) - max_neighbors]
        above = values > threshold
        tied = np.flatnonzero(values == threshold)[: max_neighbors - int(above.sum())]
        row_keep = above
        row_keep[tied] = True
        keep[lo:hi] = row_keep
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)[keep]
    return sp.csr_matrix((matrix.data[keep], (rows, matrix.indices[keep])), shape=matrix.shape, dtype=np.float32)


@dataclass(frozen=True)
class CoCounts:
    """Distinct users per item pair (symmetric CSR, zero diagonal) and distinct users per item."""

    pairs: sp.csr_matrix
    item_users: np.ndarray


def cooccurrence_counts(interactions: pl.DataFrame, *, n_items: int, window: int | None = None) -> CoCounts:
    """``pairs[i, j]`` counts distinct users who consumed i and j within ``window`` positions of each other in
    their time-ordered history (whole history when None)."""
    if window is not None and (not isinstance(window, (int, np.integer)) or window < 1):
        raise ValueError(f"window={window!r} must be a positive number of positions or None")
    users, items, ts_us, _ = interaction_arrays(
        interactions, n_users=None, n_items=n_items, with_ts=window is not None
    )
    user_rows = np.unique(users, return_inverse=True)[1]
    history = sp.csr_matrix(
        (np.ones(len(items), dtype=np.float32), (user_rows, items)),
        shape=(int(user_rows.max(initial=-1)) + 1, n_items),
    )
    history.sum_duplicates()
    history.data[:] = 1.0
    if window is None:
        counts = (history.T @ history).tocsr()
    else:
        counts = _window_counts(user_rows, items, ts_us, window, n_items)
    counts.setdiag(0)
    counts.eliminate_zeros()
    return CoCounts(counts, np.asarray(history.sum(axis=0), dtype=np.float64).ravel())


def cosine_similarity(counts: CoCounts, *, shrinkage: float = 0.0, max_neighbors: int | None = None) -> sp.csr_matrix:
    """``sim(i, j) = users(i, j) / (sqrt(users(i) * users(j)) + shrinkage)``, optionally pruned per row."""
    if shrinkage < 0:
        raise ValueError(f"shrinkage={shrinkage!r} must be >= 0")
    root = np.sqrt(counts.item_users)
    pairs = counts.pairs.tocoo()
    denominator = root[pairs.row] * root[pairs.col] + shrinkage
    sim = sp.csr_matrix((pairs.data / denominator, (pairs.row, pairs.col)), shape=pairs.shape, dtype=np.float32)
    if max_neighbors is not None:
        sim = _prune_rows(sim, max_neighbors)
    sim.sort_indices()
    return sim


def covisitation_matrix(
    interactions: pl.DataFrame,
    *,
    n_items: int,
    window: int | None = None,
    max_neighbors: int | None = None,
    shrinkage: float = 0.0,
) -> sp.csr_matrix:
    """Item-item similarity ``sim(i, j) = users(i, j) / (sqrt(users(i) * users(j)) + shrinkage)``.

    ``users(i, j)`` counts distinct users who consumed i and j within
    ``window`` positions of each other in their time-ordered history (whole
    history when None); ``users(i)`` counts distinct users of i. The diagonal is
    zero. ``max_neighbors`` keeps only each row's strongest neighbours; ``shrinkage`` pulls the similarity
    of pairs seen by few users towards 0 (a pair seen once is weak evidence, however rare both items are).
    """
    counts = cooccurrence_counts(interactions, n_items=n_items, window=window)
    sim = cosine_similarity(counts, shrinkage=shrinkage, max_neighbors=max_neighbors)
    log.debug("co-visitation matrix: %d items, %d non-zeros", n_items, sim.nnz)
    return sim
