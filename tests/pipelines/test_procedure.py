"""The fit procedure's rules: the guard, the new-item exposure policy, and evaluation that never reads the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines.model.config import TrainConfig
from pipelines.model.guard import choose
from pipelines.model.levels import SourceParams, fit_level
from pipelines.model.lists import with_new_items
from ranker.evaluation.splits import NO_CUTOFF, per_user_split
from ranker.retrieval.blocks import BlockPlan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_guard_publishes_the_ranker_only_beyond_one_standard_error():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 400)
    clear_win = {"ranker": base + 0.05, "ease": base, "pop": base - 0.2}
    assert choose(clear_win, "ndcg@20")[0] == "ranker"
    noise = rng.normal(0, 0.3, 400)
    tie = {"ranker": base + 0.001 + noise, "ease": base}
    chosen, report = choose(tie, "ndcg@20")
    assert chosen == "ease" and report["best_alternative"] == "ease"
    assert choose({"ranker": base, "ease": base + 0.1}, "ndcg@20")[0] == "ease"


def test_new_items_take_the_reserved_positions_and_nothing_repeats():
    idx = np.array([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    scores = np.tile(np.array([5.0, 4.0, 3.0, 2.0, 1.0], dtype=np.float32), (2, 1))
    new_idx = np.array([[9, 8], [3, -1]])  # user 1's only new offer is already in the list, at position 4
    new_scores = np.array([[0.7, 0.6], [0.9, -np.inf]], dtype=np.float32)
    lists = with_new_items(idx, scores, new_idx, new_scores, (2, 4), "ranker")
    assert lists.idx[0].tolist() == [0, 9, 1, 8, 2]
    assert lists.source[0].tolist() == ["ranker", "new_item_slot", "ranker", "new_item_slot", "ranker"]
    assert lists.idx[1].tolist() == [0, 3, 1, 2, 4]  # moved up, not repeated
    unchanged = with_new_items(idx, scores, np.full((2, 0), -1), np.zeros((2, 0)), (2,), "ease")
    assert unchanged.idx.tolist() == idx.tolist() and set(unchanged.source.ravel()) == {"ease"}


def _one_user_at_a_time(idx, scores, new_idx, new_scores, positions, base_source):
    """The exposure policy written plainly, user by user: what the vectorised one must equal."""
    n, k = idx.shape
    out_idx, out_scores = idx.copy(), scores.copy()
    source = np.full((n, k), base_source, dtype=object)
    source[idx < 0] = ""
    for row in range(n):
        offers = [(i, s) for i, s in zip(new_idx[row], new_scores[row], strict=True) if i >= 0]
        items, item_scores, tags = list(idx[row]), list(scores[row]), list(source[row])
        for position in sorted(p for p in positions if p <= k):
            offer = next(((i, s) for i, s in offers if i not in set(items[: position - 1])), None)
            if offer is None:
                break
            offers.remove(offer)
            if offer[0] in items:
                at = items.index(offer[0])
                del items[at], item_scores[at], tags[at]
            items.insert(position - 1, offer[0])
            item_scores.insert(position - 1, offer[1])
            tags.insert(position - 1, "new_item_slot")
        out_idx[row], out_scores[row], source[row] = items[:k], item_scores[:k], tags[:k]
    return out_idx, out_scores, source


@pytest.mark.parametrize("seed", range(5))
def test_the_vectorised_exposure_policy_equals_the_plain_one(seed):
    rng = np.random.default_rng(seed)
    n, k, m = 200, 12, 3
    idx = np.stack([rng.permutation(30)[:k] for _ in range(n)])
    idx[rng.random((n, k)) < 0.05] = -1  # some short lists
    scores = np.sort(rng.random((n, k)).astype(np.float32), axis=1)[:, ::-1].copy()
    new_idx = np.where(rng.random((n, m)) < 0.8, rng.integers(0, 30, (n, m)), -1)
    new_scores = rng.random((n, m)).astype(np.float32)
    positions = (3, 7, 12)
    got = with_new_items(idx, scores, new_idx, new_scores, positions, "ranker")
    want_idx, want_scores, want_source = _one_user_at_a_time(idx, scores, new_idx, new_scores, positions, "ranker")
    assert got.idx.tolist() == want_idx.tolist()
    np.testing.assert_array_equal(got.scores, want_scores)
    assert got.source.tolist() == want_source.tolist()


def _log(seed=0, n_users=60, n_items=80, days=200):
    rng = np.random.default_rng(seed)
    launch = np.sort(rng.uniform(0, days * 0.8, n_items))  # items appear over time
    rows = []
    for u in range(n_users):
        start = rng.uniform(0, days * 0.9)
        for t in np.sort(rng.uniform(start, days, 25)):
            live = np.flatnonzero(launch <= t)
            rows.append((u, int(rng.choice(live)), T0 + timedelta(days=float(t)), float(rng.integers(1, 6))))
    return pl.DataFrame(rows, schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "ts": pl.Datetime("us", "UTC"),
                                      "weight": pl.Float32}, orient="row")


def test_no_evaluation_candidate_or_feature_uses_data_after_its_cutoff():
    log = _log()
    n_users, n_items = 60, 80
    split = per_user_split(log, share=0.2, n_users=n_users)
    cfg = TrainConfig()
    vectors = np.random.default_rng(1).normal(size=(n_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    level = fit_level(split.train, n_users=n_users, n_items=n_items, item_vectors={"fused": vectors, "text": vectors},
                      weight_kind="rating", params=SourceParams.from_config(cfg, "rating"), cfg=cfg)
    users = split.test_users
    result = level.run(users, BlockPlan(cfg.candidates.depth, list_k=20), split.cutoff_us)
    pairs = result.candidates
    first_event = split.train.group_by("item_idx").agg(pl.col("ts").dt.epoch("us").min().alias("first"))
    checked = pairs.join(first_event, on="item_idx", how="left").with_columns(
        cutoff=pl.Series(split.cutoff_us[pairs["user_idx"].to_numpy()]))
    assert (checked["first"] < checked["cutoff"]).all()  # every candidate existed before the user's cutoff
    for name, lists in result.lists.items():  # so does every baseline's list
        rows = np.repeat(users, lists.shape[1])
        flat = lists.ravel()
        known = flat >= 0
        firsts = level.item_first_us[flat[known]]
        assert (firsts < split.cutoff_us[rows[known]]).all(), name
    # the as-of item features of a user's pairs read only events before that user's time (their last event)
    data = level.features(pairs)
    names = list(data.feature_names)
    for user in users[:10]:
        mine = data.user_idx == user
        moment = level.user_time_us[user]
        assert moment < split.cutoff_us[user] != NO_CUTOFF
        past = split.train.filter(pl.col("ts").dt.epoch("us") < moment)
        counts = past.group_by("item_idx").len()
        expected = dict(zip(counts["item_idx"].to_list(), counts["len"].to_list()))
        got = data.scalars[mine, names.index("item_n_before")]
        assert got.tolist() == [float(expected.get(int(i), 0)) for i in data.item_idx[mine]]


@pytest.mark.parametrize("positions", [(0,), (3, 3)])
def test_bad_exposure_positions_are_refused(positions):
    with pytest.raises(ValueError, match="positions"):
        TrainConfig.model_validate({"new_items": {"positions": positions}})
