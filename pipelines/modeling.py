"""Composition of the cores for one training protocol: the fused item space, the state of a history, candidates
from every source, ranker features, and top-k from ranker scores.

Everything a feature uses is computed from `history` only (interactions before that protocol's cutoff).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import scipy.sparse as sp

from fusion.align import AlignedBlocks, align_modalities
from fusion.fuse import make_fusion
from fusion.pairs import cooccurrence_pairs
from pipelines.train_config import TrainConfig
from ranker.candidates import user_profiles
from ranker.covisit import covisitation_matrix, seen_matrix
from ranker.content_map import ContentToFactorMap, complete_item_factors, select_content_map
from ranker.factors import ALSFactors
from ranker.index import ItemIndex, recall_against_exact

log = logging.getLogger(__name__)


@dataclass
class ItemSpace:
    """Fused vectors of every catalog item, its normalised per-modality blocks, and the FAISS index."""

    item_ids: np.ndarray
    aligned: AlignedBlocks  # per-modality blocks, normalised by the fusion's own fitted normalisers
    fused: np.ndarray
    fusion: object
    index: ItemIndex
    index_recall_at_10: float | None  # against exact search, when the index is approximate

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _fusion_params(cfg: TrainConfig, modalities: tuple[str, ...]) -> dict:
    f = cfg.fusion
    weights = {m: w for m, w in f.weights.items() if m in modalities}
    if f.method == "concat":
        return {"weights": weights, "whiten": f.whiten, "pca_dim": f.pca_dim}
    if f.method == "weighted":
        return {"weights": weights, "dim": f.dim, "whiten": f.whiten}
    return {"dim": f.dim, "epochs": f.epochs, "seed": cfg.seed}


def _factor_targets(interactions: pl.DataFrame, n_items: int, cfg: TrainConfig) -> dict:
    """ALS item factors as the gated fusion's target; items without interactions have none (NaN rows)."""
    als = _make_als(cfg).fit(interactions, n_users=int(interactions["user_idx"].max()) + 1, n_items=n_items)
    targets = als.item_factors_.copy()
    targets[~als.warm_item_mask_] = np.nan
    return {"targets": targets}


def _make_als(cfg: TrainConfig) -> ALSFactors:
    return ALSFactors(factors=cfg.als.factors, regularization=cfg.als.regularization,
                      iterations=cfg.als.iterations, alpha=cfg.als.alpha, seed=cfg.seed)


def build_space(item_ids: np.ndarray, tables: dict, fit_interactions: pl.DataFrame, cfg: TrainConfig) -> ItemSpace:
    """Fit the configured fusion (the gated one on co-consumed pairs of `fit_interactions` only)."""
    raw = align_modalities(list(item_ids), tables)
    fusion = make_fusion(cfg.fusion.method, **_fusion_params(cfg, raw.modalities))
    fit_args = {}
    if cfg.fusion.method == "gated":
        fit_args = (_factor_targets(fit_interactions, len(item_ids), cfg) if cfg.fusion.gated_target == "factors" else
                    {"pairs": cooccurrence_pairs(fit_interactions["user_idx"].to_numpy(),
                                                 fit_interactions["item_idx"].to_numpy(), max_pairs=50_000,
                                                 seed=cfg.seed)})
    fused = fusion.fit(raw, **fit_args).transform(raw)
    blocks = {m: fusion.normalizers_[m].transform(raw.blocks[m], raw.present(m)) for m in raw.modalities}
    aligned = AlignedBlocks(raw.item_ids, raw.modalities, blocks, raw.mask)
    index = ItemIndex.build(fused, kind="auto", seed=cfg.seed)
    recall = None
    if index.kind != "flat":  # an approximate index reports what it costs in recall
        sample = np.random.default_rng(cfg.seed).choice(len(fused), min(500, len(fused)), replace=False)
        recall = recall_against_exact(index, fused, fused[sample], 10)
        log.info("%s index recall@10 against exact search: %.4f", index.kind, recall)
    return ItemSpace(item_ids, aligned, fused, fusion, index, recall)


