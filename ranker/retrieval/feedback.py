"""What an interaction's `weight` means, and how it becomes each model's input.

Weight kinds:
  rating  an explicit rating (1-5 stars, 0.5-5, 1-10). Any rating says the user consumed the item; how much
          they liked it is relative to their own scale, so a one-star rating is a weak positive, never a
          strong one.
  count   an implicit count or strength (plays, minutes, purchases): more is a stronger positive.

Mappings (the value a model sees for a user-item pair; each model's mapping is chosen on validation):
  binary  1 for every consumed pair.
  rating  rating / max rating (0.2 for one star on a 5-star scale).                  [ratings]
  liked   1 where the rating is at least the user's own mean rating, LOW below it.   [ratings]
  log     log1p(summed weight).                                                      [counts]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from ranker.errors import RankerError

log = logging.getLogger(__name__)

WeightKind = Literal["rating", "count"]
MAPPINGS: dict[str, tuple[str, ...]] = {"rating": ("binary", "rating", "liked"), "count": ("binary", "log")}
LOW = 0.2  # what a below-the-user's-mean rating counts for under "liked"
_MAX_RATING_LEVELS = 21  # 0.5-star steps on a 0-10 scale
_MAX_RATING_VALUE = 10.0


class FeedbackError(RankerError):
    """A weight kind or mapping that does not fit the data; the message names the valid options."""


def detect_weight_kind(weights: np.ndarray) -> tuple[WeightKind, str]:
    """"rating" when the weights look like a rating scale (few distinct values, all in (0, 10]), else "count".

    Returns the kind and a sentence saying why, for the log.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.size == 0:
        return "count", "no weights"
    levels = np.unique(weights)
    low, high = float(levels[0]), float(levels[-1])
    if levels.size == 1:
        return "count", f"every weight is {low:g} (no rating scale)"
    if levels.size <= _MAX_RATING_LEVELS and low > 0 and high <= _MAX_RATING_VALUE:
        return "rating", f"{levels.size} distinct values in [{low:g}, {high:g}], like a rating scale"
    return "count", f"{levels.size} distinct values in [{low:g}, {high:g}], not a rating scale"


def check_mapping(kind: WeightKind, mapping: str) -> None:
    if mapping not in MAPPINGS[kind]:
        raise FeedbackError(f"mapping {mapping!r} does not apply to {kind} weights; options: {list(MAPPINGS[kind])}")


@dataclass(frozen=True)
class Feedback:
    """One value per (user, item) pair of a history: the last rating, or the summed count.

    ``user_mean`` is each user's mean weight over their pairs (ratings: their own scale); ``scale_max`` the
    largest weight of the history (ratings: the top of the scale).
    """

    kind: WeightKind
    user_idx: np.ndarray
    item_idx: np.ndarray
    weight: np.ndarray
    user_mean: np.ndarray
    scale_max: float
    recency_rank: np.ndarray

    @classmethod
    def from_interactions(cls, interactions: pl.DataFrame, kind: WeightKind, n_users: int) -> Feedback:
        if kind not in MAPPINGS:
            raise FeedbackError(f"weight kind {kind!r} is unknown; options: {list(MAPPINGS)}")
        value = pl.col("weight").sort_by("ts").last() if kind == "rating" else pl.col("weight").sum()
        pairs = (interactions.group_by("user_idx", "item_idx")
                 .agg(value.alias("weight"), pl.col("ts").max().alias("last"))
                 .sort(["user_idx", "last", "item_idx"], descending=[False, True, False])  # ties: deterministic
                 .with_columns(recency=pl.int_range(pl.len()).over("user_idx"))
                 .sort("user_idx", "item_idx"))
        users = pairs["user_idx"].to_numpy().astype(np.int64)
        weight = pairs["weight"].to_numpy().astype(np.float32)
        sums = np.bincount(users, weights=weight, minlength=n_users)
        counts = np.bincount(users, minlength=n_users)
        user_mean = np.divide(sums, counts, out=np.zeros(n_users), where=counts > 0).astype(np.float32)
        scale_max = float(weight.max()) if weight.size else 1.0
        return cls(kind, users, pairs["item_idx"].to_numpy().astype(np.int64), weight, user_mean, scale_max or 1.0,
                   pairs["recency"].to_numpy().astype(np.int64))

    def values(self, mapping: str) -> np.ndarray:
        """The model input of every pair under ``mapping`` (float32, aligned with user_idx / item_idx)."""
        check_mapping(self.kind, mapping)
        if mapping == "binary":
            return np.ones_like(self.weight)
        if mapping == "rating":
            return np.clip(self.weight / self.scale_max, 0.0, 1.0).astype(np.float32)
        if mapping == "liked":
            return np.where(self.weight >= self.user_mean[self.user_idx], 1.0, LOW).astype(np.float32)
        return np.log1p(np.maximum(self.weight, 0.0)).astype(np.float32)

    def matrix(self, mapping: str, shape: tuple[int, int], half_life: float | None = None) -> sp.csr_matrix:
        """users x items CSR of the mapped values; with ``half_life`` (in events), each pair is scaled by
        0.5 ** (recency_rank / half_life), so a profile leans on what the user did last."""
        values = self.values(mapping)
        if half_life is not None:
            values = values * (0.5 ** (self.recency_rank / float(half_life))).astype(np.float32)
        out = sp.csr_matrix((values, (self.user_idx, self.item_idx)), shape=shape, dtype=np.float32)
        out.sort_indices()
        return out
