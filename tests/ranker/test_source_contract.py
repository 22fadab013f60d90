"""The contract every registered candidate source keeps (parametrized over the registry, so a new source is
tested by being registered): fit, score blocks of the right shape, top-k that respects exclusions, a state
that saves and restores to the same scores, determinism, and a named error when used unfitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from ranker.errors import NotFittedError, RankerError
from ranker.retrieval.feedback import Feedback
from ranker.retrieval.sources import SOURCES, HistoryContext, check_source_params, make_source

N_USERS, N_ITEMS = 30, 40
SMALL = {"ease": {"l2": 10.0, "min_item_users": 1}, "als": {"factors": 4, "iterations": 3}}


def _context(seed: int = 0) -> HistoryContext:
    rng = np.random.default_rng(seed)
    n = 300
    now = datetime(2024, 6, 1, tzinfo=UTC)
    log = pl.DataFrame({"user_idx": rng.integers(0, N_USERS, n), "item_idx": rng.integers(0, N_ITEMS - 3, n),
                        "ts": [now - timedelta(days=float(d)) for d in rng.uniform(0, 30, n)],
                        "weight": np.ones(n, dtype=np.float32)},
                       schema={"user_idx": pl.Int64, "item_idx": pl.Int64, "ts": pl.Datetime("us", "UTC"),
                               "weight": pl.Float32})
    vectors = rng.normal(size=(N_ITEMS, 6)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    feedback = Feedback.from_interactions(log, "count", N_USERS)
    return HistoryContext(log, feedback, N_USERS, N_ITEMS, {"fused": vectors, "text": vectors}, half_life=2.0)


@pytest.fixture(params=sorted(SOURCES))
def name(request) -> str:
    return request.param


def test_fit_then_score_gives_a_finite_block_per_user_and_item(name):
    users = np.array([0, 3, 7, 29])
    blocks = make_source(name, SMALL.get(name)).fit(_context()).score(users)
    assert blocks, f"source {name!r} returned no block"
    for block, scores in blocks.items():
        assert scores.shape == (len(users), N_ITEMS) and np.isfinite(scores).all(), block


def test_topk_is_sorted_and_respects_exclusions(name):
    source = make_source(name, SMALL.get(name)).fit(_context())
    users = np.array([1, 2])
    exclude = sp.csr_matrix((np.ones(2), ([1, 2], [5, 6])), shape=(N_USERS, N_ITEMS))
    idx, scores = source.topk(users, 5, exclude=exclude)
    assert idx.shape == scores.shape == (2, 5)
    assert 5 not in idx[0] and 6 not in idx[1]
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_state_round_trip_restores_the_same_scores(name):
    ctx = _context()
    fitted = make_source(name, SMALL.get(name)).fit(ctx)
    state = fitted.state()
    assert all(isinstance(v, np.ndarray) for v in state.values()), "state must be arrays (saved without pickle)"
    restored = make_source(name, SMALL.get(name)).restore(ctx, {k: np.array(v) for k, v in state.items()})
    users = np.arange(N_USERS)
    expected, got = fitted.score(users), restored.score(users)
    assert expected.keys() == got.keys()
    for block in expected:
        np.testing.assert_allclose(got[block], expected[block], rtol=1e-6, atol=1e-7, err_msg=block)


def test_fit_is_deterministic(name):
    users = np.arange(N_USERS)
    first = make_source(name, SMALL.get(name)).fit(_context()).score(users)
    second = make_source(name, SMALL.get(name)).fit(_context()).score(users)
    for block in first:
        np.testing.assert_allclose(second[block], first[block], rtol=1e-5, atol=1e-6, err_msg=block)


def test_scoring_before_fit_is_a_named_error(name):
    with pytest.raises(NotFittedError, match=rf"source {name!r} is not fitted"):
        make_source(name, SMALL.get(name)).score(np.array([0]))


def test_unknown_sources_and_arguments_are_refused_by_name():
    with pytest.raises(RankerError, match=r"source 'nope' is unknown; registered: \["):
        make_source("nope")
    with pytest.raises(RankerError, match=r"source 'knn': unknown argument\(s\) \['neighbours'\]; it takes"):
        check_source_params("knn", {"neighbours": 5})
