"""Content hashes: one streamed SHA-256 of a file's bytes, and short hashes of strings (pipelines' side of the
star; extractors hash their weight files with their own helper, to stay independent of pipelines)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (constant memory whatever the file's size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def short_hash(text: str, length: int = 32) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]
