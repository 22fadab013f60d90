"""build_features turns the candidate table into the right rows and columns; RankingData guards its arrays."""

import numpy as np
import polars as pl
import pytest

from ranker.ranking.data import RankingData, RankingDataError, groups_from_user_idx, ndcg_at_k
from ranker.ranking.features import MISSING_RANK, FeatureError, build_features

N_USERS, N_ITEMS, DIM = 3, 5, 4


def _candidates() -> pl.DataFrame:
    # deliberately not sorted by (user, item); content and covis propose overlapping pairs
    return pl.DataFrame(
        {
            "user_idx": [2, 0, 1, 0, 2, 0],
            "item_idx": [1, 3, 0, 2, 4, 1],
            "sources": [
                ["content"], ["covis"], ["content", "covis"], ["content"], ["covis"], ["content", "covis"]
            ],
            "content_score": [0.9, None, 0.5, 0.7, None, 0.8],
            "content_rank": [1, None, 1, 2, None, 1],
            "covis_score": [None, 3.0, 1.0, None, 2.0, 5.0],
            "covis_rank": [None, 2, 1, None, 1, 1],
        },
        schema_overrides={
            "user_idx": pl.Int64, "item_idx": pl.Int64, "sources": pl.List(pl.String),
            "content_score": pl.Float32, "content_rank": pl.Int32,
            "covis_score": pl.Float32, "covis_rank": pl.Int32,
        },
    )


@pytest.fixture()
def inputs():
    rng = np.random.default_rng(0)
    fused = (rng.normal(size=(N_USERS, DIM)), rng.normal(size=(N_ITEMS, DIM)))
    image_items = rng.normal(size=(N_ITEMS, DIM))
    image_items[2] = 0.0  # item 2 has no image
    image = (rng.normal(size=(N_USERS, DIM)), image_items)
    return dict(
        candidates=_candidates(),
        vector_sets={"image": image, "fused": fused},
        item_stats=pl.DataFrame({"item_idx": [0, 1, 2, 3], "pop_all": [10.0, 20.0, 30.0, 40.0],
                                 "is_cold": [False, False, True, False]}),
        user_stats=pl.DataFrame({"user_idx": [0, 1, 2], "n_events": [5, 1, 7]}),
        pair_scores={"covis_pair": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])},
        labels=pl.DataFrame({"user_idx": [0, 2, 2], "item_idx": [2, 4, 4]}),
    )


def _column(data: RankingData, name: str) -> np.ndarray:
    return data.scalars[:, data.feature_names.index(name)]


def _row(data: RankingData, user: int, item: int) -> int:
    (hits,) = np.nonzero((data.user_idx == user) & (data.item_idx == item))
    return int(hits[0])


def test_rows_sorted_and_grouped_per_user(inputs):
    data = build_features(**inputs)
    assert list(zip(data.user_idx, data.item_idx)) == [(0, 1), (0, 2), (0, 3), (1, 0), (2, 1), (2, 4)]
    assert data.group_sizes.tolist() == [3, 1, 2]


def test_cos_columns_are_the_dot_products(inputs):
    data = build_features(**inputs)
    for name, (users, items) in inputs["vector_sets"].items():
        expected = [float(users[u] @ items[i]) for u, i in zip(data.user_idx, data.item_idx)]
        np.testing.assert_allclose(_column(data, f"cos_{name}"), expected, rtol=1e-5)


def test_missing_item_modality_gives_has_zero_and_cos_zero(inputs):
    data = build_features(**inputs)
    has_image, cos_image = _column(data, "has_image"), _column(data, "cos_image")
    no_image = data.item_idx == 2
    assert (has_image[no_image] == 0).all() and (cos_image[no_image] == 0).all()
    assert (has_image[~no_image] == 1).all()
    assert (_column(data, "has_fused") == 1).all()


def test_null_ranks_and_scores_are_filled(inputs):
    data = build_features(**inputs)
    covis_only = _row(data, 0, 3)
    assert _column(data, "content_rank")[covis_only] == MISSING_RANK
    assert _column(data, "content_score")[covis_only] == 0.0
    assert _column(data, "covis_rank")[covis_only] == 2
    assert _column(data, "covis_score")[covis_only] == 3.0
    np.testing.assert_array_equal(_column(data, "n_sources"), [2, 1, 1, 2, 1, 1])
    # without the sources list, n_sources counts the sources that ranked the pair
    no_list = build_features(**(inputs | {"candidates": inputs["candidates"].drop("sources")}))
    np.testing.assert_array_equal(_column(no_list, "n_sources"), _column(data, "n_sources"))


def test_labels_land_on_the_positive_rows(inputs):
    data = build_features(**inputs)
    expected = np.zeros(data.n_rows, dtype=np.float32)
    expected[[_row(data, 0, 2), _row(data, 2, 4)]] = 1.0
    np.testing.assert_array_equal(data.labels, expected)
    assert build_features(**(inputs | {"labels": None})).labels is None


def test_stats_joined_and_pair_scores_follow_their_rows(inputs):
    data = build_features(**inputs)
    pop, cold, n_events = (_column(data, n) for n in ("pop_all", "is_cold", "n_events"))
    assert pop[_row(data, 0, 3)] == 40.0 and pop[_row(data, 2, 4)] == 0.0  # item 4 has no stats row
    assert cold[_row(data, 0, 2)] == 1.0 and cold[_row(data, 0, 1)] == 0.0
    assert n_events[_row(data, 1, 0)] == 1.0 and n_events[_row(data, 2, 1)] == 7.0
    # candidate row k had pair score 0.1 * (k + 1); e.g. (0, 3) was row 1, (2, 4) row 4
    covis_pair = _column(data, "covis_pair")
    assert covis_pair[_row(data, 0, 3)] == pytest.approx(0.2)
    assert covis_pair[_row(data, 2, 4)] == pytest.approx(0.5)


