"""Weighted concatenation of the normalised per-modality blocks.

Each unit-norm block is scaled by sqrt(w_m), so the inner product of two fused rows is the weighted sum
of per-modality cosines, divided by the rows' norms sqrt(sum of present weights); with every modality
present and weights summing to 1 it is exactly sum_m w_m cos_m. A missing block contributes zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fusion.align import AlignedBlocks
from fusion.base import FusionBase, check_weights
from fusion.normalize import BlockNormalizer, l2_normalize

# The article's seed weights; used as given for the modalities the catalog has.
SEED_WEIGHTS = {"text": 0.2, "image": 0.3, "audio": 0.2, "video": 0.3}


def resolve_weights(weights: Mapping[str, float] | None, modalities: tuple[str, ...]) -> dict[str, float]:
    """The given weights for ``modalities``, or equal weights when None."""
    if weights is None:
        return {m: 1.0 / len(modalities) for m in modalities}
    return check_weights(weights, modalities)


class ConcatFusion(FusionBase):
    """sqrt(w_m)-scaled concatenation of centred (optionally PCA'd / whitened) L2 blocks, then L2."""

    method = "concat"
    takes_weights = True

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        center: bool = True,
        whiten: bool = False,
        pca_dim: int | None = None,
    ) -> None:
        self.weights = weights
        self.center = center
        self.whiten = whiten
        self.pca_dim = pca_dim

    def get_params(self) -> dict:
        weights = None if self.weights is None else {m: float(w) for m, w in self.weights.items()}
        return {"weights": weights, "center": self.center, "whiten": self.whiten, "pca_dim": self.pca_dim}

    def _make_normalizer(self, modality: str, input_dim: int) -> BlockNormalizer:
        return BlockNormalizer(center=self.center, whiten=self.whiten, pca_dim=self.pca_dim)

    def _active(self) -> list[str]:
        return [m for m in self.modalities_ if self.weights_[m] > 0]

    def fit(
        self, blocks: AlignedBlocks, *, pairs: np.ndarray | None = None, targets: np.ndarray | None = None
    ) -> ConcatFusion:
        """Fit the per-modality normalisers; ``pairs`` / ``targets`` are accepted and unused."""
        resolve_weights(self.weights, tuple(blocks.modalities))  # bad weights fail before any fitting
        self._fit_normalizers(blocks)
        return self._complete_fit()

    def _complete_fit(self) -> ConcatFusion:
        self.weights_ = resolve_weights(self.weights, self.modalities_)
        self.dim_ = sum(self.normalizers_[m].dim_ for m in self._active())
        return self

    def fuse(self, normed: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        parts = [np.sqrt(self.weights_[m]) * normed[m] for m in self._active()]
        return l2_normalize(np.concatenate(parts, axis=1).astype(np.float32))

    def _load_state(self, directory) -> None:
        self.weights_ = resolve_weights(self.weights, self.modalities_)
