"""Connects the config to the demo generator: `data.demo = true` generates the demo at the configured paths."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import ConfigError, PipelineConfig


def ensure_demo_for(cfg: PipelineConfig, *, force_enabled: bool = False):
    from pipelines.demo.catalog import DemoSpec, ensure_demo

    data = cfg.data
    if not (data.demo or force_enabled):
        raise ConfigError("data.demo is false in this config. Fix: set data.demo = true to generate the demo catalog.")
    out_dir = Path(data.catalog).parent
    expected = {"catalog": out_dir / "catalog.parquet", "interactions": out_dir / "interactions.parquet",
                "media_root": out_dir / "media"}
    for key, path in expected.items():
        given = getattr(data, key)
        if given is None or Path(given).resolve() != path.resolve():
            raise ConfigError(f"data.{key} = {given!r}, but the demo writes {path}. Fix: use the demo layout "
                              f"(see pipelines/presets/demo.toml) or set data.demo = false.")
    spec = DemoSpec(n_items=data.demo_items, n_users=data.demo_users, n_interactions=data.demo_interactions,
                    seed=data.demo_seed)
    return ensure_demo(out_dir, spec)
