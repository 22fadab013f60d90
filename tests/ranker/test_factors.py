"""ALS recovers planted taste; the content map carries collaborative structure to new items."""

from datetime import UTC, datetime

import implicit.gpu
import numpy as np
import polars as pl
import pytest

from ranker.errors import NotFittedError
from ranker.retrieval.content_map import ContentToFactorMap
from ranker.retrieval.covisit import seen_matrix
from ranker.retrieval.factors import ALSFactors

N_BLOCKS, PER_BLOCK = 4, 10
N_USERS = N_ITEMS = N_BLOCKS * PER_BLOCK


def _frame(users, items, weights=None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_idx": np.asarray(users, dtype=np.int64),
            "item_idx": np.asarray(items, dtype=np.int64),
            "ts": [datetime(2024, 1, 1, tzinfo=UTC)] * len(users),
            "weight": np.ones(len(users)) if weights is None else weights,
        },
        schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "ts": pl.Datetime("us", "UTC"), "weight": pl.Float32},
    )


def _blocks():
    """Users in 4 blocks each consume their block's items, except one held-out item per user."""
    users, items, held_out = [], [], []
    for user in range(N_USERS):
        block = user // PER_BLOCK
        hidden = block * PER_BLOCK + user % PER_BLOCK
        held_out.append(hidden)
        for item in range(block * PER_BLOCK, (block + 1) * PER_BLOCK):
            if item != hidden:
                users.append(user)
                items.append(item)
    return _frame(users, items), np.array(held_out)


@pytest.fixture(scope="module")
def fitted():
    train, held_out = _blocks()
    model = ALSFactors(factors=8, iterations=10, seed=3).fit(train, n_users=N_USERS, n_items=N_ITEMS)
    return model, train, held_out


def test_als_ranks_held_out_item_first(fitted):
    model, train, held_out = fitted
    users = np.arange(N_USERS)
    idx, scores = model.recommend(users, 1, exclude=seen_matrix(train, N_USERS, N_ITEMS))
    assert idx.shape == (N_USERS, 1) and idx.dtype == np.int64 and scores.dtype == np.float32
    assert (idx[:, 0] == held_out).mean() >= 0.95


def test_als_excludes_seen_and_pads(fitted):
    model, train, _ = fitted
    seen = seen_matrix(train, N_USERS, N_ITEMS)
    idx, scores = model.recommend(np.array([0, 5]), N_ITEMS, exclude=seen)
    for row, user in enumerate([0, 5]):
        proposed = idx[row][idx[row] >= 0]
        assert len(proposed) == N_ITEMS - seen[user].nnz
        assert not set(proposed) & set(seen[user].indices)
        assert (idx[row][len(proposed):] == -1).all() and np.isneginf(scores[row][len(proposed):]).all()
        assert (np.diff(scores[row][: len(proposed)]) <= 0).all()  # best first


def test_als_score_agrees_with_recommend(fitted):
    model, _, _ = fitted
    idx, scores = model.recommend(np.array([7]), 5, exclude=None)
    np.testing.assert_allclose(model.score(np.full(5, 7), idx[0]), scores[0], rtol=1e-5)


def test_als_is_deterministic_and_round_trips(fitted, tmp_path):
    model, train, _ = fitted
    again = ALSFactors(factors=8, iterations=10, seed=3).fit(train, n_users=N_USERS, n_items=N_ITEMS)
    np.testing.assert_array_equal(model.user_factors_, again.user_factors_)
    np.testing.assert_array_equal(model.item_factors_, again.item_factors_)
    path = tmp_path / "als.npz"
    model.save(path)
    loaded = ALSFactors.load(path)
    assert loaded.factors == 8 and loaded.seed == 3
    np.testing.assert_array_equal(loaded.item_factors_, model.item_factors_)
    np.testing.assert_array_equal(loaded.recommend(np.arange(4), 3)[0], model.recommend(np.arange(4), 3)[0])


def test_als_gives_untouched_items_zero_factors():
    train, _ = _blocks()
    model = ALSFactors(factors=4, iterations=3).fit(train, n_users=N_USERS, n_items=N_ITEMS + 2)
    assert model.warm_item_mask_.tolist() == [True] * N_ITEMS + [False, False]
    assert not model.item_factors_[N_ITEMS:].any()


