"""Faults an on-call engineer meets: kill -9 at chosen points of extract and train (publish included), two runs
on one store, a full disk. After each, a rerun must leave no lost or duplicated rows, a complete `latest`, no
debris and no orphaned process.

Real subprocesses (`python -m pipelines ... --engine local`) are killed with SIGKILL, either when the test sees
a file appear, or at a named point through MMREC_CRASH_AT (pipelines.store.parquet_io.crash_point) where no file
marks the moment (between two renames).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_config
from pipelines.extract.flow import compact, run_extraction
from pipelines.store.hygiene import find_debris
from pipelines.store.layout import Store, StoreLocked
from pipelines.train.flow import run_training
from tests.extract_helpers import config_for, make_demo, overrides_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
KILLED = -signal.SIGKILL
TRAIN_FAST = ["train.tune.trials=1", "train.modalities=['text']", "train.item_cold.enabled=false"]


# --- processes ---------------------------------------------------------------------------------------------------
def start(command: str, overrides: list[str], log: Path, crash: str | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipelines", command, "--engine", "local"]
    for item in overrides:
        args += ["--set", item]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("MMREC_CRASH_AT", None)
    if crash:
        env["MMREC_CRASH_AT"] = crash
    # a session of its own, so that every process it starts can be found afterwards
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> int:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"{proc.args[3]} ran past {timeout}s:\n{log.read_text()[-3000:]}")
    assert_no_orphans(proc)
    return rc


def kill_when(proc: subprocess.Popen, log: Path, seen, timeout: float = 300) -> None:
    """SIGKILL the process (not its group: what the OOM killer or `kill -9 <pid>` does) once `seen()` is true."""
    deadline = time.monotonic() + timeout
    while not seen():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the moment to kill never came (rc {proc.returncode}):\n{log.read_text()[-3000:]}")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc, log) == KILLED


def session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def assert_no_orphans(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10  # children that watch their parent need a moment to notice
    while (left := session_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, f"processes left behind by pid {proc.pid}: {left}"


# --- what must hold after every rerun ----------------------------------------------------------------------------
def assert_no_debris(root: Path) -> None:
    assert find_debris(root) == []
    odd = [p for p in root.rglob("*")
           if ".tmp-" in p.name or p.name.startswith((".incomplete-", ".deleting-", ".latest-"))]
    assert odd == []


def assert_latest_complete(root: Path) -> Path:
    run = Store(root).latest_run()
    assert run.parent == (root / "runs").resolve() and not run.name.startswith(".")
    for name in ("topk.parquet", "similar_items.parquet", "fused_items.parquet", "index.faiss", "manifest.json"):
        assert (run / name).exists(), name
    assert pl.read_parquet(run / "topk.parquet").height > 0
    return run


def all_rows(root: Path, kind: str = "embeddings") -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((root / kind / "text").glob("*/part-*.parquet"))])


# --- extract -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("faults"))


def assert_extracted_everything_once(demo, root: Path) -> None:
    current = Store(root).scan_current("text").collect()
    assert sorted(current["item_id"]) == sorted(pl.read_parquet(demo.catalog)["item_id"])  # nothing lost
    assert current["item_id"].is_unique().all()
    rows = all_rows(root)
    assert rows.select("item_id", "content_hash").is_duplicated().sum() == 0  # nothing stored twice


def test_extract_killed_mid_shard_then_mid_compaction_resumes_without_loss(demo, tmp_path):
    root = tmp_path / "store"
    overrides = overrides_for(demo, root, ("text",), ["extract.shard_size=1"])  # 30 shards: compaction runs
    # 1. killed while a shard is half written (the 4th atomic write: the manifest, then shards 1, 2, 3)
    kill_at = start("extract", overrides, tmp_path / "1.log", crash="write-before-rename:4")
    assert finish(kill_at, tmp_path / "1.log") == KILLED
    assert len(list((root / "tmp").glob("part-*.tmp-*"))) == 1 and not (root / "current").exists()
    folder = next((root / "embeddings" / "text").iterdir())  # what `read_parquet('folder/*')` reads: whole parts
    assert all(p.name == "manifest.json" or p.match("part-*.parquet") for p in folder.iterdir())
    done = all_rows(root).height
    assert done >= 1
    # 2. the rerun resumes, then is killed between writing the compacted part and deleting the 30 it replaces
    kill_at = start("extract", overrides, tmp_path / "2.log", crash="compaction-after-write")
    assert finish(kill_at, tmp_path / "2.log") == KILLED
    assert not list((root / "tmp").glob("part-*.tmp-*"))  # the first run's half shard is gone
    assert all_rows(root).height == 2 * 30  # every row twice: the old parts and the compacted one
    assert Store(root).scan_current("text").collect()["item_id"].is_unique().all()  # readers drop duplicates
    # 3. the next run embeds nothing, finishes the compaction and leaves nothing behind
    summary = run_extraction(config_for(demo, root, ("text",), ["extract.shard_size=1"]))["modalities"][0]
    assert summary["embedded"] == 0 and summary["unchanged"] == 30
    assert len(list((root / "embeddings" / "text").glob("*/part-*.parquet"))) == 1
    assert_extracted_everything_once(demo, root)
    assert_no_debris(root)


def test_a_second_run_on_a_busy_store_fails_fast_and_the_first_finishes_intact(demo, tmp_path):
    root = tmp_path / "store"
    log = tmp_path / "first.log"
    first = start("extract", overrides_for(demo, root, ("text",), ["extract.shard_size=2"]), log)
    deadline = time.monotonic() + 300
    while not list((root / "embeddings").glob("text/*/part-*.parquet")):  # it holds the lock and is writing
        assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(StoreLocked, match=r"locked by another run \(extract pid \d+.*Fix: wait"):
        run_extraction(config_for(demo, root, ("text",)))
    with pytest.raises(StoreLocked):
        run_training(load_config(None, overrides_for(demo, root, ("text",), TRAIN_FAST)))
    assert time.monotonic() - started < 20
    assert finish(first, log) == 0, log.read_text()[-3000:]
    assert_extracted_everything_once(demo, root)
    assert_no_debris(root)


def edit_descriptions(demo, path: Path, n: int) -> list[str]:
    catalog = pl.read_parquet(demo.catalog)
    edited = catalog["item_id"][:n].to_list()
    catalog.with_columns(description=pl.when(pl.col("item_id").is_in(edited)).then(pl.lit("rewritten tonight"))
                         .otherwise(pl.col("description"))).write_parquet(path)
    return edited


def full_disk_after(monkeypatch, good_writes: int) -> None:
    """pyarrow's write_table (what every atomic Parquet write calls) writes half a file, then finds the disk full."""
    real, calls = pq.write_table, []

    def write(table, where, **kwargs):
        calls.append(where)
        if len(calls) <= good_writes:
            return real(table, where, **kwargs)
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", write)


