"""The fused item space: per-modality vectors aligned to the catalog, fused by the configured method, indexed.

Gated fusion learns from interactions (co-consumed pairs or ALS factors), so it is fitted on the history it
is given; concat and weighted fusion only need the vectors and the modality weights.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from fusion.align import AlignedBlocks, align_modalities
from fusion.fuse import FUSION_METHODS, make_fusion
from fusion.pairs import cooccurrence_pairs
from pipelines.model.config import TrainConfig
from ranker.retrieval.factors import ALSFactors
from ranker.retrieval.index import ItemIndex, recall_against_exact

log = logging.getLogger(__name__)


@dataclass
class ItemSpace:
    """Fused vectors of every catalog item, its normalised per-modality blocks, and the FAISS index."""

    item_ids: np.ndarray
    aligned: AlignedBlocks  # per-modality blocks, normalised by the fusion's own fitted normalisers
    fused: np.ndarray
    fusion: object
    index: ItemIndex | None
    index_recall_at_10: float | None = None  # against exact search, when the index is approximate

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_vectors(self) -> dict[str, np.ndarray]:
        """"fused" and each modality's normalised block (zero rows where an item lacks it)."""
        return {"fused": self.fused, **{m: self.aligned.blocks[m] for m in self.aligned.modalities}}


def _fusion_params(cfg: TrainConfig, modalities: tuple[str, ...], weights: dict | None) -> dict:
    """The [train.fusion] settings the configured method's constructor takes (the others do not apply to it)."""
    f = cfg.fusion
    offered = {"weights": {m: w for m, w in (weights or f.weights).items() if m in modalities}, "whiten": f.whiten,
               "pca_dim": f.pca_dim, "dim": f.dim, "epochs": f.epochs, "seed": cfg.seed}
    accepted = inspect.signature(FUSION_METHODS[f.method].__init__).parameters
    return {name: value for name, value in offered.items() if name in accepted}


def _learning_inputs(learns_from: frozenset[str], interactions: pl.DataFrame, n_items: int,
                     cfg: TrainConfig) -> dict:
    """What a learned fusion fits on, from ``interactions`` only: co-consumed pairs, or ALS item factors as
    targets (items without interactions have none: NaN rows), as `fusion.target` says and the method accepts."""
    if not learns_from:
        return {}
    target = cfg.fusion.gated_target
    if target == "factors" and "targets" in learns_from:
        als = ALSFactors(seed=cfg.seed).fit(interactions, n_users=int(interactions["user_idx"].max()) + 1,
                                            n_items=n_items)
        targets = als.item_factors_.copy()
        targets[~als.warm_item_mask_] = np.nan
        return {"targets": targets}
    if "pairs" not in learns_from:
        raise ValueError(f"fusion method {cfg.fusion.method!r} learns from {sorted(learns_from)}, not {target!r}")
    return {"pairs": cooccurrence_pairs(interactions["user_idx"].to_numpy(), interactions["item_idx"].to_numpy(),
                                        max_pairs=50_000, seed=cfg.seed)}


def build_space(item_ids: np.ndarray, tables: dict, interactions: pl.DataFrame, cfg: TrainConfig, *,
                weights: dict | None = None, with_index: bool = True) -> ItemSpace:
    """Fit the configured fusion (a learned one on ``interactions`` only); ``weights`` override the configured
    ones."""
    raw = align_modalities(list(item_ids), tables)
    fusion = make_fusion(cfg.fusion.method, **_fusion_params(cfg, raw.modalities, weights))
    fit_args = _learning_inputs(fusion.learns_from, interactions, len(item_ids), cfg)
    fused = fusion.fit(raw, **fit_args).transform(raw)
    blocks = {m: fusion.normalizers_[m].transform(raw.blocks[m], raw.present(m)) for m in raw.modalities}
    aligned = AlignedBlocks(raw.item_ids, raw.modalities, blocks, raw.mask)
    if not with_index:
        return ItemSpace(item_ids, aligned, fused, fusion, None)
    index = ItemIndex.build(fused, kind="auto", seed=cfg.seed)
    recall = None
    if index.kind != "flat":  # an approximate index reports what it costs in recall
        sample = np.random.default_rng(cfg.seed).choice(len(fused), min(500, len(fused)), replace=False)
        recall = recall_against_exact(index, fused, fused[sample], 10)
        log.info("%s index recall@10 against exact search: %.4f", index.kind, recall)
    return ItemSpace(item_ids, aligned, fused, fusion, index, recall)
