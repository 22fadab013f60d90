"""The embedded demo catalog: contract, determinism, media, cold start, atomic generation."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from datetime import timedelta
from pathlib import Path

import decord
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image

from pipelines.demo import media as demo_media
from pipelines.demo.catalog import (
    BROKEN_MEDIA,
    REFERENCE_END,
    DemoFolderError,
    DemoPaths,
    DemoSpec,
    DemoSpecError,
    ensure_demo,
    generate_demo,
)

TINY = DemoSpec(n_items=40, n_users=20, n_interactions=600, days=30, n_categories=4, seed=7, cold_share=0.1,
                cold_days=5, image_size=32, audio_seconds=0.5, sample_rate=8000, video_seconds=0.5,
                video_size=32, video_fps=8)
TS = pa.timestamp("us", tz="UTC")


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoPaths:
    return generate_demo(tmp_path_factory.mktemp("demo") / "a", TINY)


@pytest.fixture(scope="module")
def tables(demo):
    return {name: pq.read_table(getattr(demo, name)) for name in ("catalog", "interactions", "truth")}


@pytest.fixture(scope="module")
def broken_refs(tables) -> dict[str, tuple[str, str]]:
    """broken kind -> (modality, media reference) of the item that carries it."""
    catalog, truth = tables["catalog"].to_pylist(), tables["truth"].to_pylist()
    found = {}
    for row, item in zip(catalog, truth):
        for modality in ("image", "audio", "video"):
            if item[f"{modality}_broken_kind"] is not None:
                found[item[f"{modality}_broken_kind"]] = (modality, row[modality])
    return found


def test_paths_are_absolute_and_follow_the_layout(demo):
    assert demo.root.is_absolute()
    assert (demo.catalog, demo.interactions, demo.truth, demo.media_root) == (
        demo.root / "catalog.parquet", demo.root / "interactions.parquet", demo.root / "truth.parquet",
        demo.root / "media")
    assert {p.name for p in demo.media_root.iterdir()} == {"images", "audio", "video"}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(demo, tmp_path):
    again = generate_demo(tmp_path / "b", TINY)
    other = generate_demo(tmp_path / "c", dataclasses.replace(TINY, seed=8))
    first, second, third = _hashes(demo.root), _hashes(again.root), _hashes(other.root)
    assert len(first) > 3 * 30 and first == second
    for name in ("catalog.parquet", "interactions.parquet", "truth.parquet"):
        assert first[name] != third[name]
    shared_media = [name for name in first if name.startswith("media/") and name in third]
    assert sum(first[name] != third[name] for name in shared_media) > 0.9 * len(shared_media)


def test_catalog_follows_the_data_contract(tables):
    catalog = tables["catalog"]
    assert catalog.schema.remove_metadata() == pa.schema(
        [("item_id", pa.string()), ("title", pa.string()), ("description", pa.string()), ("image", pa.string()),
         ("audio", pa.string()), ("video", pa.string()), ("updated_at", TS)])
    rows = catalog.to_pylist()
    assert [r["item_id"] for r in rows] == [f"i{idx:04d}" for idx in range(TINY.n_items)]
    for row in rows:
        assert row["title"] and 10 <= len(row["description"].split()) <= 40
        for modality, (folder, ext) in {"image": ("images", "jpg"), "audio": ("audio", "wav"),
                                        "video": ("video", "mp4")}.items():
            assert row[modality] in (None, f"{folder}/{row['item_id']}.{ext}")
    assert len({len(r["description"].split()) for r in rows}) > 5  # lengths vary
    assert all(r["updated_at"] < REFERENCE_END for r in rows)


def test_interactions_follow_the_data_contract(tables):
    interactions = tables["interactions"]
    assert interactions.schema.remove_metadata() == pa.schema(
        [("user_id", pa.string()), ("item_id", pa.string()), ("ts", TS), ("weight", pa.float32()),
         ("event", pa.string())])
    assert interactions.num_rows == TINY.n_interactions
    rows = interactions.to_pylist()
    weight_of = {"view": 1.0, "click": 2.0, "purchase": 4.0}
    assert {r["event"] for r in rows} == set(weight_of)
    assert all(r["weight"] == weight_of[r["event"]] for r in rows)
    assert {r["user_id"] for r in rows} == {f"u{idx:04d}" for idx in range(TINY.n_users)}
    assert {r["item_id"] for r in rows} <= set(tables["catalog"].column("item_id").to_pylist())
    start = REFERENCE_END - timedelta(days=TINY.days)
    assert all(start <= r["ts"] < REFERENCE_END for r in rows)
    assert len(rows) > len({(r["user_id"], r["item_id"]) for r in rows})  # some repeats


def test_every_modality_has_some_nulls_and_text_has_none(tables):
    catalog = tables["catalog"]
    for modality in ("image", "audio", "video"):
        assert 0 < catalog.column(modality).null_count < TINY.n_items / 2
    assert catalog.column("title").null_count == catalog.column("description").null_count == 0


def _decode(modality: str, path: Path):
    if modality == "image":
        with Image.open(path) as image:
            image.load()
            return image.mode, image.size
    if modality == "audio":
        info = sf.info(str(path))
        return info.samplerate, info.channels, info.frames, info.subtype
    reader = decord.VideoReader(str(path))
    return len(reader), reader[0].shape


def test_every_intact_media_file_decodes_with_the_spec_sizes(demo, tables):
    expected = {"image": ("RGB", (32, 32)), "audio": (8000, 1, 4000, "PCM_16"), "video": (4, (32, 32, 3))}
    checked = 0
    for row, item in zip(tables["catalog"].to_pylist(), tables["truth"].to_pylist()):
        for modality, want in expected.items():
            if row[modality] is not None and item[f"{modality}_broken_kind"] is None:
                assert _decode(modality, demo.media_root / row[modality]) == want, row[modality]
                checked += 1
    assert checked > 80


def test_each_broken_kind_is_on_one_referenced_item_and_fails_to_decode(demo, tables, broken_refs):
    assert {case.kind for case in BROKEN_MEDIA} == set(broken_refs)
    for case in BROKEN_MEDIA:
        modality, ref = broken_refs[case.kind]
        assert modality == case.modality and ref is not None
        path = demo.media_root / ref
        if case.kind == "missing_file":
            assert not path.exists()
            continue
        with pytest.raises((OSError, RuntimeError)):
            _decode(modality, path)
    truncated = (demo.media_root / broken_refs["truncated_jpeg"][1]).read_bytes()
    assert truncated[:2] == b"\xff\xd8" and len(truncated) > 200  # half of a real JPEG
    assert (demo.media_root / broken_refs["empty_wav"][1]).stat().st_size == 0
    counts = [sum(k is not None for k in tables["truth"].column(f"{m}_broken_kind").to_pylist())
              for m in ("image", "audio", "video")]
    assert counts == [2, 2, 1]


def test_cold_items_appear_late_and_no_item_is_seen_before_first_seen(tables):
    truth = {r["item_id"]: r for r in tables["truth"].to_pylist()}
    cold = [item_id for item_id, r in truth.items() if r["is_cold"]]
    assert len(cold) == TINY.n_cold == 4
    cold_from = REFERENCE_END - timedelta(days=TINY.cold_days)
    assert all(cold_from <= truth[item_id]["first_seen"] < REFERENCE_END for item_id in cold)
    assert all(r["first_seen"] < cold_from for r in truth.values() if not r["is_cold"])
    seen: dict[str, int] = {}
    for row in tables["interactions"].to_pylist():
        assert row["ts"] >= truth[row["item_id"]]["first_seen"], row
        seen[row["item_id"]] = seen.get(row["item_id"], 0) + 1
    assert all(seen.get(item_id, 0) >= 2 for item_id in cold)


def test_popularity_is_skewed_and_users_prefer_few_categories(tables):
    interactions = tables["interactions"].to_pylist()
    category = dict(zip(*tables["truth"].select(["item_id", "category"]).to_pydict().values()))
    per_item = np.sort(np.bincount([int(r["item_id"][1:]) for r in interactions], minlength=TINY.n_items))[::-1]
    assert per_item[: TINY.n_items // 5].sum() > 0.4 * len(interactions)  # top 20% of items
    per_user = np.zeros((TINY.n_users, TINY.n_categories))
    for r in interactions:
        per_user[int(r["user_id"][1:]), category[r["item_id"]]] += 1
    top_share = per_user.max(1) / per_user.sum(1)
    assert top_share.mean() > 0.5  # 4 categories: a uniform taste would give about 0.3


def _features(modality: str, demo: DemoPaths, row: dict) -> np.ndarray:
    if modality == "title+description":
        vocabulary = sorted({w for adjs, nouns in demo_media.THEMES for w in adjs + nouns})
        words = re.findall(r"[a-z-]+", f"{row['title']} {row['description']}".lower())
        return np.array([words.count(w) for w in vocabulary], dtype=float)
    path = demo.media_root / row[modality]
    if modality == "image":
        return np.asarray(Image.open(path), dtype=float).mean((0, 1))
    if modality == "audio":
        spectrum = np.abs(np.fft.rfft(sf.read(str(path))[0]))
        bands = np.array([band.sum() for band in np.array_split(spectrum, 24)])
        return np.log1p(bands / bands.sum() * 100)
    frames = decord.VideoReader(str(path)).get_batch(list(range(TINY.n_video_frames))).asnumpy()
    return frames.reshape(-1, 3).astype(float).mean(0)


@pytest.mark.parametrize("modality", ["title+description", "image", "audio", "video"])
def test_category_is_recoverable_from_each_modality(demo, tables, modality):
    """Leave-one-out nearest centroid on a crude feature beats chance by far: the content carries the category."""
    rows = [(row, item["category"]) for row, item in zip(tables["catalog"].to_pylist(), tables["truth"].to_pylist())
            if modality == "title+description" or (row[modality] and not item[f"{modality}_broken_kind"])]
    features = np.stack([_features(modality, demo, row) for row, _ in rows])
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    labels = np.array([label for _, label in rows])
    correct = 0
    for idx in range(len(rows)):
        keep = np.arange(len(rows)) != idx
        centroids = np.stack([features[keep & (labels == c)].mean(0) for c in range(TINY.n_categories)])
        correct += np.argmin(((centroids - features[idx]) ** 2).sum(1)) == labels[idx]
    assert correct / len(rows) > 0.7  # chance is 0.25


def test_ensure_demo_reuses_a_complete_demo_and_regenerates_an_incomplete_one(tmp_path):
    paths = generate_demo(tmp_path / "demo", TINY)
    before = _hashes(paths.root)
    long_ago = 1_000_000_000
    os.utime(paths.catalog, (long_ago, long_ago))
    assert ensure_demo(tmp_path / "demo", TINY) == paths
    assert paths.catalog.stat().st_mtime == long_ago  # reused, not rewritten
    (paths.root / ".demo-complete.json").unlink()
    assert ensure_demo(tmp_path / "demo", TINY) == paths
    assert paths.catalog.stat().st_mtime > long_ago  # regenerated
    assert _hashes(paths.root) == before
    os.utime(paths.catalog, (long_ago, long_ago))
    ensure_demo(tmp_path / "demo", dataclasses.replace(TINY, seed=99))
    assert paths.catalog.stat().st_mtime > long_ago  # another spec is another demo


def test_a_failed_generation_leaves_no_demo_behind(tmp_path, monkeypatch):
    def broken_encoder(frames, fps):
        raise RuntimeError("encoder died")

    monkeypatch.setattr(demo_media, "encode_mp4", broken_encoder)
    with pytest.raises(RuntimeError, match="encoder died"):
        generate_demo(tmp_path / "demo", TINY)
    assert list(tmp_path.iterdir()) == []  # neither the demo nor its staging folder
    monkeypatch.undo()
    ensure_demo(tmp_path / "demo", TINY)
    assert (tmp_path / "demo" / ".demo-complete.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_generation_refuses_to_replace_a_folder_that_is_not_a_demo(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DemoFolderError, match=r"not part of a demo \(\['notes.txt'\]\)"):
        ensure_demo(tmp_path / "mine", TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("change, message", [
    ({"n_categories": 9}, r"n_categories=9 is out of range; valid: 1\.\.8"),
    ({"n_items": 5}, r"n_items=5 is out of range; valid: 20\.\."),
    ({"cold_days": 30}, r"cold_days=30 is out of range; valid: 1\.\.29"),
    ({"video_size": 33}, r"video_size=33 must be even"),
    ({"n_interactions": 30}, r"n_interactions=30 is too small.*use n_interactions >= 40"),
])
def test_invalid_specs_are_rejected_with_the_fix(change, message):
    with pytest.raises(DemoSpecError, match=message):
        dataclasses.replace(TINY, **change)
