"""Parquet reads (local paths or any URI pyarrow.fs understands) and atomic local writes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


class InputFileError(Exception):
    """An input Parquet file that cannot be opened or read."""


def _filesystem_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def read_parquet_table(uri: str | os.PathLike) -> pa.Table:
    """Read a whole Parquet file (or dataset folder) from a local path or URI."""
    uri = str(uri)
    try:
        fs, path = _filesystem_and_path(uri)
        return pq.read_table(path, filesystem=fs)
    except FileNotFoundError as exc:
        raise InputFileError(f"{uri}: file not found. Fix: check the path in your config or on the command line.") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputFileError(f"{uri}: cannot be read as Parquet ({exc}). Fix: point to a Parquet file written by your analytics job.") from exc


def write_parquet_atomic(frame: pl.DataFrame | pa.Table, path: Path) -> Path:
    """Write to `<name>.tmp-<uuid>` and rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
