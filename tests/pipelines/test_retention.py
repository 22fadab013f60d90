"""Store housekeeping: leftovers of killed runs removed under the lock, keep-last-N runs, compaction of parts."""

from __future__ import annotations

import errno
import logging
import os
import time

import numpy as np
import polars as pl
import pytest

from pipelines.store.hygiene import find_debris
from pipelines.store.layout import Store, StoreError, StoreLocked

PAST = time.time() - 3600


def put(store, ids, hashes, seed=0, fp="fp1"):
    vectors = np.random.default_rng(seed).normal(size=(len(ids), 4)).astype(np.float32)
    store.write_embeddings("text", fp, ids, hashes, vectors)
    return vectors


def touch(path, *, dir_=False, data=b"partial"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if dir_:
        path.mkdir()
        (path / "topk.parquet").write_bytes(data)
    else:
        path.write_bytes(data)
    os.utime(path, (PAST, PAST))
    return path


def published(store, name):
    run = store.tmp_dir / f"incomplete-{name}"
    run.mkdir(parents=True)
    (run / "topk.parquet").write_text(name)
    return store.publish(run)


def leftovers(store):
    """What a killed run can leave, in today's layout (tmp/) and in the layout of older versions."""
    root = store.root
    old = [touch(store.embeddings_dir("text", "fp1") / ".part-x.parquet.tmp-1234"),
           touch(store.errors_dir("text", "fp1") / ".part-y.parquet.tmp-5678"),
           touch(root / "current" / ".text.parquet.tmp-abcd"), touch(root / ".extract_summary.json.tmp-ef01"),
           touch(root / "runs" / ".incomplete-20260101T000000Z-abcdef", dir_=True),
           touch(root / "runs" / ".deleting-20260101T000000Z-123456", dir_=True)]
    new = [touch(store.tmp_dir / "part-z.parquet.tmp-9abc"),
           touch(store.tmp_dir / "incomplete-20260102T000000Z-0a0b0c", dir_=True),
           touch(store.tmp_dir / "deleting-20251231T000000Z-0d0e0f", dir_=True)]
    for link in (root / ".latest-0123abcd", store.tmp_dir / "latest-4567cdef"):
        link.symlink_to("runs/gone")
        os.utime(link, (PAST, PAST), follow_symlinks=False)
    return old + new


def test_a_run_that_takes_the_lock_removes_what_killed_runs_left(tmp_path, caplog):
    store = Store(tmp_path)
    put(store, ["a"], ["h1"])
    run = published(store, "20260103T000000Z-aaaaaa")
    debris = leftovers(store)
    fresh = store.tmp_dir / "part-w.parquet.tmp-written-after-the-lock"  # not older than the lock: kept
    fresh.write_bytes(b"x")
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    with caplog.at_level(logging.WARNING, logger="pipelines.store.hygiene"), store.lock("extract"):
        assert not any(p.exists() or p.is_symlink() for p in debris)
        assert find_debris(tmp_path) == [fresh]
    assert "removed 11 leftover(s) of an interrupted run" in caplog.text
    assert store.latest_run() == run.resolve() and (run / "topk.parquet").exists()
    assert store.stored_keys("text", "fp1").height == 1
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run.name]


def test_a_run_refused_by_the_lock_touches_nothing(tmp_path):
    store = Store(tmp_path)
    with store.lock("train"):
        debris = leftovers(store)  # stands for the running train's work in progress
        with pytest.raises(StoreLocked, match="locked by another run"):
            with Store(tmp_path).lock("extract"):
                pass
        assert all(p.exists() or p.is_symlink() for p in debris)


def test_work_in_progress_is_out_of_sight_of_readers(tmp_path):
    store = Store(tmp_path)
    run = store.new_run_dir()
    (run / "topk.parquet").write_text("half")
    assert not list(tmp_path.glob("runs/*/topk.parquet"))
    final = store.publish(run)
    assert list(tmp_path.glob("runs/*/topk.parquet")) == [final / "topk.parquet"]
    put(store, ["a"], ["h1"])
    store.write_current("text", "fp1", pl.DataFrame({"item_id": ["a"], "content_hash": ["h1"]}))
    assert find_debris(tmp_path) == []  # every temporary name was renamed into place
    assert sorted(p.name for p in tmp_path.glob("*/*") if p.name.startswith(".")) == []


def test_retention_keeps_the_newest_runs_and_the_one_latest_names(tmp_path):
    store = Store(tmp_path)
    names = [f"2026010{i}T000000Z-aaaaa{i}" for i in range(1, 7)]
    runs = [published(store, name) for name in names]
    (tmp_path / "latest").unlink()  # an operator rolled `latest` back to the first run
    (tmp_path / "latest").symlink_to(f"runs/{names[0]}")
    (tmp_path / "runs" / "notes").mkdir()  # not a run: never pruned
    removed = store.prune_runs(2)
    assert sorted(removed) == names[1:4]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([names[0], *names[4:], "notes"])
    assert store.latest_run() == runs[0].resolve() and (runs[0] / "topk.parquet").exists()
    assert not list(store.tmp_dir.iterdir())  # the runs went through tmp/ and are gone
    assert store.prune_runs(2) == []


