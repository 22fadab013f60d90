"""What each extractor sees for each catalog item, and the content hash of exactly that."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from extractors.text import normalize_text

_CHUNK = 1 << 20
SOURCE_COLUMN = {"soundtrack": "video"}  # modalities read from another modality's file


def compose_text(values: list[str | None]) -> str:
    """The text the text extractor sees: the configured columns joined, then normalised."""
    parts = [v.strip() for v in values if v is not None and v.strip()]
    return normalize_text(". ".join(parts))


def text_hash(text: str) -> str:
    return hashlib.sha256(b"text\0" + text.encode("utf-8")).hexdigest()


def file_hash(path: Path) -> str:
    """sha256 of the file's bytes, streamed; a missing file hashes its path so that its later arrival counts as a change."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return "missing:" + hashlib.sha256(str(path).encode()).hexdigest()[:32]
    except OSError as exc:  # unreadable: the extractor will report it; hash the reason so it is retried on change
        return "unreadable:" + hashlib.sha256(f"{path}:{exc.errno}".encode()).hexdigest()[:32]
    return digest.hexdigest()


def resolve_media(ref: str, media_root: str | None) -> str:
    path = Path(ref)
    if path.is_absolute() or media_root is None:
        return str(path)
    return str(Path(media_root) / path)


def modality_inputs(catalog: pl.DataFrame, modality: str, *, text_columns: tuple[str, ...],
                    media_root: str | None, hash_workers: int = 4) -> pl.DataFrame:
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
    with ThreadPoolExecutor(max_workers=hash_workers) as pool:
        hashes = list(pool.map(lambda p: file_hash(Path(p)), paths))
    return pl.DataFrame({"item_id": present["item_id"], "input": paths, "content_hash": hashes})
