"""On-disk layout of the store, atomic shard writes, manifests, the current view, and the `latest` pointer.

<root>/embeddings/<modality>/<fingerprint>/manifest.json, part-*.parquet
<root>/errors/<modality>/<fingerprint>/part-*.parquet
<root>/current/<modality>.parquet      item_id, content_hash of the catalog as last extracted (+ fingerprint)
<root>/extract_summary.json            the last extraction's summary
<root>/runs/<run_id>/...               one folder per training run
<root>/latest -> runs/<run_id>         swapped atomically once a run is complete

Shards are written under a dot-prefixed temporary name and renamed when complete; readers glob
`part-*.parquet` only, so they never see a partial file.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.parquet_io import write_parquet_atomic, write_text_atomic

ERROR_SCHEMA = pa.schema([("item_id", pa.string()), ("content_hash", pa.string()), ("error_kind", pa.string()),
                          ("message", pa.string()), ("extractor", pa.string()), ("at", pa.timestamp("us", "UTC"))])


class StoreError(Exception):
    """The store lacks what a step needs; the message says which command produces it."""


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema([("item_id", pa.string()), ("content_hash", pa.string()),
                      ("embedding", pa.list_(pa.float32(), dim)), ("extracted_at", pa.timestamp("us", "UTC"))])


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _part_name() -> str:
    return f"part-{utc_now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"


@dataclass(frozen=True)
class Store:
    root: Path

    def embeddings_dir(self, modality: str, fingerprint: str) -> Path:
        return self.root / "embeddings" / modality / fingerprint

    def errors_dir(self, modality: str, fingerprint: str) -> Path:
        return self.root / "errors" / modality / fingerprint

    def current_path(self, modality: str) -> Path:
        return self.root / "current" / f"{modality}.parquet"

    @property
    def summary_path(self) -> Path:
        return self.root / "extract_summary.json"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def latest(self) -> Path:
        return self.root / "latest"

    # --- writes -------------------------------------------------------------------------------------------
    def write_manifest(self, modality: str, info: dict) -> None:
        path = self.embeddings_dir(modality, info["fingerprint"]) / "manifest.json"
        if not path.exists():
            write_text_atomic(json.dumps({**info, "modality": modality, "created": utc_now().isoformat()}, indent=2), path)

    def write_embeddings(self, modality: str, fingerprint: str, item_ids: list[str], hashes: list[str],
                         vectors: np.ndarray) -> Path | None:
        if not item_ids:
            return None
        dim = vectors.shape[1]
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), pa.float32())
        table = pa.table({"item_id": pa.array(item_ids, pa.string()), "content_hash": pa.array(hashes, pa.string()),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
                          "extracted_at": pa.array([utc_now()] * len(item_ids), pa.timestamp("us", "UTC"))},
                         schema=embedding_schema(dim))
        return write_parquet_atomic(table, self.embeddings_dir(modality, fingerprint) / _part_name())

    def write_errors(self, modality: str, fingerprint: str, rows: list[dict]) -> Path | None:
        if not rows:
            return None
        at = utc_now()
        table = pa.Table.from_pylist([{**row, "at": at} for row in rows], schema=ERROR_SCHEMA)
        return write_parquet_atomic(table, self.errors_dir(modality, fingerprint) / _part_name())

    def write_current(self, modality: str, fingerprint: str, current: pl.DataFrame) -> None:
        frame = current.select("item_id", "content_hash").with_columns(fingerprint=pl.lit(fingerprint))
        write_parquet_atomic(frame, self.current_path(modality))

    # --- reads --------------------------------------------------------------------------------------------
    @staticmethod
    def _scan(folder: Path) -> pl.LazyFrame | None:
        parts = sorted(folder.glob("part-*.parquet"))
        return pl.scan_parquet(parts) if parts else None

    def scan_embeddings(self, modality: str, fingerprint: str) -> pl.LazyFrame | None:
        return self._scan(self.embeddings_dir(modality, fingerprint))

    def scan_errors(self, modality: str, fingerprint: str) -> pl.LazyFrame | None:
        return self._scan(self.errors_dir(modality, fingerprint))

    def stored_keys(self, modality: str, fingerprint: str) -> pl.DataFrame:
        """(item_id, content_hash) already embedded or already failed under this fingerprint."""
        scans = [s.select("item_id", "content_hash") for s in
                 (self.scan_embeddings(modality, fingerprint), self.scan_errors(modality, fingerprint)) if s is not None]
        if not scans:
            return pl.DataFrame(schema={"item_id": pl.String, "content_hash": pl.String})
        return pl.concat(scans).unique().collect()

    def read_current_keys(self, modality: str) -> pl.DataFrame:
        path = self.current_path(modality)
        if not path.exists():
            raise StoreError(f"no current {modality} embeddings in {self.root}. Fix: run `make extract` first "
                             f"(with the same CONFIG).")
        return pl.read_parquet(path)

    def scan_current(self, modality: str) -> pl.LazyFrame:
        """Current vectors of a modality for the catalog as last extracted: one row per item."""
        keys = self.read_current_keys(modality)
        fingerprint = keys["fingerprint"][0] if keys.height else ""
        scan = self.scan_embeddings(modality, fingerprint)
        if scan is None:
            return pl.LazyFrame(schema={"item_id": pl.String, "content_hash": pl.String,
                                        "embedding": pl.Array(pl.Float32, 1), "extracted_at": pl.Datetime("us", "UTC")})
        return (scan.join(keys.lazy().select("item_id", "content_hash"), on=["item_id", "content_hash"], how="inner")
                .sort("extracted_at").unique("item_id", keep="last", maintain_order=True).sort("item_id"))

    # --- locking ------------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, what: str):
        """One extract or train at a time per store (an overlapping cron run fails fast instead of racing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                fh.seek(0)
                raise StoreError(f"{self.root} is locked by another run ({fh.read().strip() or 'unknown'}). Fix: wait "
                                 "for it to finish; remove .lock only if no extract/train is running.") from exc
            fh.seek(0)
            fh.truncate()
            fh.write(f"{what} pid {os.getpid()} since {utc_now().isoformat()}")
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- runs ---------------------------------------------------------------------------------------------
    def new_run_dir(self) -> Path:
        run_id = f"{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        path = self.runs_dir / f".incomplete-{run_id}"
        path.mkdir(parents=True)
        return path

    def publish(self, incomplete: Path) -> Path:
        """Rename the finished run into place, then swap `latest` atomically (symlink + os.replace)."""
        final = incomplete.with_name(incomplete.name.removeprefix(".incomplete-"))
        os.replace(incomplete, final)
        tmp = self.root / f".latest-{uuid.uuid4().hex[:8]}"
        tmp.symlink_to(Path("runs") / final.name)
        os.replace(tmp, self.latest)
        return final

    def latest_run(self) -> Path:
        if not self.latest.exists():
            raise StoreError(f"no published run in {self.root}. Fix: run `make train`.")
        return self.latest.resolve()
