"""Interaction matrices and co-visitation item-kNN.

Holds the low-level pieces every candidate generator shares (validated
interaction arrays, the seen matrix used for exclusion, top-k of dense and
sparse score rows) and the co-visitation generator itself. :mod:`ranker.candidates`
re-exports the public names; import them from there.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import scipy.sparse as sp

log = logging.getLogger(__name__)

_BLOCK_CELLS = 1 << 22  # users x items scored densely at once (16 MiB of float32)
_LOOKUP_BLOCK = 1 << 22  # (pair, history item) lookups per chunk in covisitation_scores


def check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer")


def empty_topk(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All-padding top-k arrays: idx -1, scores -inf."""
    return (
        np.full((n_queries, k), -1, dtype=np.int64),
        np.full((n_queries, k), -np.inf, dtype=np.float32),
    )


def check_exclude(exclude: sp.csr_matrix | None, user_idx: np.ndarray, n_items: int) -> None:
    if exclude is None:
        return
    if not sp.issparse(exclude) or exclude.format != "csr":
        raise TypeError(
            f"exclude must be a scipy.sparse CSR matrix (users x items), got {type(exclude).__name__}; "
            "build it with seen_matrix(interactions, n_users, n_items)"
        )
    if exclude.shape[1] != n_items:
        raise ValueError(f"exclude has {exclude.shape[1]} item columns but n_items={n_items}")
    if len(user_idx) and (user_idx.min() < 0 or user_idx.max() >= exclude.shape[0]):
        raise ValueError(
            f"user_idx must lie in [0, {exclude.shape[0]}) (rows of exclude); "
            f"got range [{user_idx.min()}, {user_idx.max()}]"
        )


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


def dense_topk(
    scores: np.ndarray, k: int, *, exclude_rows: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of each row of a dense score block, excluded entries dropped.

    ``exclude_rows`` is aligned with ``scores`` row for row. Results are sorted
    by descending score, ties by the smaller item index; rows with fewer than k
    finite scores are padded with -1 / -inf.
    """
    check_k(k)
    block = np.array(scores, dtype=np.float32)  # a copy: exclusion writes into it
    if block.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_queries, n_items), got shape {block.shape}")
    block[np.isnan(block)] = -np.inf
    if exclude_rows is not None:
        if exclude_rows.shape != block.shape:
            raise ValueError(f"exclude_rows shape {exclude_rows.shape} != scores shape {block.shape}")
        rows, cols = exclude_rows.nonzero()
        block[rows, cols] = -np.inf
    n_queries, n_items = block.shape
    width = min(k, n_items)
    idx, out = empty_topk(n_queries, k)
    if width == 0:
        return idx, out
    part = np.argpartition(-block, width - 1, axis=1)[:, :width]
    part_scores = np.take_along_axis(block, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, axis=1)
    top_scores = np.take_along_axis(part_scores, order, axis=1)
    finite = np.isfinite(top_scores)
    idx[:, :width] = np.where(finite, top, -1)
    out[:, :width] = np.where(finite, top_scores, -np.inf)
    return idx, out


def sparse_topk(rows: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k stored entries of each CSR row, ties broken by the smaller item index."""
    coo = rows.tocoo()
    order = np.lexsort((coo.col, -coo.data, coo.row))
    row, col, val = coo.row[order], coo.col[order], coo.data[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row, side="left")
    keep = rank < k
    idx, scores = empty_topk(rows.shape[0], k)
    idx[row[keep], rank[keep]] = col[keep]
    scores[row[keep], rank[keep]] = val[keep]
    return idx, scores


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
    idx, scores = sparse_topk(matrix, max_neighbors)
    keep = idx >= 0
    rows = np.broadcast_to(np.arange(matrix.shape[0])[:, None], idx.shape)[keep]
    return sp.csr_matrix((scores[keep], (rows, idx[keep])), shape=matrix.shape, dtype=np.float32)


def covisitation_matrix(
    interactions: pl.DataFrame,
    *,
    n_items: int,
    window: int | None = None,
    max_neighbors: int | None = None,
) -> sp.csr_matrix:
    """Item-item similarity ``sim(i, j) = users(i, j) / sqrt(users(i) * users(j))``.

    ``users(i, j)`` counts distinct users who consumed i and j within
    ``window`` positions of each other in their time-ordered history (whole
    history when None); ``users(i)`` counts distinct users of i. The diagonal is
    zero. ``max_neighbors`` keeps only each row's strongest neighbours.
    """
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
    item_users = np.asarray(history.sum(axis=0), dtype=np.float64).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(item_users), out=np.zeros_like(item_users), where=item_users > 0)
    sim = sp.diags(inv_sqrt) @ counts @ sp.diags(inv_sqrt)
    sim = sp.csr_matrix(sim, dtype=np.float32)
    if max_neighbors is not None:
        sim = _prune_rows(sim, max_neighbors)
    sim.sort_indices()
    log.debug("co-visitation matrix: %d items, %d non-zeros", n_items, sim.nnz)
    return sim


