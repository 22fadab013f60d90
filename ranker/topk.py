"""Top-k helpers shared by every scorer: ``(idx (n_queries, k) int64, scores float32)`` padded with -1 / -inf."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
