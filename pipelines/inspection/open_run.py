"""Which run an inspection reads, the model it loads from it, and the lookups every command needs: a user or
item id to its position, and item titles from the catalog the run was trained on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.config import PipelineConfig
from pipelines.errors import PipelineError
from pipelines.model.recommender import Recommender, RecommenderError
from pipelines.store.layout import Store

RUN_GLOB = "[0-9]*T*Z-*"
TITLE_WIDTH = 48


class InspectError(PipelineError):
    """An unknown run, user or item: the CLI prints the one-line message and exits 2."""


def published_runs(store: Store) -> list[Path]:
    """The store's run folders, oldest first (run ids start with their UTC time)."""
    return sorted(store.runs_dir.glob(RUN_GLOB)) if store.runs_dir.is_dir() else []


def resolve_run(store: Store, run: str | None) -> Path:
    """``run``: None or "latest" (what `latest` points to), a run id of the store, or a run folder's path."""
    if run in (None, "latest"):
        if not store.latest.exists():
            raise InspectError(f"no published run in {store.root} ({store.latest} does not exist). Fix: run "
                               "`make train` with the same CONFIG, or pass --config / --run PATH")
        return store.latest.resolve()
    by_id = store.runs_dir / run
    if by_id.is_dir():
        return by_id
    if Path(run).is_dir():
        return Path(run)
    known = [path.name for path in published_runs(store)]
    hint = f"known runs: {'..., ' if len(known) > 3 else ''}{', '.join(known[-3:])} or latest" if known else "none"
    raise InspectError(f"unknown run {run!r}: neither a run of {store.runs_dir} nor a folder ({hint})")


def _examples(ids: np.ndarray) -> str:
    return ", ".join(repr(str(i)) for i in ids[:2])


def position(ids: np.ndarray, wanted: str, what: str, run: Path, held_in: str) -> int:
    """The position of ``wanted`` in ``ids``, or an InspectError naming the file and what ids look like."""
    found = np.flatnonzero(ids == wanted)
    if not found.size:
        raise InspectError(f"unknown {what} {wanted!r} in run {run.name}: not in {held_in}; known ids look like "
                           f"{_examples(ids)}")
    return int(found[0])


@dataclass
class OpenedRun:
    path: Path
    rec: Recommender
    titles: dict[str, str] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def title(self, item_id: str) -> str:
        """The catalog title, shortened; the item id when the catalog has no title for it."""
        text = self.titles.get(item_id) or item_id
        return text if len(text) <= TITLE_WIDTH else text[: TITLE_WIDTH - 1] + "…"

    @property
    def published_why(self) -> str:
        return self.metrics.get("production", {}).get("published", {}).get("why", "")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def load_titles(catalogs: list[str | None], item_ids: np.ndarray) -> dict[str, str]:
    """item_id -> title from the first of ``catalogs`` that exists and has a title column; {} if none does
    (tiny or title-less catalogs: the commands show item ids)."""
    for catalog in catalogs:
        if not catalog or not Path(catalog).is_file():
            continue
        try:
            if "title" not in pl.read_parquet_schema(catalog):
                continue
            frame = pl.read_parquet(catalog, columns=["item_id", "title"])
        except (OSError, pl.exceptions.PolarsError):
            continue
        frame = frame.filter(pl.col("item_id").cast(pl.String).is_in(item_ids.astype(str).tolist())
                             & pl.col("title").is_not_null())
        return dict(zip(frame["item_id"].cast(pl.String).to_list(), frame["title"].cast(pl.String).to_list(),
                        strict=True))
    return {}


def open_run(cfg: PipelineConfig, run: str | None) -> OpenedRun:
    """Load the published model of ``run`` (never retrain) with its metrics and the catalog's titles."""
    path = resolve_run(Store(Path(cfg.store.root)), run)
    try:
        rec = Recommender.load(path)
    except RecommenderError as exc:
        raise InspectError(str(exc).replace("\n", " ")) from exc
    manifest = read_json(path / "manifest.json")
    titles = load_titles([manifest.get("inputs", {}).get("catalog"), cfg.data.catalog], rec.item_ids)
    return OpenedRun(path, rec, titles, read_json(path / "metrics.json"))