def test_main_vectors_fill_user_and_item_vectors(inputs):
    data = build_features(**inputs)
    users, items = inputs["vector_sets"]["fused"]
    np.testing.assert_allclose(data.user_vec, users[data.user_idx], rtol=1e-6)
    np.testing.assert_allclose(data.item_vec, items[data.item_idx], rtol=1e-6)
    assert build_features(**inputs, main_vectors=None).user_vec is None


def test_feature_order_is_deterministic(inputs):
    data = build_features(**inputs)
    assert data.feature_names == (
        "cos_fused", "cos_image", "has_fused", "has_image",
        "content_rank", "content_score", "covis_rank", "covis_score", "n_sources",
        "pop_all", "is_cold", "n_events", "covis_pair",
    )
    shuffled = np.array([3, 0, 5, 1, 4, 2])
    reordered = inputs | {
        "candidates": inputs["candidates"][shuffled],
        "vector_sets": dict(reversed(list(inputs["vector_sets"].items()))),
        "pair_scores": {"covis_pair": inputs["pair_scores"]["covis_pair"][shuffled]},
    }
    again = build_features(**reordered)
    assert again.feature_names == data.feature_names
    np.testing.assert_array_equal(again.scalars, data.scalars)


def test_bad_inputs_are_named(inputs):
    doubled = pl.concat([inputs["candidates"], inputs["candidates"][:1]])
    with pytest.raises(FeatureError, match="repeats 1 .user_idx, item_idx. pairs"):
        build_features(**(inputs | {"candidates": doubled}))
    short_items = {"fused": (inputs["vector_sets"]["fused"][0], np.zeros((3, DIM)))}
    with pytest.raises(FeatureError, match="has 3 item vectors but the candidates reach item_idx 4"):
        build_features(**(inputs | {"vector_sets": short_items}))
    with pytest.raises(FeatureError, match=r"main_vectors='text' is not a vector set; options: \['fused'"):
        build_features(**inputs, main_vectors="text")
    with pytest.raises(FeatureError, match=r"pair score 'covis_pair' has shape \(2,\)"):
        build_features(**(inputs | {"pair_scores": {"covis_pair": np.zeros(2)}}))
    with pytest.raises(FeatureError, match="item_stats repeats 1 item_idx"):
        build_features(**(inputs | {"item_stats": pl.DataFrame({"item_idx": [0, 0], "pop_all": [1.0, 2.0]})}))
    with pytest.raises(FeatureError, match="feature names collide: \\['cos_fused'\\]"):
        build_features(**(inputs | {"pair_scores": {"cos_fused": np.zeros(6)}}))


def test_groups_from_user_idx():
    assert groups_from_user_idx(np.array([0, 0, 3, 3, 3, 7])).tolist() == [2, 3, 1]
    with pytest.raises(RankingDataError, match="row 2 has user 0 after user 1"):
        groups_from_user_idx(np.array([0, 1, 0]))


def _tiny(**overrides) -> RankingData:
    fields = dict(
        scalars=np.zeros((4, 2)), feature_names=("a", "b"), group_sizes=np.array([1, 3]),
        user_idx=np.array([0, 1, 1, 1]), item_idx=np.arange(4), labels=np.array([1.0, 0.0, 1.0, 0.0]),
    )
    return RankingData(**(fields | overrides))


def test_ranking_data_rejects_inconsistent_arrays():
    with pytest.raises(RankingDataError, match="group_sizes sum to 5 but there are 4 rows"):
        _tiny(group_sizes=np.array([2, 3]))
    with pytest.raises(RankingDataError, match="labels hold 1 NaN"):
        _tiny(labels=np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(RankingDataError, match="labels has 3 values but scalars has 4 rows"):
        _tiny(labels=np.zeros(3))
    with pytest.raises(RankingDataError, match="feature_names has 1 names but scalars has 2 columns"):
        _tiny(feature_names=("a",))
    with pytest.raises(RankingDataError, match="give both user_vec and item_vec"):
        _tiny(user_vec=np.zeros((4, 3)))
    with pytest.raises(RankingDataError, match=r"scalars hold NaN or infinite values in features \['b'\]"):
        _tiny(scalars=np.array([[0, 0], [0, np.inf], [0, 0], [0, 0]]))


def test_select_groups_keeps_rows_of_the_chosen_groups():
    data = _tiny()
    second = data.select_groups(np.array([1]))
    assert second.group_sizes.tolist() == [3] and second.item_idx.tolist() == [1, 2, 3]
    assert data.select_groups(np.array([True, False])).item_idx.tolist() == [0]
    assert data.groups_with_positive().tolist() == [True, True]


def test_ndcg_at_k_known_answers():
    labels = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    sizes = np.array([3, 2])
    # group 0: the positive ranked second -> 1 / log2(3); group 1: the positive ranked first -> 1
    scores = np.array([0.9, 0.5, 0.1, 0.7, 0.2])
    assert ndcg_at_k(scores, labels, sizes, k=10) == pytest.approx((1 / np.log2(3) + 1.0) / 2)
    assert ndcg_at_k(scores, labels, sizes, k=1) == pytest.approx(0.5)
    # a group with no positive is left out of the mean
    assert ndcg_at_k(scores, np.array([0.0, 0, 0, 1, 0]), sizes, k=10) == pytest.approx(1.0)
