"""`python -m bench.train_path_worker --items N --users U --out result.json`: the train path at one scale, in its
own process so that its peak RSS is its own.

Synthetic but shaped like the product's inputs: four modalities at the bundled extractors' dims (text 384,
image 1280, audio 512, video 1280; every item has text, 90% an image, 30% audio and video; each vector a noisy
copy of its item's category centre, 1,000 categories, so the fused space has clusters) written as the
store's Parquet parts, and long-tailed interactions (Zipf item popularity, ~20 events per user). Stages, each
timed with its peak RSS sampled every 20 ms: load (locate vectors, read interactions), fuse (streamed over
train.fusion.fit_items), index, sources (fit every candidate source on all users), then on a seeded sample of
users the scoring path: candidates, features, rank (LightGBM), and lists + write (the product's own
`lists_frame` to Parquet). Scoring is per user chunk and independent across users, so its per-user cost is
measured on the sample and extrapolated to every user (labelled as such).
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

DIMS = {"text": 384, "image": 1280, "audio": 512, "video": 1280}
COVERAGE = {"text": 1.0, "image": 0.9, "audio": 0.3, "video": 0.3}
EVENTS_PER_USER = 20
WRITE_ROWS = 50_000
CATEGORIES = 1_000  # item vectors are noisy copies of their category's centre: clustered, like real embeddings


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class Stages:
    """Wall time and peak RSS per stage (a sampler thread reads /proc/self/statm every 20 ms)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._peak = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, rss_bytes())

    @contextmanager
    def stage(self, name: str, **extra):
        gc.collect()
        self._peak = start_rss = rss_bytes()
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        self._peak = max(self._peak, rss_bytes())
        self.rows.append({"stage": name, "seconds": round(seconds, 3), "rss_start_gb": round(start_rss / 2**30, 3),
                          "peak_rss_gb": round(self._peak / 2**30, 3), **extra})
        print(f"  {name}: {seconds:.1f} s, peak RSS {self._peak / 2**30:.2f} GB", flush=True)


def write_store(root: Path, n_items: int, seed: int, dims: dict[str, int] = DIMS):
    """The four modalities' vectors as store parts (around one of CATEGORIES centres, written in bounded pieces)."""
    from pipelines.store.layout import Store

    rng = np.random.default_rng(seed)
    store = Store(root)
    ids = np.array([f"i{i:07d}" for i in range(n_items)])
    category = rng.integers(0, CATEGORIES, n_items)  # shared by the modalities, as a real item's content is
    for modality, dim in dims.items():
        centres = rng.standard_normal((CATEGORIES, dim), dtype=np.float32)
        rows = np.flatnonzero(rng.random(n_items) < COVERAGE[modality])
        for start in range(0, len(rows), WRITE_ROWS):
            chunk = rows[start:start + WRITE_ROWS]
            vectors = rng.standard_normal((len(chunk), dim), dtype=np.float32)
            vectors += 1.5 * centres[category[chunk]]
            store.write_embeddings(modality, "bench", ids[chunk].tolist(), ids[chunk].tolist(), vectors)
        have = ids[rows]
        store.write_current(modality, "bench", pl.DataFrame({"item_id": have.tolist(), "content_hash": have.tolist()}))
    return store


def interactions_frame(n_users: int, n_items: int, seed: int) -> pl.DataFrame:
    """~EVENTS_PER_USER events per user over 90 days; item popularity Zipf-like (a long tail)."""
    rng = np.random.default_rng(seed + 1)
    per_user = rng.poisson(EVENTS_PER_USER - 3, n_users) + 3
    users = np.repeat(np.arange(n_users), per_user)
    ranks = np.minimum(rng.zipf(1.3, users.size) - 1, n_items - 1)
    items = rng.permutation(n_items)[ranks]
    start = datetime(2026, 9, 1, tzinfo=UTC)
    ts = start.timestamp() * 1e6 + rng.uniform(0, 90 * 86_400e6, users.size)
    return pl.DataFrame({"user_idx": users, "item_idx": items.astype(np.int64),
                         "ts": pl.Series(ts.astype(np.int64)).cast(pl.Datetime("us", "UTC")),
                         "weight": np.ones(users.size, np.float32)}).unique(["user_idx", "item_idx"]).sort("ts")


