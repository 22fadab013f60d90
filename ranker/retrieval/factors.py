"""Collaborative factors from implicit-feedback ALS (the `implicit` library).

Warm users are won by collaborative signal: ALS learns user and item factors from interactions. New items get
their factor rows from content through :mod:`ranker.retrieval.content_map`.
"""

from __future__ import annotations

import logging
import os

import implicit.cpu.als
import implicit.gpu
import numpy as np
import polars as pl
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ranker.errors import NotFittedError
from ranker.npz import constructor_params, load_npz, save_npz
from ranker.retrieval.covisit import interaction_arrays
from ranker.topk import check_exclude, check_k, dense_topk, empty_topk

__all__ = ["ALSFactors", "NotFittedError"]

log = logging.getLogger(__name__)

_SCORE_BLOCK_CELLS = 1 << 22  # users x items scored at once in recommend (16 MiB of float32)


def _checked_index(values: np.ndarray, size: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64).ravel()
    if len(values) and (values.min() < 0 or values.max() >= size):
        raise ValueError(f"{name} must lie in [0, {size}); got [{values.min()}, {values.max()}]")
    return values


class ALSFactors:
    """Implicit-feedback ALS (Hu, Koren & Volinsky) via the ``implicit`` library.

    Confidence of a (user, item) pair is ``1 + alpha * value``: the summed weights (``fit``) or a mapped
    feedback value (``fit_matrix``, see :mod:`ranker.retrieval.feedback`).
    Users and items without interactions get zero factors (no signal), and
    ``warm_item_mask_`` marks the items that had some.
    """

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 20.0,
        seed: int = 0,
        use_gpu: bool = False,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.seed = seed
        self.use_gpu = use_gpu
        self.num_threads = num_threads

    def _params(self) -> dict:
        return constructor_params(self)

    def _new_model(self):
        # the GPU build (CUDA extension + RMM) is optional; the CPU one always ships
        if self.use_gpu and implicit.gpu.HAS_CUDA and implicit.gpu.HAS_RMM:
            from implicit.gpu.als import AlternatingLeastSquares

            return AlternatingLeastSquares(
                factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                iterations=self.iterations, random_state=self.seed,
            )
        if self.use_gpu:
            log.warning("use_gpu=True but implicit has no CUDA build (or RMM) here; training ALS on CPU")
        return implicit.cpu.als.AlternatingLeastSquares(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha,
            iterations=self.iterations, random_state=self.seed, num_threads=self.num_threads,
        )

    def fit(self, interactions: pl.DataFrame, *, n_users: int, n_items: int) -> ALSFactors:
        """Fit on raw interactions: a pair's value is its summed weight."""
        users, items, _, weights = interaction_arrays(interactions, n_users=n_users, n_items=n_items)
        if len(users) == 0:
            raise ValueError("ALSFactors.fit got no interactions; it needs at least one (user, item) pair")
        values = sp.csr_matrix((weights, (users, items)), shape=(n_users, n_items), dtype=np.float32)
        values.sum_duplicates()
        return self.fit_matrix(values)

    def fit_matrix(self, values: sp.csr_matrix) -> ALSFactors:
        """Fit on a users x items CSR of feedback values; a pair's confidence is 1 + alpha * value."""
        confidence = sp.csr_matrix(values, dtype=np.float32)
        confidence.eliminate_zeros()
        if confidence.nnz == 0:
            raise ValueError("ALSFactors.fit got no interactions; it needs at least one (user, item) pair")
        n_users, n_items = confidence.shape
        # one BLAS thread (implicit is imported above, so its OpenBLAS is loaded and limited too):
        # implicit warns otherwise, and it keeps the float sums in a fixed order
        with threadpool_limits(limits=1, user_api="blas"):
            model = self._new_model()
            model.fit(confidence, show_progress=False)
        if hasattr(model, "to_cpu"):
            model = model.to_cpu()
        user_factors = np.asarray(model.user_factors, dtype=np.float32)[:, : self.factors]
        item_factors = np.asarray(model.item_factors, dtype=np.float32)[:, : self.factors]
        warm_users = np.diff(confidence.indptr) > 0
        warm_items = np.diff(confidence.tocsc().indptr) > 0
        user_factors[~warm_users] = 0.0  # random init that saw no data is noise, not taste
        item_factors[~warm_items] = 0.0
        self.user_factors_ = np.ascontiguousarray(user_factors)
        self.item_factors_ = np.ascontiguousarray(item_factors)
        self.warm_item_mask_ = warm_items
        log.info(
            "ALS fitted: %d users, %d items (%d warm), %d factors",
            n_users, n_items, int(warm_items.sum()), self.factors,
        )
        return self

    def _check_fitted(self, action: str) -> None:
        if not hasattr(self, "item_factors_"):
            raise NotFittedError(f"ALSFactors is not fitted; call fit(...) or ALSFactors.load(path) before {action}")

    def recommend(
        self, user_idx: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items by ``user_factors @ item_factors.T``, excluded items dropped."""
        self._check_fitted("recommend")
        check_k(k)
        n_users, n_items = self.user_factors_.shape[0], self.item_factors_.shape[0]
        user_idx = _checked_index(user_idx, n_users, "user_idx")
        check_exclude(exclude, user_idx, n_items)
        idx, top = empty_topk(len(user_idx), k)
        block = max(1, _SCORE_BLOCK_CELLS // max(n_items, 1))
        for start in range(0, len(user_idx), block):
            users = user_idx[start : start + block]
            scores = self.user_factors_[users] @ self.item_factors_.T
            rows = slice(start, start + len(users))
            idx[rows], top[rows] = dense_topk(scores, k, exclude_rows=None if exclude is None else exclude[users])
        return idx, top

    def score(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        """ALS score of arbitrary (user, item) pairs, float32 (n_pairs,)."""
        self._check_fitted("score")
        user_idx = _checked_index(user_idx, self.user_factors_.shape[0], "user_idx")
        item_idx = _checked_index(item_idx, self.item_factors_.shape[0], "item_idx")
        if item_idx.shape != user_idx.shape:
            raise ValueError(f"user_idx {user_idx.shape} and item_idx {item_idx.shape} must have equal shapes")
        return np.einsum("ij,ij->i", self.user_factors_[user_idx], self.item_factors_[item_idx])

    def save(self, path: str | os.PathLike) -> None:
        self._check_fitted("save")
        arrays = {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                  "warm_item_mask": self.warm_item_mask_}
        save_npz(path, {"class": "ALSFactors", "params": self._params()}, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ALSFactors:
        meta, arrays = load_npz(path, "ALSFactors")
        model = cls(**meta["params"])
        model.user_factors_ = arrays["user_factors"].astype(np.float32)
        model.item_factors_ = arrays["item_factors"].astype(np.float32)
        model.warm_item_mask_ = arrays["warm_item_mask"].astype(bool)
        return model
