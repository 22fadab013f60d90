"""What report.html draws from: the files of one run folder (and the store's extraction summary, the catalog),
each read once, on first use, so that a section whose file is missing fails alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

# A catalog column used to colour the item map: few distinct values, most items labelled.
CATEGORY_NAMES = ("category", "categories", "genre", "genres", "section", "department", "type", "kind")
MAX_CATEGORIES = 12


class Unavailable(Exception):
    """A section's data is absent for a known reason (the protocol was skipped, no file): said in one line."""


@dataclass
class RunFiles:
    run: Path
    store_root: Path | None = None
    catalog_path: str | None = None

    def json_file(self, name: str) -> dict:
        path = self.run / name
        if not path.is_file():
            raise Unavailable(f"{name} is not in the run folder")
        return json.loads(path.read_text())

    @cached_property
    def metrics(self) -> dict:
        return self.json_file("metrics.json")

    @cached_property
    def manifest(self) -> dict:
        return self.json_file("manifest.json")

    @cached_property
    def extract_summary(self) -> dict:
        if self.store_root is None:
            raise Unavailable("no store named, so no extraction summary")
        path = Path(self.store_root) / "extract_summary.json"
        if not path.is_file():
            raise Unavailable(f"{path} is absent (no extraction recorded in this store)")
        return json.loads(path.read_text())

    @cached_property
    def item_ids(self) -> np.ndarray:
        """item position (as the run's history and vectors index items) -> item_id."""
        return pl.read_parquet(self.run / "index_items.parquet").sort("index_pos")["item_id"].to_numpy()

    @cached_property
    def consumed(self) -> np.ndarray:
        """Interactions per item position in the production history."""
        history = pl.read_parquet(self.run / "level" / "history.parquet", columns=["item_idx"])
        return np.bincount(history["item_idx"].to_numpy(), minlength=len(self.item_ids))

    @cached_property
    def topk(self) -> pl.DataFrame:
        path = self.run / "topk.parquet"
        if not path.is_file():
            raise Unavailable("topk.parquet is not in the run folder")
        return pl.read_parquet(path, columns=["user_id", "item_id", "source"])

    @cached_property
    def recommended(self) -> np.ndarray:
        """Rows of topk.parquet per item position."""
        positions = pl.DataFrame({"item_id": self.item_ids.astype(str), "pos": np.arange(len(self.item_ids))})
        counts = self.topk.group_by("item_id").len().join(positions, on="item_id", how="inner")
        out = np.zeros(len(self.item_ids), dtype=np.int64)
        out[counts["pos"].to_numpy()] = counts["len"].to_numpy()
        return out

    def fused_vectors(self) -> np.ndarray:
        with np.load(self.run / "item_vectors.npz", allow_pickle=False) as data:
            return data["fused"]

    def categories(self) -> tuple[str, np.ndarray] | None:
        """(column, label per item position) from a low-cardinality catalog column, or None when there is none."""
        if not self.catalog_path or "://" in self.catalog_path or not Path(self.catalog_path).is_file():
            return None
        if not str(self.catalog_path).endswith(".parquet"):
            return None
        schema = pl.read_parquet_schema(self.catalog_path)
        names = [c for c in schema if c.lower() in CATEGORY_NAMES and schema[c] in (pl.String, pl.Categorical)]
        if "item_id" not in schema or not names:
            return None
        column = names[0]
        catalog = pl.read_parquet(self.catalog_path, columns=["item_id", column])
        # a list-like value ("Comedy|Drama") is labelled by its first entry
        first = pl.col(column).cast(pl.String).str.split("|").list.first().str.split(",").list.first().str.strip_chars()
        catalog = catalog.with_columns(first.fill_null("(none)").alias("label"))
        top = catalog["label"].value_counts(sort=True)["label"].head(MAX_CATEGORIES).to_list()
        labels = pl.DataFrame({"item_id": self.item_ids.astype(str)}).join(
            catalog.select("item_id", "label"), on="item_id", how="left", maintain_order="left")["label"]
        labels = labels.fill_null("(none)").to_numpy().astype(object)
        labels[~np.isin(labels, top)] = "(other)"
        return column, labels
