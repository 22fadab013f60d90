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
from pipelines.store.vectors import InMemoryVectors, StoredVectors
from ranker.retrieval.factors import ALSFactors
from ranker.retrieval.index import ItemIndex

log = logging.getLogger(__name__)
_FUSE_CHUNK = 65_536  # items fused at a time on the streamed path


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


def _as_vectors(table) -> InMemoryVectors | StoredVectors:
    return InMemoryVectors(*table) if isinstance(table, tuple) else table


def build_space(item_ids: np.ndarray, tables: dict, interactions: pl.DataFrame, cfg: TrainConfig, *,
                weights: dict | None = None, with_index: bool = True) -> ItemSpace:
    """Fit the configured fusion (a learned one on ``interactions`` only); ``weights`` override the configured
    ones. ``tables``: modality -> InMemoryVectors / StoredVectors (or an (ids, vectors) tuple)."""
    tables = {m: _as_vectors(t) for m, t in tables.items()}
    fusion = make_fusion(cfg.fusion.method, **_fusion_params(cfg, tuple(tables), weights))
    if len(item_ids) <= cfg.fusion.fit_items or fusion.learns_from:
        if len(item_ids) > cfg.fusion.fit_items:
            raw_gb = len(item_ids) * sum(t.dim for t in tables.values()) * 4 / 2**30
            log.warning("%s fusion learns from the whole catalog, so its %d items are fused in memory (~%.1f GB of "
                        "raw vectors) although train.fusion.fit_items is %d; concat or weighted fusion would stream",
                        cfg.fusion.method, len(item_ids), raw_gb, cfg.fusion.fit_items)
        aligned, fused = _fuse_in_memory(item_ids, tables, fusion, interactions, cfg)
    else:
        aligned, fused = _fuse_streamed(item_ids, tables, fusion, cfg)
    if not with_index:
        return ItemSpace(item_ids, aligned, fused, fusion, None)
    # an approximate index reports what it costs in recall: measured on sampled items when its nprobe was calibrated
    index = ItemIndex.build(fused, kind="auto", seed=cfg.seed)
    return ItemSpace(item_ids, aligned, fused, fusion, index, index.calibrated_recall)


def _fuse_in_memory(item_ids, tables, fusion, interactions, cfg) -> tuple[AlignedBlocks, np.ndarray]:
    raw = align_modalities(list(item_ids), {m: table.load() for m, table in tables.items()})
    fit_args = _learning_inputs(fusion.learns_from, interactions, len(item_ids), cfg)
    fused = fusion.fit(raw, **fit_args).transform(raw)
    blocks = {m: fusion.normalizers_[m].transform(raw.blocks[m], raw.present(m)) for m in raw.modalities}
    return AlignedBlocks(raw.item_ids, raw.modalities, blocks, raw.mask), fused


def _fuse_streamed(item_ids, tables, fusion, cfg) -> tuple[AlignedBlocks, np.ndarray]:
    """A catalog over train.fusion.fit_items: the normalisers fit on a seeded sample of each modality, then each
    modality is read again batch by batch, normalised, and scattered into its (reduced) block; memory is the
    normalised blocks and the fused vectors, never the raw vectors."""
    n_items, limit = len(item_ids), cfg.fusion.fit_items
    rows = {m: _rows_in_catalog(item_ids, table.ids) for m, table in tables.items()}
    # one modality's sample in memory at a time (its rows in the catalog only)
    fusion.fit_samples((m, _read_sample(table, rows[m] >= 0, limit, cfg.seed)) for m, table in tables.items())
    log.info("fusion fitted on a seeded sample of up to %d items per modality (train.fusion.fit_items) of %d; "
             "streaming the vectors", limit, n_items)
    modalities = tuple(tables)
    blocks, mask = {}, np.zeros((n_items, len(modalities)), dtype=bool)
    for col, (modality, table) in enumerate(tables.items()):
        normalizer = fusion.normalizers_[modality]
        blocks[modality] = np.zeros((n_items, normalizer.dim_), dtype=np.float32)
        for positions, vectors in table.batches():
            known = rows[modality][positions]
            keep = known >= 0
            blocks[modality][known[keep]] = normalizer.transform(vectors[keep])
            mask[known[keep], col] = True
    fused = np.zeros((n_items, fusion.dim_), dtype=np.float32)
    for start in range(0, n_items, _FUSE_CHUNK):
        sl = slice(start, start + _FUSE_CHUNK)
        fused[sl] = fusion.fuse({m: blocks[m][sl] for m in fusion.modalities_},
                                np.stack([mask[sl, modalities.index(m)] for m in fusion.modalities_], axis=1))
    return AlignedBlocks(tuple(str(i) for i in item_ids), modalities, blocks, mask), fused


def _rows_in_catalog(item_ids: np.ndarray, table_ids: np.ndarray) -> np.ndarray:
    """Row of each table id in the catalog order, -1 where the catalog lacks it."""
    catalog = pl.DataFrame({"item_id": np.asarray(item_ids).astype(str), "row": np.arange(len(item_ids))})
    table = pl.DataFrame({"item_id": np.asarray(table_ids).astype(str)}).with_row_index("position")
    joined = table.join(catalog, on="item_id", how="left").sort("position")
    return joined["row"].fill_null(-1).to_numpy().astype(np.int64)


def _read_sample(table, in_catalog: np.ndarray, size: int, seed: int) -> np.ndarray:
    """The vectors of a seeded sample of ``size`` of a table's rows that are in the catalog, read in one pass."""
    candidates = np.flatnonzero(in_catalog)
    chosen = np.zeros(len(table), dtype=bool)
    chosen[np.random.default_rng(seed).choice(candidates, min(size, candidates.size), replace=False)] = True
    vectors = [batch[chosen[positions]] for positions, batch in table.batches()]
    return np.concatenate(vectors) if vectors else np.zeros((0, table.dim), dtype=np.float32)
