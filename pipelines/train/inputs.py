"""Training inputs: the current per-modality vectors from the store and the interactions, mapped to row positions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.config import PipelineConfig
from pipelines.contracts import validate_interactions
from pipelines.errors import PipelineError
from pipelines.store.layout import Store, StoreError
from pipelines.store.vectors import InMemoryVectors, StoredVectors
from pipelines.train.publish import file_sha256

log = logging.getLogger(__name__)


class TrainInputError(PipelineError):
    """Training cannot start from these inputs; the message says what to run or change."""


@dataclass(frozen=True)
class TrainInputs:
    item_ids: np.ndarray  # (n_items,) str; item_idx = position
    user_ids: np.ndarray  # (n_users,) str; user_idx = position
    tables: dict[str, InMemoryVectors | StoredVectors]  # modality -> its current vectors
    interactions: pl.DataFrame  # user_idx, item_idx, ts, weight
    dropped_unknown_items: int
    catalog_sha256: str | None = None  # hashed when read, for the run's manifest
    interactions_sha256: str | None = None


def load_vectors(store: Store, modalities: tuple[str, ...], in_memory_items: int) -> tuple[np.ndarray, dict]:
    """The catalog as last extracted, and the current vectors of each modality that has any: in memory up to
    ``in_memory_items`` items, else located in the store and read in batches when the space is built."""
    tables, catalog_ids = {}, set()
    for modality in modalities:
        try:
            keys = store.read_current_keys(modality)
        except StoreError:
            log.warning("no current %s embeddings; fusing without that modality", modality)
            continue
        catalog_ids.update(keys["item_id"].to_list())
        stored = store.current_vectors(modality)
        if len(stored):
            tables[modality] = InMemoryVectors(*stored.load()) if len(stored) <= in_memory_items else stored
    if not tables:
        raise TrainInputError(f"no current embeddings in {store.root}. Fix: run `make extract` (same CONFIG) first.")
    return np.array(sorted(catalog_ids), dtype=object), tables


def load_interactions(path: str, item_ids: np.ndarray) -> tuple[pl.DataFrame, np.ndarray, int]:
    report, frame = validate_interactions(path, catalog_ids=pl.Series(item_ids.tolist(), dtype=pl.String))
    if frame is not None and frame.height == 0:
        raise TrainInputError(f"{path}: the interactions file is empty. Fix: check that the night's export ran; "
                              "nothing can be trained without interactions.")
    report.raise_if_errors()
    item_index = pl.DataFrame({"item_id": item_ids.tolist(), "item_idx": np.arange(len(item_ids))},
                              schema={"item_id": pl.String, "item_idx": pl.Int64})
    weight = pl.col("weight").cast(pl.Float32).fill_null(1.0) if "weight" in frame.columns else pl.lit(1.0, pl.Float32)
    known = frame.join(item_index, on="item_id", how="inner")
    if "weight" in frame.columns:  # zero-weight events (e.g. impressions) carry no preference signal
        zero = known.filter(pl.col("weight") == 0).height
        if zero:
            log.info("ignoring %d zero-weight interactions", zero)
            known = known.filter((pl.col("weight") != 0) | pl.col("weight").is_null())
    dropped = frame.height - known.height
    if dropped:
        log.warning("ignoring %d interactions with items absent from the catalog", dropped)
    # Users whose every interaction names an unknown item keep a user_idx: they get the popularity fallback.
    user_ids = np.array(sorted(frame["user_id"].unique().to_list()), dtype=object)
    users = pl.DataFrame({"user_id": user_ids.tolist(), "user_idx": np.arange(len(user_ids))},
                         schema={"user_id": pl.String, "user_idx": pl.Int64})
    ts = pl.col("ts").dt.cast_time_unit("us")
    ts = ts.dt.replace_time_zone("UTC") if known["ts"].dtype.time_zone is None else ts.dt.convert_time_zone("UTC")
    out = (known.join(users, on="user_id").select("user_idx", "item_idx", ts, weight.alias("weight"))
           .sort("ts", "user_idx", "item_idx"))
    if out.height == 0:
        raise TrainInputError(f"{path}: no interaction names an item of the current catalog. Fix: check that the "
                              "catalog and the interactions come from the same export.")
    return out, user_ids, dropped


def load_train_inputs(cfg: PipelineConfig) -> TrainInputs:
    store = Store(Path(cfg.store.root))
    item_ids, tables = load_vectors(store, cfg.train.modalities, cfg.train.fusion.fit_items)
    interactions_sha256 = file_sha256(cfg.data.interactions)
    interactions, user_ids, dropped = load_interactions(cfg.data.interactions, item_ids)
    return TrainInputs(item_ids, user_ids, tables, interactions, dropped, file_sha256(cfg.data.catalog),
                       interactions_sha256)
