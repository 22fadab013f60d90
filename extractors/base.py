"""The extractor contract: results, per-item errors, the protocol and fingerprints.

Every extractor turns a list of inputs (texts, or local media paths) into a
float32 matrix with one row per input, in input order. A bad input never fails
the batch: its row is all-zero, ``ok`` is False and an ``ItemError`` says why.

The fingerprint names the folder its vectors are stored under, so it must
change whenever the vectors could change (model, weights bytes, preprocessing,
the precision the forward pass really runs in, this package's version of the
code) and must not change for runtime knobs (batch size, device, worker count,
read retries).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

# Bump when a code change alters what any extractor outputs for the same spec.
# 2: the effective precision joins the fingerprint (a CUDA bf16 run no longer shares the CPU fp32 folder).
EXTRACTOR_VERSION = "2"

# Settled failures are stored against the content hash and retried only when the bytes change;
# "transient" ones (an IO hiccup) are retried on the next run.
ErrorKind = Literal["missing", "decode", "empty", "unsupported", "outside_root", "unreadable", "transient"]
ERROR_KINDS: tuple[str, ...] = ("missing", "decode", "empty", "unsupported", "outside_root", "unreadable", "transient")
RETRIED_ERROR_KINDS = frozenset({"transient"})

# Spec fields that only change how fast outputs are computed, never what they are. The requested
# ``precision`` ("auto") is replaced in the fingerprint by the effective one ("fp32", "bf16", "fp16").
RUNTIME_FIELDS = frozenset({"batch_size", "device", "num_workers", "precision", "read_retries", "read_backoff_s"})


class ExtractorError(Exception):
    """Base class of the errors this package raises on bad configuration."""


class ExtractorConfigError(ExtractorError, ValueError):
    """A spec value is invalid (unknown key, bad option, impossible combination)."""


class WeightsNotFoundError(ExtractorError, FileNotFoundError):
    """Model weights could not be found offline."""


class WeightMappingError(ExtractorError, ValueError):
    """A checkpoint does not pair up with the model's parameters."""


@dataclass(frozen=True)
class ItemError:
    """Why input ``index`` of a call produced no vector."""

    index: int
    kind: ErrorKind
    message: str


@dataclass(frozen=True)
class ExtractResult:
    """Vectors (n, dim) float32 in input order; failed rows are all-zero."""

    vectors: np.ndarray
    ok: np.ndarray
    errors: list[ItemError] = field(default_factory=list)


class ItemFailure(Exception):
    """Raised inside decoding to turn one input into an ItemError (never escapes embed)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


@runtime_checkable
class Extractor(Protocol):
    name: str
    modality: str
    dim: int
    fingerprint: str
    spec: Any

    def embed(self, inputs: Sequence[str], *, root: str | None = None) -> ExtractResult:
        """Vectors of ``inputs`` (texts, or media paths; with ``root`` a path resolving outside it is refused)."""
        ...


def assemble_result(
    n_items: int, dim: int, rows: Mapping[int, np.ndarray], errors: Iterable[ItemError]
) -> ExtractResult:
    """Place per-item vectors at their input positions; missing rows stay zero."""
    vectors = np.zeros((n_items, dim), dtype=np.float32)
    ok = np.zeros(n_items, dtype=bool)
    for item_idx, row in rows.items():
        vectors[item_idx] = row
        ok[item_idx] = True
    errors = sorted(errors, key=lambda err: err.index)
    for err in errors:
        vectors[err.index] = 0.0
        ok[err.index] = False
    return ExtractResult(vectors=vectors, ok=ok, errors=errors)


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


# ---------------------------------------------------------------- fingerprints

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, streamed; cached per (path, size, mtime) for this process."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    digest = hashlib.sha256()
    with open(resolved, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _SHA_LOCK:
        _SHA_CACHE[key] = value
    return value


def sha256_files(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """One digest over several files (names relative to ``root`` plus content hashes)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        label = str(path.relative_to(root)) if root is not None else path.name
        digest.update(f"{label}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def spec_params(spec: Any) -> dict[str, Any]:
    """The spec's fields that can change outputs (runtime knobs removed), JSON-ready."""
    params = {}
    for spec_field in dataclasses.fields(spec):
        if spec_field.name in RUNTIME_FIELDS:
            continue
        value = getattr(spec, spec_field.name)
        params[spec_field.name] = spec_params(value) if dataclasses.is_dataclass(value) else value
    return params


def fingerprint(
    name: str,
    spec: Any,
    *,
    weights_sha256: str,
    precision: str,
    preprocessing: Mapping[str, Any] | None = None,
) -> str:
    """Hex id of what the extractor outputs: registry name, model, weights, effective precision
    ("fp32", "bf16", "fp16": devices.effective_precision), preprocessing, version."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ExtractorConfigError(f"fingerprint precision={precision!r} must be the effective one: "
                                   f"'fp32', 'bf16' or 'fp16' (see extractors.devices.effective_precision)")
    payload = {
        "name": name,
        "version": EXTRACTOR_VERSION,
        "model": getattr(spec, "model", None),
        "spec": spec_params(spec),
        "weights_sha256": weights_sha256,
        "precision": precision,
        "preprocessing": dict(preprocessing or {}),
    }
    text = json.dumps(payload, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
