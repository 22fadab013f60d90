"""Parquet reads (local paths or any URI pyarrow.fs understands) and atomic local writes."""

from __future__ import annotations

import errno
import os
import signal
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pipelines.errors import PipelineError


class InputFileError(PipelineError):
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


CRASH_ENV = "MMREC_CRASH_AT"  # fault injection for tests/test_faults.py only; unset in normal runs
_crash_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process at a named point when MMREC_CRASH_AT is `name` (or `name:N`, the Nth time).

    Lets the fault suite hit points a test cannot reach by polling (between two renames); a no-op otherwise."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or wanted.split(":")[0] != name:
        return
    _crash_hits[name] = _crash_hits.get(name, 0) + 1
    if _crash_hits[name] >= int(wanted.partition(":")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _temp_path(path: Path, tmp_dir: Path | None) -> Path:
    if tmp_dir is None:
        return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return tmp_dir / f"{path.name}.tmp-{uuid.uuid4().hex[:8]}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable across a power loss; filesystems that cannot fsync a folder are left as they are."""
    try:
        _fsync(folder)
    except OSError:
        pass


def _commit(write, path: Path, tmp_dir: Path | None) -> Path:
    """`write(tmp)`, fsync, rename onto `path`; on any failure the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path, tmp_dir)
    try:
        write(tmp)
        _fsync(tmp)
        crash_point("write-before-rename")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path}. Fix: free space on that "
                          "filesystem and rerun; nothing partial was kept (the temporary file was removed)") from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_parquet_atomic(frame: pl.DataFrame | pa.Table, path: Path, tmp_dir: Path | None = None) -> Path:
    """Write to a temporary name (`.<name>.tmp-<uuid>` beside `path`, or `<name>.tmp-<uuid>` in `tmp_dir` on the
    same filesystem) and rename: readers never see a partial file."""
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    return _commit(lambda tmp: pq.write_table(table, tmp, compression="zstd"), path, tmp_dir)


def sink_parquet_atomic(frame: pl.LazyFrame, path: Path, tmp_dir: Path | None = None) -> Path:
    """`write_parquet_atomic` for a lazy query, streamed (memory bounded by the query, not by its result)."""
    return _commit(lambda tmp: frame.sink_parquet(tmp, compression="zstd"), path, tmp_dir)


def write_text_atomic(text: str, path: Path, tmp_dir: Path | None = None) -> Path:
    return _commit(lambda tmp: tmp.write_text(text), path, tmp_dir)