def test_retention_refuses_to_keep_no_run(tmp_path):
    with pytest.raises(StoreError, match=r"keep_runs=0.*Fix: set store.keep_runs >= 1"):
        Store(tmp_path).prune_runs(0)


def test_retention_orders_runs_of_the_same_second_by_when_they_finished(tmp_path):
    store = Store(tmp_path)
    first, second = published(store, "20260101T000000Z-ffffff"), published(store, "20260101T000000Z-000000")
    os.utime(first, (PAST, PAST))
    assert store.prune_runs(1) == [first.name] and second.exists()


# --- compaction --------------------------------------------------------------------------------------------------
def parts(store, kind="embeddings"):
    return sorted((store.root / kind / "text" / "fp1").glob("part-*.parquet"))


def raw_keys(store, kind="embeddings"):
    return sorted(pl.concat([pl.read_parquet(p) for p in parts(store, kind)]).select("item_id", "content_hash").rows())


def history_store(tmp_path):
    """a: h1 -> h2 -> h3 (now, embedded twice); b: h1 (now); c: left the catalog after h1 -> h2."""
    store = Store(tmp_path)
    for i, (item, content) in enumerate([("a", "h1"), ("a", "h2"), ("c", "h1"), ("c", "h2"), ("a", "h3"),
                                         ("b", "h1"), ("a", "h3")]):
        put(store, [item], [content], seed=i)
    current = pl.DataFrame({"item_id": ["a", "b"], "content_hash": ["h3", "h1"]})
    store.write_current("text", "fp1", current)
    return store, current


def test_compaction_keeps_the_current_view_and_one_step_of_history(tmp_path):
    store, current = history_store(tmp_path)
    before = store.scan_current("text").collect()
    done = store.compact("text", "fp1", current, max_parts=4)
    assert done["embeddings"] == {"parts": 7, "rows_before": 7, "rows_after": 4}
    assert len(parts(store)) == 1
    assert raw_keys(store) == [("a", "h2"), ("a", "h3"), ("b", "h1"), ("c", "h2")]
    after = store.scan_current("text").collect()
    assert after.equals(before)  # the newest copy of a/h3 is the one kept
    assert find_debris(tmp_path) == []


def test_compaction_is_a_directory_listing_when_there_is_little_to_do(tmp_path):
    store, current = history_store(tmp_path)
    listing = [(p, p.stat().st_mtime_ns) for p in parts(store)]
    assert store.compact("text", "fp1", current, max_parts=7) == {}
    assert [(p, p.stat().st_mtime_ns) for p in parts(store)] == listing


def test_error_rows_of_items_embedded_since_are_compacted_away(tmp_path):
    store = Store(tmp_path)
    row = {"content_hash": "h1", "message": "m", "extractor": "text/hf"}
    for item, kind in (("x", "transient"), ("y", "decode"), ("y", "decode"), ("z", "transient")):
        store.write_errors("text", "fp1", [{**row, "item_id": item, "error_kind": kind}])
    put(store, ["x"], ["h1"])  # x's read error went away on the next run
    current = pl.DataFrame({"item_id": ["x", "y", "z"], "content_hash": ["h1", "h1", "h1"]})
    done = store.compact("text", "fp1", current, max_parts=3)
    assert "embeddings" not in done and done["errors"]["rows_after"] == 2
    assert raw_keys(store, "errors") == [("y", "h1"), ("z", "h1")]
    assert sorted(store.stored_keys("text", "fp1")["item_id"]) == ["x", "y"]  # z is retried


class Killed(BaseException):
    """Stands for SIGKILL in-process: nothing after the crash point runs (tests/test_faults.py kills for real)."""


def test_a_compaction_killed_before_deleting_leaves_duplicates_readers_drop(tmp_path, monkeypatch):
    store, current = history_store(tmp_path)
    before = store.scan_current("text").collect()

    def crash(name):
        if name == "compaction-after-write":
            raise Killed

    monkeypatch.setattr("pipelines.store.hygiene.crash_point", crash)
    with pytest.raises(Killed):
        store.compact("text", "fp1", current, max_parts=4)
    assert len(parts(store)) == 8  # the new part beside the seven it replaces
    assert store.scan_current("text").collect().equals(before)
    assert store.stored_keys("text", "fp1").height == 6
    monkeypatch.undo()
    store.compact("text", "fp1", current, max_parts=4)
    assert raw_keys(store) == [("a", "h2"), ("a", "h3"), ("b", "h1"), ("c", "h2")]
    assert store.scan_current("text").collect().equals(before)


def test_a_full_disk_during_compaction_leaves_the_parts_intact(tmp_path, monkeypatch):
    store, current = history_store(tmp_path)
    listing = parts(store)

    def disk_full(self, path, **_):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", disk_full)
    with pytest.raises(OSError, match=r"no space left on device while writing .*Fix: free space"):
        store.compact("text", "fp1", current, max_parts=4)
    assert parts(store) == listing and not list(store.tmp_dir.iterdir())
    assert store.scan_current("text").collect().height == 2
