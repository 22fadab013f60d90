"""Frozen pretrained encoders: text, image, audio and video in, float32 vectors out.

Pure library: no paths chosen, no Prefect, no imports of fusion/ranker/pipelines.
Start with ``extractors.registry.available()`` and ``extractors.registry.create(name)``.
Submodules (text, image, audio, ...) are imported on first attribute access, so
``import extractors`` stays cheap.
"""

import importlib

from extractors import registry

_SUBMODULES = frozenset(
    {"audio", "audio_hf", "base", "batching", "devices", "files", "image", "image_clip", "media", "specs", "text",
     "video", "weights"}
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"extractors.{name}")
    raise AttributeError(f"module 'extractors' has no attribute {name!r}")


__all__ = ["registry"]