@pytest.mark.skipif(implicit.gpu.HAS_CUDA and implicit.gpu.HAS_RMM, reason="implicit has a GPU build here")
def test_als_without_a_gpu_build_trains_on_cpu(caplog):
    train, held_out = _blocks()
    model = ALSFactors(factors=8, iterations=10, seed=3, use_gpu=True)
    model.fit(train, n_users=N_USERS, n_items=N_ITEMS)
    assert "training ALS on CPU" in caplog.text
    idx, _ = model.recommend(np.arange(N_USERS), 1, exclude=seen_matrix(train, N_USERS, N_ITEMS))
    assert (idx[:, 0] == held_out).mean() >= 0.95


def test_als_errors_are_clear(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        ALSFactors().recommend(np.array([0]), 3)
    with pytest.raises(ValueError, match="item_idx.*n_items=2"):
        ALSFactors().fit(_frame([0], [4]), n_users=1, n_items=2)
    ContentToFactorMap().fit(np.eye(3), np.eye(3)).save(tmp_path / "map.npz")
    with pytest.raises(ValueError, match="ContentToFactorMap.load"):
        ALSFactors.load(tmp_path / "map.npz")


def _planted_content(seed=0, n_items=400, n_factors=8, n_noise=24):
    """True factors, and content that carries them weakly beside loud noise dimensions."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n_items, n_factors)).astype(np.float32)
    mixing = rng.normal(size=(n_factors, n_factors))
    signal = 0.3 * factors @ mixing
    content = np.hstack([signal, rng.normal(size=(n_items, n_noise))]).astype(np.float32)
    return content, factors


def _neighbour_recall(query: np.ndarray, base: np.ndarray, truth: np.ndarray, k=10) -> float:
    def top(q, b):
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return np.argsort(-(q @ b.T), axis=1)[:, :k]
    true_top = top(truth[0], truth[1])
    got = top(query, base)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, true_top)]))


def test_content_map_beats_raw_content_for_new_items():
    content, true_factors = _planted_content()
    warm = np.arange(len(content)) < 300
    cmap = ContentToFactorMap(kind="ridge", alpha=1.0).fit(content[warm], true_factors[warm])
    observed = np.where(warm[:, None], true_factors, 0.0)  # cold items have no factors yet
    completed = observed.copy()
    completed[~warm] = cmap.predict(content[~warm])
    np.testing.assert_array_equal(completed[warm], true_factors[warm])
    truth = (true_factors[~warm], true_factors[warm])
    mapped = _neighbour_recall(completed[~warm], completed[warm], truth)
    raw = _neighbour_recall(content[~warm], content[warm], truth)
    assert mapped > 0.6 and mapped > raw + 0.25


def test_ridge_fits_an_unpenalised_intercept():
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    y = x @ np.array([[2.0], [-1.0]], dtype=np.float32) + 5.0
    cmap = ContentToFactorMap(alpha=1e-4).fit(x, y)
    np.testing.assert_allclose(cmap.predict(x), y, atol=1e-3)


def _nonlinear(seed=0, n=600):
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, 4)).astype(np.float32)
    y = np.stack([x[:, 0] ** 2, x[:, 1] * x[:, 2], np.abs(x[:, 3])], axis=1)
    return x, y.astype(np.float32)


def test_mlp_map_is_deterministic_and_round_trips(tmp_path):
    x, y = _nonlinear(n=200)
    first = ContentToFactorMap(kind="mlp", hidden=16, epochs=20, seed=4).fit(x, y)
    second = ContentToFactorMap(kind="mlp", hidden=16, epochs=20, seed=4).fit(x, y)
    np.testing.assert_array_equal(first.predict(x), second.predict(x))
    for cmap in (first, ContentToFactorMap(kind="ridge").fit(x, y)):
        cmap.save(tmp_path / "map.npz")
        loaded = ContentToFactorMap.load(tmp_path / "map.npz")
        assert loaded.kind == cmap.kind
        np.testing.assert_array_equal(loaded.predict(x), cmap.predict(x))


def test_content_map_errors_are_clear():
    with pytest.raises(NotFittedError, match="not fitted"):
        ContentToFactorMap().predict(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="options: \\['ridge', 'mlp'\\]"):
        ContentToFactorMap(kind="forest").fit(np.zeros((2, 3)), np.zeros((2, 1)))
    cmap = ContentToFactorMap().fit(np.eye(3), np.eye(3))
    with pytest.raises(ValueError, match="fitted on 3"):
        cmap.predict(np.zeros((1, 5)))
