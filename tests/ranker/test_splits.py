"""Time-based and cold-item splits: no future in training, no cold item in training."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ranker.evaluation.splits import (
    NO_CUTOFF,
    SplitError,
    global_split,
    holdout_split,
    item_cold_split,
    per_user_split,
    sample_items,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)


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


def test_per_user_split_holds_out_each_users_last_share_by_time():
    df = _interactions()
    split = per_user_split(df, share=0.2, n_users=20, min_events=3)
    assert split.train.height + split.test.height == df.height
    assert split.test.schema == df.schema
    for user, events in df.group_by("user_idx"):
        user = int(user[0])
        test = split.test.filter(pl.col("user_idx") == user)
        train = split.train.filter(pl.col("user_idx") == user)
        cutoff = split.cutoff_us[user]
        if events.height < 3:
            assert test.height == 0 and cutoff == NO_CUTOFF
            continue
        assert test.height >= int(np.ceil(0.2 * events.height))  # ties at the cutoff all go to test
        assert train["ts"].dt.epoch("us").max() < cutoff <= test["ts"].dt.epoch("us").min()
    assert len(split.test_users) == 20  # every user is tested, not the few active in the last days


def test_per_user_split_never_straddles_a_timestamp():
    # user 0: five events, the last three at one moment; user 1: two events only
    ts = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=2), T0 + timedelta(hours=2)]
    df = pl.DataFrame({"user_idx": [0] * 5 + [1, 1], "item_idx": [0, 1, 2, 3, 4, 0, 1],
                       "ts": ts + [T0, T0 + timedelta(hours=1)], "weight": [1.0] * 7},
                      schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "ts": pl.Datetime("us", "UTC"),
                              "weight": pl.Float32})
    split = per_user_split(df, share=0.2, n_users=2, min_events=3)
    assert sorted(split.test["item_idx"].to_list()) == [2, 3, 4]
    assert split.cutoff_us[1] == NO_CUTOFF


def test_global_split_cuts_by_share_of_events():
    df = _interactions()
    split = global_split(df, share=0.25, n_users=20)
    assert split.train["ts"].max() < split.test["ts"].min()
    assert abs(split.test.height - 0.25 * df.height) <= 2
    assert len(set(split.cutoff_us[split.test_users].tolist())) == 1


def test_splits_say_what_to_change():
    df = _interactions(n_days=10)
    with pytest.raises(SplitError, match=r"share=1.5 must be in \(0, 1\)"):
        per_user_split(df, share=1.5, n_users=20)
    with pytest.raises(SplitError, match=r"holds out no event"):
        per_user_split(df, share=0.2, n_users=20, min_events=10_000)
    with pytest.raises(SplitError, match=r"options: 'per_user', 'global'"):
        holdout_split(df, kind="weekly", share=0.2, n_users=20)
    with pytest.raises(SplitError, match=r"lack columns"):
        per_user_split(df.drop("ts"), share=0.2, n_users=20)


def test_sampled_items_come_from_past_counts_only():
    df = _interactions()
    items = sample_items(df, share=0.5, min_interactions=8, seed=0)
    counts = df.group_by("item_idx").len()
    eligible = counts.filter(pl.col("len") >= 8)["item_idx"].to_list()
    assert set(items.tolist()) <= set(eligible) and len(items) == round(0.5 * len(eligible))
    assert sample_items(df, share=0.5, min_interactions=8, seed=0).tolist() == items.tolist()


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
