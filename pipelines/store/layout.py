"""On-disk layout of the store, atomic shard writes, manifests, the current view, and the `latest` pointer.

<root>/embeddings/<modality>/<fingerprint>/manifest.json, part-*.parquet
<root>/errors/<modality>/<fingerprint>/part-*.parquet
<root>/current/<modality>.parquet      item_id, content_hash of the catalog as last extracted (+ fingerprint)
<root>/extract_summary.json            the last extraction's summary
<root>/runs/<run_id>/...               one folder per published training run (the newest store.keep_runs)
<root>/latest -> runs/<run_id>         swapped atomically once a run is complete
<root>/tmp/                            work in progress: temporary files, unpublished runs, runs being deleted

Every file is written under tmp/ and renamed into place when complete, so the store's other folders only
ever hold complete files. A run that holds the lock owns tmp/: whatever it finds there at start was left by a
killed run and is removed (see `store_hygiene`).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipelines.store.vectors import StoredVectors, current_rows
from pipelines.store.parquet_io import crash_point, write_parquet_atomic, write_text_atomic
from pipelines.store.hygiene import COMPACT_MAX_PARTS, KEY, compact_folder, part_name, prune_runs, remove_debris
from pipelines.errors import PipelineError

ERROR_SCHEMA = pa.schema([("item_id", pa.string()), ("content_hash", pa.string()), ("error_kind", pa.string()),
                          ("message", pa.string()), ("extractor", pa.string()), ("at", pa.timestamp("us", "UTC"))])

TRANSIENT_ERROR = "transient"  # an error kind that is not stored: the item is tried again on the next run


class StoreError(PipelineError):
    """The store lacks what a step needs; the message says which command produces it."""


class StoreLocked(StoreError):
    """Another extract or train holds the store's lock."""


