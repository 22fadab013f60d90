"""Nightly cost proportional to change: a rerun with nothing changed reads no unchanged media file to hash it;
a changed file is read again; --rehash reads everything; only real content hashes are cached."""

from __future__ import annotations

import os

import polars as pl
import pytest

from pipelines.extract import inputs
from pipelines.extract.hash_cache import HashCache
from pipelines.store.layout import Store


@pytest.fixture
def catalog(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i in range(5):
        (media / f"{i}.jpg").write_bytes(bytes([i]) * (100 + i))
    frame = pl.DataFrame({"item_id": [f"i{i}" for i in range(6)],
                          "image": [f"{i}.jpg" for i in range(5)] + ["gone.jpg"]})
    return frame, str(media.resolve())


@pytest.fixture
def reads(monkeypatch):
    """Every file the hashing actually opens."""
    opened: list[str] = []
    real = inputs.sha256_file

    def counting(path):
        value = real(path)  # a missing file raises before anything is read
        opened.append(os.path.basename(str(path)))
        return value

    monkeypatch.setattr(inputs, "sha256_file", counting)
    return opened


def _hash(catalog, media_root, cache):
    return inputs.modality_inputs(catalog, "image", text_columns=("title",), media_root=media_root, cache=cache)


def test_an_unchanged_file_is_not_read_again_and_a_changed_one_is(tmp_path, catalog, reads):
    frame, root = catalog
    store = Store(tmp_path / "store")
    first = HashCache.load(store.hash_cache_path)
    hashes = _hash(frame, root, first)["content_hash"].to_list()
    assert first.hashed == 5 and sorted(reads) == [f"{i}.jpg" for i in range(5)]  # gone.jpg: missing, not read
    first.save(store.hash_cache_path, store.tmp_dir)

    reads.clear()
    second = HashCache.load(store.hash_cache_path)
    assert _hash(frame, root, second)["content_hash"].to_list() == hashes
    assert reads == [] and second.reused == 5 and second.hashed == 0  # the missing file is stat-ed, not read

    changed = os.path.join(root, "2.jpg")
    with open(changed, "wb") as fh:
        fh.write(b"new bytes, new size")
    reads.clear()
    third = HashCache.load(store.hash_cache_path)
    third_hashes = _hash(frame, root, third)["content_hash"].to_list()
    assert reads == ["2.jpg"] and third_hashes[2] != hashes[2] and third_hashes[:2] == hashes[:2]


def test_rehash_reads_every_file_again(tmp_path, catalog, reads):
    frame, root = catalog
    store = Store(tmp_path / "store")
    cache = HashCache.load(store.hash_cache_path)
    _hash(frame, root, cache)
    cache.save(store.hash_cache_path, store.tmp_dir)
    reads.clear()
    rehash = HashCache.load(store.hash_cache_path, rehash=True)
    _hash(frame, root, rehash)
    assert sorted(reads) == [f"{i}.jpg" for i in range(5)] and rehash.reused == 0


def test_a_same_size_rewrite_with_a_new_mtime_is_read_again(tmp_path, catalog, reads):
    frame, root = catalog
    store = Store(tmp_path / "store")
    cache = HashCache.load(store.hash_cache_path)
    before = _hash(frame, root, cache)["content_hash"].to_list()
    cache.save(store.hash_cache_path, store.tmp_dir)
    path = os.path.join(root, "0.jpg")
    stat = os.stat(path)
    with open(path, "wb") as fh:
        fh.write(b"\xff" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    reads.clear()
    after = _hash(frame, root, HashCache.load(store.hash_cache_path))["content_hash"].to_list()
    assert reads == ["0.jpg"] and after[0] != before[0]


def test_a_damaged_cache_costs_a_rehash_not_a_failure(tmp_path, catalog, reads):
    frame, root = catalog
    store = Store(tmp_path / "store")
    store.root.mkdir(parents=True)
    store.hash_cache_path.write_bytes(b"not parquet")
    cache = HashCache.load(store.hash_cache_path)
    _hash(frame, root, cache)
    assert len(reads) == 5
