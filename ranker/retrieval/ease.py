"""EASE (Steck, 2019): a closed-form linear item-item model, often the strongest single model on ratings data.

B = I - P / diag(P) with P = (XᵀX + l2·I)⁻¹ and a zero diagonal; a user's scores are x_u · B. The inverse is
O(m³) in the number of items m, so EASE runs over the items with at least ``min_item_users`` users, at most
the ``max_items`` most popular of them (the rest score 0: they are left to the other sources).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ranker.errors import NotFittedError
from ranker.npz import constructor_params, load_npz, save_npz

log = logging.getLogger(__name__)


class EASE:
    """Keyword-only parameters; ``fit(matrix)`` on a users x items CSR of feedback values; ``score(rows)``."""

    def __init__(self, *, l2: float = 200.0, min_item_users: int = 3, max_items: int = 8000,
                 threads: int | None = None) -> None:
        self.l2 = l2
        self.min_item_users = min_item_users
        self.max_items = max_items
        self.threads = threads

    def fit(self, matrix: sp.csr_matrix) -> EASE:
        if not self.l2 > 0:
            raise ValueError(f"l2={self.l2!r} must be > 0")
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        users = np.asarray((matrix != 0).sum(axis=0)).ravel()
        eligible = np.flatnonzero(users >= self.min_item_users)
        if eligible.size > self.max_items:
            order = np.lexsort((eligible, -users[eligible]))
            log.info("EASE over the %d most popular of %d eligible items (train.ease.max_items)",
                     self.max_items, eligible.size)
            eligible = np.sort(eligible[order[: self.max_items]])
        self.n_items_ = matrix.shape[1]
        self.items_ = eligible.astype(np.int64)
        sub = matrix[:, self.items_]
        with threadpool_limits(self.threads):
            gram = (sub.T @ sub).toarray().astype(np.float64)
            gram[np.diag_indices_from(gram)] += self.l2
            inverse = np.linalg.inv(gram) if len(gram) else gram
        del gram
        inverse /= -np.diag(inverse)  # in place: the items x items matrices are the biggest arrays of a run
        np.fill_diagonal(inverse, 0.0)
        self.weights_ = inverse.astype(np.float32)
        return self

    def score(self, rows: sp.csr_matrix) -> np.ndarray:
        """Dense (n, n_items) float32 scores of users given by their feedback rows (n, n_items)."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("EASE is not fitted; call fit(matrix) or EASE.load(path) first")
        out = np.zeros((rows.shape[0], self.n_items_), dtype=np.float32)
        if self.items_.size:
            out[:, self.items_] = np.asarray(rows[:, self.items_] @ self.weights_)
        return out

    def save(self, path: str | os.PathLike) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError("EASE is not fitted; nothing to save")
        save_npz(path, {"class": "EASE", "params": constructor_params(self), "n_items": self.n_items_},
                 {"items": self.items_, "weights": self.weights_})

    @classmethod
    def load(cls, path: str | os.PathLike) -> EASE:
        meta, arrays = load_npz(path, "EASE")
        model = cls(**meta["params"])
        model.n_items_, model.items_, model.weights_ = meta["n_items"], arrays["items"], arrays["weights"]
        return model
