"""Per-modality normalisation: centre, optional PCA / whitening (fitted once, then frozen), L2.

Pretrained embeddings are anisotropic: all vectors share a large common direction, so raw cosine lets a
few "hub" items sit near everything. Subtracting the catalog mean (fitted on the rows that really have
the modality) removes that direction; whitening also equalises the remaining axes.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import scipy.linalg

from fusion.errors import NormalizerError, NotFittedError

logger = logging.getLogger(__name__)
_NORM_EPS = 1e-12
_COV_CHUNK = 16_384  # rows per float64 piece of the covariance


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, _NORM_EPS)).astype(np.float32, copy=False)


def _present_rows(x: np.ndarray, present: np.ndarray | None) -> np.ndarray:
    if present is None:
        return np.ones(x.shape[0], dtype=bool)
    present = np.asarray(present, dtype=bool)
    if present.shape != (x.shape[0],):
        raise NormalizerError(
            f"present mask has shape {present.shape}; expected ({x.shape[0]},), one flag per row of vectors"
        )
    return present


def _principal_axes(rows: np.ndarray, mean: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The top ``k`` eigenvectors (d, k) and eigenvalues (k,) of the covariance of ``rows`` around ``mean``,
    largest first, with a fixed sign, and the total variance. The covariance is accumulated in float64 over row
    chunks (no float64 copy of all rows), and only the kept axes are computed (LAPACK's subset driver)."""
    n, d = rows.shape
    cov = np.zeros((d, d), dtype=np.float64)
    for start in range(0, n, _COV_CHUNK):
        centred = rows[start:start + _COV_CHUNK].astype(np.float64) - mean
        cov += centred.T @ centred
    cov /= max(n - 1, 1)
    eigvals, eigvecs = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = np.clip(eigvals[order], 0.0, None), eigvecs[:, order]
    # Eigenvector signs are arbitrary; fix them so refits on the same data give the same axes.
    flip = np.sign(eigvecs[np.abs(eigvecs).argmax(axis=0), np.arange(eigvecs.shape[1])])
    return eigvecs * np.where(flip == 0, 1.0, flip), eigvals, float(np.clip(np.trace(cov), 0.0, None))


class BlockNormalizer:
    """Centre (catalog mean of present rows), optionally project to at most ``pca_dim`` principal axes
    and/or whiten, then L2. ``dim_`` is the output width."""

    def __init__(
        self, *, center: bool = True, whiten: bool = False, pca_dim: int | None = None, eps: float = 1e-6
    ) -> None:
        self.center = center
        self.whiten = whiten
        self.pca_dim = pca_dim
        self.eps = eps

    def get_params(self) -> dict:
        return {"center": self.center, "whiten": self.whiten, "pca_dim": self.pca_dim, "eps": self.eps}

    def _check_params(self) -> None:
        if self.pca_dim is not None and not (isinstance(self.pca_dim, int) and self.pca_dim >= 1):
            raise NormalizerError(f"pca_dim={self.pca_dim!r} must be an int >= 1, or None to keep all dims")
        if not self.eps > 0:
            raise NormalizerError(f"eps={self.eps} must be > 0 (it keeps whitening finite on flat axes)")

    def fit(self, vectors: np.ndarray, present: np.ndarray | None = None) -> BlockNormalizer:
        """Fit on the rows flagged in ``present`` (all rows when None)."""
        x = np.asarray(vectors)
        if x.ndim != 2:
            raise NormalizerError(f"vectors have shape {x.shape}; expected a 2-D array (n, dim)")
        self._check_params()
        rows = x[_present_rows(x, present)]  # as given (float32): float64 only per chunk, below
        if rows.shape[0] == 0:
            raise NormalizerError("no present rows to fit on; drop this modality or supply its vectors")
        center = self.center and rows.shape[0] > 1
        if self.center and not center:
            logger.warning("one present row: not centring (it would become a zero vector)")
        self.mean_ = rows.mean(axis=0, dtype=np.float64) if center else np.zeros(x.shape[1])
        self.components_ = None
        self.scale_ = None
        if self.pca_dim is not None or self.whiten:
            # pca_dim is an upper bound: one setting serves modalities of different widths
            k = min(self.pca_dim or x.shape[1], x.shape[1])
            self.components_, variances, total = _principal_axes(rows, self.mean_, k)
            if self.whiten:
                self.scale_ = 1.0 / np.sqrt(variances + self.eps)
            kept = variances.sum() / max(total, _NORM_EPS)
            logger.debug("normaliser keeps %d dims, %.3f of the variance", k, kept)
        self.n_features_in_ = int(x.shape[1])
        self.dim_ = int(self.components_.shape[1]) if self.components_ is not None else self.n_features_in_
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("this BlockNormalizer is not fitted; call fit(vectors, present) or load(path)")

    def transform(self, vectors: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        """float32 (n, dim_): normalised rows; rows not flagged in ``present`` are zeros."""
        self._check_fitted()
        # float32 like the vectors themselves: the output is float32, and float64 copies of a large block
        # doubled the cost of fusing a million items
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise NormalizerError(
                f"vectors have shape {x.shape}; this normaliser was fitted on dim {self.n_features_in_}"
            )
        rows = _present_rows(x, present)
        y = x - self.mean_.astype(np.float32)
        if self.components_ is not None:
            y = y @ self.components_.astype(np.float32)
        if self.scale_ is not None:
            y = y * self.scale_.astype(np.float32)
        out = l2_normalize(y)
        out[~rows] = 0.0
        return out

    def fit_transform(self, vectors: np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
        return self.fit(vectors, present).transform(vectors, present)

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted state as one .npz (no pickle), atomically."""
        self._check_fitted()
        path = Path(path)
        empty = np.zeros((0,), dtype=np.float64)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            params=np.array(json.dumps(self.get_params())),
            mean=self.mean_,
            components=self.components_ if self.components_ is not None else empty,
            scale=self.scale_ if self.scale_ is not None else empty,
            n_features_in=np.array(self.n_features_in_),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BlockNormalizer:
        with np.load(Path(path), allow_pickle=False) as data:
            norm = cls(**json.loads(str(data["params"])))
            norm.mean_ = data["mean"]
            norm.components_ = data["components"] if data["components"].size else None
            norm.scale_ = data["scale"] if data["scale"].size else None
            norm.n_features_in_ = int(data["n_features_in"])
        norm.dim_ = int(norm.components_.shape[1]) if norm.components_ is not None else norm.n_features_in_
        return norm
