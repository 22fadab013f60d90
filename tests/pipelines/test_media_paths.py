"""Media paths confined for real: references resolved (symlinks followed) and checked against the resolved media
root at validation, at hashing and again when the file is opened; no media root means absolute paths only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from extractor_fixtures import smooth_rgb, write_image

from extractors import registry
from extractors.base import ItemFailure
from extractors.files import ReadOptions, read_media_bytes
from pipelines.contracts import InvalidInputError, validate_catalog
from pipelines.extract import inputs
from pipelines.extract.shard import ExtractorRef, ShardJob, get_extractor, run_shard
from pipelines.store.layout import Store

TINY_IMAGE = {"model": "test_efficientnet", "weights": "random", "num_workers": 0, "batch_size": 4, "device": "cpu"}


@pytest.fixture
def tree(tmp_path):
    """media/ with a real image, a symlink inside pointing inside, and outside/ with a secret and an image."""
    media, outside = tmp_path / "media", tmp_path / "outside"
    (media / "img").mkdir(parents=True)
    outside.mkdir()
    write_image(media / "img" / "good.jpg", smooth_rgb(1, (40, 32)))
    write_image(outside / "elsewhere.jpg", smooth_rgb(2, (40, 32)))
    (outside / "secret.txt").write_text("root:x:0:0\n")
    (media / "img" / "alias.jpg").symlink_to(media / "img" / "good.jpg")
    return media, outside


def _catalog(tmp_path: Path, refs: list[str | None]) -> str:
    path = tmp_path / "catalog.parquet"
    pl.DataFrame({"item_id": [f"i{n}" for n in range(len(refs))], "title": ["t"] * len(refs),
                  "description": ["d"] * len(refs), "image": refs},
                 schema_overrides={"image": pl.String}).write_parquet(path)
    return str(path)


def test_a_symlink_out_of_the_media_root_fails_validation_naming_its_target(tmp_path, tree):
    media, outside = tree
    (media / "img" / "leak.jpg").symlink_to(outside / "secret.txt")
    (media / "passwd").symlink_to("/etc/passwd")
    report, _ = validate_catalog(_catalog(tmp_path, ["img/good.jpg", "img/alias.jpg", "img/leak.jpg", "passwd"]),
                                 media_root=str(media))
    with pytest.raises(InvalidInputError, match=r"column 'image': \[inside media root\] 2 reference\(s\) escape the "
                                                r"media root .*symlinks followed.*'img/leak\.jpg', resolves_to='"
                                                + str(outside / "secret.txt")):
        report.raise_if_errors()
    assert "/etc/passwd" in report.format()


def test_a_symlinked_media_root_and_links_inside_it_are_fine(tmp_path, tree):
    media, _ = tree
    (tmp_path / "root_link").symlink_to(media)
    report, _ = validate_catalog(_catalog(tmp_path, ["img/good.jpg", "img/alias.jpg", "img/../img/good.jpg", None]),
                                 media_root=str(tmp_path / "root_link"))
    assert report.ok, report.format()


def test_without_a_media_root_only_absolute_references_are_accepted(tmp_path, tree):
    media, _ = tree
    report, _ = validate_catalog(_catalog(tmp_path, [str(media / "img" / "good.jpg"), "img/good.jpg"]))
    with pytest.raises(InvalidInputError, match=r"column 'image': \[absolute without media root\] 1 reference\(s\) "
                                                r"are relative.*item_id='i1'.*Fix: set data.media_root"):
        report.raise_if_errors()
    with pytest.raises(inputs.MediaPathError, match=r"'img/good.jpg' is relative but no media root is set"):
        inputs.resolve_media("img/good.jpg", None)
    ok, _ = validate_catalog(_catalog(tmp_path, [str(media / "img" / "good.jpg")]))
    assert ok.ok, ok.format()


def test_a_file_swapped_for_an_outward_symlink_after_validation_is_refused_on_read(tmp_path, tree):
    media, outside = tree
    target = media / "img" / "good.jpg"
    report, _ = validate_catalog(_catalog(tmp_path, ["img/good.jpg"]), media_root=str(media))
    assert report.ok
    target.unlink()
    target.symlink_to(outside / "elsewhere.jpg")  # swapped after validation
    with pytest.raises(ItemFailure, match=r"resolves to .*elsewhere\.jpg, outside the media root") as failure:
        read_media_bytes(target, ReadOptions(root=str(media)))
    assert failure.value.kind == "outside_root"
    assert read_media_bytes(target, ReadOptions()) == (outside / "elsewhere.jpg").read_bytes()  # unconfined: read
    assert inputs.media_hash(str(target), str(media)).startswith("outside_root:")  # not even read to hash it


def test_a_folder_swapped_for_a_symlink_is_refused_by_the_extractor_and_the_shard_writes_an_error_row(tmp_path, tree):
    media, outside = tree
    good = str(media / "img" / "good.jpg")
    (media / "clips").symlink_to(outside)  # a whole folder pointing out of the root
    leaked = str(media / "clips" / "elsewhere.jpg")
    ext = registry.create("image/timm", **TINY_IMAGE)
    result = ext.embed([good, leaked], root=str(media))
    assert [(e.index, e.kind) for e in result.errors] == [(1, "outside_root")]
    assert result.ok.tolist() == [True, False] and not result.vectors[1].any()
    assert ext.embed([leaked]).ok.all()  # the same call without a root reads it: the refusal is the root's doing
    ref = ExtractorRef("image/timm", dict(TINY_IMAGE))
    job = ShardJob(str(tmp_path / "store"), "image", ref, get_extractor(ref).fingerprint, ("a", "b"),
                   (good, leaked), ("ha", "hb"), media_root=str(media))
    assert run_shard(job)["failed"] == {"outside_root": 1}
    errors = Store(tmp_path / "store").scan_errors("image", job.fingerprint).collect()
    assert errors.select("item_id", "error_kind").rows() == [("b", "outside_root")]
    assert "outside the media root" in errors["message"][0]


def test_the_check_on_the_opened_file_catches_a_swap_between_resolve_and_open(monkeypatch, tmp_path, tree):
    media, outside = tree
    target = media / "img" / "good.jpg"
    real_realpath = os.path.realpath

    def stale_realpath(path, *args, **kwargs):  # the pre-open check sees the path as it was before the swap
        return str(target) if str(path) == str(target) else real_realpath(path, *args, **kwargs)

    target.unlink()
    target.symlink_to(outside / "elsewhere.jpg")
    from extractors import files

    monkeypatch.setattr(files.os.path, "realpath", stale_realpath)
    with pytest.raises(ItemFailure) as failure:
        read_media_bytes(target, ReadOptions(root=str(media)))
    assert failure.value.kind == "outside_root"


def test_modality_inputs_give_outside_files_an_outside_root_hash(tmp_path, tree):
    media, outside = tree
    (media / "img" / "leak.jpg").symlink_to(outside / "elsewhere.jpg")
    catalog = pl.DataFrame({"item_id": ["a", "b"], "image": ["img/good.jpg", "img/leak.jpg"]})
    frame = inputs.modality_inputs(catalog, "image", text_columns=(), media_root=str(media), hash_workers=1)
    hashes = dict(zip(frame["item_id"], frame["content_hash"]))
    assert hashes["a"] == inputs.file_hash(media / "img" / "good.jpg")
    assert hashes["b"].startswith("outside_root:")
    np.testing.assert_array_equal(frame["input"].to_numpy(), [str(media / "img" / "good.jpg"),
                                                             str(media / "img" / "leak.jpg")])


def test_a_shard_refuses_unread_what_hashing_found_outside_even_without_a_root_on_the_job(tmp_path, tree):
    media, outside = tree
    (media / "img" / "leak.jpg").symlink_to(outside / "elsewhere.jpg")  # as if swapped in after validation
    catalog = pl.DataFrame({"item_id": ["a", "b"], "image": ["img/good.jpg", "img/leak.jpg"]})
    planned = inputs.modality_inputs(catalog, "image", text_columns=(), media_root=str(media), hash_workers=1)
    ref = ExtractorRef("image/timm", dict(TINY_IMAGE))
    job = ShardJob(str(tmp_path / "store"), "image", ref, get_extractor(ref).fingerprint,
                   tuple(planned["item_id"]), tuple(planned["input"]), tuple(planned["content_hash"]))
    counts = run_shard(job)
    assert (counts["embedded"], counts["failed"]) == (1, {"outside_root": 1})
    errors = Store(tmp_path / "store").scan_errors("image", job.fingerprint).collect()
    assert errors.select("item_id", "error_kind").rows() == [("b", "outside_root")]
    assert "nothing was read" in errors["message"][0]
