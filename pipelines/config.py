"""Pipeline configuration: a TOML file validated by pydantic, plus `--set section.key=value` overrides.

Relative paths are resolved against the current working directory (the repository root under `make`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.config_types import MODALITIES, OPTIONAL_MODALITIES, StrictConfig
from pipelines.errors import PipelineError
from pipelines.model.config import TrainConfig

PRESETS_DIR = Path(__file__).parent / "presets"
DEFAULT_CONFIG = PRESETS_DIR / "demo.toml"


class ConfigError(PipelineError):
    """The configuration file or an override is invalid; the message names the key and the fix."""


class DataConfig(StrictConfig):
    catalog: str
    interactions: str
    media_root: str | None = None
    text_columns: tuple[str, ...] = ("title", "description")
    demo: bool = Field(False, description="generate the embedded demo catalog at these paths when absent")
    demo_items: int = 600
    demo_users: int = 300
    demo_interactions: int = 20_000
    demo_seed: int = 0


class ModalityConfig(BaseModel):
    """`extractor` names a registry entry (the modality's default when omitted, so one option can be
    overridden alone); every other key is a field of that extractor's spec."""

    model_config = ConfigDict(extra="allow", frozen=True)
    extractor: str | None = None

    def spec_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


DEFAULT_EXTRACTORS = {"text": "text/hf", "image": "image/timm", "audio": "audio/crepe", "video": "video/frames",
                      "soundtrack": "soundtrack/crepe"}


def _default_extractors() -> dict[str, ModalityConfig]:
    return {modality: ModalityConfig(extractor=name) for modality, name in DEFAULT_EXTRACTORS.items()}


class ExtractConfig(StrictConfig):
    modalities: tuple[Literal["text", "image", "audio", "video", "soundtrack"], ...] = MODALITIES
    extractors: dict[str, ModalityConfig] = Field(default_factory=_default_extractors)
    shard_size: int = Field(256, gt=0)
    device: str = "auto"
    task_runner: Literal["threads", "dask"] = "threads"
    workers: int = Field(1, gt=0, description="concurrent shard tasks (threads) or Dask workers")
    dask_address: str | None = Field(None, description="an existing Dask scheduler; a local cluster when unset")
    torch_threads: int = Field(0, ge=0, description="0 = torch's default")
    hash_workers: int = Field(4, gt=0)
    rehash: bool = Field(False, description="read every media file again to hash it, ignoring the stat cache "
                                           "(`extract --rehash`)")

    @field_validator("extractors")
    @classmethod
    def _known_modalities(cls, value: dict[str, ModalityConfig]) -> dict[str, ModalityConfig]:
        unknown = sorted(set(value) - set(MODALITIES) - set(OPTIONAL_MODALITIES))
        if unknown:
            raise ValueError(f"unknown modality {unknown}; valid: {list(MODALITIES + OPTIONAL_MODALITIES)}")
        given = {modality: cfg if cfg.extractor else ModalityConfig(extractor=DEFAULT_EXTRACTORS[modality],
                                                                    **cfg.spec_options())
                 for modality, cfg in value.items()}
        from extractors import registry  # a wrong option fails when the config loads, not at 2 a.m.
        from extractors.base import ExtractorError

        for modality, options in given.items():
            try:
                registry.spec_from_dict(options.extractor, options.spec_options())
            except ExtractorError as exc:
                raise ValueError(f"extract.extractors.{modality}: {exc}") from exc
        return {**_default_extractors(), **given}


class StoreConfig(StrictConfig):
    root: str = "store"
    keep_runs: int = Field(5, ge=1, description="published runs kept (the one `latest` names is never removed)")


class PipelineConfig(StrictConfig):
    data: DataConfig
    store: StoreConfig = StoreConfig()
    extract: ExtractConfig = ExtractConfig()
    train: TrainConfig = TrainConfig()


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word is a string


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE. Fix: e.g. --set extract.shard_size=128")
        node = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a table")
        node[leaf] = _parse_value(value.strip())
    return raw


def _format_errors(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}' (check the spelling; see pipelines/presets/demo.toml)")
        else:
            lines.append(f"  - '{key}': {err['msg']} (got {err.get('input')!r})")
    return f"{source}: invalid configuration:\n" + "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    source = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(source.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: config file not found. Fix: pass an existing TOML file (CONFIG=path).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc}).") from exc
    raw = apply_overrides(raw, overrides or [])
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(str(source), exc)) from exc
