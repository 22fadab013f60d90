"""A tiny synthetic training set: a store with text vectors, and interactions where each user sticks to one
of three item clusters whose vectors share a direction. Some items have vectors and no interaction (new)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from pipelines.config import PipelineConfig, load_config
from pipelines.store.layout import Store

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def clustered_store(tmp_path, n_items=60, n_users=40, days=30, n_new=0) -> pl.DataFrame:
    """Writes text vectors for ``n_items + n_new`` items; returns interactions naming the first ``n_items``."""
    rng = np.random.default_rng(1)
    total = n_items + n_new
    cluster = np.arange(total) % 3
    centres = rng.normal(size=(3, 8))
    vectors = (centres[cluster] + 0.3 * rng.normal(size=(total, 8))).astype(np.float32)
    item_ids = [f"i{i:02d}" for i in range(total)]
    store = Store(tmp_path / "store")
    store.write_embeddings("text", "fp", item_ids, item_ids, vectors)
    store.write_current("text", "fp", pl.DataFrame({"item_id": item_ids, "content_hash": item_ids}))
    rows = []
    for u in range(n_users):
        mine = np.flatnonzero(cluster[:n_items] == u % 3)
        for d in range(days):
            rows.append((f"u{u:02d}", item_ids[rng.choice(mine)], T0 + timedelta(days=d, minutes=u)))
    return pl.DataFrame(rows, schema={"user_id": pl.String, "item_id": pl.String, "ts": pl.Datetime("us", "UTC")},
                        orient="row")


def train_config(tmp_path, interactions: pl.DataFrame, extra=()) -> PipelineConfig:
    path = tmp_path / "interactions.parquet"
    interactions.write_parquet(path)
    return load_config(None, [f"data.interactions='{path}'", f"data.catalog='{tmp_path / 'c.parquet'}'",
                              "data.demo=false", f"store.root='{tmp_path / 'store'}'", *extra])
