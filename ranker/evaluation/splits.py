"""Evaluation splits that never leak the future: per-user or global time holdouts by share of events, and
held-out cold items.

Interactions are polars frames with ``user_idx: Int64, item_idx: Int64, ts: Datetime(us, UTC),
weight: Float32``. Splits are by time, never a random shuffle of interactions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from ranker.errors import RankerError

logger = logging.getLogger(__name__)
REQUIRED_COLUMNS = ("user_idx", "item_idx", "ts")


class SplitError(RankerError):
    """A split that cannot be made as asked; the message says which parameter to change."""


EPOCH_US = pl.col("ts").dt.epoch("us")
NO_CUTOFF = np.iinfo(np.int64).max  # a user with no held-out events: every later item counts as available


@dataclass(frozen=True)
class HoldoutSplit:
    """``train`` = events before each user's cutoff, ``test`` = the rest.

    ``cutoff_us`` (n_users,) int64 epoch microseconds: the first held-out event of each user (``NO_CUTOFF``
    for users with nothing held out). An item is *available* to user u when some train event of it comes
    before u's cutoff: what could have been recommended at that moment.
    """

    train: pl.DataFrame
    test: pl.DataFrame
    cutoff_us: np.ndarray
    kind: str

    @property
    def test_users(self) -> np.ndarray:
        return np.sort(self.test["user_idx"].unique().to_numpy().astype(np.int64))
@dataclass(frozen=True)
class ItemColdSplit:
    """``train`` without any interaction of ``cold_item_idx``; ``test`` = exactly those interactions."""

    train: pl.DataFrame
    test: pl.DataFrame
    cold_item_idx: np.ndarray


def _check_frame(interactions: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in interactions.columns]
    if missing:
        raise SplitError(
            f"interactions lack columns {missing} (have {interactions.columns}); "
            f"the ranker needs {list(REQUIRED_COLUMNS)}"
        )
    if not isinstance(interactions.schema["ts"], pl.Datetime):
        raise SplitError(f"column 'ts' has dtype {interactions.schema['ts']}; cast it to pl.Datetime('us', 'UTC')")
    if interactions.height == 0:
        raise SplitError("interactions are empty: nothing to split; check the input log")


def per_user_split(interactions: pl.DataFrame, *, share: float, n_users: int, min_events: int = 3) -> HoldoutSplit:
    """Each user's last ``share`` of events (at least one) is held out, for users with >= ``min_events``.

    Split by time per user: the cutoff is the timestamp of the user's first held-out event, and every event
    at or after it is held out, so no two events at the same moment straddle the cutoff. Users whose events
    all share one timestamp, or with fewer than ``min_events``, stay whole in train.
    """
    _check_frame(interactions)
    if not 0 < share < 1:
        raise SplitError(f"share={share} must be in (0, 1), e.g. 0.2 to hold out each user's last fifth")
    ranked = (interactions.with_columns(_t=EPOCH_US)
              .sort("user_idx", "_t", "item_idx")
              .with_columns(_n=pl.len().over("user_idx"), _r=pl.int_range(pl.len()).over("user_idx")))
    n_test = (pl.col("_n") * share).ceil().cast(pl.Int64).clip(1, None)
    first_test = (ranked.filter((pl.col("_n") >= min_events) & (pl.col("_r") == pl.col("_n") - n_test))
                  .select("user_idx", _cut="_t"))
    first_event = ranked.group_by("user_idx").agg(_first=pl.col("_t").min())
    cuts = first_test.join(first_event, on="user_idx").filter(pl.col("_cut") > pl.col("_first"))
    cutoff = np.full(n_users, NO_CUTOFF, dtype=np.int64)
    cutoff[cuts["user_idx"].to_numpy()] = cuts["_cut"].to_numpy()
    return _split_at(interactions, cutoff, "per_user")


def global_split(interactions: pl.DataFrame, *, share: float, n_users: int) -> HoldoutSplit:
    """One cutoff for everyone, placed so that the last ``share`` of events are held out."""
    _check_frame(interactions)
    if not 0 < share < 1:
        raise SplitError(f"share={share} must be in (0, 1), e.g. 0.2 to hold out the last fifth of events")
    ts = np.sort(interactions.select(EPOCH_US).to_series().to_numpy())
    cut = int(ts[min(len(ts) - 1, int(np.floor(len(ts) * (1 - share))))])
    if cut <= ts[0]:
        raise SplitError(f"every event shares the first timestamp; a global split at share={share} leaves no "
                         "training events. Fix: use train.split.kind = \"per_user\"")
    return _split_at(interactions, np.full(n_users, cut, dtype=np.int64), "global")


def holdout_split(interactions: pl.DataFrame, *, kind: str, share: float, n_users: int,
                  min_events: int = 3) -> HoldoutSplit:
    if kind == "per_user":
        return per_user_split(interactions, share=share, n_users=n_users, min_events=min_events)
    if kind == "global":
        return global_split(interactions, share=share, n_users=n_users)
    raise SplitError(f"split kind {kind!r} is unknown; options: 'per_user', 'global'")


def _split_at(interactions: pl.DataFrame, cutoff: np.ndarray, kind: str) -> HoldoutSplit:
    cuts = pl.DataFrame({"user_idx": np.arange(len(cutoff), dtype=np.int64), "_cut": cutoff})
    marked = (interactions.join(cuts, on="user_idx", how="left", maintain_order="left")
              .with_columns(_held=pl.col("_cut") <= EPOCH_US).drop("_cut"))
    test = marked.filter("_held").drop("_held")
    train = marked.filter(~pl.col("_held")).drop("_held")
    if test.height == 0:
        raise SplitError(f"the {kind} split holds out no event: every user has fewer events than the minimum or "
                         "all their events at one moment. Fix: provide a longer interaction log")
    cutoff = cutoff.copy()
    cutoff[~np.isin(np.arange(len(cutoff)), test["user_idx"].unique().to_numpy())] = NO_CUTOFF
    logger.info("%s split: train %d, held out %d events of %d users", kind, train.height, test.height,
                test["user_idx"].n_unique())
    return HoldoutSplit(train=train, test=test, cutoff_us=cutoff, kind=kind)


def sample_items(interactions: pl.DataFrame, *, share: float, min_interactions: int, seed: int,
                 max_items: int | None = None) -> np.ndarray:
    """A seeded ``share`` of the items with >= ``min_interactions`` events (sorted item_idx).

    Drawn from past counts only, never from who consumes the items later, so a held-out or hidden item is
    a random established item, not one selected for being a future positive.
    """
    counts = interactions.group_by("item_idx").len().filter(pl.col("len") >= min_interactions)
    eligible = np.sort(counts["item_idx"].to_numpy().astype(np.int64))
    n = int(round(share * eligible.size))
    if max_items is not None:
        n = min(n, max_items)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(eligible, size=n, replace=False))


def item_cold_split(
    interactions: pl.DataFrame, *, share: float, min_interactions: int, seed: int
) -> ItemColdSplit:
    """Hold out a seeded ``share`` of the items with >= ``min_interactions`` interactions, all of theirs."""
    _check_frame(interactions)
    if not 0 < share < 1:
        raise SplitError(f"share={share} must be in (0, 1), e.g. 0.1 to hold out a tenth of eligible items")
    cold = sample_items(interactions, share=share, min_interactions=min_interactions, seed=seed)
    if cold.size == 0:
        raise SplitError(
            f"no item has >= min_interactions (now {min_interactions}) interactions: lower min_interactions"
        )
    n_cold = cold.size
    is_cold = pl.col("item_idx").cast(pl.Int64).is_in(pl.Series(cold, dtype=pl.Int64).implode())
    train = interactions.filter(~is_cold)
    test = interactions.filter(is_cold)
    if train.height == 0:
        raise SplitError(f"share={share} holds out every interaction; lower share")
    logger.info("item-cold split: %d items held out (%d rows)", n_cold, test.height)
    return ItemColdSplit(train=train, test=test, cold_item_idx=cold)
