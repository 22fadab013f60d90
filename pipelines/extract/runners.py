"""Prefect task runners: threads in this process, or Dask (an existing cluster, or a local one)."""

from __future__ import annotations

from prefect.task_runners import ThreadPoolTaskRunner

from pipelines.config import ExtractConfig


def make_task_runner(cfg: ExtractConfig):
    if cfg.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner

    if cfg.dask_address:
        return DaskTaskRunner(address=cfg.dask_address)
    # One thread per worker process: each worker holds its own model copy and torch uses the cores itself.
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": 1, "processes": True})