def test_a_full_disk_during_extract_leaves_the_store_readable(demo, tmp_path, monkeypatch):
    root = tmp_path / "store"
    run_extraction(config_for(demo, root, ("text",), ["extract.shard_size=4"]))
    before = Store(root).scan_current("text").collect()
    summary_before = Store(root).summary_path.read_text()
    edited = edit_descriptions(demo, tmp_path / "catalog.parquet", 6)
    tonight = config_for(demo, root, ("text",),
                         ["extract.shard_size=4", f"data.catalog='{tmp_path / 'catalog.parquet'}'"])
    full_disk_after(monkeypatch, good_writes=1)  # the first shard is written, the second finds the disk full
    with pytest.raises(OSError, match=r"no space left on device while writing .*part-.*Fix: free space"):
        run_extraction(tonight)
    assert_no_debris(root)
    assert Store(root).scan_current("text").collect().equals(before)  # yesterday's view, intact
    assert Store(root).summary_path.read_text() == summary_before
    assert all_rows(root).height == 30 + 4
    monkeypatch.undo()
    summary = run_extraction(tonight)["modalities"][0]
    assert summary["embedded"] == 2 and summary["unchanged"] == 28
    after = Store(root).scan_current("text").collect()
    changed = before.join(after, on="item_id").filter(pl.col("content_hash") != pl.col("content_hash_right"))
    assert sorted(changed["item_id"]) == sorted(edited)
    assert_no_debris(root)


def test_a_full_disk_during_compaction_is_a_warning_and_the_parts_stay(tmp_path, monkeypatch, caplog):
    store = Store(tmp_path / "store")
    for i in range(20):
        store.write_embeddings("text", "fp", [f"i{i}"], [f"h{i}"], np.ones((1, 4), np.float32))
    current = pl.DataFrame({"item_id": [f"i{i}" for i in range(20)], "content_hash": [f"h{i}" for i in range(20)]})
    store.write_current("text", "fp", current)
    before = sorted(store.embeddings_dir("text", "fp").iterdir())

    def disk_full(self, path, **_):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", disk_full)
    with store.lock("extract"):
        compact(store, "text", "fp", current)  # the current view is already out: the run goes on
    assert "compaction of text parts (fp) skipped: [Errno 28] no space left on device" in caplog.text
    assert "Fix: free disk space" in caplog.text
    assert sorted(store.embeddings_dir("text", "fp").iterdir()) == before
    assert_no_debris(store.root)
    assert store.scan_current("text").collect().height == 20


