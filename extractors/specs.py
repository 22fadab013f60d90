"""Frozen spec dataclasses, one per registered extractor.

Kept free of heavy imports so the registry can list extractors and parse TOML
tables without loading torch models. Conventions shared by every spec:

- ``model``: what to build (an HF directory or cached name, a timm architecture,
  a CREPE capacity).
- ``weights``: ``"pretrained"`` loads the model's published weights offline (a
  package that bundles them, a local directory, or the Hugging Face cache);
  ``"random"`` builds the architecture with random weights drawn from ``seed``
  (tiny test specs, smoke runs); image/timm also accepts a weights file path.
  With random weights an HF ``model`` may be a config family (``"wav2vec2"``,
  ``"clip_vision_model"``) instead of a folder; ``config_overrides`` then
  shrinks it.
- ``batch_size``, ``device``, ``num_workers`` are runtime knobs: they never
  change the vectors and are left out of the fingerprint. So are
  ``read_retries`` and ``read_backoff_s`` of media extractors: how often a
  transient IO error (NFS hiccup, timeout) is retried in the call, waiting
  backoff_s, 2*backoff_s, ... in between, before the item is reported
  "transient" (and retried on the next run).
- ``normalize``: L2-normalise each output vector.
- ``precision``: ``"auto"`` runs bf16/fp16 autocast on CUDA (full precision on
  CPU); ``"fp32"`` keeps full precision everywhere, TF32 off (e.g. to reproduce
  sentence-transformers to 1e-5 on a GPU); ``"bf16"`` / ``"fp16"`` autocast on
  any device. The *effective* precision is part of the fingerprint, so a
  reduced-precision run writes its own folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extractors.base import ExtractorConfigError

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _freeze_mapping(value: Any, field_name: str) -> tuple[tuple[str, Any], ...]:
    """Dict-like config overrides stored as a sorted tuple so specs stay hashable."""
    if value is None:
        return ()
    items = value.items() if hasattr(value, "items") else value
    try:
        pairs = tuple(sorted((str(key), val) for key, val in items))
    except (TypeError, ValueError) as exc:
        raise ExtractorConfigError(
            f"{field_name}={value!r} is not a mapping of option names to values; "
            f"pass e.g. {{'hidden_size': 32}}"
        ) from exc
    return tuple((key, tuple(val) if isinstance(val, list) else val) for key, val in pairs)


class _SpecChecks:
    """Shared validation of the common fields, run from __post_init__."""

    def _check_common(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ExtractorConfigError(f"batch_size={self.batch_size!r} must be an integer >= 1")
        workers = getattr(self, "num_workers", 0)
        if not isinstance(workers, int) or workers < 0:
            raise ExtractorConfigError(f"num_workers={workers!r} must be an integer >= 0 (0 decodes in-process)")
        precision = getattr(self, "precision", "auto")
        if precision not in PRECISIONS:
            raise ExtractorConfigError(f"precision={precision!r} is not one of {PRECISIONS}")
        retries = getattr(self, "read_retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ExtractorConfigError(f"read_retries={retries!r} must be an integer >= 0 (0: report at once)")
        backoff = getattr(self, "read_backoff_s", 0.0)
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or not 0 <= backoff <= 60:
            raise ExtractorConfigError(f"read_backoff_s={backoff!r} must be a number of seconds in [0, 60]")
        if hasattr(self, "config_overrides"):
            object.__setattr__(self, "config_overrides", _freeze_mapping(self.config_overrides, "config_overrides"))


@dataclass(frozen=True)
class HFTextSpec(_SpecChecks):
    """text/hf: a transformers encoder, masked mean pooling, optional L2 normalisation."""

    model: str = DEFAULT_TEXT_MODEL
    weights: str = "pretrained"
    max_length: int | None = None  # None: the model's own limit (sentence-transformers config or tokenizer)
    normalize: bool = True
    config_overrides: Any = ()  # applied to the model config when weights == "random"
    seed: int = 0
    precision: str = "auto"
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        self._check_common()
        _check_weights(self.weights, allow_path=False)


@dataclass(frozen=True)
class TimmImageSpec(_SpecChecks):
    """image/timm: a timm model's pooled pre-logits features.

    ``resize``: how a picture becomes the model's square input. "crop": timm's default, resize the short side
    and cut the centre (loses the top and bottom of tall pictures such as posters); "squash": the whole picture
    resized to the square, aspect ignored; "pad": the whole picture scaled to fit, padded with the mean colour.
    """

    model: str = "tf_efficientnet_lite0"
    weights: str = "pretrained"  # "pretrained", "random" or a .pth/.safetensors path
    resize: str = "pad"
    normalize: bool = True
    seed: int = 0
    precision: str = "auto"
    batch_size: int = 32
    device: str = "auto"
    num_workers: int = 2
    read_retries: int = 3
    read_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self._check_common()
        _check_weights(self.weights, allow_path=True)
        if self.resize not in RESIZE_POLICIES:
            raise ExtractorConfigError(
                f"resize={self.resize!r} is not a resize policy; options: {list(RESIZE_POLICIES)}")


# resize policy -> timm data-config overrides (crop_mode, crop_pct); "crop" keeps the model's own
RESIZE_POLICIES = {"crop": {}, "squash": {"crop_mode": "squash", "crop_pct": 1.0},
                   "pad": {"crop_mode": "border", "crop_pct": 1.0}}


@dataclass(frozen=True)
class HFClipImageSpec(_SpecChecks):
    """image/hf-clip: CLIPVisionModelWithProjection image_embeds."""

    model: str = "openai/clip-vit-base-patch32"
    weights: str = "pretrained"
    normalize: bool = True
    config_overrides: Any = ()  # CLIPVisionConfig fields when weights == "random"
    seed: int = 0
    precision: str = "auto"
    batch_size: int = 32
    device: str = "auto"
    num_workers: int = 2
    read_retries: int = 3
    read_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self._check_common()
        _check_weights(self.weights, allow_path=False)


@dataclass(frozen=True)
class CrepeAudioSpec(_SpecChecks):
    """audio/crepe: CREPE frame embeddings pooled to mean||std."""

    model: str = "tiny"  # CREPE capacity: "tiny" or "full"
    weights: str = "pretrained"
    hop_ms: float = 20.0  # CREPE's own default is 10 ms; pooled statistics barely move at 20 ms, CPU cost halves
    window_s: float = 3.0
    max_windows: int = 4
    normalize: bool = True
    seed: int = 0
    precision: str = "auto"
    batch_size: int = 8  # clips per batch
    device: str = "auto"
    num_workers: int = 2
    read_retries: int = 3
    read_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self._check_common()
        _check_weights(self.weights, allow_path=False)
        if self.model not in ("tiny", "full"):
            raise ExtractorConfigError(f"model={self.model!r} is not a CREPE capacity; use 'tiny' or 'full'")
        _check_windowing(self)
        if not 1.0 <= self.hop_ms <= 100.0:
            raise ExtractorConfigError(f"hop_ms={self.hop_ms!r} must lie in [1, 100] milliseconds")


@dataclass(frozen=True)
class HFAudioSpec(_SpecChecks):
    """audio/hf: a transformers audio encoder, mean-pooled over time."""

    model: str = "facebook/wav2vec2-base"
    weights: str = "pretrained"
    window_s: float = 10.0
    max_windows: int = 3
    normalize: bool = True
    config_overrides: Any = ()
    seed: int = 0
    precision: str = "auto"
    batch_size: int = 8
    device: str = "auto"
    num_workers: int = 2
    read_retries: int = 3
    read_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self._check_common()
        _check_weights(self.weights, allow_path=False)
        _check_windowing(self)


@dataclass(frozen=True)
class VideoFramesSpec(_SpecChecks):
    """video/frames: K frames per clip through a nested image extractor, pooled over time."""

    image_extractor: str = "image/timm"
    image: Any = None  # a spec of image_extractor (None: its defaults); a dict from TOML is parsed by the registry
    num_frames: int = 8
    pooling: str = "mean"  # "mean" or "mean_max" (doubles dim)
    normalize: bool = True
    batch_size: int = 4  # clips per batch
    device: str = "auto"
    num_workers: int = 2
    read_retries: int = 3
    read_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        self._check_common()
        if self.pooling not in ("mean", "mean_max"):
            raise ExtractorConfigError(f"pooling={self.pooling!r} is not one of ('mean', 'mean_max')")
        if isinstance(self.num_frames, bool) or not isinstance(self.num_frames, int) or self.num_frames < 1:
            raise ExtractorConfigError(f"num_frames={self.num_frames!r} must be an integer >= 1")


def _check_weights(weights: str, *, allow_path: bool) -> None:
    if weights in ("pretrained", "random"):
        return
    if allow_path and isinstance(weights, str) and weights:
        return
    options = "'pretrained', 'random' or a weights file path" if allow_path else "'pretrained' or 'random'"
    raise ExtractorConfigError(f"weights={weights!r} is not valid; use {options}")


def _check_windowing(spec: Any) -> None:
    if not spec.window_s > 0:
        raise ExtractorConfigError(f"window_s={spec.window_s!r} must be > 0 seconds")
    if isinstance(spec.max_windows, bool) or not isinstance(spec.max_windows, int) or spec.max_windows < 1:
        raise ExtractorConfigError(f"max_windows={spec.max_windows!r} must be an integer >= 1")
