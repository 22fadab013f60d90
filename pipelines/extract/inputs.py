"""What each extractor sees for each catalog item, and the content hash of exactly that.

Media references resolve against the media root; a reference whose file resolves (symlinks followed) outside
the resolved root is never read, not even to hash it: it gets an ``outside_root:`` hash and the extractor
refuses it too (checked again on the opened file, so a symlink swapped after validation is caught). Without a
media root only absolute references are accepted.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from extractors.files import DEFAULT_READS, inside, is_transient_error
from extractors.text import normalize_text
from pipelines.errors import PipelineError
from pipelines.extract.hash_cache import HashCache
from pipelines.hashing import sha256_file, short_hash

SOURCE_COLUMN = {"soundtrack": "video"}  # modalities read from another modality's file
OUTSIDE_ROOT_HASH = "outside_root:"  # prefix of the hash of a file resolving outside the media root (never read)


class MediaPathError(PipelineError, ValueError):
    """A media reference cannot be resolved (relative, and no media root is set)."""


def compose_text(values: list[str | None]) -> str:
    """The text the text extractor sees: the configured columns joined, then normalised."""
    parts = [v.strip() for v in values if v is not None and v.strip()]
    return normalize_text(". ".join(parts))


def text_hash(text: str) -> str:
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


def file_hash(path: Path, *, retries: int = DEFAULT_READS.retries, backoff_s: float = DEFAULT_READS.backoff_s) -> str:
    """sha256 of the file's bytes, streamed (transient IO errors retried with back-off); a missing file hashes
    its path so that its later arrival counts as a change."""
    attempt = 0
    while True:
        try:
            return sha256_file(path)
        except FileNotFoundError:
            return "missing:" + short_hash(str(path))
        except OSError as exc:  # unreadable: the extractor will report it; hash the reason so it is retried on change
            if not is_transient_error(exc) or attempt >= retries:
                return "unreadable:" + short_hash(f"{path}:{exc.errno}")
            time.sleep(backoff_s * 2**attempt)
            attempt += 1


def media_hash(path: str, media_root: str | None) -> str:
    """The content hash of a media input; a file resolving outside ``media_root`` is not read."""
    if media_root is not None:
        real = os.path.realpath(path)
        if not inside(real, media_root):
            return OUTSIDE_ROOT_HASH + short_hash(f"{path}->{real}")
    return file_hash(Path(path))


def resolve_media(ref: str, media_root: str | None) -> str:
    """The path an extractor reads for a catalog reference (not resolved: the extractor resolves it on read)."""
    path = Path(ref)
    if path.is_absolute():
        return str(path)
    if media_root is None:
        raise MediaPathError(f"media reference {ref!r} is relative but no media root is set. Fix: set "
                             f"data.media_root to the folder it is relative to, or write absolute paths")
    return str(Path(media_root) / path)


def modality_inputs(catalog: pl.DataFrame, modality: str, *, text_columns: tuple[str, ...],
                    media_root: str | None, hash_workers: int = 4, cache: HashCache | None = None) -> pl.DataFrame:
    """One row per item that has this modality: item_id, input (text or local path), content_hash."""
    if modality == "text":
        texts = [compose_text(list(row)) for row in catalog.select(text_columns).iter_rows()]
        return pl.DataFrame({"item_id": catalog["item_id"], "input": texts,
                             "content_hash": [text_hash(t) for t in texts]})
    column = SOURCE_COLUMN.get(modality, modality)
    if column not in catalog.columns:
        return pl.DataFrame(schema={"item_id": pl.String, "input": pl.String, "content_hash": pl.String})
    present = catalog.filter(pl.col(column).is_not_null() & (pl.col(column).str.strip_chars() != ""))
    paths = [resolve_media(ref, media_root) for ref in present[column].to_list()]
    cache = cache or HashCache()
    with ThreadPoolExecutor(max_workers=hash_workers) as pool:
        hashes = list(pool.map(lambda p: cache.content_hash(p, lambda q: media_hash(q, media_root)), paths))
    return pl.DataFrame({"item_id": present["item_id"], "input": paths, "content_hash": hashes},
                        schema={"item_id": pl.String, "input": pl.String, "content_hash": pl.String})