# --- train -------------------------------------------------------------------------------------------------------
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def clustered_store(tmp_path: Path, keep_runs: int, n_items: int = 60, n_users: int = 40, days: int = 30) -> list[str]:
    """A store with text vectors in 3 clusters and users who each stick to one (tests/test_train_inputs.py)."""
    rng = np.random.default_rng(1)
    cluster = np.arange(n_items) % 3
    vectors = (rng.normal(size=(3, 8))[cluster] + 0.3 * rng.normal(size=(n_items, 8))).astype(np.float32)
    item_ids = [f"i{i:02d}" for i in range(n_items)]
    store = Store(tmp_path / "store")
    store.write_embeddings("text", "fp", item_ids, item_ids, vectors)
    store.write_current("text", "fp", pl.DataFrame({"item_id": item_ids, "content_hash": item_ids}))
    rows = [(f"u{u:02d}", item_ids[rng.choice(np.flatnonzero(cluster == u % 3))], T0 + timedelta(days=d, minutes=u))
            for u in range(n_users) for d in range(days)]
    pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Datetime("us", "UTC")},
                 orient="row").write_parquet(tmp_path / "interactions.parquet")
    pl.DataFrame({"item_id": item_ids, "title": item_ids, "description": item_ids}).write_parquet(
        tmp_path / "c.parquet")
    return [f"data.interactions='{tmp_path / 'interactions.parquet'}'", f"data.catalog='{tmp_path / 'c.parquet'}'",
            "data.demo=false", f"store.root='{store.root}'", f"store.keep_runs={keep_runs}", *TRAIN_FAST]


def test_train_killed_while_writing_then_while_publishing_then_rerun_publishes_the_same_lists(tmp_path):
    overrides = clustered_store(tmp_path, keep_runs=1)
    root, cfg = tmp_path / "store", load_config(None, overrides)
    first = Path(run_training(cfg)["run_dir"])
    topk = pl.read_parquet(first / "topk.parquet")
    log = tmp_path / "train.log"
    killed = start("train", overrides, log)
    kill_when(killed, log, lambda: any((root / "tmp").glob("incomplete-*/topk.parquet")))
    assert assert_latest_complete(root) == first.resolve()  # readers still get the last complete run
    assert list((root / "tmp").glob("incomplete-*")) and not list((root / "runs").glob(".*"))
    killed = start("train", overrides, log, crash="publish-after-rename")  # moved into runs/, `latest` not swapped
    assert finish(killed, log) == KILLED, log.read_text()[-3000:]
    assert assert_latest_complete(root) == first.resolve()
    assert not list((root / "tmp").glob("incomplete-*"))  # the first kill's half run went at this run's start
    assert len(list((root / "runs").iterdir())) == 2
    rerun = Path(run_training(cfg)["run_dir"])
    assert assert_latest_complete(root) == rerun.resolve()
    assert pl.read_parquet(rerun / "topk.parquet").equals(topk)  # deterministic: the kill changed nothing
    assert [p.name for p in (root / "runs").iterdir()] == [rerun.name]  # store.keep_runs=1
    assert_no_debris(root)


PUBLISH = """
import sys
from pathlib import Path
from pipelines.store.layout import Store
store = Store(Path(sys.argv[1]))
with store.lock("train"):
    run = store.new_run_dir()
    (run / "topk.parquet").write_text("tonight")
    store.publish(run)
    store.prune_runs(1)
"""


@pytest.mark.parametrize(("point", "latest_after", "left"), [
    ("publish-before-rename", "yesterday", "tmp/incomplete-*"),  # the finished run, still out of sight
    ("publish-after-rename", "yesterday", None),  # tonight's run is whole in runs/, `latest` not yet swapped
    ("publish-after-symlink", "yesterday", "tmp/latest-*"),
    ("retention-after-rename", "tonight", "tmp/deleting-*")])  # the oldest run, out of runs/, half removed
def test_a_run_killed_while_publishing_never_exposes_half_a_run(tmp_path, point, latest_after, left):
    store = Store(tmp_path / "store")
    for night in ("before", "yesterday"):
        run = store.new_run_dir()
        (run / "topk.parquet").write_text(night)
        store.publish(run)
        time.sleep(0.01)
    env = {**os.environ, "MMREC_CRASH_AT": point}
    proc = subprocess.Popen([sys.executable, "-c", PUBLISH, str(store.root)], cwd=REPO, env=env, start_new_session=True)
    assert proc.wait(timeout=120) == KILLED
    assert_no_orphans(proc)
    assert (store.latest_run() / "topk.parquet").read_text() == latest_after
    assert all((run / "topk.parquet").exists() for run in store.runs_dir.iterdir())  # runs/*/ are all whole
    assert [p.relative_to(store.root).match(left) for p in find_debris(store.root)] == ([True] if left else [])
    with store.lock("extract"):  # the next run, whichever it is, removes what the kill left
        pass
    assert_no_debris(store.root)
    assert (store.latest_run() / "topk.parquet").read_text() == latest_after


def test_a_full_disk_during_train_keeps_latest_and_leaves_no_half_run(tmp_path, monkeypatch):
    overrides = clustered_store(tmp_path, keep_runs=5)
    root, cfg = tmp_path / "store", load_config(None, overrides)
    first = Path(run_training(cfg)["run_dir"])
    full_disk_after(monkeypatch, good_writes=0)
    with pytest.raises(OSError, match=r"no space left on device while writing .*topk.parquet"):
        run_training(cfg)
    assert assert_latest_complete(root) == first.resolve()
    assert [p.name for p in (root / "runs").iterdir()] == [first.name]
    assert_no_debris(root)
    assert not list((root / "tmp").iterdir())
