"""One contract, every registered extractor, each with its tiny spec (timm-style registry test)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from extractor_fixtures import (
    smooth_rgb,
    write_audio_only_m4a,
    write_broken,
    write_image,
    write_tone,
    write_video,
)

from extractors import registry
from extractors.base import ERROR_KINDS, Extractor, ExtractResult

NAMES = registry.names()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Good inputs (five distinct items) and bad inputs (expected error kind -> input) per modality."""
    root = tmp_path_factory.mktemp("contract_media")
    texts = [
        "red running shoe",
        "a much longer description of a blue denim jacket with brass buttons and two pockets",
        "lamp",
        "ceramic coffee mug, 350 ml, dishwasher safe",
        "wooden chess set with folding board",
    ]
    images = [write_image(root / f"img{i}.jpg", smooth_rgb(i, (40 + 8 * i, 32))) for i in range(5)]
    tones = [write_tone(root / f"tone{i}.wav", seconds=s, freq=f) for i, (s, f) in
             enumerate([(0.4, 220.0), (1.3, 440.0), (2.5, 330.0), (0.8, 660.0), (1.0, 550.0)])]  # fmt: skip
    videos = [write_video(root / f"clip{i}.mp4", n_frames=n, seed=i) for i, n in enumerate([3, 12, 6, 20, 9])]
    tracks = [write_video(root / f"track{i}.mp4", n_frames=8, seed=i, tone_hz=200.0 + 120 * i) for i in range(5)]
    silent_video = write_video(root / "silent.mp4", n_frames=5)
    audio_only = write_audio_only_m4a(root / "audio_only.m4a")

    def bad_files(suffix):
        broken = write_broken(root, suffix)
        # a zero-byte file is "empty" (nothing to decode), garbage bytes read whole are "decode"
        return {"missing": str(broken["missing"]), "empty": str(broken["zero"]), "decode": str(broken["garbage"])}

    return {
        "text": (texts, {"empty": ["", "  \t\n "]}),
        "image": ([str(p) for p in images], bad_files(".jpg")),
        "audio": ([str(p) for p in tones], {**bad_files(".wav"), "unsupported": str(silent_video)}),
        "video": ([str(p) for p in videos], {**bad_files(".mp4"), "unsupported": str(audio_only)}),
        "soundtrack": ([str(p) for p in tracks], {**bad_files(".mp4"), "unsupported": str(silent_video)}),
    }


_CACHE: dict[tuple[str, int], object] = {}


def tiny(name: str, batch_size: int | None = None):
    """Tiny extractor of ``name`` (cached per batch size to keep the suite fast)."""
    spec = registry.tiny_spec(name)
    size = batch_size or spec.batch_size
    if (name, size) not in _CACHE:
        _CACHE[(name, size)] = registry.create(name, spec=dataclasses.replace(spec, batch_size=size), device="cpu")
    return _CACHE[(name, size)]


def _bad_inputs(bad: dict) -> list[tuple[str, str]]:
    pairs = []
    for kind, inputs in bad.items():
        for value in inputs if isinstance(inputs, list) else [inputs]:
            pairs.append((kind, value))
    return pairs


@pytest.mark.parametrize("name", NAMES)
def test_registry_lists_every_extractor_cheaply(name):
    info = {entry.name: entry for entry in registry.available()}[name]
    assert info.modality in ("text", "image", "audio", "video", "soundtrack")
    assert info.dim > 0 and info.default_model and info.description


@pytest.mark.parametrize("name", NAMES)
def test_embed_shape_dtype_finite_normalised(name, media):
    ext = tiny(name)
    assert isinstance(ext, Extractor) and ext.name == name
    assert ext.modality == {info.name: info.modality for info in registry.available()}[name]
    good, _ = media[ext.modality]
    result = ext.embed(good)
    assert isinstance(result, ExtractResult)
    assert result.vectors.shape == (len(good), ext.dim)
    assert result.vectors.dtype == np.float32
    assert np.isfinite(result.vectors).all()
    assert result.ok.all() and result.errors == []
    if ext.spec.normalize:
        np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    # distinct items give distinct vectors (the model looks at its input)
    assert np.unique(result.vectors.round(5), axis=0).shape[0] == len(good)
    assert isinstance(ext.fingerprint, str) and len(ext.fingerprint) >= 16
    int(ext.fingerprint, 16)


@pytest.mark.parametrize("name", NAMES)
def test_batch_size_and_input_order_do_not_change_vectors(name, media):
    good, _ = media[tiny(name).modality]
    by_four = tiny(name, 4).embed(good).vectors
    by_one = tiny(name, 1).embed(good).vectors
    np.testing.assert_allclose(by_four, by_one, atol=1e-5)
    order = [3, 0, 4, 2, 1]
    shuffled = tiny(name, 4).embed([good[i] for i in order]).vectors
    np.testing.assert_allclose(shuffled, by_four[order], atol=1e-5)
    assert tiny(name, 4).fingerprint == tiny(name, 1).fingerprint


@pytest.mark.parametrize("name", NAMES)
def test_bad_items_get_their_error_kind_and_good_items_still_embed(name, media):
    ext = tiny(name, 4)
    good, bad = media[ext.modality]
    bad_pairs = _bad_inputs(bad)
    inputs, expected = [], {}
    for position in range(max(len(good), len(bad_pairs))):  # interleave good and bad
        if position < len(good):
            inputs.append(good[position])
        if position < len(bad_pairs):
            expected[len(inputs)] = bad_pairs[position][0]
            inputs.append(bad_pairs[position][1])
    result = ext.embed(inputs)
    assert {err.index: err.kind for err in result.errors} == expected
    assert all(err.kind in ERROR_KINDS and err.message for err in result.errors)
    assert not result.ok[list(expected)].any()
    assert not result.vectors[list(expected)].any()
    good_idx = [i for i in range(len(inputs)) if i not in expected]
    assert result.ok[good_idx].all()
    np.testing.assert_allclose(result.vectors[good_idx], ext.embed(good).vectors, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_empty_call_returns_empty_result(name):
    ext = tiny(name)
    result = ext.embed([])
    assert result.vectors.shape == (0, ext.dim) and result.ok.shape == (0,) and result.errors == []
