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

from pipelines.modeling import History, ItemSpace
from pipelines.parquet_io import write_parquet_atomic, write_text_atomic

PACKAGES = ("torch", "transformers", "timm", "faiss-cpu", "lightgbm", "implicit", "polars", "pyarrow", "prefect", "numpy")


def _vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def write_space(run: Path, space: ItemSpace) -> None:
    columns = {"item_id": pa.array(space.item_ids.tolist(), pa.string()), "embedding": _vectors_column(space.fused)}
    for j, modality in enumerate(space.aligned.modalities):
        columns[f"has_{modality}"] = pa.array(space.aligned.mask[:, j])
    write_parquet_atomic(pa.table(columns), run / "fused_items.parquet")
    space.fusion.save(run / "fusion")  # with its per-modality normalisers
    space.index.save(run / "index.faiss")
    write_parquet_atomic(pl.DataFrame({"index_pos": np.arange(space.n_items), "item_id": space.item_ids.tolist()}),
                         run / "index_items.parquet")


def write_history_models(run: Path, history: History) -> None:
    history.als.save(run / "als.npz")
    history.content_map.save(run / "content_map")
    np.savez(run / "item_factors_completed.npz", item_factors=history.item_factors, warm=history.warm_items)


def similar_items(space: ItemSpace, k: int) -> pl.DataFrame:
    idx, scores = space.index.search(space.fused, k + 1)
    rows = []
    for i in range(space.n_items):
        kept = [(j, s) for j, s in zip(idx[i], scores[i]) if j >= 0 and j != i][:k]
        rows.extend((space.item_ids[i], r + 1, space.item_ids[j], float(s)) for r, (j, s) in enumerate(kept))
    return pl.DataFrame(rows, schema={"item_id": pl.String, "rank": pl.Int32, "similar_item_id": pl.String,
                                      "score": pl.Float32}, orient="row")


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
