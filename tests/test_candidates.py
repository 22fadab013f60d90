"""Candidate generators propose the right items, never seen ones, and merge without losing a source."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from ranker.candidates import (
    content_topk,
    covisitation_matrix,
    covisitation_scores,
    covisitation_topk,
    dense_topk,
    merge_candidates,
    popularity_topk,
    seen_matrix,
    user_profiles,
)

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


def _frame(users, items, *, days_ago=None, weights=None) -> pl.DataFrame:
    days_ago = np.zeros(len(users)) if days_ago is None else np.asarray(days_ago, dtype=float)
    return pl.DataFrame(
        {
            "user_idx": np.asarray(users, dtype=np.int64),
            "item_idx": np.asarray(items, dtype=np.int64),
            "ts": [NOW - timedelta(days=float(d)) for d in days_ago],
            "weight": np.ones(len(users)) if weights is None else np.asarray(weights),
        },
        schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "ts": pl.Datetime("us", "UTC"), "weight": pl.Float32},
    )


def _random_log(n_users=30, n_items=40, n_rows=300, seed=0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return _frame(rng.integers(0, n_users, n_rows), rng.integers(0, n_items, n_rows),
                  days_ago=rng.uniform(0, 30, n_rows))


def _exact_search(item_vectors: np.ndarray):
    """Brute-force inner-product search with the shared top-k contract (what ItemIndex answers)."""
    def search(queries: np.ndarray, k: int):
        return dense_topk(queries @ item_vectors.T, k)
    return search


def test_merge_keeps_every_source_and_tags_shared_pairs():
    sources = {
        "covis": (np.array([0, 1]), np.array([[5, 7, -1], [2, 3, 4]]),
                  np.array([[3.0, 2.0, -np.inf], [9.0, 8.0, 7.0]])),
        "als": (np.array([0]), np.array([[7, 6, 5]]), np.array([[0.9, 0.8, 0.7]])),
    }
    merged = merge_candidates(sources)
    assert merged.columns == ["user_idx", "item_idx", "sources",
                              "als_score", "als_rank", "covis_score", "covis_rank"]
    assert merged.schema["sources"] == pl.List(pl.String)
    assert merged.schema["als_rank"] == pl.Int32 and merged.schema["als_score"] == pl.Float32
    pairs = list(zip(merged["user_idx"], merged["item_idx"]))
    assert pairs == [(0, 5), (0, 6), (0, 7), (1, 2), (1, 3), (1, 4)]  # padding dropped, sorted
    row = merged.filter((pl.col("user_idx") == 0) & (pl.col("item_idx") == 7)).row(0, named=True)
    assert row["sources"] == ["als", "covis"]
    assert (row["als_rank"], row["covis_rank"]) == (1, 2)
    assert row["als_score"] == pytest.approx(0.9) and row["covis_score"] == pytest.approx(2.0)
    only_covis = merged.filter(pl.col("user_idx") == 1)
    assert only_covis["als_rank"].null_count() == 3
    assert only_covis["sources"].to_list() == [["covis"]] * 3


def test_merge_is_independent_of_source_order():
    a = (np.array([0, 1]), np.array([[1, 2], [3, -1]]), np.array([[1.0, 0.5], [2.0, -np.inf]]))
    b = (np.array([1, 0]), np.array([[3, 0], [2, 4]]), np.array([[5.0, 4.0], [3.0, 1.0]]))
    assert merge_candidates({"a": a, "b": b}).equals(merge_candidates({"b": b, "a": a}))


def test_merge_keeps_the_best_rank_of_a_user_queried_twice():
    twice = (np.array([3, 3]), np.array([[1, 2], [2, 1]]), np.array([[0.9, 0.8], [0.7, 0.6]]))
    merged = merge_candidates({"s": twice})
    assert merged["item_idx"].to_list() == [1, 2] and merged["s_rank"].to_list() == [1, 1]
    assert merged["s_score"].to_list() == pytest.approx([0.9, 0.7])


def test_merge_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="source 'x'"):
        merge_candidates({"x": (np.array([0, 1]), np.array([[1, 2]]), np.array([[1.0, 0.5]]))})


def test_every_generator_excludes_seen_items():
    n_users, n_items, k = 30, 40, 10
    log = _random_log(n_users, n_items)
    seen = seen_matrix(log, n_users, n_items)
    users = np.arange(n_users)
    vectors = np.random.default_rng(1).normal(size=(n_items, 8)).astype(np.float32)
    profiles = user_profiles(log, vectors, n_users=n_users, half_life_days=7.0, now=NOW)
    results = {
        "covis": covisitation_topk(log, n_items=n_items, user_idx=users, k=k, exclude=seen),
        "popularity": popularity_topk(log, n_items=n_items, user_idx=users, k=k, exclude=seen),
        "content": content_topk(profiles, _exact_search(vectors), users, k, exclude=seen),
    }
    dense_seen = seen.toarray() > 0
    for name, (idx, scores) in results.items():
        assert idx.shape == (n_users, k) and idx.dtype == np.int64 and scores.dtype == np.float32
        valid = idx >= 0
        assert valid.sum() > n_users * k / 2, name  # they did propose something
        rows = np.broadcast_to(users[:, None], idx.shape)
        assert not dense_seen[rows[valid], idx[valid]].any(), f"{name} proposed a seen item"
        assert np.isneginf(scores[~valid]).all(), name


def test_covisitation_known_answer():
    # items 0&1 and 2&3 are always consumed together; item 4 goes with anything
    users = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4]
    items = [0, 1, 4, 0, 1, 2, 2, 3, 2, 3, 4, 0, 1]
    log = _frame(users, items)
    sim = covisitation_matrix(log, n_items=5).toarray()
    assert np.allclose(np.diag(sim), 0.0)
    assert np.allclose(sim, sim.T)
    assert sim.argmax(axis=1)[:4].tolist() == [1, 0, 3, 2]
    assert sim[0, 1] == pytest.approx(1.0)  # together for every user of either
    # a new user who took item 2 is offered item 3 first
    idx, _ = covisitation_topk(_frame(users + [5], items + [2]), n_items=5, user_idx=np.array([5]), k=2,
                               exclude=seen_matrix(_frame(users + [5], items + [2]), 6, 5))
    assert idx[0, 0] == 3


def test_covisitation_window_pairs_only_nearby_events():
    # one user's timeline 0 -> 1 -> 2: with window=1, items 0 and 2 are never neighbours
    log = _frame([0, 0, 0], [0, 1, 2], days_ago=[3, 2, 1])
    whole = covisitation_matrix(log, n_items=3).toarray()
    near = covisitation_matrix(log, n_items=3, window=1).toarray()
    assert whole[0, 2] > 0 and near[0, 2] == 0
    assert near[0, 1] > 0 and near[1, 2] > 0
    # a user who alternates 0, 1, 0, 1 still counts once for the pair
    log = _frame([0, 0, 0, 0, 1], [0, 1, 0, 1, 0], days_ago=[4, 3, 2, 1, 1])
    near = covisitation_matrix(log, n_items=2, window=1).toarray()
    assert near[0, 1] == pytest.approx(1 / np.sqrt(2 * 1))


def test_covisitation_scores_match_history_product():
    log = _random_log()
    sim = covisitation_matrix(log, n_items=40, max_neighbors=5)
    assert (np.diff(sim.indptr) <= 5).all()
    history = seen_matrix(log, 30, 40)
    rng = np.random.default_rng(2)
    users, items = rng.integers(0, 30, 50), rng.integers(0, 40, 50)
    expected = (history.toarray() @ sim.toarray())[users, items]
    np.testing.assert_allclose(covisitation_scores(sim, history, users, items), expected, rtol=1e-5)


def test_profiles_are_recency_weighted():
    vectors = np.eye(3, dtype=np.float32)
    log = _frame([0, 0, 1], [0, 1, 2], days_ago=[60.0, 0.5, 10.0])
    profiles = user_profiles(log, vectors, n_users=3, half_life_days=2.0, now=NOW)
    assert profiles[0, 1] > 0.99 and profiles[0, 0] < 0.01  # the recent item dominates
    np.testing.assert_allclose(np.linalg.norm(profiles[:2], axis=1), 1.0, rtol=1e-5)
    assert not profiles[2].any()  # no history: zeros


def test_profiles_refuse_future_interactions_and_naive_now():
    log = _frame([0], [0], days_ago=[-1.0])
    with pytest.raises(ValueError, match="after now"):
        user_profiles(log, np.eye(2), n_users=1, half_life_days=1.0, now=NOW)
    with pytest.raises(ValueError, match="naive datetime"):
        user_profiles(_frame([0], [0]), np.eye(2), n_users=1, half_life_days=1.0, now=NOW.replace(tzinfo=None))


def test_popularity_order_since_and_exclusion():
    # item 2: 3 old events; item 0: 2 recent; item 1: 1 recent
    log = _frame([0, 1, 2, 3, 4, 5], [2, 2, 2, 0, 0, 1], days_ago=[20, 20, 20, 1, 1, 1])
    users = np.array([0, 3])
    idx, scores = popularity_topk(log, n_items=4, user_idx=users, k=4)
    assert idx[0].tolist() == [2, 0, 1, -1]  # item 3 was never consumed: no signal
    assert scores[0, :3].tolist() == [3.0, 2.0, 1.0]
    recent, _ = popularity_topk(log, n_items=4, user_idx=users, k=2, since=NOW - timedelta(days=7))
    assert recent[0].tolist() == [0, 1]
    excluded, _ = popularity_topk(log, n_items=4, user_idx=users, k=2, exclude=seen_matrix(log, 6, 4))
    assert excluded.tolist() == [[0, 1], [2, 1]]


def test_content_topk_overfetches_past_seen_items_and_pads_cold_users():
    vectors = np.eye(6, dtype=np.float32) + 0.1
    log = _frame([0, 0, 0], [0, 1, 2])
    profiles = user_profiles(log, vectors, n_users=2, half_life_days=1.0, now=NOW)
    idx, scores = content_topk(profiles, _exact_search(vectors), np.array([0, 1]), 3,
                               exclude=seen_matrix(log, 2, 6))
    assert sorted(idx[0].tolist()) == [3, 4, 5]  # the 3 nearest were seen; 3 more still come back
    assert (idx[1] == -1).all() and np.isneginf(scores[1]).all()


def test_dense_topk_breaks_ties_by_index_and_pads():
    scores = np.array([[1.0, 3.0, 3.0, 0.0]], dtype=np.float32)
    idx, top = dense_topk(scores, 3)
    assert idx.tolist() == [[1, 2, 0]] and top.tolist() == [[3.0, 3.0, 1.0]]
    padded, _ = dense_topk(scores, 6)
    assert padded.tolist() == [[1, 2, 0, 3, -1, -1]]
    with pytest.raises(ValueError, match="k=0"):
        dense_topk(scores, 0)


def test_bad_item_index_is_named():
    with pytest.raises(ValueError, match="item_idx.*n_items=3"):
        seen_matrix(_frame([0], [5]), 1, 3)
