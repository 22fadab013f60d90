"""Item statistics as of a moment: what was known about an item just before a given time.

A user's features are computed at that user's own time (their last event), never from events after it:
an item's popularity, mean rating and age are read from the events strictly before that moment. On a log
spanning years this also says what was current when the user was active, which an all-time count cannot.
"""

from __future__ import annotations

import numpy as np
import polars as pl

US_PER_DAY = 86_400 * 1_000_000
WINDOWS_DAYS = (1, 7, 30, 365)


class ItemTimeline:
    """Per-item sorted event times with running counts, for as-of lookups at arbitrary (item, time) pairs.

    ``liked`` marks the events whose weight is at least the user's own mean weight (for ratings: the
    user liked it by their own scale; for counts, above their usual).
    """

    def __init__(self, interactions: pl.DataFrame, user_mean: np.ndarray, n_items: int) -> None:
        users = interactions["user_idx"].to_numpy().astype(np.int64)
        items = interactions["item_idx"].to_numpy().astype(np.int64)
        times = interactions["ts"].dt.epoch("us").to_numpy().astype(np.int64)
        weights = interactions["weight"].to_numpy().astype(np.float64)
        order = np.lexsort((times, items))
        self.items, self.times = items[order], times[order]
        self.n_items = n_items
        self.start = np.searchsorted(self.items, np.arange(n_items + 1))
        self.cum_weight = np.concatenate([[0.0], np.cumsum(weights[order])])
        liked = weights[order] >= user_mean[users[order]]
        self.cum_liked = np.concatenate([[0], np.cumsum(liked)])

    def _before(self, items: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Index one past the last event of ``items[j]`` strictly before ``times[j]``."""
        # a binary search inside each item's block of sorted times, vectorised over the queries
        left, right = self.start[items].copy(), self.start[items + 1].copy()
        last = max(len(self.times) - 1, 0)
        while (active := left < right).any():
            mid = (left + right) // 2
            go_right = active & (self.times[np.minimum(mid, last)] < times)
            left = np.where(go_right, mid + 1, left)
            right = np.where(active & ~go_right, mid, right)
        return left

    def features(self, items: np.ndarray, times: np.ndarray) -> dict[str, np.ndarray]:
        """float32 features of each (item, time): counts before it and in trailing windows, mean weight,
        share liked, days since the item's first and last event (0 when it had none: see ``n_before``)."""
        items = np.asarray(items, dtype=np.int64)
        times = np.asarray(times, dtype=np.int64)
        first, end = self.start[items], self._before(items, times)
        n = (end - first).astype(np.float64)
        out = {"n_before": n}
        for days in WINDOWS_DAYS:
            window_start = self._before(items, times - days * US_PER_DAY)
            out[f"n_last_{days}d"] = (end - np.maximum(window_start, first)).astype(np.float64)
        has = n > 0
        safe_n = np.maximum(n, 1.0)
        out["mean_weight"] = np.where(has, (self.cum_weight[end] - self.cum_weight[first]) / safe_n, 0.0)
        out["share_liked"] = np.where(has, (self.cum_liked[end] - self.cum_liked[first]) / safe_n, 0.0)
        last_seen = self.times[np.clip(end - 1, 0, max(len(self.times) - 1, 0))] if len(self.times) else times
        first_seen = self.times[np.clip(first, 0, max(len(self.times) - 1, 0))] if len(self.times) else times
        out["age_days"] = np.where(has, (times - first_seen) / US_PER_DAY, 0.0)
        out["days_since_last"] = np.where(has, (times - last_seen) / US_PER_DAY, 0.0)
        return {f"item_{name}": value.astype(np.float32) for name, value in out.items()}
