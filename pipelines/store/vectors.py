"""One modality's current vectors: held in memory, or read from the store's Parquet parts in bounded batches.

A million-item catalog has ~14 GB of raw float32 vectors over four modalities (384 + 1280 + 512 + 1280 dims),
more than the fused space needs. A large catalog is therefore read twice in batches (a seeded sample fits the
normalisers, then every row is normalised and scattered into the fused space) instead of being held whole.

Both kinds answer ``ids`` (sorted item ids), ``dim``, ``len()``, ``batches(rows)`` yielding
``(positions into ids, vectors)``, and ``load()`` for everything at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 16_384


def current_rows(stored: pl.LazyFrame, current_keys: pl.DataFrame) -> pl.LazyFrame:
    """The stored rows that are current: their (item_id, content_hash) is in ``current_keys``, and of an item
    stored more than once the last extracted; one row per item, sorted by item_id."""
    return (stored.join(current_keys.lazy().select("item_id", "content_hash"), on=["item_id", "content_hash"],
                        how="inner")
            .sort("extracted_at").unique("item_id", keep="last", maintain_order=True).sort("item_id"))


@dataclass(frozen=True)
class InMemoryVectors:
    ids: np.ndarray  # (n,) str
    vectors: np.ndarray  # (n, dim) float32

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ids, self.vectors

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.ids), rows):
            positions = np.arange(start, min(start + rows, len(self.ids)))
            yield positions, self.vectors[positions]


@dataclass(frozen=True)
class StoredVectors:
    """Current rows located in the part files: ``locations`` has one row per current item, sorted by item_id:
    item_id, part (index into ``parts``), row (within that part)."""

    parts: tuple[Path, ...]
    locations: pl.DataFrame
    dim: int

    @classmethod
    def locate(cls, parts: list[Path], current_keys: pl.DataFrame) -> StoredVectors:
        """The latest stored row of every (item_id, content_hash) in ``current_keys``, read without vectors."""
        scans = [pl.scan_parquet(path).select("item_id", "content_hash", "extracted_at")
                 .with_row_index("row").with_columns(part=pl.lit(i, pl.Int32)) for i, path in enumerate(parts)]
        locations = current_rows(pl.concat(scans), current_keys).select("item_id", "part", "row").collect()
        dim = pq.read_schema(parts[0]).field("embedding").type.list_size if parts else 0
        return cls(tuple(parts), locations, int(dim))

    def __len__(self) -> int:
        return self.locations.height

    @property
    def ids(self) -> np.ndarray:
        return self.locations["item_id"].to_numpy().astype(object)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.zeros((len(self), self.dim), dtype=np.float32)
        for positions, batch in self.batches():
            vectors[positions] = batch
        return self.ids, vectors

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Part by part, ``rows`` file rows at a time; only the current rows of each piece are decoded."""
        located = self.locations.with_row_index("position")
        for part, path in enumerate(self.parts):
            wanted = located.filter(pl.col("part") == part).sort("row")
            if wanted.height == 0:
                continue
            file_rows, positions = wanted["row"].to_numpy().astype(np.int64), wanted["position"].to_numpy()
            offset = 0
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=["embedding"]):
                lo, hi = np.searchsorted(file_rows, [offset, offset + record_batch.num_rows])
                if hi > lo:
                    taken = record_batch.column(0).take(pa.array(file_rows[lo:hi] - offset))
                    values = taken.flatten().to_numpy(zero_copy_only=False)
                    yield positions[lo:hi].astype(np.int64), values.reshape(hi - lo, self.dim).astype(np.float32)
                offset += record_batch.num_rows
