"""Co-consumed item pairs from train interactions: the training signal of GatedFusion."""

from __future__ import annotations

import logging

import numpy as np

from fusion.errors import FusionInputError

logger = logging.getLogger(__name__)


def cooccurrence_pairs(user_idx, item_idx, *, max_pairs: int, seed: int = 0) -> np.ndarray:
    """At most ``max_pairs`` distinct unordered pairs (a < b) of items consumed by the same user, int64 (P, 2).

    Anchors are drawn uniformly over a user's distinct (user, item) rows, so heavy users give more pairs
    (in proportion to their history, not its square); the partner is a different item of the same user.
    Pass interactions from the training window only, or the pairs leak the test period.
    """
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise FusionInputError(
            f"user_idx {users.shape} and item_idx {items.shape} must be 1-D arrays of the same length"
        )
    if not isinstance(max_pairs, (int, np.integer)) or max_pairs < 1:
        raise FusionInputError(f"max_pairs={max_pairs!r} must be a positive int, e.g. 1_000_000")
    rows = np.unique(np.stack([users, items], axis=1), axis=0)  # distinct (user, item), sorted by user
    _, starts, lengths = np.unique(rows[:, 0], return_index=True, return_counts=True)
    row_start = np.repeat(starts, lengths)
    row_len = np.repeat(lengths, lengths)
    eligible = np.flatnonzero(row_len >= 2)
    if eligible.size == 0:
        logger.warning("no user has two distinct items: no co-occurrence pairs")
        return np.zeros((0, 2), dtype=np.int64)
    rng = np.random.default_rng(seed)
    anchor = eligible[rng.integers(0, eligible.size, size=max_pairs)]
    offset = anchor - row_start[anchor]
    # A shift in [1, len) within the user's block is never the anchor itself, so never the same item.
    shift = 1 + (rng.random(max_pairs) * (row_len[anchor] - 1)).astype(np.int64)
    partner = row_start[anchor] + (offset + shift) % row_len[anchor]
    a, b = rows[anchor, 1], rows[partner, 1]
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    logger.debug("%d distinct co-occurrence pairs from %d draws", len(pairs), max_pairs)
    return pairs
