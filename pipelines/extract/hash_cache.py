"""The stat cache: (resolved path, size, mtime_ns) -> content hash, so an unchanged media file is not read again
to learn that it is unchanged. Kept in `<store>/hash_cache.parquet`, rewritten (atomically, under the store
lock) with the entries this run used; `--rehash` ignores it and reads every file again.

A file rewritten with the same size and a restored mtime (some copy tools do that) would keep its old hash:
`--rehash` is the escape hatch. Only real content hashes are cached; a missing, unreadable or out-of-root
file is looked at again every run.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import polars as pl

from pipelines.store.parquet_io import write_parquet_atomic

SCHEMA = {"path": pl.String, "size": pl.Int64, "mtime_ns": pl.Int64, "content_hash": pl.String}
Key = tuple[str, int, int]


class HashCache:
    def __init__(self, entries: dict[Key, str] | None = None, *, rehash: bool = False):
        self.entries = {} if rehash else dict(entries or {})
        self.used: dict[Key, str] = {}
        self.hashed = 0  # files read to hash them this run
        self.reused = 0  # files whose hash came from the cache
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, rehash: bool = False) -> HashCache:
        if rehash or not path.exists():
            return cls(rehash=rehash)
        try:
            frame = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError):  # a damaged cache costs a rehash, never a failure
            return cls()
        return cls({(p, s, m): h for p, s, m, h in frame.select(list(SCHEMA)).iter_rows()})

    def content_hash(self, path: str, compute: Callable[[str], str]) -> str:
        """The cached hash of ``path`` if its size and mtime are unchanged, else ``compute(path)``, cached when it
        is a real content hash and the file did not change while it was read."""
        real = os.path.realpath(path)
        try:
            before = os.stat(real)
        except OSError:
            return compute(path)  # missing or unreadable: compute() says which, every run
        key = (real, before.st_size, before.st_mtime_ns)
        with self._lock:
            known = self.entries.get(key)
            if known is not None:
                self.reused += 1
                self.used[key] = known
                return known
        value = compute(path)
        with self._lock:
            self.hashed += 1
        try:
            after = os.stat(real)
        except OSError:
            return value
        if len(value) == 64 and (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            with self._lock:
                self.entries[key] = self.used[key] = value
        return value

    def save(self, path: Path, tmp_dir: Path) -> None:
        """Keep the entries this run used (files gone from the catalog drop out)."""
        rows = [(p, s, m, h) for (p, s, m), h in sorted(self.used.items())]
        frame = pl.DataFrame(rows, schema=SCHEMA, orient="row")
        write_parquet_atomic(frame, path, tmp_dir)