def _check_history(matrix: sp.csr_matrix, history: sp.csr_matrix) -> None:
    if history.shape[1] != matrix.shape[0] or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"history has {history.shape[1]} item columns but the co-visitation matrix is "
            f"{matrix.shape}; build both with the same n_items"
        )


def covisitation_scores(
    matrix: sp.csr_matrix,
    history_csr: sp.csr_matrix,
    user_idx: np.ndarray,
    item_idx: np.ndarray,
) -> np.ndarray:
    """``sum_i history[u, i] * matrix[i, j]`` for arbitrary (u, j) pairs, float32 (n_pairs,).

    Looks up ``matrix[i, j]`` for each history item i of each pair, so the cost
    follows the histories' lengths, not the (often dense) user x item product.
    """
    user_idx = np.asarray(user_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    if user_idx.shape != item_idx.shape or user_idx.ndim != 1:
        raise ValueError(f"user_idx and item_idx must be 1-D of equal length, got {user_idx.shape}, {item_idx.shape}")
    _check_history(matrix, history_csr)
    check_exclude(history_csr, user_idx, matrix.shape[0])
    if len(item_idx) and (item_idx.min() < 0 or item_idx.max() >= matrix.shape[1]):
        raise ValueError(f"item_idx must lie in [0, {matrix.shape[1]}); got [{item_idx.min()}, {item_idx.max()}]")
    lengths = np.diff(history_csr.indptr)[user_idx]
    bounds = np.searchsorted(np.cumsum(lengths), np.arange(_LOOKUP_BLOCK, lengths.sum(), _LOOKUP_BLOCK))
    out = np.zeros(len(user_idx), dtype=np.float32)
    for chunk in np.split(np.arange(len(user_idx)), np.unique(bounds)):
        lens = lengths[chunk]
        pair_of = np.repeat(np.arange(len(chunk)), lens)
        first = np.repeat(history_csr.indptr[user_idx[chunk]] - (np.cumsum(lens) - lens), lens)
        positions = first + np.arange(int(lens.sum()))
        if len(positions) == 0:
            continue  # these users have no history: their scores stay 0
        sims = np.asarray(matrix[history_csr.indices[positions], item_idx[chunk][pair_of]]).ravel()
        weighted = history_csr.data[positions] * sims
        out[chunk] = np.bincount(pair_of, weights=weighted, minlength=len(chunk))
    return out


def covisitation_topk(
    interactions: pl.DataFrame,
    *,
    n_items: int,
    user_idx: np.ndarray,
    k: int,
    window: int | None = None,
    exclude: sp.csr_matrix | None = None,
    max_neighbors: int | None = None,
    matrix: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Item-kNN candidates: a user's score for j sums sim(i, j) over their history items i.

    Pass a prebuilt ``matrix`` (from :func:`covisitation_matrix`) to reuse it;
    ``interactions`` always supply the users' histories. Items with no
    co-visitation with the history are never proposed.
    """
    check_k(k)
    user_idx = np.asarray(user_idx, dtype=np.int64)
    if matrix is None:
        matrix = covisitation_matrix(
            interactions, n_items=n_items, window=window, max_neighbors=max_neighbors
        )
    n_users = int(max(user_idx.max(initial=-1), interactions["user_idx"].max() or 0)) + 1
    if exclude is not None:
        check_exclude(exclude, user_idx, n_items)
        n_users = max(n_users, exclude.shape[0])
    history = seen_matrix(interactions, n_users, n_items)
    _check_history(matrix, history)
    idx, scores = empty_topk(len(user_idx), k)
    block = max(1, _BLOCK_CELLS // max(n_items, 1))
    for start in range(0, len(user_idx), block):
        users = user_idx[start : start + block]
        # dense blocks: a popular history item makes the product rows nearly full anyway
        user_scores = (history[users] @ matrix).toarray()
        user_scores[user_scores == 0] = -np.inf
        rows = slice(start, start + len(users))
        idx[rows], scores[rows] = dense_topk(
            user_scores, k, exclude_rows=None if exclude is None else exclude[users]
        )
    return idx, scores
