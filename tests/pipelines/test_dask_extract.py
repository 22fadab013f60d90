"""Dask for every modality: extraction shards of every default extractor, with default settings (DataLoader
decoding workers on), run on a LocalCluster of worker processes and on an existing scheduler, with vectors
equal to the local runner's.

Dask worker processes are daemonic and may not start DataLoader workers; decoding then runs in the worker
process itself (extractors.batching.loader_workers). One module-scoped fixture runs everything once, so each
Dask worker loads each model once.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import polars as pl
import pytest

from extractors.batching import decode_batches, list_collate
from pipelines.store.layout import Store
from tests.extract_helpers import config_for, make_demo

MODALITIES = ("text", "image", "audio", "video")
# Undo the test helpers' num_workers=0: the defaults (DataLoader decoding workers) are what broke under Dask.
DEFAULT_WORKERS = ["extract.extractors.image.num_workers=2", "extract.extractors.audio.num_workers=2",
                   "extract.extractors.video.num_workers=2"]
DASK = ["extract.task_runner='dask'", "extract.workers=2"]


def _length(value: str) -> list[int]:
    return [len(value)]


def _decode_in(queue, inputs: list[str]) -> None:
    try:
        batches = list(decode_batches(inputs, _length, batch_size=2, num_workers=2, collate=list_collate))
        queue.put(("ok", [(batch.indices, batch.payload) for batch in batches]))
    except BaseException as exc:
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def test_decoding_inside_a_daemonic_process_runs_in_that_process():
    """What a Dask worker is: a daemonic process, which may not have children (DataLoader workers)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    worker = context.Process(target=_decode_in, args=(queue, ["a", "bb", "ccc"]), daemon=True)
    worker.start()
    status, payload = queue.get(timeout=120)
    worker.join(timeout=60)
    assert status == "ok", payload
    assert payload == [([0, 1], [[1], [2]]), ([2], [[3]])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny demo extracted three ways: in-process, Dask LocalCluster, an existing Dask scheduler."""
    from distributed import LocalCluster

    from pipelines.extract.flow import extract_flow, run_extraction

    root = tmp_path_factory.mktemp("dask_extract")
    demo = make_demo(root)
    stores = {way: root / f"store_{way}" for way in ("local", "dask", "address")}
    reports = {"local": run_extraction(config_for(demo, stores["local"], MODALITIES, DEFAULT_WORKERS))}
    reports["dask"] = extract_flow(config_for(demo, stores["dask"], MODALITIES, [*DEFAULT_WORKERS, *DASK]))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = [*DEFAULT_WORKERS, *DASK, f"extract.dask_address='{cluster.scheduler_address}'"]
        reports["address"] = extract_flow(config_for(demo, stores["address"], MODALITIES, address))
    return stores, reports


def _current(store, modality: str) -> pl.DataFrame:
    return Store(store).scan_current(modality).collect().sort("item_id")


@pytest.mark.slow
@pytest.mark.flow
@pytest.mark.parametrize("way", ["dask", "address"])
@pytest.mark.parametrize("modality", MODALITIES)
def test_dask_vectors_equal_the_local_runners(runs, way, modality):
    stores, _ = runs
    local, remote = _current(stores["local"], modality), _current(stores[way], modality)
    assert local.height > 0
    assert remote["item_id"].to_list() == local["item_id"].to_list()
    assert remote["content_hash"].to_list() == local["content_hash"].to_list()
    np.testing.assert_allclose(np.stack(remote["embedding"].to_numpy()), np.stack(local["embedding"].to_numpy()),
                               atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.flow
@pytest.mark.parametrize("way", ["dask", "address"])
def test_dask_summaries_and_error_rows_match_the_local_runners(runs, way):
    stores, reports = runs
    for local, remote in zip(reports["local"]["modalities"], reports[way]["modalities"], strict=True):
        assert (remote["modality"], remote["fingerprint"]) == (local["modality"], local["fingerprint"])
        assert (remote["embedded"], remote["failed"]) == (local["embedded"], local["failed"])
        if local["failed"]:
            errors = {name: Store(stores[name]).scan_errors(local["modality"], local["fingerprint"]).collect()
                      .select("item_id", "error_kind").sort("item_id") for name in ("local", way)}
            assert errors[way].equals(errors["local"])