def embedding_schema(dim: int) -> pa.Schema:
    return pa.schema([("item_id", pa.string()), ("content_hash", pa.string()),
                      ("embedding", pa.list_(pa.float32(), dim)), ("extracted_at", pa.timestamp("us", "UTC"))])


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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

    @property
    def hash_cache_path(self) -> Path:
        """(path, size, mtime_ns) -> content hash of the media files (pipelines.extract.hash_cache)."""
        return self.root / "hash_cache.parquet"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    # --- writes -------------------------------------------------------------------------------------------
    def write_manifest(self, modality: str, info: dict) -> None:
        path = self.embeddings_dir(modality, info["fingerprint"]) / "manifest.json"
        if not path.exists():
            write_text_atomic(json.dumps({**info, "modality": modality, "created": utc_now().isoformat()}, indent=2),
                              path, self.tmp_dir)

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
        return write_parquet_atomic(table, self.embeddings_dir(modality, fingerprint) / part_name(), self.tmp_dir)

    def write_errors(self, modality: str, fingerprint: str, rows: list[dict]) -> Path | None:
        if not rows:
            return None
        at = utc_now()
        table = pa.Table.from_pylist([{**row, "at": at} for row in rows], schema=ERROR_SCHEMA)
        return write_parquet_atomic(table, self.errors_dir(modality, fingerprint) / part_name(), self.tmp_dir)

    def write_current(self, modality: str, fingerprint: str, current: pl.DataFrame) -> None:
        frame = current.select("item_id", "content_hash").with_columns(fingerprint=pl.lit(fingerprint))
        write_parquet_atomic(frame, self.current_path(modality), self.tmp_dir)

    def write_summary(self, report: dict) -> None:
        write_text_atomic(json.dumps(report, indent=2), self.summary_path, self.tmp_dir)

    # --- reads --------------------------------------------------------------------------------------------
    @staticmethod
    def _scan(folder: Path) -> pl.LazyFrame | None:
        parts = sorted(folder.glob("part-*.parquet"))
        return pl.scan_parquet(parts) if parts else None

    def scan_embeddings(self, modality: str, fingerprint: str) -> pl.LazyFrame | None:
        return self._scan(self.embeddings_dir(modality, fingerprint))

    def scan_errors(self, modality: str, fingerprint: str) -> pl.LazyFrame | None:
        return self._scan(self.errors_dir(modality, fingerprint))

    def scan_failed_keys(self, modality: str, fingerprint: str) -> pl.LazyFrame | None:
        """(item_id, content_hash) that failed for good: every error kind but `transient` (a read error that
        persisted after retries), whose items the next run tries again."""
        errors = self.scan_errors(modality, fingerprint)
        return None if errors is None else errors.filter(pl.col("error_kind").ne_missing(TRANSIENT_ERROR)).select(KEY)

    def stored_keys(self, modality: str, fingerprint: str) -> pl.DataFrame:
        """(item_id, content_hash) already embedded or already failed for good under this fingerprint."""
        embedded = self.scan_embeddings(modality, fingerprint)
        scans = [s for s in (None if embedded is None else embedded.select(KEY),
                             self.scan_failed_keys(modality, fingerprint)) if s is not None]
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
        return current_rows(scan, keys)

    def current_vectors(self, modality: str) -> StoredVectors:
        """Where the current vectors of a modality are (one row per item, sorted by item_id), read in batches."""
        keys = self.read_current_keys(modality)
        fingerprint = keys["fingerprint"][0] if keys.height else ""
        parts = sorted(self.embeddings_dir(modality, fingerprint).glob("part-*.parquet")) if keys.height else []
        return StoredVectors.locate(parts, keys)

    # --- locking ------------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, what: str):
        """One extract or train at a time per store (an overlapping cron run fails fast instead of racing).

        Holding the lock proves no other writer is active, so what killed runs left behind (temporary files,
        unpublished runs, runs half deleted) is removed right after it is taken."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                fh.seek(0)
                raise StoreLocked(f"{self.root} is locked by another run ({fh.read().strip() or 'unknown'}). Fix: wait "
                                  "for it to finish; remove .lock only if no extract/train is running.") from exc
            acquired = time.time()
            fh.seek(0)
            fh.truncate()
            fh.write(f"{what} pid {os.getpid()} since {utc_now().isoformat()}")
            fh.flush()
            try:
                remove_debris(self.root, before=acquired)
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # --- housekeeping -------------------------------------------------------------------------------------
    def compact(self, modality: str, fingerprint: str, current: pl.DataFrame,
                max_parts: int = COMPACT_MAX_PARTS) -> dict[str, dict]:
        """Compact the vector and error parts of a fingerprint once they exceed `max_parts` (see `keep_plan` for
        the rows kept); call with the lock held, after the current view is written."""
        done = {}
        folder = self.embeddings_dir(modality, fingerprint)
        if result := compact_folder(folder, current, "extracted_at", self.tmp_dir, max_parts=max_parts):
            done["embeddings"] = result
        embedded = self.scan_embeddings(modality, fingerprint)
        if result := compact_folder(self.errors_dir(modality, fingerprint), current, "at", self.tmp_dir,
                                    exclude=None if embedded is None else embedded.select(KEY), max_parts=max_parts):
            done["errors"] = result
        return done

    def prune_runs(self, keep: int) -> list[str]:
        """Keep the newest `keep` published runs and the one `latest` names; call with the lock held."""
        if keep < 1:
            raise StoreError(f"keep_runs={keep}: at least 1 run must be kept. Fix: set store.keep_runs >= 1.")
        protected = Path(os.readlink(self.latest)).name if self.latest.is_symlink() else None
        return prune_runs(self.runs_dir, self.tmp_dir, keep, protected)

    # --- runs ---------------------------------------------------------------------------------------------
    def new_run_dir(self) -> Path:
        """A run is built in tmp/, out of sight of readers globbing runs/*/, until `publish`."""
        run_id = f"{utc_now():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        path = self.tmp_dir / f"incomplete-{run_id}"
        path.mkdir(parents=True)
        return path

    def publish(self, incomplete: Path) -> Path:
        """Rename the finished run into runs/, then swap `latest` atomically (symlink + os.replace)."""
        final = self.runs_dir / incomplete.name.removeprefix(".").removeprefix("incomplete-")
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        crash_point("publish-before-rename")
        os.replace(incomplete, final)
        crash_point("publish-after-rename")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_dir / f"latest-{uuid.uuid4().hex[:8]}"
        tmp.symlink_to(Path("runs") / final.name)  # relative to the store root, where it lands
        crash_point("publish-after-symlink")
        os.replace(tmp, self.latest)
        return final

    def latest_run(self) -> Path:
        if not self.latest.exists():
            raise StoreError(f"no published run in {self.root}. Fix: run `make train`.")
        return self.latest.resolve()
