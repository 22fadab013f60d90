"""Weighted sum of per-modality vectors projected to one common dimension.

Each modality is centred, reduced by its own PCA to ``dim`` (zero-padded when the modality has fewer
dims) and L2-normalised; the fused row is the weighted sum over the modalities the item has, L2 again.
The PCA axes of different modalities are unrelated, so this is a cheap baseline next to GatedFusion,
which learns the projections.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fusion.align import AlignedBlocks
from fusion.base import FusionBase
from fusion.concat import resolve_weights
from fusion.errors import FusionInputError
from fusion.normalize import BlockNormalizer, l2_normalize


class WeightedFusion(FusionBase):
    """Per-modality PCA to ``dim`` + weighted sum over present modalities, renormalised."""

    method = "weighted"
    takes_weights = True

    def __init__(
        self, *, dim: int = 64, weights: Mapping[str, float] | None = None, center: bool = True, whiten: bool = False
    ) -> None:
        self.dim = dim
        self.weights = weights
        self.center = center
        self.whiten = whiten

    def get_params(self) -> dict:
        weights = None if self.weights is None else {m: float(w) for m, w in self.weights.items()}
        return {"dim": self.dim, "weights": weights, "center": self.center, "whiten": self.whiten}

    def _make_normalizer(self, modality: str, input_dim: int) -> BlockNormalizer:
        return BlockNormalizer(center=self.center, whiten=self.whiten, pca_dim=min(self.dim, input_dim))

    def fit(
        self, blocks: AlignedBlocks, *, pairs: np.ndarray | None = None, targets: np.ndarray | None = None
    ) -> WeightedFusion:
        """Fit per-modality PCA; ``pairs`` / ``targets`` are accepted and unused."""
        self._check_params()
        resolve_weights(self.weights, tuple(blocks.modalities))  # bad weights fail before any fitting
        self._fit_normalizers(blocks)
        return self._complete_fit()

    def _check_params(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise FusionInputError(f"dim={self.dim!r} must be a positive int, e.g. 64")

    def _complete_fit(self) -> WeightedFusion:
        self.weights_ = resolve_weights(self.weights, self.modalities_)
        self.dim_ = self.dim
        return self

    def fuse(self, normed: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        fused = np.zeros((mask.shape[0], self.dim_), dtype=np.float32)
        for name in self.modalities_:
            block = normed[name]  # missing rows are already zeros, so they add nothing
            fused[:, : block.shape[1]] += np.float32(self.weights_[name]) * block
        return l2_normalize(fused)

    def _load_state(self, directory) -> None:
        self.weights_ = resolve_weights(self.weights, self.modalities_)
