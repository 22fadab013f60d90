"""Write a training run's artifacts into its (still hidden) run folder: the production Recommender, its lists,
the similar items, the fused vectors as a table, and the JSON records."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.hashing import sha256_file
from pipelines.model.recommender import Recommender
from pipelines.model.space import ItemSpace
from pipelines.store.parquet_io import write_parquet_atomic, write_text_atomic
from pipelines.train.report import decision
from pipelines.train.scoring import topk_frame

PACKAGES = ("torch", "transformers", "timm", "faiss-cpu", "lightgbm", "implicit", "polars", "pyarrow", "prefect",
            "numpy")


def _vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def write_fused_items(run: Path, space: ItemSpace) -> None:
    """The fused vectors as a table for readers outside Python (DuckDB, Spark): item_id, embedding, has_<m>."""
    columns = {"item_id": pa.array(space.item_ids.tolist(), pa.string()), "embedding": _vectors_column(space.fused)}
    for j, modality in enumerate(space.aligned.modalities):
        columns[f"has_{modality}"] = pa.array(space.aligned.mask[:, j])
    write_parquet_atomic(pa.table(columns), run / "fused_items.parquet")


SIMILAR_SCHEMA = {"item_id": pl.String, "rank": pl.Int32, "similar_item_id": pl.String, "score": pl.Float32}


def similar_items_frame(recommender: Recommender, k: int, chunk: int = 65_536) -> pl.DataFrame:
    """The k nearest other items of every item, as the recommender answers them (items without vectors: none);
    queried in item chunks, so the query copies stay bounded whatever the catalog size."""
    frames = []
    for start in range(0, len(recommender.item_ids), chunk):
        items = np.arange(start, min(start + chunk, len(recommender.item_ids)))
        idx, scores = recommender.similar_positions(items, k)
        rows, ranks = np.nonzero(idx >= 0)
        frames.append(pl.DataFrame({"item_id": recommender.item_ids[items[rows]].astype(str),
                                    "rank": (ranks + 1).astype(np.int32),
                                    "similar_item_id": recommender.item_ids[idx[rows, ranks]].astype(str),
                                    "score": scores[rows, ranks].astype(np.float32)}, schema=SIMILAR_SCHEMA))
    return pl.concat(frames) if frames else pl.DataFrame(schema=SIMILAR_SCHEMA)


def file_sha256(path: str) -> str | None:
    """The input file's hash for the manifest (None for a remote URI or a missing file)."""
    if "://" in path or not Path(path).exists():
        return None
    return sha256_file(path)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def write_json(run: Path, name: str, payload: dict) -> None:
    write_text_atomic(json.dumps(payload, indent=2, default=str), run / name)


def publish_production(production: Recommender, run: Path) -> dict:
    """The production recommender saved into ``run`` (loadable with ``Recommender.load``), and its outputs."""
    model, cfg = production.model, production.model.cfg
    production.save(run)  # first: Dask workers score from the saved model
    frame = topk_frame(production, cfg.top_k, cfg.scoring, run)
    write_parquet_atomic(frame, run / "topk.parquet")
    write_parquet_atomic(similar_items_frame(production, cfg.similar_k), run / "similar_items.parquet")
    write_fused_items(run, model.space)
    new = ~model.level.ctx.item_has_history
    slots = frame.filter(pl.col("source") == "new_item_slot")
    return {"published": decision(model), "users": len(production.user_ids),
            "fallback_users": frame.filter(pl.col("source") == "popularity_fallback")["user_id"].n_unique(),
            "new_items": int(new.sum()), "topk_rows_new_item_slot": slots.height,
            "users_with_new_items": slots["user_id"].n_unique(), "index_kind": production.index.kind,
            "tuned": {"sources": model.tuned.sources.params, "half_life": model.tuned.sources.half_life,
                      "fusion_weights": model.tuned.fusion_weights, "ranker": model.tuned.ranker_params}}