@dataclass
class History:
    interactions: pl.DataFrame
    now: datetime
    n_users: int
    seen: sp.csr_matrix
    covis: sp.csr_matrix
    als: ALSFactors
    item_factors: np.ndarray  # ALS item factors, items without interactions completed from content
    warm_items: np.ndarray  # bool (n_items,)
    content_map: ContentToFactorMap
    content_map_report: dict
    profiles: dict[str, np.ndarray]  # "fused" and each modality -> (n_users, d)
    item_stats: pl.DataFrame
    user_stats: pl.DataFrame


def _item_stats(history: pl.DataFrame, n_items: int, now: datetime, recent_days: float) -> pl.DataFrame:
    since = now - timedelta(days=recent_days)
    stats = history.group_by("item_idx").agg(pop_all=pl.len().cast(pl.Float32),
                                             pop_recent=(pl.col("ts") >= since).sum().cast(pl.Float32),
                                             first_ts=pl.col("ts").min())
    frame = pl.DataFrame({"item_idx": np.arange(n_items, dtype=np.int64)}).join(stats, on="item_idx", how="left")
    age = ((pl.lit(now) - pl.col("first_ts")).dt.total_seconds() / 86400.0).cast(pl.Float32)
    return frame.select("item_idx", pl.col("pop_all").fill_null(0.0), pl.col("pop_recent").fill_null(0.0),
                        age.fill_null(0.0).alias("age_days"), pl.col("first_ts").is_null().cast(pl.Float32).alias("is_new"))


def _user_stats(history: pl.DataFrame, n_users: int, now: datetime) -> pl.DataFrame:
    stats = history.group_by("user_idx").agg(n_events=pl.len().cast(pl.Float32),
                                             n_items=pl.col("item_idx").n_unique().cast(pl.Float32),
                                             last_ts=pl.col("ts").max())
    frame = pl.DataFrame({"user_idx": np.arange(n_users, dtype=np.int64)}).join(stats, on="user_idx", how="left")
    recency = ((pl.lit(now) - pl.col("last_ts")).dt.total_seconds() / 86400.0).cast(pl.Float32)
    return frame.select("user_idx", pl.col("n_events").fill_null(0.0), pl.col("n_items").fill_null(0.0),
                        recency.fill_null(1e3).alias("days_since_last"))


def build_history(history: pl.DataFrame, space: ItemSpace, cfg: TrainConfig, *, n_users: int) -> History:
    n_items = space.n_items
    now = history["ts"].max()
    als = _make_als(cfg).fit(history, n_users=n_users, n_items=n_items)
    warm = np.zeros(n_items, dtype=bool)
    warm[history["item_idx"].unique().to_numpy()] = True
    cmap, report = _fit_content_map(space.fused[warm], als.item_factors_[warm], cfg)
    item_factors = complete_item_factors(als.item_factors_, warm, space.fused, cmap)
    profiles = {"fused": user_profiles(history, space.fused, n_users=n_users,
                                       half_life_days=cfg.candidates.half_life_days, now=now)}
    for modality in space.aligned.modalities:
        profiles[modality] = user_profiles(history, space.aligned.blocks[modality], n_users=n_users,
                                           half_life_days=cfg.candidates.half_life_days, now=now)
    return History(history, now, n_users, seen_matrix(history, n_users, n_items),
                   covisitation_matrix(history, n_items=n_items, max_neighbors=200), als, item_factors, warm, cmap,
                   report, profiles, _item_stats(history, n_items, now, cfg.candidates.recent_days),
                   _user_stats(history, n_users, now))


def _fit_content_map(content: np.ndarray, factors: np.ndarray, cfg: TrainConfig):
    if cfg.als.content_map == "auto":
        return select_content_map(content, factors, seed=cfg.seed)
    cmap = ContentToFactorMap(kind=cfg.als.content_map, seed=cfg.seed).fit(content, factors)
    return cmap, {"chosen": cfg.als.content_map}
