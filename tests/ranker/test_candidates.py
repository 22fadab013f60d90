"""The scoring core: co-visitation, EASE, feedback mappings, as-of statistics, sources and the block pass."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ranker.ranking.asof import ItemTimeline
from ranker.retrieval.blocks import BlockPlan, blocked_mask, score_blocks
from ranker.retrieval.covisit import cooccurrence_counts, cosine_similarity, covisitation_matrix, seen_matrix
from ranker.retrieval.ease import EASE
from ranker.retrieval.feedback import LOW, Feedback, FeedbackError, detect_weight_kind
from ranker.retrieval.sources import SOURCES, HistoryContext, make_source
from ranker.topk import dense_topk

NOW = datetime(2024, 6, 1, tzinfo=UTC)


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


def test_covisitation_known_answer():
    # items 0&1 and 2&3 are always consumed together; item 4 goes with anything
    users = [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4]
    items = [0, 1, 4, 0, 1, 2, 2, 3, 2, 3, 4, 0, 1]
    sim = covisitation_matrix(_frame(users, items), n_items=5).toarray()
    assert np.allclose(np.diag(sim), 0.0)
    assert np.allclose(sim, sim.T)
    assert sim.argmax(axis=1)[:4].tolist() == [1, 0, 3, 2]
    assert sim[0, 1] == pytest.approx(1.0)  # together for every user of either


def test_shrinkage_pulls_rare_pairs_towards_zero():
    # pair (0, 1): one shared user of one each; pair (2, 3): 10 shared users of 10 each. Both cosines are 1.
    log = _frame([0, 0] + [u for u in range(1, 11) for _ in (0, 1)], [0, 1] + [2, 3] * 10)
    counts = cooccurrence_counts(log, n_items=4)
    plain = cosine_similarity(counts).toarray()
    shrunk = cosine_similarity(counts, shrinkage=10.0).toarray()
    assert plain[0, 1] == pytest.approx(1.0) and plain[2, 3] == pytest.approx(1.0)
    assert shrunk[0, 1] == pytest.approx(1 / 11) and shrunk[2, 3] == pytest.approx(10 / 20)
    with pytest.raises(ValueError, match="shrinkage"):
        cosine_similarity(counts, shrinkage=-1.0)


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


def test_pruning_keeps_each_rows_strongest_neighbours():
    log = _random_log()
    full = covisitation_matrix(log, n_items=40).toarray()
    pruned = covisitation_matrix(log, n_items=40, max_neighbors=5)
    assert (np.diff(pruned.indptr) <= 5).all()
    dense = pruned.toarray()
    for row in range(40):
        kept = dense[row][dense[row] > 0]
        if kept.size:
            assert kept.min() >= np.sort(full[row])[::-1][min(4, kept.size - 1)] - 1e-7


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


def test_ease_known_answer_checkerboard():
    # two groups of items; a user who took item 0 gets item 1 (same group) first, never an item of the other
    users = [u for u in range(20) for _ in (0, 1, 2)]
    items = [i for u in range(20) for i in ((0, 1, 2) if u % 2 else (3, 4, 5))]
    matrix = Feedback.from_interactions(_frame(users, items), "count", 21).matrix("binary", (21, 6))
    model = EASE(l2=1.0, min_item_users=1).fit(matrix)
    assert np.allclose(np.diag(model.weights_), 0.0)
    row = Feedback.from_interactions(_frame([0], [0]), "count", 1).matrix("binary", (1, 6))
    scores = model.score(row)[0]
    assert set(np.argsort(-scores)[:2].tolist()) == {1, 2}
    assert scores[3:].max() <= 1e-6


def test_ease_limits_itself_to_popular_items_and_round_trips(tmp_path):
    log = _random_log()
    matrix = Feedback.from_interactions(log, "count", 30).matrix("binary", (30, 40))
    model = EASE(l2=10.0, max_items=10).fit(matrix)
    assert model.items_.size == 10
    scores = model.score(matrix[:5])
    outside = np.setdiff1d(np.arange(40), model.items_)
    assert not scores[:, outside].any()
    model.save(tmp_path / "ease.npz")
    np.testing.assert_array_equal(EASE.load(tmp_path / "ease.npz").score(matrix[:5]), scores)


def test_weight_kind_is_detected_and_said():
    assert detect_weight_kind(np.array([0.5, 1.0, 3.5, 5.0]))[0] == "rating"
    assert detect_weight_kind(np.array([1, 2, 3, 4, 5]))[0] == "rating"
    assert detect_weight_kind(np.arange(1, 200, dtype=float))[0] == "count"
    assert detect_weight_kind(np.ones(10))[0] == "count"
    _kind, why = detect_weight_kind(np.array([1.0, 5.0]))
    assert "rating scale" in why


def test_a_low_rating_is_never_a_strong_positive():
    # user 0 rates item 0 one star and item 1 five stars; user 1 rates everything 3
    log = _frame([0, 0, 1, 1], [0, 1, 0, 1], weights=[1.0, 5.0, 3.0, 3.0])
    feedback = Feedback.from_interactions(log, "rating", 2)
    for mapping in ("rating", "liked"):
        values = dict(zip(zip(feedback.user_idx, feedback.item_idx), feedback.values(mapping)))
        assert values[(0, 0)] < values[(0, 1)]
        assert values[(0, 0)] <= 0.2 + 1e-6
    liked = dict(zip(zip(feedback.user_idx, feedback.item_idx), feedback.values("liked")))
    assert liked[(0, 0)] == pytest.approx(LOW) and liked[(1, 0)] == liked[(1, 1)] == 1.0
    with pytest.raises(FeedbackError, match="options"):
        feedback.values("log")


def test_recency_profile_halves_every_half_life_events():
    log = _frame([0, 0, 0], [0, 1, 2], days_ago=[3, 2, 1])
    feedback = Feedback.from_interactions(log, "count", 1)
    recent = feedback.matrix("binary", (1, 3), half_life=1.0).toarray()[0]
    np.testing.assert_allclose(recent, [0.25, 0.5, 1.0])


def test_as_of_statistics_never_read_the_future():
    log = _frame([0, 1, 2, 3], [0, 0, 0, 1], days_ago=[10, 5, 1, 3], weights=[5, 1, 4, 2])
    timeline = ItemTimeline(log, user_mean=np.array([3.0, 3.0, 3.0, 3.0]), n_items=3)
    at = int((NOW - timedelta(days=4)).timestamp() * 1e6)
    out = timeline.features(np.array([0, 1, 2]), np.array([at, at, at]))
    assert out["item_n_before"].tolist() == [2.0, 0.0, 0.0]  # the events 1 and 3 days ago are not yet known
    assert out["item_mean_weight"][0] == pytest.approx(3.0)
    assert out["item_share_liked"][0] == pytest.approx(0.5)
    assert out["item_age_days"][0] == pytest.approx(6.0)
    assert out["item_n_last_7d"][0] == 2.0 and out["item_n_last_1d"][0] == 1.0


def _context(log, n_users, n_items, vectors=None):
    vectors = np.eye(n_items, dtype=np.float32) if vectors is None else vectors
    feedback = Feedback.from_interactions(log, "count", n_users)
    return HistoryContext(log, feedback, n_users, n_items, {"fused": vectors, "text": vectors}, half_life=2.0)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_scores_every_item_for_every_user(name):
    log = _random_log()
    ctx = _context(log, 30, 40, np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32))
    params = {"ease": {"l2": 10.0, "min_item_users": 1}, "als": {"factors": 4, "iterations": 3}}.get(name, {})
    blocks = make_source(name, params).fit(ctx).score(np.array([0, 3, 7]))
    assert blocks and all(b.shape == (3, 40) and np.isfinite(b).all() for b in blocks.values())
    with pytest.raises(ValueError, match="registered"):
        make_source("nope")


def test_als_gives_new_items_factors_from_their_content():
    vectors = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    vectors[5] = vectors[0]  # item 5 has no history but the content of item 0
    log = _frame([u for u in range(8) for _ in (0, 1)], [0, 1] * 4 + [2, 3] * 4)
    source = make_source("als", {"factors": 3, "iterations": 5}).fit(_context(log, 8, 6, vectors))
    assert source.item_factors[4:].any()  # no history, yet not zero
    np.testing.assert_allclose(source.item_factors[5], source.content_map.predict(vectors[:1])[0], rtol=1e-5)


def test_block_pass_blocks_seen_and_unavailable_items_and_proposes_new_ones():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 8)).astype(np.float32)
    seen = seen_matrix(_frame([0, 1], [2, 5]), 3, 8)
    first_us = np.zeros(8, dtype=np.int64)
    first_us[7] = 100  # item 7 appears at t=100: unavailable to user 2, whose cutoff is 50
    cutoff = np.array([1000, 1000, 50])
    new = np.zeros(8, dtype=bool)
    new[6] = True
    plan = BlockPlan({"a": 2}, rank_depth=8, list_k=4, new_items=new, new_depth={"a": 1})
    result = score_blocks(lambda users: {"a": scores[users]}, np.array([0, 1, 2]),
                          lambda users: blocked_mask(seen[users], cutoff[users], first_us), plan)
    pairs = set(zip(result.candidates["user_idx"].to_list(), result.candidates["item_idx"].to_list()))
    assert (0, 2) not in pairs and (1, 5) not in pairs and (2, 7) not in pairs
    assert all((u, 6) in pairs for u in range(3))  # the new item reaches every user's candidates
    assert not np.isin(result.lists["a"][2], [7]).any()
    assert (result.lists["new/a"][:, 0] == 6).all()
    allowed = [int(i) for i in np.argsort(-scores[0], kind="stable") if i != 2]
    mine = result.candidates.filter(pl.col("user_idx") == 0)
    assert mine["a_rank"].to_list() == [allowed.index(i) + 1 for i in mine["item_idx"].to_list()]