def bench_config(fit_items: int):
    from pipelines.config import load_config

    # the documented settings for a large catalog: per-modality PCA keeps the fused space small; EASE is capped
    return load_config(None, ["data.demo=false", "train.fusion.pca_dim=64", f"train.fusion.fit_items={fit_items}",
                              "train.ease.max_items=2000", "train.als.factors=32", "train.als.iterations=5"]).train


def run(n_items: int, n_users: int, sample_users: int, workdir: Path, seed: int = 0,
        dims: dict[str, int] = DIMS) -> dict:
    from pipelines.model.fit_ranker import make_ranker
    from pipelines.model.levels import SourceParams, fit_level
    from pipelines.model.procedure import Fitted, Tuned
    from pipelines.model.recommender import Recommender
    from pipelines.model.space import build_space
    from pipelines.train.inputs import load_vectors
    from pipelines.train.scoring import lists_frame
    from ranker.retrieval.blocks import BlockPlan
    from ranker.retrieval.index import ItemIndex

    stages = Stages()
    k = 20
    cfg = bench_config(fit_items=min(100_000, max(1_000, n_items // 2)))
    with stages.stage("write synthetic store (not part of the train path)"):
        store = write_store(workdir / "store", n_items, seed, dims)
        frame = interactions_frame(n_users, n_items, seed)
        last = frame.group_by("user_idx").agg(pl.col("ts").max().alias("last"))
        history = frame.join(last, on="user_idx").filter(pl.col("ts") < pl.col("last")).drop("last")
        labels = frame.join(last, on="user_idx").filter(pl.col("ts") == pl.col("last")).select("user_idx", "item_idx")
        del frame, last
    with stages.stage("load"):
        item_ids, tables = load_vectors(store, tuple(dims), cfg.fusion.fit_items)
    with stages.stage("fuse"):
        space = build_space(item_ids, tables, history, cfg, with_index=False)
    stages.rows[-1]["dim"] = int(space.fused.shape[1])
    with stages.stage("index"):
        index = ItemIndex.build(space.fused, kind="auto", seed=seed)
    stages.rows[-1]["kind"] = index.kind
    weight_kind = "count"
    params = SourceParams.from_config(cfg, weight_kind)
    with stages.stage("sources (fit on all users)"):
        level = fit_level(history, n_users=n_users, n_items=n_items, item_vectors=space.item_vectors(),
                          weight_kind=weight_kind, params=params, cfg=cfg)
    stages.rows[-1]["per_source_s"] = level.fit_seconds
    users = np.sort(np.random.default_rng(seed).choice(n_users, min(sample_users, n_users), replace=False))
    plan = BlockPlan(cfg.candidates.depth, rank_depth=cfg.candidates.rank_depth, list_k=k,
                     new_items=~level.ctx.item_has_history)
    per_user = {"users": int(len(users)), "extrapolated_to": n_users}
    with stages.stage("candidates", **per_user):
        result = level.run(users, plan)
    with stages.stage("features", **per_user):
        data = level.features(result.candidates, labels=labels)
    stages.rows[-1]["rows"] = int(data.n_rows)
    ranker = make_ranker(cfg, {"n_estimators": 50}).fit(data)  # fitting the ranker: not a scoring stage
    with stages.stage("rank", **per_user):
        ranker.predict(data)
    model = Fitted(cfg, weight_kind, Tuned(params, None, {}), space, level, ranker, "ranker", "ranker")
    recommender = Recommender(model, item_ids, np.array([f"u{u}" for u in range(n_users)], dtype=object),
                              _index=index)
    with stages.stage("lists + write (end to end)", **per_user):
        lists_frame(recommender, users, k).write_parquet(workdir / "topk.parquet")
    return {"items": n_items, "users": n_users, "sample_users": int(len(users)),
            "interactions": int(history.height + labels.height), "stages": stages.rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--sample-users", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-path-") as tmp:
        result = run(args.items, args.users, args.sample_users, Path(tmp))
    result["peak_rss_gb"] = max(row["peak_rss_gb"] for row in result["stages"])
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
