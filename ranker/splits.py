"""Evaluation splits that never leak the future: a global time cutoff, and held-out cold items.

Interactions are polars frames with ``user_idx: Int64, item_idx: Int64, ts: Datetime(us, UTC),
weight: Float32``. Splits are by time, never a random shuffle of interactions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

logger = logging.getLogger(__name__)
REQUIRED_COLUMNS = ("user_idx", "item_idx", "ts")


class SplitError(ValueError):
    """A split that cannot be made as asked; the message says which parameter to change."""


@dataclass(frozen=True)
class TemporalSplit:
    """``train`` = everything before ``cutoff`` (history for scoring ``test``); ``train_fit`` = before
    ``val_cutoff`` (history for fitting, with ``val`` = [val_cutoff, cutoff) as its labels); ``test`` =
    at or after ``cutoff``."""

    train: pl.DataFrame
    train_fit: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    cutoff: datetime
    val_cutoff: datetime


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


def _as_column_time(cutoff: datetime, dtype: pl.Datetime) -> datetime:
    """``cutoff`` expressed in the ts column's convention (aware in its zone, or naive UTC)."""
    if cutoff.tzinfo is None:
        raise SplitError(
            f"cutoff {cutoff.isoformat()} has no time zone; pass an aware datetime, "
            "e.g. datetime(2024, 5, 1, tzinfo=timezone.utc)"
        )
    if dtype.time_zone is None:
        return cutoff.astimezone(timezone.utc).replace(tzinfo=None)
    return cutoff


def _check_days(name: str, days: float, minimum_exclusive: bool) -> timedelta:
    ok = days > 0 if minimum_exclusive else days >= 0
    if not ok:
        bound = "> 0" if minimum_exclusive else ">= 0"
        raise SplitError(f"{name}={days} must be {bound} days")
    return timedelta(days=float(days))


def temporal_split(
    interactions: pl.DataFrame, *, test_days: float, val_days: float, cutoff: datetime | None = None
) -> TemporalSplit:
    """Split at a global cutoff (default: max ts - test_days); validation = the last ``val_days`` of train.

    ``val_days=0`` gives an empty ``val`` and ``train_fit == train``.
    """
    _check_frame(interactions)
    test_span = _check_days("test_days", test_days, minimum_exclusive=True)
    val_span = _check_days("val_days", val_days, minimum_exclusive=False)
    ts = pl.col("ts")
    last = interactions["ts"].max()
    cutoff = last - test_span if cutoff is None else _as_column_time(cutoff, interactions.schema["ts"])
    val_cutoff = cutoff - val_span
    test = interactions.filter(ts >= cutoff)
    train = interactions.filter(ts < cutoff)
    if test.height == 0:
        raise SplitError(
            f"cutoff {cutoff} leaves no test users (last interaction at {last}): pass an earlier cutoff, "
            f"or none to cut at the last interaction minus test_days (now {test_days})"
        )
    if train.height == 0:
        raise SplitError(
            f"cutoff {cutoff} leaves no training interactions (first at {interactions['ts'].min()}): "
            f"lower test_days (now {test_days}) or pass a later cutoff"
        )
    train_fit = train.filter(ts < val_cutoff)
    val = train.filter(ts >= val_cutoff)
    if val_days > 0 and (val.height == 0 or train_fit.height == 0):
        part = "validation interactions" if val.height == 0 else "fitting interactions (before the validation window)"
        raise SplitError(
            f"val_cutoff {val_cutoff} leaves no {part}: change val_days (now {val_days}; "
            "0 disables validation) or test_days"
        )
    logger.info(
        "temporal split at %s: train %d (fit %d, val %d), test %d interactions, %d test users",
        cutoff, train.height, train_fit.height, val.height, test.height, test["user_idx"].n_unique(),
    )  # fmt: skip
    return TemporalSplit(train=train, train_fit=train_fit, val=val, test=test, cutoff=cutoff, val_cutoff=val_cutoff)


def item_cold_split(
    interactions: pl.DataFrame, *, share: float, min_interactions: int, seed: int
) -> ItemColdSplit:
    """Hold out a seeded ``share`` of the items with >= ``min_interactions`` interactions, all of theirs."""
    _check_frame(interactions)
    if not 0 < share < 1:
        raise SplitError(f"share={share} must be in (0, 1), e.g. 0.1 to hold out a tenth of eligible items")
    counts = interactions.group_by("item_idx").len().filter(pl.col("len") >= min_interactions)
    eligible = np.sort(counts["item_idx"].to_numpy().astype(np.int64))
    if eligible.size == 0:
        raise SplitError(
            f"no item has >= min_interactions (now {min_interactions}) interactions: lower min_interactions"
        )
    n_cold = max(1, int(round(share * eligible.size)))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, size=n_cold, replace=False))
    is_cold = pl.col("item_idx").cast(pl.Int64).is_in(pl.Series(cold, dtype=pl.Int64).implode())
    train = interactions.filter(~is_cold)
    test = interactions.filter(is_cold)
    if train.height == 0:
        raise SplitError(f"share={share} holds out every interaction; lower share")
    logger.info("item-cold split: %d of %d eligible items held out (%d rows)", n_cold, eligible.size, test.height)
    return ItemColdSplit(train=train, test=test, cold_item_idx=cold)
