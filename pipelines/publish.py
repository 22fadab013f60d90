"""Write a training run's artifacts into its (still hidden) run folder."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.parquet_io import write_parquet_atomic, write_text_atomic
from pipelines.space import ItemSpace
from ranker.index import ItemIndex

PACKAGES = ("torch", "transformers", "timm", "faiss-cpu", "lightgbm", "implicit", "polars", "pyarrow", "prefect", "numpy")


def _vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def write_space(run: Path, space: ItemSpace, index: ItemIndex) -> None:
    columns = {"item_id": pa.array(space.item_ids.tolist(), pa.string()), "embedding": _vectors_column(space.fused)}
    for j, modality in enumerate(space.aligned.modalities):
        columns[f"has_{modality}"] = pa.array(space.aligned.mask[:, j])
    write_parquet_atomic(pa.table(columns), run / "fused_items.parquet")
    space.fusion.save(run / "fusion")  # with its per-modality normalisers
    index.save(run / "index.faiss")
    write_parquet_atomic(pl.DataFrame({"index_pos": np.arange(space.n_items), "item_id": space.item_ids.tolist()}),
                         run / "index_items.parquet")


def write_source_models(run: Path, sources: dict) -> None:
    """The fitted sources that have artifacts of their own (EASE weights, ALS factors)."""
    if "ease" in sources:
        sources["ease"].model.save(run / "ease.npz")
    if "als" in sources:
        sources["als"].model.save(run / "als.npz")


def similar_items(item_ids: np.ndarray, fused: np.ndarray, index: ItemIndex, k: int) -> pl.DataFrame:
    """The k nearest other items of every item in the FAISS index (items without vectors get none)."""
    idx, scores = index.search(fused, k + 1)
    rows = np.repeat(np.arange(len(item_ids)), idx.shape[1])
    flat, flat_scores = idx.ravel(), scores.ravel()
    keep = (flat >= 0) & (flat != rows) & (np.abs(fused).sum(axis=1)[rows] > 0)
    frame = pl.DataFrame({"row": rows[keep], "item_id": item_ids[rows[keep]].astype(str),
                          "similar_item_id": item_ids[flat[keep]].astype(str), "score": flat_scores[keep]})
    return (frame.with_columns(rank=pl.int_range(1, pl.len() + 1).over("row").cast(pl.Int32))
            .filter(pl.col("rank") <= k)
            .select("item_id", "rank", "similar_item_id", pl.col("score").cast(pl.Float32)))


def file_sha256(path: str) -> str | None:
    if "://" in path or not Path(path).exists():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
