"""Vectors never mixed: the fingerprint covers the precision a forward pass really runs in, so a reduced-precision
run (bf16/fp16 autocast, what "auto" does on CUDA) lands in its own store folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from extractor_fixtures import smooth_rgb, write_image

from extractors import registry
from extractors.base import ExtractorConfigError
from extractors.devices import effective_precision, full_fp32
from pipelines.extract.flow import run_extraction
from pipelines.store.layout import Store
from tests.extract_helpers import config_for, make_demo

TINY = ["extract.extractors.image.model='test_efficientnet'", "extract.extractors.image.weights='random'"]


def test_effective_precision_resolves_auto_per_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert effective_precision(cpu, "auto") == "fp32" == effective_precision(cpu, "fp32")
    assert effective_precision(cpu, "bf16") == "bf16" and effective_precision(cpu, "fp16") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert effective_precision(cuda, "auto") == "bf16" and effective_precision(cuda, "fp32") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert effective_precision(cuda, "auto") == "fp16"
    with pytest.raises(ExtractorConfigError, match="does not support bfloat16; use 'fp16' or 'auto'"):
        effective_precision(cuda, "bf16")


def test_fp32_on_a_gpu_turns_tf32_off_and_restores_the_flags():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with full_fp32():
        with full_fp32():  # a second shard thread in fp32 at the same time
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32  # still off: the other user is still running
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == saved


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision_images")
    return [str(write_image(root / f"i{i}.jpg", smooth_rgb(20 + i, (48, 40)))) for i in range(4)]


@pytest.mark.parametrize("name", ["image/timm", "text/hf", "audio/crepe"])
def test_a_reduced_precision_gets_its_own_fingerprint_and_fp32_is_auto_on_cpu(name):
    spec = dataclasses.replace(registry.tiny_spec(name), device="cpu")
    auto = registry.create(name, spec=spec)
    fp32 = registry.create(name, spec=dataclasses.replace(spec, precision="fp32"))
    bf16 = registry.create(name, spec=dataclasses.replace(spec, precision="bf16"))
    assert (auto.precision, fp32.precision, bf16.precision) == ("fp32", "fp32", "bf16")
    assert auto.fingerprint == fp32.fingerprint  # same computation, same folder
    assert bf16.fingerprint != auto.fingerprint


def test_bf16_vectors_differ_from_fp32_ones_which_is_why_they_must_not_share_a_folder(images):
    spec = dataclasses.replace(registry.tiny_spec("image/timm"), device="cpu")
    fp32 = registry.create("image/timm", spec=spec).embed(images)
    bf16 = registry.create("image/timm", spec=dataclasses.replace(spec, precision="bf16")).embed(images)
    assert fp32.ok.all() and bf16.ok.all()
    assert np.abs(fp32.vectors - bf16.vectors).max() > 1e-4  # far beyond the 1e-5 the store promises
    assert (fp32.vectors * bf16.vectors).sum(axis=1).min() > 0.95  # yet the same model


def test_a_video_extractor_inherits_the_precision_of_its_image_model():
    spec = registry.tiny_spec("video/frames")
    fp32 = registry.create("video/frames", spec=spec, device="cpu")
    bf16 = registry.create("video/frames", spec=dataclasses.replace(
        spec, image=dataclasses.replace(spec.image, precision="bf16")), device="cpu")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16") and fp32.fingerprint != bf16.fingerprint


def test_a_reduced_precision_run_lands_in_its_own_folder(tmp_path):
    demo = make_demo(tmp_path)
    store = tmp_path / "store"
    first = run_extraction(config_for(demo, store, ("image",), TINY))["modalities"][0]
    old = Store(store).scan_embeddings("image", first["fingerprint"]).collect().sort("item_id")
    second = run_extraction(config_for(demo, store, ("image",), [*TINY, "extract.extractors.image.precision='bf16'"]))
    summary = second["modalities"][0]
    assert summary["fingerprint"] != first["fingerprint"]
    assert summary["unchanged"] == 0 and summary["embedded"] == first["embedded"] > 0
    folders = {path.name for path in (store / "embeddings" / "image").iterdir() if path.is_dir()}
    assert {first["fingerprint"], summary["fingerprint"]} <= folders
    kept = Store(store).scan_embeddings("image", first["fingerprint"]).collect().sort("item_id")
    assert kept.select("item_id", "content_hash").equals(old.select("item_id", "content_hash"))
    new = Store(store).scan_embeddings("image", summary["fingerprint"]).collect().sort("item_id")
    assert not np.allclose(np.stack(new["embedding"].to_numpy()), np.stack(old["embedding"].to_numpy()), atol=1e-5)
    assert Path(store / "current" / "image.parquet").exists()
