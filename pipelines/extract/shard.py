"""One unit of extraction work: a modality x a shard of items, embedded and written atomically.

Extractors are cached per worker process, so a model is loaded once per worker, not once per shard.
Media are read confined to the job's media root (symlinks resolved, checked on the opened file). Per-item
failures become error rows; those of kind "transient" (an IO hiccup that outlasted the in-call retries) are
not settled: the store leaves them out of the stored keys, so the next run tries the item again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from extractors import registry
from extractors.base import ExtractResult, ItemError, assemble_result
from extractors.files import is_transient_error
from pipelines.errors import PipelineError
from pipelines.extract.inputs import OUTSIDE_ROOT_HASH
from pipelines.store.layout import Store

log = logging.getLogger(__name__)
_CACHE: dict[str, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ExtractorRef:
    """Everything a worker needs to build the extractor: plain data, cheap to ship to Dask."""

    name: str
    options: dict = field(default_factory=dict)
    torch_threads: int = 0  # 0: torch's default

    def key(self) -> str:
        return json.dumps([self.name, self.options], sort_keys=True, default=str)


def get_extractor(ref: ExtractorRef):
    with _LOCK:
        if ref.key() not in _CACHE:
            started = time.perf_counter()
            if ref.torch_threads:
                torch.set_num_threads(ref.torch_threads)
            _CACHE[ref.key()] = registry.create(ref.name, **ref.options)
            log.info("loaded %s in %.1fs", ref.name, time.perf_counter() - started)
        return _CACHE[ref.key()]


@dataclass(frozen=True)
class ShardJob:
    store_root: str
    modality: str
    extractor: ExtractorRef
    fingerprint: str
    item_ids: tuple[str, ...]
    inputs: tuple[str, ...]
    hashes: tuple[str, ...]
    media_root: str | None = None  # resolved; media inputs must stay inside it (None: absolute paths, unconfined)


class FingerprintMismatch(PipelineError):
    """A worker built an extractor whose fingerprint differs from the planner's (different weights on that host)."""


def _embed(extractor, job: ShardJob) -> ExtractResult:
    """The extractor's result over the whole shard; inputs hashed as outside the media root are refused unread."""
    refused = {i for i, content_hash in enumerate(job.hashes) if content_hash.startswith(OUTSIDE_ROOT_HASH)}
    if not refused:
        return extractor.embed(list(job.inputs), root=job.media_root)
    kept = [i for i in range(len(job.inputs)) if i not in refused]
    inner = extractor.embed([job.inputs[i] for i in kept], root=job.media_root)
    rows = {kept[pos]: inner.vectors[pos] for pos in range(len(kept)) if inner.ok[pos]}
    errors = [ItemError(kept[e.index], e.kind, e.message) for e in inner.errors]
    errors += [ItemError(i, "outside_root", f"{job.inputs[i]}: resolved outside the media root {job.media_root} "
                                            f"when it was hashed; nothing was read") for i in sorted(refused)]
    return assemble_result(len(job.inputs), extractor.dim, rows, errors)


def run_shard(job: ShardJob) -> dict[str, Any]:
    """Embed one shard and write its vectors and error rows; returns counts for the summary."""
    extractor = get_extractor(job.extractor)
    if extractor.fingerprint != job.fingerprint:
        raise FingerprintMismatch(f"worker fingerprint {extractor.fingerprint} != planned {job.fingerprint} for "
                                  f"{job.extractor.name}. Fix: install the same weights on every worker.")
    started = time.perf_counter()
    result = _embed(extractor, job)
    store = Store(Path(job.store_root))
    ok = [i for i, good in enumerate(result.ok) if good]
    store.write_embeddings(job.modality, job.fingerprint, [job.item_ids[i] for i in ok],
                           [job.hashes[i] for i in ok], result.vectors[ok])
    rows = [{"item_id": job.item_ids[e.index], "content_hash": job.hashes[e.index], "error_kind": e.kind,
             "message": e.message, "extractor": job.extractor.name} for e in result.errors]
    store.write_errors(job.modality, job.fingerprint, rows)
    failed: dict[str, int] = {}
    for e in result.errors:
        failed[e.kind] = failed.get(e.kind, 0) + 1
    if failed.get("transient"):
        log.warning("%s: %d item(s) hit IO errors that outlasted the retries; they are retried on the next run",
                    job.modality, failed["transient"])
    return {"embedded": len(ok), "failed": failed, "seconds": time.perf_counter() - started, "n": len(job.item_ids)}


def is_transient(exc: BaseException) -> bool:
    """Retry IO hiccups (network filesystems, a busy disk: EIO, ESTALE, timeouts...), never bugs or bad
    configuration."""
    return is_transient_error(exc)
