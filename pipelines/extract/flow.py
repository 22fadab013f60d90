"""`make extract`: validate the catalog, plan the work per modality, embed shards, publish the current view.

The flow is a thin Prefect shell over plain functions: `plan_modality` decides what needs embedding (content
hash x extractor fingerprint not yet stored), `run_shard` embeds one coarse shard, `finish_modality` writes
the current view only once every shard of that modality succeeded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
from prefect import flow, task
from prefect.futures import as_completed
from tqdm.auto import tqdm

from extractors import registry
from extractors.base import ExtractorError
from pipelines.config import ConfigError, PipelineConfig
from pipelines.contracts import validate_catalog
from pipelines.extract.hash_cache import HashCache
from pipelines.extract.inputs import modality_inputs
from pipelines.extract.runners import make_task_runner
from pipelines.extract.shard import ExtractorRef, ShardJob, get_extractor, is_transient, run_shard
from pipelines.orchestration.artifacts import publish_extract_artifacts
from pipelines.store.layout import Store, utc_now

log = logging.getLogger(__name__)
MapShards = Callable[[list[ShardJob]], Iterator[dict[str, Any]]]


def load_catalog(cfg: PipelineConfig) -> pl.DataFrame:
    """Validate the catalog (every problem at once) before anything is written."""
    data = cfg.data
    if data.demo:
        from pipelines.demo.setup import ensure_demo_for

        ensure_demo_for(cfg)
    report, frame = validate_catalog(data.catalog, media_root=data.media_root, text_columns=data.text_columns)
    report.raise_if_errors()
    for warning in report.warnings:
        log.warning("%s", warning)
    return frame


def extractor_ref(cfg: PipelineConfig, modality: str) -> ExtractorRef:
    """The extractor of a modality; its options are checked against its spec before anything runs."""
    mcfg = cfg.extract.extractors[modality]
    options = {"device": cfg.extract.device, **mcfg.spec_options()}
    try:
        registry.spec_from_dict(mcfg.extractor, options)
    except ExtractorError as exc:
        raise ConfigError(f"extract.extractors.{modality}: {exc}") from exc
    return ExtractorRef(name=mcfg.extractor, options=options, torch_threads=cfg.extract.torch_threads)


def _resolved(path: str | None) -> str | None:
    """Absolute, so that Dask workers with another working directory read the same files."""
    return None if path is None or "://" in path else str(Path(path).resolve())


def plan_modality(cfg: PipelineConfig, catalog: pl.DataFrame, modality: str, store: Store,
                  cache: HashCache | None = None):
    """Current inputs of this modality and the shards still to embed."""
    ref = extractor_ref(cfg, modality)
    extractor = get_extractor(ref)
    media_root = _resolved(cfg.data.media_root)
    current = modality_inputs(catalog, modality, text_columns=cfg.data.text_columns,
                              media_root=media_root, hash_workers=cfg.extract.hash_workers, cache=cache)
    stored = store.stored_keys(modality, extractor.fingerprint)
    todo = current.join(stored, on=["item_id", "content_hash"], how="anti")
    failed = store.scan_failed_keys(modality, extractor.fingerprint)  # transient failures are tried again
    known_failed = 0 if failed is None else current.join(
        failed.unique().collect(), on=["item_id", "content_hash"], how="semi").height
    size = cfg.extract.shard_size
    jobs = [ShardJob(str(store.root.resolve()), modality, ref, extractor.fingerprint,
                     tuple(chunk["item_id"]), tuple(chunk["input"]), tuple(chunk["content_hash"]),
                     media_root=media_root)  # checked again when each file is read
            for chunk in todo.iter_slices(size)]
    return extractor, current, jobs, known_failed


def _empty_summary(modality: str, extractor, total: int, todo: int, known_failed: int) -> dict[str, Any]:
    # unchanged = skipped because (content_hash, fingerprint) is stored; known_failed of them are stored failures.
    return {"modality": modality, "extractor": extractor.name, "fingerprint": extractor.fingerprint,
            "dim": extractor.dim, "total": total, "unchanged": total - todo, "known_failed": known_failed,
            "embedded": 0, "failed": {}, "items_per_s": None, "wall_s": 0.0}


def extract_modality(cfg: PipelineConfig, catalog: pl.DataFrame, modality: str, store: Store,
                     map_shards: MapShards, cache: HashCache | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    cache = cache or HashCache()
    hashed_before, reused_before = cache.hashed, cache.reused
    extractor, current, jobs, known_failed = plan_modality(cfg, catalog, modality, store, cache)
    todo = sum(len(j.item_ids) for j in jobs)
    summary = _empty_summary(modality, extractor, current.height, todo, known_failed)
    summary["files_hashed"] = cache.hashed - hashed_before  # media files read to learn their content hash
    summary["files_hash_cached"] = cache.reused - reused_before
    store.write_manifest(modality, {"extractor": extractor.name, "model": getattr(extractor.spec, "model", None),
                                    "dim": extractor.dim, "fingerprint": extractor.fingerprint})
    with tqdm(total=todo, desc=f"extract {modality}", unit="item", disable=todo == 0) as bar:
        for result in map_shards(jobs):
            summary["embedded"] += result["embedded"]
            for kind, count in result["failed"].items():
                summary["failed"][kind] = summary["failed"].get(kind, 0) + count
            bar.update(result["n"])
    store.write_current(modality, extractor.fingerprint, current)
    compact(store, modality, extractor.fingerprint, current)
    summary["wall_s"] = round(time.perf_counter() - started, 2)
    if todo:
        summary["items_per_s"] = round(todo / max(summary["wall_s"], 1e-9), 2)
    return summary


def compact(store: Store, modality: str, fingerprint: str, current: pl.DataFrame) -> None:
    """Housekeeping after the current view is published: a failure (a full disk) is logged, not fatal, since
    the parts it would replace are intact and the next run tries again."""
    try:
        store.compact(modality, fingerprint, current)
    except (OSError, pl.exceptions.PolarsError) as exc:
        log.warning("compaction of %s parts (%s) skipped: %s. Fix: free disk space under %s; the next extract "
                    "compacts again.", modality, fingerprint, exc, store.root)


def local_map(jobs: list[ShardJob]) -> Iterator[dict[str, Any]]:
    """Run shards in this process, one after the other (the same task code, without Prefect)."""
    for job in jobs:
        yield run_shard(job)


def run_extraction(cfg: PipelineConfig, map_shards: MapShards = local_map) -> dict[str, Any]:
    started = time.perf_counter()
    for modality in cfg.extract.modalities:  # configuration errors surface before any write
        extractor_ref(cfg, modality)
    catalog = load_catalog(cfg)
    store = Store(Path(cfg.store.root))
    modalities = []
    with store.lock("extract"):
        cache = HashCache.load(store.hash_cache_path, rehash=cfg.extract.rehash)
        for modality in cfg.extract.modalities:
            summary = extract_modality(cfg, catalog, modality, store, map_shards, cache)
            log.info("%s", format_line(summary))
            modalities.append(summary)
        cache.save(store.hash_cache_path, store.tmp_dir)
        report = {"finished_at": utc_now().isoformat(), "catalog": cfg.data.catalog, "catalog_items": catalog.height,
                  "wall_s": round(time.perf_counter() - started, 2), "modalities": modalities}
        store.write_summary(report)
    return report


def format_line(s: dict[str, Any]) -> str:
    failed = ", ".join(f"{k}={v}" for k, v in sorted(s["failed"].items())) or "none"
    speed = f"{s['items_per_s']} items/s" if s["items_per_s"] else "-"
    return (f"{s['modality']:<6} {s['extractor']:<13} total={s['total']} unchanged={s['unchanged']} "
            f"(known failures {s['known_failed']}) embedded={s['embedded']} failed: {failed}  {speed}  {s['wall_s']}s"
            + (f"  files hashed={s['files_hashed']} (stat cache {s['files_hash_cached']})"
               if s.get("files_hashed") or s.get("files_hash_cached") else ""))


def _retry_transient(task_, task_run, state) -> bool:
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


@task(name="embed-shard", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient)
def embed_shard_task(job: ShardJob) -> dict[str, Any]:
    return run_shard(job)


def prefect_map(jobs: list[ShardJob]) -> Iterable[dict[str, Any]]:
    futures = [embed_shard_task.with_options(name=f"embed-{job.modality}").submit(job) for job in jobs]
    for future in as_completed(futures):
        yield future.result()


@flow(name="extract", log_prints=True)
def extract_flow_body(cfg: PipelineConfig) -> dict[str, Any]:
    report = run_extraction(cfg, map_shards=prefect_map)
    publish_extract_artifacts(report)  # the per-modality summary as a table of this flow run
    return report


def extract_flow(cfg: PipelineConfig) -> dict[str, Any]:
    """The Prefect flow with the task runner chosen by the config (threads, or Dask via prefect-dask)."""
    return extract_flow_body.with_options(task_runner=make_task_runner(cfg.extract))(cfg)
