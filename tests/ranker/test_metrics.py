"""Top-k metrics against hand-computed small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ranker.evaluation.metrics import MetricsError, evaluate_topk, paired_difference

L3 = 1 / math.log2(3)  # DCG discount of rank 2 = 0.63093; rank 1 -> 1, rank 3 -> 1/log2(4) = 0.5

# 10 items; K = 3. User 2 has no relevant item and must be left out.
TOPK = np.array(
    [
        [3, 1, -1],  # user 0: padded list
        [2, 4, 2],  # user 1: item 2 repeated; the repeat must not count twice
        [0, 1, 2],  # user 2: no relevant items
        [7, 8, 9],  # user 3
    ]
)
RELEVANT = [np.array([1, 5]), np.array([2]), np.array([], dtype=np.int64), np.array([9, 8, 0, 6])]


def _evaluate(**kwargs):
    return evaluate_topk(TOPK, RELEVANT, ks=(1, 3), n_items=10, **kwargs)


def test_accuracy_metrics_hand_computed():
    result = _evaluate()
    np.testing.assert_array_equal(result.user_pos, [0, 1, 3])
    m = result.per_user
    # user 0: hit at rank 2 only; |R| = 2
    #   recall = 1/2; NDCG = L3 / (1 + L3); AP = (1/2) / min(3, 2) = 0.25
    # user 1: hit at rank 1, repeat at rank 3 ignored; |R| = 1
    #   recall = 1; NDCG = 1 / 1; AP = 1 / 1
    # user 3: hits at ranks 2 and 3; |R| = 4
    #   recall = 2/4; NDCG = (L3 + 0.5) / (1 + L3 + 0.5); AP = (1/2 + 2/3) / min(3, 4) = 0.388889
    np.testing.assert_allclose(m["recall@3"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(m["ndcg@3"], [L3 / (1 + L3), 1.0, (L3 + 0.5) / (1.5 + L3)])
    np.testing.assert_allclose(m["map@3"], [0.25, 1.0, (0.5 + 2 / 3) / 3])
    np.testing.assert_allclose(m["hitrate@3"], [1.0, 1.0, 1.0])
    # @1: only user 1 has its first item relevant
    for name in ("recall@1", "ndcg@1", "map@1", "hitrate@1"):
        np.testing.assert_allclose(m[name], [0.0, 1.0, 0.0])


def test_summary_means_stderr_and_coverage():
    summary = _evaluate().summary()
    assert summary["n_users"] == 3
    # recall@3 = [0.5, 1, 0.5]: mean 2/3; std (ddof 1) = sqrt((2 * (1/6)^2 + (1/3)^2) / 2) = sqrt(1/12)
    assert summary["recall@3"] == pytest.approx(2 / 3)
    assert summary["recall@3_stderr"] == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    # coverage over evaluated users 0, 1, 3: @3 {3, 1, 2, 4, 7, 8, 9} = 7/10; @1 {3, 2, 7} = 3/10
    assert summary["coverage@3"] == pytest.approx(0.7)
    assert summary["coverage@1"] == pytest.approx(0.3)


def test_novelty_and_diversity_hand_computed():
    # train counts; item 3 unseen (floored to 1) -> floored total = 1+4+2+1+1+1+1+1+2+2 = 16
    popularity = np.array([1, 4, 2, 0, 1, 1, 1, 1, 2, 2])
    vectors = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [2, 0], [1, 0], [1, 0], [1, 0], [0, 3], [-1, 0]], float)
    m = _evaluate(item_popularity=popularity, item_vectors=vectors).per_user
    # novelty@3: user 0 items {3, 1}: (-log2(1/16) - log2(4/16)) / 2 = (4 + 2) / 2 = 3
    #            user 1 items {2, 4}: (3 + 4) / 2 = 3.5;  user 3 items {7, 8, 9}: (4 + 3 + 3) / 3
    np.testing.assert_allclose(m["novelty@3"], [3.0, 3.5, 10 / 3])
    # diversity@3 (1 - cosine): user 0: items 3 ⟂ 1 -> 1; user 1: items 2, 4 parallel -> 0
    #   user 3: (7,8) -> 1, (7,9) -> 2, (8,9) -> 1: mean 4/3
    np.testing.assert_allclose(m["diversity@3"], [1.0, 0.0, 4 / 3], atol=1e-6)
    # @1 a list of one item has no pair: NaN, and the summary mean skips it
    assert np.isnan(m["diversity@1"]).all()
    np.testing.assert_allclose(m["novelty@1"], [4.0, 3.0, 4.0])


def test_cold_slice_restricts_relevance_to_cold_items():
    result = _evaluate(cold_items=np.array([5, 8]))
    cold = result.cold
    # users with a relevant cold item: user 0 ({5}) and user 3 ({8}); user 1 has none
    np.testing.assert_array_equal(cold.user_pos, [0, 3])
    # user 0: 5 not in [3, 1, -1] -> 0; user 3: 8 at rank 2 -> recall 1, NDCG L3 / 1, AP (1/2) / 1
    np.testing.assert_allclose(cold.per_user["recall@3"], [0.0, 1.0])
    np.testing.assert_allclose(cold.per_user["ndcg@3"], [0.0, L3])
    np.testing.assert_allclose(cold.per_user["map@3"], [0.0, 0.5])
    summary = result.summary()
    assert summary["cold/n_users"] == 2
    assert summary["cold/recall@3"] == pytest.approx(0.5)
    # cold items shown to any evaluated user @3: {8} of {5, 8}
    assert summary["cold/coverage@3"] == pytest.approx(0.5)


def test_paired_difference_hand_computed():
    # differences [0.25, 0.5, 0]: mean 0.25; std (ddof 1) = sqrt((0 + 0.0625 + 0.0625) / 2) = 0.25
    mean, stderr = paired_difference(np.array([0.5, 1.0, 0.5]), np.array([0.25, 0.5, 0.5]))
    assert mean == pytest.approx(0.25)
    assert stderr == pytest.approx(0.25 / math.sqrt(3))
    with pytest.raises(MetricsError, match=r"shapes \(3,\) and \(2,\)"):
        paired_difference(np.zeros(3), np.zeros(2))


def test_bad_inputs_name_the_fix():
    with pytest.raises(MetricsError, match=r"ks=\(10,\) must lie in \[1, K=3\]"):
        evaluate_topk(TOPK, RELEVANT, ks=(10,), n_items=10)
    with pytest.raises(MetricsError, match="3 relevant sets for 4 topk rows"):
        evaluate_topk(TOPK, RELEVANT[:3], ks=(3,), n_items=10)
    with pytest.raises(MetricsError, match=r"outside \[-1, n_items=5\)"):
        evaluate_topk(TOPK, RELEVANT, ks=(3,), n_items=5)
    with pytest.raises(MetricsError, match="no user has a relevant item"):
        evaluate_topk(TOPK, [np.array([], dtype=np.int64)] * 4, ks=(3,), n_items=10)


def test_padding_never_matches_a_relevant_item():
    # -1 padding in row 1 must not hit; (a naive key user * n_items + item maps it onto row 0's item 9)
    result = evaluate_topk(np.array([[9, -1], [-1, -1]]), [np.array([9]), np.array([5])], ks=(2,), n_items=10)
    np.testing.assert_allclose(result.per_user["recall@2"], [1.0, 0.0])
    np.testing.assert_allclose(result.per_user["ndcg@2"], [1.0, 0.0])
    assert result.summary()["coverage@2"] == pytest.approx(0.1)
