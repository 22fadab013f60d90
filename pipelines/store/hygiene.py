"""Housekeeping of the store: leftovers of killed runs, keep-last-N retention of runs, compaction of parts.

Each step is safe to kill at any moment:
- leftovers are removed only by a run that holds the store lock (so no other writer is active), and only
  when older than that lock;
- a run is deleted by first renaming it out of `runs/` into `tmp/` (atomic), then removing it there, so a
  reader globbing `runs/*/` never sees half a run and a kill leaves only a folder in `tmp/`;
- compaction writes its new part (temporary name, then rename) before it deletes the parts it replaces, so a
  kill leaves duplicate rows, which every reader already drops, and the next compaction removes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipelines.store.parquet_io import crash_point, sink_parquet_atomic

log = logging.getLogger(__name__)

COMPACT_MAX_PARTS = 16  # a folder with more parts than this is compacted into one
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")  # the names `Store.new_run_dir` gives; nothing else is pruned
KEY = ["item_id", "content_hash"]
# Leftovers of killed runs: everything in tmp/, and the names older versions of the store left beside their
# targets (dot-prefixed temporary files, runs/.incomplete-*, runs/.deleting-*, .latest-* pointers).
DEBRIS = ("tmp/*", ".latest-*", ".*.tmp-*", "current/.*.tmp-*", "embeddings/*/*/.*.tmp-*", "errors/*/*/.*.tmp-*",
          "runs/.incomplete-*", "runs/.deleting-*")


def part_name() -> str:
    return f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"


# --- leftovers -------------------------------------------------------------------------------------------------
def find_debris(root: Path) -> list[Path]:
    return sorted({path for pattern in DEBRIS for path in root.glob(pattern)})


def _older_than(path: Path, before: float) -> bool:
    try:
        return path.lstat().st_mtime < before
    except FileNotFoundError:
        return False


def remove_debris(root: Path, before: float) -> list[Path]:
    """Remove what killed runs left behind and was last touched before `before` (when the caller took the lock)."""
    removed = []
    for path in find_debris(root):
        if not _older_than(path, before):
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:  # harmless where it is (no reader looks there): say so, and go on with the run
            log.warning("cannot remove %s, left by an interrupted run (%s). Fix: remove it by hand while no "
                        "extract/train runs.", path, exc)
            continue
        removed.append(path)
    if removed:
        log.warning("removed %d leftover(s) of an interrupted run: %s", len(removed),
                    ", ".join(str(p.relative_to(root)) for p in removed))
    return removed


# --- retention of published runs -------------------------------------------------------------------------------
def published_runs(runs_dir: Path) -> list[Path]:
    """Published runs, newest first (by the start time in the name, then by the folder's last change)."""
    if not runs_dir.is_dir():
        return []
    runs = [p for p in runs_dir.iterdir() if RUN_ID.match(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(runs, key=lambda p: (p.name.split("-")[0], p.stat().st_mtime_ns), reverse=True)


def prune_runs(runs_dir: Path, tmp_dir: Path, keep: int, protected: str | None) -> list[str]:
    """Delete all but the newest `keep` published runs, never `protected` (the run `latest` names)."""
    doomed = [p for p in published_runs(runs_dir)[keep:] if p.name != protected]
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for run in doomed:
        tomb = tmp_dir / f"deleting-{run.name}"
        os.replace(run, tomb)  # out of runs/ in one step: readers of runs/*/ never see half a run
        crash_point("retention-after-rename")
        shutil.rmtree(tomb)
    if doomed:
        log.info("retention (keep %d + latest): removed run(s) %s", keep, ", ".join(p.name for p in doomed))
    return [p.name for p in doomed]


# --- compaction of parts ---------------------------------------------------------------------------------------
def keep_plan(keys: pl.LazyFrame, current: pl.DataFrame, ts: str, exclude: pl.LazyFrame | None) -> pl.DataFrame:
    """The rows a folder keeps, one per (item_id, content_hash), each its newest copy (`ts`):

    - every key of the current view (what the catalog holds now);
    - per item, its newest other key: one step of history, so a reverted catalog edit, or an item that left
      the catalog for a night, is not embedded again.
    Older content of an item and duplicate copies of a key are dropped, and so are the keys in `exclude`
    (error rows whose item was embedded since, after a transient failure)."""
    newest = keys.group_by(KEY).agg(pl.col(ts).max())
    if exclude is not None:
        newest = newest.join(exclude.select(KEY), on=KEY, how="anti")
    now = current.lazy().select(KEY).unique()
    history = (newest.join(now, on=KEY, how="anti").sort([ts, "content_hash"], descending=True)
               .unique("item_id", keep="first", maintain_order=True))
    return pl.concat([newest.join(now, on=KEY, how="semi"), history]).collect()


def compact_folder(folder: Path, current: pl.DataFrame, ts: str, tmp_dir: Path,
                   exclude: pl.LazyFrame | None = None, max_parts: int = COMPACT_MAX_PARTS) -> dict | None:
    """Rewrite a folder of more than `max_parts` parts as one part of the rows `keep_plan` keeps; None when the
    folder is small (the check is a directory listing)."""
    parts = sorted(folder.glob("part-*.parquet"))
    if len(parts) <= max_parts:
        return None
    scan = pl.scan_parquet(parts)
    rows_before = scan.select(pl.len()).collect().item()
    keep = keep_plan(scan.select(*KEY, ts), current, ts, exclude)
    rows = scan.join(keep.lazy(), on=[*KEY, ts], how="semi").unique(KEY, keep="any")
    sink_parquet_atomic(rows, folder / part_name(), tmp_dir)
    crash_point("compaction-after-write")
    for part in parts:
        part.unlink(missing_ok=True)
    log.info("compacted %s: %d parts, %d rows -> 1 part, %d rows", folder, len(parts), rows_before, keep.height)
    return {"parts": len(parts), "rows_before": rows_before, "rows_after": keep.height}
