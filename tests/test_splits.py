"""Time-based and cold-item splits: no future in training, no cold item in training."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from ranker.splits import SplitError, item_cold_split, temporal_split

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


def _interactions(n_days: int = 30, n_users: int = 20, n_items: int = 50, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_days * 10
    return pl.DataFrame(
        {
            "user_idx": rng.integers(0, n_users, n),
            "item_idx": rng.integers(0, n_items, n),
            "ts": [T0 + timedelta(hours=float(h)) for h in np.sort(rng.uniform(0, 24 * n_days, n))],
            "weight": np.ones(n, dtype=np.float32),
        },
        schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "ts": pl.Datetime("us", "UTC"), "weight": pl.Float32},
    )


def test_temporal_split_partitions_by_time():
    df = _interactions()
    split = temporal_split(df, test_days=7, val_days=5)
    assert split.cutoff == df["ts"].max() - timedelta(days=7)
    assert split.val_cutoff == split.cutoff - timedelta(days=5)
    assert split.train["ts"].max() < split.cutoff <= split.test["ts"].min()
    assert split.train_fit["ts"].max() < split.val_cutoff <= split.val["ts"].min()
    assert split.val["ts"].max() < split.cutoff
    assert split.train.height + split.test.height == df.height
    assert split.train_fit.height + split.val.height == split.train.height
    assert split.test.schema == df.schema


def test_temporal_split_explicit_cutoff_and_no_validation():
    df = _interactions()
    cutoff = T0 + timedelta(days=20)
    split = temporal_split(df, test_days=1, val_days=0, cutoff=cutoff)
    assert split.cutoff == cutoff
    assert split.val.height == 0
    assert split.train_fit.equals(split.train)
    assert split.test.height == df.filter(pl.col("ts") >= cutoff).height


def test_temporal_split_errors_say_what_to_change():
    df = _interactions(n_days=10)
    with pytest.raises(SplitError, match=r"no test users .*: pass an earlier cutoff"):
        temporal_split(df, test_days=1, val_days=0, cutoff=T0 + timedelta(days=40))
    with pytest.raises(SplitError, match=r"no training interactions .* lower test_days \(now 15\)"):
        temporal_split(df, test_days=15, val_days=1)
    with pytest.raises(SplitError, match=r"no fitting interactions .* change val_days \(now 9;"):
        temporal_split(df, test_days=2, val_days=9)
    with pytest.raises(SplitError, match="has no time zone"):
        temporal_split(df, test_days=2, val_days=1, cutoff=datetime(2024, 3, 5))
    with pytest.raises(SplitError, match=r"lack columns \['ts'\]"):
        temporal_split(df.drop("ts"), test_days=2, val_days=1)


def test_item_cold_split_removes_every_cold_interaction_from_train():
    df = _interactions(n_items=30)
    split = item_cold_split(df, share=0.2, min_interactions=5, seed=3)
    counts = df.group_by("item_idx").len()
    eligible = counts.filter(pl.col("len") >= 5)["item_idx"].to_numpy()
    assert len(split.cold_item_idx) == round(0.2 * len(eligible))
    assert set(split.cold_item_idx.tolist()) <= set(eligible.tolist())
    assert not split.train["item_idx"].is_in(split.cold_item_idx.tolist()).any()
    assert set(split.test["item_idx"].unique().to_list()) == set(split.cold_item_idx.tolist())
    assert split.train.height + split.test.height == df.height
    again = item_cold_split(df, share=0.2, min_interactions=5, seed=3)
    np.testing.assert_array_equal(again.cold_item_idx, split.cold_item_idx)
    other = item_cold_split(df, share=0.2, min_interactions=5, seed=4)
    assert not np.array_equal(other.cold_item_idx, split.cold_item_idx)


def test_item_cold_split_errors():
    df = _interactions()
    with pytest.raises(SplitError, match=r"min_interactions \(now 1000\).*lower min_interactions"):
        item_cold_split(df, share=0.1, min_interactions=1000, seed=0)
    with pytest.raises(SplitError, match=r"share=1.5 must be in \(0, 1\)"):
        item_cold_split(df, share=1.5, min_interactions=1, seed=0)
