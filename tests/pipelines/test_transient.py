"""Transient vs permanent failures: IO errors retried then reported "transient" (retried next run); only a
decoder's verdict on bytes read whole is a settled "decode"; a zero-byte file is "empty"."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from extractor_fixtures import smooth_rgb, write_image

from extractors import files, registry
from extractors.base import ItemFailure
from extractors.batching import embed_batches, list_collate
from extractors.files import ReadOptions, is_transient_error, read_media_bytes
from extractors.media import read_audio_windows, read_image_rgb, read_video_frames
from pipelines.extract import inputs
from pipelines.extract.shard import ExtractorRef, ShardJob, get_extractor, run_shard
from pipelines.store.layout import Store

FAST = ReadOptions(retries=2, backoff_s=0.001)
TINY_IMAGE = {"model": "test_efficientnet", "weights": "random", "num_workers": 0, "batch_size": 4, "device": "cpu",
              "read_retries": 1, "read_backoff_s": 0.001}


class Flaky:
    """Stands in for one open-and-read: fails with ``code`` for the listed paths, ``times`` times each."""

    def __init__(self, real, paths, code=errno.EIO, times=None):
        self.real, self.paths, self.code, self.times, self.calls = real, {str(p) for p in paths}, code, times, {}

    def __call__(self, path, root):
        key = str(path)
        self.calls[key] = self.calls.get(key, 0) + 1
        if key in self.paths and (self.times is None or self.calls[key] <= self.times):
            raise OSError(self.code, f"injected {errno.errorcode[self.code]}")
        return self.real(path, root)


@pytest.fixture
def image(tmp_path) -> Path:
    return write_image(tmp_path / "a.jpg", smooth_rgb(1, (40, 32)))


def test_a_transient_error_that_clears_is_retried_and_the_bytes_come_back(monkeypatch, image):
    flaky = Flaky(files._read_once, [image], times=2)
    monkeypatch.setattr(files, "_read_once", flaky)
    assert read_media_bytes(image, FAST) == image.read_bytes()
    assert flaky.calls[str(image)] == 3


@pytest.mark.parametrize("code", [errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN, errno.ECONNRESET])
def test_a_persistent_transient_error_is_reported_transient_after_the_retries(monkeypatch, image, code):
    flaky = Flaky(files._read_once, [image], code=code)
    monkeypatch.setattr(files, "_read_once", flaky)
    with pytest.raises(ItemFailure, match=rf"read failed 3 time\(s\), last with {errno.errorcode[code]}") as failure:
        read_media_bytes(image, FAST)
    assert failure.value.kind == "transient" and flaky.calls[str(image)] == FAST.retries + 1
    assert "retried on the next run" in failure.value.message


def test_a_permanent_os_error_is_not_retried(monkeypatch, image):
    flaky = Flaky(files._read_once, [image], code=errno.EACCES)
    monkeypatch.setattr(files, "_read_once", flaky)
    with pytest.raises(ItemFailure, match="cannot be read") as failure:
        read_media_bytes(image, FAST)
    assert failure.value.kind == "unreadable" and flaky.calls[str(image)] == 1
    assert not is_transient_error(PermissionError(errno.EACCES, "x")) and is_transient_error(TimeoutError())


def test_zero_bytes_is_empty_and_garbage_read_whole_is_decode(tmp_path):
    zero = tmp_path / "zero.jpg"
    zero.write_bytes(b"")
    for read in (read_image_rgb, lambda p: read_audio_windows(p, window_s=1.0, max_windows=1),
                 lambda p: read_video_frames(p, num_frames=2, short_side=16)):
        with pytest.raises(ItemFailure, match="zero-byte file") as failure:
            read(zero)
        assert failure.value.kind == "empty"
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"\x00\x01 not audio " * 100)
    with pytest.raises(ItemFailure) as failure:
        read_audio_windows(garbage, window_s=1.0, max_windows=1)
    assert failure.value.kind == "decode"


def test_an_unexpected_io_error_inside_a_decoder_is_transient_not_decode():
    def decode(value):
        if value == "io":
            raise OSError(errno.EIO, "Input/output error")
        if value == "bug":
            raise ValueError("odd header")
        return [np.ones(2, np.float32)]

    result = embed_batches(["ok", "io", "bug"], decode, lambda clips: np.stack([c[0] for c in clips]), dim=2,
                           batch_size=3, num_workers=0, collate=list_collate)
    assert [(e.index, e.kind) for e in result.errors] == [(1, "transient"), (2, "decode")]
    assert result.ok.tolist() == [True, False, False]


def test_the_extractor_reports_a_flaky_file_transient_and_still_embeds_the_rest(monkeypatch, tmp_path):
    paths = [str(write_image(tmp_path / f"i{i}.jpg", smooth_rgb(i, (40, 32)))) for i in range(3)]
    ext = registry.create("image/timm", **TINY_IMAGE)
    clean = ext.embed(paths).vectors
    monkeypatch.setattr(files, "_read_once", Flaky(files._read_once, [paths[1]]))
    result = ext.embed(paths)
    assert [(e.index, e.kind) for e in result.errors] == [(1, "transient")]
    np.testing.assert_allclose(result.vectors[[0, 2]], clean[[0, 2]], atol=1e-6)


def test_content_hashing_retries_transient_errors(monkeypatch, image):
    real, calls = inputs.sha256_file, []

    def flaky(path):
        calls.append(path)
        if len(calls) < 3:
            raise OSError(errno.EIO, "injected EIO")
        return real(path)

    monkeypatch.setattr(inputs, "sha256_file", flaky)
    assert inputs.file_hash(image, retries=3, backoff_s=0.001) == real(image)
    calls.clear()
    monkeypatch.setattr(inputs, "sha256_file", lambda path: (_ for _ in ()).throw(OSError(errno.EIO, "x")))
    assert inputs.file_hash(image, retries=1, backoff_s=0.001).startswith("unreadable:")


def test_a_transient_row_is_written_and_not_a_settled_key_so_the_next_run_retries_it(monkeypatch, tmp_path):
    paths = [str(write_image(tmp_path / f"i{i}.jpg", smooth_rgb(i, (40, 32)))) for i in range(2)]
    ref = ExtractorRef("image/timm", dict(TINY_IMAGE))
    job = ShardJob(str(tmp_path / "store"), "image", ref, get_extractor(ref).fingerprint, ("a", "b"),
                   tuple(paths), ("ha", "hb"), media_root=str(tmp_path))
    monkeypatch.setattr(files, "_read_once", Flaky(files._read_once, [paths[1]]))
    counts = run_shard(job)
    assert (counts["embedded"], counts["failed"], counts["n"]) == (1, {"transient": 1}, 2)
    store = Store(tmp_path / "store")
    errors = store.scan_errors("image", job.fingerprint).collect()
    assert errors.select("item_id", "error_kind").rows() == [("b", "transient")]
    # the store contract: a transient failure is not a settled (item, content_hash), so planning re-embeds it
    settled = store.stored_keys("image", job.fingerprint)
    assert settled.sort("item_id").rows() == [("a", "ha")]
    monkeypatch.undo()
    todo = pl.DataFrame({"item_id": ["a", "b"], "content_hash": ["ha", "hb"]}).join(
        settled, on=["item_id", "content_hash"], how="anti")
    retry = dataclasses.replace(job, item_ids=tuple(todo["item_id"]), inputs=(paths[1],), hashes=("hb",))
    assert run_shard(retry)["embedded"] == 1

