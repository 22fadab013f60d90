"""The store: atomic shards, the current view (one row per item, for the content it has now), the latest pointer."""

import numpy as np
import polars as pl
import pytest

from pipelines.store.layout import Store, StoreError, StoreLocked


def put(store, ids, hashes, seed=0, fp="fp1"):
    vectors = np.random.default_rng(seed).normal(size=(len(ids), 4)).astype(np.float32)
    store.write_embeddings("text", fp, ids, hashes, vectors)
    return vectors


def test_current_view_follows_the_catalog(tmp_path):
    store = Store(tmp_path)
    put(store, ["a", "b", "c"], ["h1", "h2", "h3"])
    new = put(store, ["b"], ["h2-new"], seed=1)  # b's content changed and was re-embedded
    store.write_current("text", "fp1", pl.DataFrame({"item_id": ["a", "b"], "content_hash": ["h1", "h2-new"]}))
    current = store.scan_current("text").collect()
    assert current["item_id"].to_list() == ["a", "b"]  # c left the catalog
    np.testing.assert_allclose(current.filter(pl.col("item_id") == "b")["embedding"].to_numpy()[0], new[0])
    assert current.schema["embedding"] == pl.Array(pl.Float32, 4)


def test_stored_keys_cover_vectors_and_errors(tmp_path):
    store = Store(tmp_path)
    put(store, ["a"], ["h1"])
    store.write_errors("text", "fp1", [{"item_id": "z", "content_hash": "hz", "error_kind": "empty",
                                        "message": "no text", "extractor": "text/hf"}])
    keys = store.stored_keys("text", "fp1").sort("item_id")
    assert keys.rows() == [("a", "h1"), ("z", "hz")]
    assert store.stored_keys("text", "other-fp").height == 0


def test_transient_failures_are_not_stored_so_the_next_run_retries_them(tmp_path):
    store = Store(tmp_path)
    rows = [{"item_id": i, "content_hash": f"h{i}", "error_kind": kind, "message": "m", "extractor": "image/timm"}
            for i, kind in (("t", "transient"), ("d", "decode"), ("m", "missing"), ("u", "unreadable"))]
    store.write_errors("image", "fp1", rows)
    assert sorted(store.stored_keys("image", "fp1")["item_id"]) == ["d", "m", "u"]
    assert sorted(store.scan_failed_keys("image", "fp1").collect()["item_id"]) == ["d", "m", "u"]
    store.write_errors("image", "fp1", [{**rows[0], "error_kind": "decode"}])  # retried, failed for good
    assert "t" in store.stored_keys("image", "fp1")["item_id"].to_list()


def test_readers_ignore_temporary_files(tmp_path):
    store = Store(tmp_path)
    put(store, ["a"], ["h1"])
    folder = store.embeddings_dir("text", "fp1")
    (folder / ".part-x.parquet.tmp-1234").write_bytes(b"partial garbage")
    assert store.stored_keys("text", "fp1").height == 1


def test_publish_swaps_latest_atomically(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StoreError, match="no published run.*make train"):
        store.latest_run()
    first = store.new_run_dir()
    (first / "topk.parquet").write_text("1")
    published = store.publish(first)
    assert store.latest_run() == published.resolve()
    failed = store.new_run_dir()  # a run that dies before publish leaves latest where it was
    (failed / "topk.parquet").write_text("2")
    assert store.latest_run() == published.resolve()
    second = store.publish(store.new_run_dir())
    assert store.latest_run() == second.resolve() and published.exists()


def test_missing_current_view_says_what_to_run(tmp_path):
    with pytest.raises(StoreError, match=r"no current image embeddings.*run `make extract`"):
        Store(tmp_path).read_current_keys("image")


def test_a_second_run_on_the_same_store_fails_fast(tmp_path):
    store = Store(tmp_path)
    with store.lock("extract"):
        with pytest.raises(StoreLocked, match=r"locked by another run \(extract pid \d+.*Fix: wait"):
            with Store(tmp_path).lock("train"):
                pass
    with store.lock("train"):  # released afterwards
        pass
    assert issubclass(StoreLocked, StoreError)  # callers that catch StoreError still catch it
