"""Shared set-up for extraction and training tests: a tiny demo catalog and a config pointing at it."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import PipelineConfig, load_config
from pipelines.demo.catalog import DemoPaths, DemoSpec, generate_demo

TINY_DEMO = DemoSpec(n_items=30, n_users=16, n_interactions=500, days=30, seed=3, cold_days=3)
# Fast settings for CPU tests: small batches, no DataLoader worker processes, a coarse CREPE hop.
FAST = ["extract.extractors.image.num_workers=0", "extract.extractors.audio.num_workers=0",
        "extract.extractors.audio.hop_ms=100.0", "extract.extractors.video.num_workers=0",
        "extract.shard_size=8"]


def make_demo(root: Path, spec: DemoSpec = TINY_DEMO) -> DemoPaths:
    return generate_demo(root / "demo", spec)


def overrides_for(paths: DemoPaths, store: Path, modalities: tuple[str, ...], extra: list[str] = ()) -> list[str]:
    return [f"data.catalog='{paths.catalog}'", f"data.interactions='{paths.interactions}'",
            f"data.media_root='{paths.media_root}'", "data.demo=false", f"store.root='{store}'",
            f"extract.modalities={list(modalities)}", *FAST, *extra]


def config_for(paths: DemoPaths, store: Path, modalities: tuple[str, ...], extra: list[str] = ()) -> PipelineConfig:
    return load_config(None, overrides_for(paths, store, modalities, extra))
