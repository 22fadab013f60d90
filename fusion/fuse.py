"""One interface over the fusion methods: ``make_fusion(method, **params)`` and ``load_fusion(dir)``.

Every method has ``fit(blocks, *, pairs=None, targets=None) -> self``, ``transform(blocks) -> float32
(n, dim_)`` with unit rows (zeros for an item with no modality), ``save(dir)`` and ``load(dir)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fusion.base import FusionBase, read_config
from fusion.concat import SEED_WEIGHTS, ConcatFusion
from fusion.errors import FusionInputError, UnknownFusionError
from fusion.gated import GatedFusion
from fusion.weighted import WeightedFusion

FUSION_METHODS: dict[str, type[FusionBase]] = {
    "concat": ConcatFusion,
    "weighted": WeightedFusion,
    "gated": GatedFusion,
}

__all__ = [
    "FUSION_METHODS", "SEED_WEIGHTS", "ConcatFusion", "GatedFusion", "WeightedFusion", "load_fusion", "make_fusion",
]  # fmt: skip


def _method_class(method: str) -> type[FusionBase]:
    if method not in FUSION_METHODS:
        raise UnknownFusionError(
            f"unknown fusion method {method!r}; valid methods are {sorted(FUSION_METHODS)}"
        )
    return FUSION_METHODS[method]


def make_fusion(method: str, **params) -> FusionBase:
    """An unfitted fusion of ``method`` ('concat', 'weighted' or 'gated') built with ``params``."""
    cls = _method_class(method)
    try:
        return cls(**params)
    except TypeError as exc:
        raise FusionInputError(
            f"bad parameters {sorted(params)} for fusion method {method!r}: {exc}; see {cls.__name__}'s signature"
        ) from exc


def load_fusion(directory: str | os.PathLike) -> FusionBase:
    """Load a saved fusion of any method (the method is read from its fusion.json)."""
    method = read_config(Path(directory))["method"]
    return _method_class(method).load(directory)
