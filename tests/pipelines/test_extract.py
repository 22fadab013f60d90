"""`make extract` behaviour on a tiny real demo with the real bundled weights: incremental, resumable, broken
media as error rows, and a new fingerprint folder when the model changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipelines.extract.flow import run_extraction
from pipelines.store.layout import Store
from tests.extract_helpers import config_for, make_demo, overrides_for

pytestmark = pytest.mark.slow
MODALITIES = ("text", "image", "audio", "video")
ERROR_KIND = {"truncated_jpeg": "decode", "missing_file": "missing", "empty_wav": "empty",
              "corrupt_wav_header": "decode", "garbage_mp4": "decode"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo(tmp_path_factory.mktemp("extract"))


@pytest.fixture(scope="module")
def first_run(demo, tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    cfg = config_for(demo, store, MODALITIES)
    return cfg, run_extraction(cfg)


def by_modality(report):
    return {s["modality"]: s for s in report["modalities"]}


def test_first_run_embeds_every_decodable_item(demo, first_run):
    cfg, report = first_run
    catalog, truth = pl.read_parquet(demo.catalog), pl.read_parquet(demo.truth)
    store = Store(Path(cfg.store.root))
    for modality in MODALITIES:
        summary = by_modality(report)[modality]
        has = catalog.height if modality == "text" else catalog[modality].is_not_null().sum()
        broken_col = {"image": "image_broken_kind", "audio": "audio_broken_kind", "video": "video_broken_kind"}
        broken = truth[broken_col[modality]].is_not_null().sum() if modality in broken_col else 0
        current = store.scan_current(modality).collect()
        assert summary["total"] == has
        assert current.height == has - broken == summary["embedded"], modality
        assert current["item_id"].is_unique().all()
        assert sum(summary["failed"].values()) == broken
    summary_file = json.loads(store.summary_path.read_text())
    assert [m["modality"] for m in summary_file["modalities"]] == list(MODALITIES)


def test_each_broken_demo_file_is_an_error_row_of_its_kind(demo, first_run):
    cfg, report = first_run
    truth = pl.read_parquet(demo.truth)
    store = Store(Path(cfg.store.root))
    for modality in ("image", "audio", "video"):
        fingerprint = by_modality(report)[modality]["fingerprint"]
        errors = store.scan_errors(modality, fingerprint).collect()
        broken = truth.filter(pl.col(f"{modality}_broken_kind").is_not_null())
        got = dict(zip(errors["item_id"], errors["error_kind"]))
        want = {i: ERROR_KIND[k] for i, k in zip(broken["item_id"], broken[f"{modality}_broken_kind"])}
        assert got == want, modality
        assert errors["message"].str.len_chars().min() > 0


def test_second_run_embeds_nothing(first_run):
    cfg, report = first_run
    again = run_extraction(cfg)
    for summary in again["modalities"]:
        assert summary["embedded"] == 0 and summary["unchanged"] == summary["total"], summary
    assert again["wall_s"] < report["wall_s"]


def test_editing_a_description_reembeds_exactly_that_text(demo, tmp_path):
    store = tmp_path / "store"
    cfg = config_for(demo, store, ("text",))
    run_extraction(cfg)
    before = Store(store).scan_current("text").collect()
    edited_path = tmp_path / "catalog.parquet"
    catalog = pl.read_parquet(demo.catalog)
    target = catalog["item_id"][3]
    catalog.with_columns(description=pl.when(pl.col("item_id") == target).then(pl.lit("a brand new description"))
                         .otherwise(pl.col("description"))).write_parquet(edited_path)
    cfg2 = config_for(demo, store, ("text",), [f"data.catalog='{edited_path}'"])
    summary = by_modality(run_extraction(cfg2))["text"]
    assert summary["embedded"] == 1 and summary["unchanged"] == catalog.height - 1
    after = Store(store).scan_current("text").collect()
    changed = before.join(after, on="item_id").filter(pl.col("content_hash") != pl.col("content_hash_right"))
    assert changed["item_id"].to_list() == [target]
    assert after.height == before.height


def test_swapping_the_image_model_writes_a_new_fingerprint_folder(demo, tmp_path):
    store = tmp_path / "store"
    first = by_modality(run_extraction(config_for(demo, store, ("image",))))["image"]
    old_parts = sorted(Store(store).embeddings_dir("image", first["fingerprint"]).glob("part-*.parquet"))
    swapped = config_for(demo, store, ("image",), ["extract.extractors.image.model='resnet10t'",
                                                   "extract.extractors.image.weights='random'"])
    second = by_modality(run_extraction(swapped))["image"]
    assert second["fingerprint"] != first["fingerprint"]
    assert second["embedded"] == first["embedded"] and second["unchanged"] == 0
    assert sorted(Store(store).embeddings_dir("image", first["fingerprint"]).glob("part-*.parquet")) == old_parts
    manifest = json.loads((Store(store).embeddings_dir("image", second["fingerprint"]) / "manifest.json").read_text())
    assert manifest["model"] == "resnet10t" and manifest["dim"] == second["dim"]


def _parts(store, modality):
    return list((store / "embeddings" / modality).glob("*/part-*.parquet"))


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(demo, tmp_path):
    store = tmp_path / "store"
    args = [sys.executable, "-m", "pipelines", "extract", "--engine", "local"]
    for item in overrides_for(demo, store, ("image",), ["extract.shard_size=2"]):
        args += ["--set", item]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.monotonic() + 240
    while not _parts(store, "image") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (store / "current" / "image.parquet").exists(), "the run finished before it could be killed"
    assert all(not p.name.startswith(".") for p in (store / "embeddings").rglob("*.parquet"))
    done_before = sum(pl.read_parquet(p).height for p in _parts(store, "image"))
    cfg = config_for(demo, store, ("image",), ["extract.shard_size=2"])
    summary = by_modality(run_extraction(cfg))["image"]
    assert summary["unchanged"] >= done_before > 0
    stored = pl.concat([pl.read_parquet(p) for p in _parts(store, "image")])
    assert stored.select("item_id", "content_hash").is_duplicated().sum() == 0
    truth = pl.read_parquet(demo.truth)
    decodable = pl.read_parquet(demo.catalog).join(truth, on="item_id").filter(
        pl.col("image").is_not_null() & pl.col("image_broken_kind").is_null())
    current = Store(store).scan_current("image").collect()
    assert sorted(current["item_id"]) == sorted(decodable["item_id"])
