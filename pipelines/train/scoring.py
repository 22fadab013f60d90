"""Every user's published list, scored in user partitions: in this process, or on a Dask cluster where each
worker process loads the saved Recommender once and scores the partitions it is given. A partition's lists
depend only on its users, and the result is sorted by (user_id, rank), so both ways give the same table."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.model.config import ScoringConfig
from pipelines.model.recommender import Recommender

log = logging.getLogger(__name__)
TOPK_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float32, "source": pl.String}
_LOADED: dict[str, Recommender] = {}  # per Dask worker process: the run it has loaded


def partition_users(n_users: int, size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + size, n_users)) for start in range(0, n_users, size)]


def lists_frame(recommender: Recommender, users: np.ndarray, k: int) -> pl.DataFrame:
    """The published lists of user positions ``users`` as rows (user_id, rank, item_id, score, source)."""
    lists = recommender.lists(users, k)
    rows, ranks = np.nonzero(lists.idx >= 0)
    return pl.DataFrame({"user_id": recommender.user_ids[lists.users[rows]].astype(str),
                         "rank": (ranks + 1).astype(np.int32),
                         "item_id": recommender.item_ids[lists.idx[rows, ranks]].astype(str),
                         "score": lists.scores[rows, ranks].astype(np.float32),
                         "source": lists.source[rows, ranks].astype(str)}).cast(TOPK_SCHEMA)


def score_partition(run_dir: str, users: np.ndarray, k: int) -> pl.DataFrame:
    """One partition on a Dask worker: the saved model is loaded once per worker process."""
    if run_dir not in _LOADED:
        _LOADED.clear()
        _LOADED[run_dir] = Recommender.load(run_dir)
    return lists_frame(_LOADED[run_dir], users, k)


def _on_dask(run_dir: Path, parts: list[np.ndarray], k: int, cfg: ScoringConfig) -> list[pl.DataFrame]:
    from distributed import Client, LocalCluster

    cluster = None if cfg.dask_address else LocalCluster(n_workers=cfg.workers, threads_per_worker=1,
                                                        processes=True, dashboard_address=None)
    try:
        with Client(cfg.dask_address or cluster) as client:
            log.info("scoring %d user partitions on Dask (%s)", len(parts), cfg.dask_address or "local cluster")
            futures = client.map(score_partition, [str(run_dir)] * len(parts), parts, [k] * len(parts), pure=False)
            return client.gather(futures)
    finally:
        if cluster is not None:
            cluster.close()


def topk_frame(recommender: Recommender, k: int, cfg: ScoringConfig | None = None,
               run_dir: Path | None = None) -> pl.DataFrame:
    """Every user's list; on Dask (``cfg.engine = "dask"``) the workers load the model saved in ``run_dir``."""
    cfg = cfg or ScoringConfig()
    parts = partition_users(len(recommender.user_ids), cfg.partition_users)
    if cfg.engine == "dask":
        if run_dir is None:
            raise ValueError("Dask scoring needs the saved run folder the workers load the model from")
        frames = _on_dask(run_dir, parts, k, cfg)
    else:
        frames = [lists_frame(recommender, users, k) for users in parts]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=TOPK_SCHEMA)
    return frame.sort("user_id", "rank")
