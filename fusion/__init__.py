"""Fusion core: align per-modality embeddings on items, normalise them, fuse them into one vector per item.

Pure numpy (+ torch for the learned gated method); no paths chosen here, the only IO is save/load.
"""

from fusion.align import AlignedBlocks, align_modalities
from fusion.concat import SEED_WEIGHTS, ConcatFusion
from fusion.errors import (
    AlignmentError,
    DuplicateItemError,
    FusionError,
    FusionInputError,
    NormalizerError,
    NotFittedError,
    UnknownFusionError,
)
from fusion.fuse import FUSION_METHODS, load_fusion, make_fusion
from fusion.gated import GatedFusion
from fusion.normalize import BlockNormalizer, l2_normalize
from fusion.pairs import cooccurrence_pairs
from fusion.weighted import WeightedFusion

__all__ = [
    "FUSION_METHODS",
    "SEED_WEIGHTS",
    "AlignedBlocks",
    "AlignmentError",
    "BlockNormalizer",
    "ConcatFusion",
    "DuplicateItemError",
    "FusionError",
    "FusionInputError",
    "GatedFusion",
    "NormalizerError",
    "NotFittedError",
    "UnknownFusionError",
    "WeightedFusion",
    "align_modalities",
    "cooccurrence_pairs",
    "l2_normalize",
    "load_fusion",
    "make_fusion",
]
