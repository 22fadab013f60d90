"""Core helpers: text normalisation, batching, OOM back-off, devices, fingerprints, registry and specs."""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import pytest
import torch

from extractors import base, registry, specs
from extractors.base import ExtractorConfigError, fingerprint, sha256_file, spec_params
from extractors.batching import length_sorted_batches
from extractors.devices import OOMBackoff, resolve_device
from extractors.registry import UnknownExtractorError
from extractors.text import normalize_text


def test_normalize_text_applies_nfkc_and_collapses_unicode_whitespace():
    assert normalize_text("  Ｒｅｄ\u00a0\u00a0shoe\t\n ﬁt\u3000size ") == "Red shoe fit size"
    assert normalize_text("\u2003 \n\t") == ""
    assert normalize_text("x") == "x"


def test_length_sorted_batches_put_longest_first_and_cover_every_index_once():
    batches = length_sorted_batches([3, 9, 1, 9, 5], batch_size=2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]


def test_oom_backoff_halves_batch_until_it_fits_and_keeps_order():
    calls = []

    def forward(chunk):
        calls.append(len(chunk))
        if len(chunk) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return [item * 10 for item in chunk]

    backoff = OOMBackoff(8)
    outputs = backoff.run(forward, list(range(10)))
    assert [value for part in outputs for value in part] == [item * 10 for item in range(10)]
    assert backoff.batch_size == 2
    assert calls[:3] == [8, 4, 2]
    calls.clear()
    backoff.run(forward, list(range(4)))  # the reduced size persists: no new OOM
    assert calls == [2, 2]


def test_oom_backoff_reraises_when_one_item_does_not_fit():
    def forward(chunk):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        OOMBackoff(4).run(forward, [1, 2, 3])


def test_resolve_device_auto_and_invalid_names():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ExtractorConfigError, match="'tpu0' is not a torch device"):
        resolve_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ExtractorConfigError, match="asks for CUDA but none is available"):
            resolve_device("cuda")


def test_fingerprint_ignores_runtime_knobs_and_tracks_what_changes_outputs(monkeypatch):
    spec = specs.TimmImageSpec(model="test_efficientnet", weights="random")
    fp = functools.partial(fingerprint, weights_sha256="a" * 64, precision="fp32", preprocessing={"size": 160})
    reference = fp("image/timm", spec)
    runtime = dataclasses.replace(spec, batch_size=1, device="cpu", num_workers=7, read_retries=0, read_backoff_s=2.0,
                                  precision="fp32")  # "auto" on CPU and "fp32" both run fp32: one folder
    assert fp("image/timm", runtime) == reference
    assert not {"batch_size", "num_workers", "precision", "read_retries"} & set(spec_params(spec))
    changed = [
        fp("image/timm", dataclasses.replace(spec, model="test_resnet")),
        fingerprint("image/timm", spec, weights_sha256="b" * 64, precision="fp32", preprocessing={"size": 160}),
        fingerprint("image/timm", spec, weights_sha256="a" * 64, precision="fp32", preprocessing={"size": 224}),
        fp("image/clip", spec),
        fp("image/timm", dataclasses.replace(spec, normalize=False)),
        fingerprint("image/timm", spec, weights_sha256="a" * 64, precision="bf16", preprocessing={"size": 160}),
        fingerprint("image/timm", spec, weights_sha256="a" * 64, precision="fp16", preprocessing={"size": 160}),
    ]  # fmt: skip
    monkeypatch.setattr(base, "EXTRACTOR_VERSION", "999")
    changed.append(fp("image/timm", spec))
    assert len({reference, *changed}) == len(changed) + 1
    assert len(reference) >= 16 and int(reference, 16) >= 0
    with pytest.raises(ExtractorConfigError, match=r"precision='auto' must be the effective one"):
        fingerprint("image/timm", spec, weights_sha256="a" * 64, precision="auto")


def test_sha256_file_streams_and_notices_changed_files(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"abc")
    first = sha256_file(path)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path) == first
    path.write_bytes(b"abcd")
    os.utime(path, ns=(1, 1))  # even with an old mtime the size differs
    assert sha256_file(path) != first


def test_registry_lists_all_modalities_without_loading_models():
    infos = {info.name: info for info in registry.available()}
    assert {"text/hf", "image/timm", "image/hf-clip", "audio/crepe", "audio/hf", "video/frames"} <= set(infos)
    assert infos["text/hf"].dim == 384 and infos["image/timm"].dim == 1280 and infos["audio/crepe"].dim == 512
    assert {info.modality for info in infos.values()} >= {"text", "image", "audio", "video"}


def test_unknown_extractor_name_lists_the_registered_ones():
    with pytest.raises(UnknownExtractorError, match=r"no extractor named 'image/nope'; registered: .*image/timm"):
        registry.create("image/nope")


def test_create_rejects_unknown_override_and_wrong_spec_type():
    with pytest.raises(ExtractorConfigError, match=r"unknown option\(s\) \['batchsize'\] for extractor 'text/hf'"):
        registry.create("text/hf", batchsize=3)
    with pytest.raises(ExtractorConfigError, match="spec for 'text/hf' must be a HFTextSpec, got TimmImageSpec"):
        registry.create("text/hf", spec=specs.TimmImageSpec())


def test_register_refuses_a_taken_name():
    with pytest.raises(ExtractorConfigError, match="'text/hf' is already registered"):
        registry.register("text/hf", modality="text", spec_cls=specs.HFTextSpec, factory=dict,
                          tiny_spec=specs.HFTextSpec, default_model="x", dim=1, description="x")  # fmt: skip


def test_spec_from_dict_builds_specs_and_names_unknown_keys():
    spec = registry.spec_from_dict("image/timm", {"model": "resnet50", "batch_size": 16})
    assert spec == specs.TimmImageSpec(model="resnet50", batch_size=16)
    with pytest.raises(ExtractorConfigError, match=r"unknown option\(s\) \['colour', 'modle'\].*valid options: \["):
        registry.spec_from_dict("image/timm", {"modle": "resnet50", "colour": 1})


def test_spec_from_dict_parses_the_nested_image_spec_of_video():
    spec = registry.spec_from_dict("video/frames",
                                   {"num_frames": 4, "image": {"model": "test_vit", "weights": "random"}})
    assert spec.image == specs.TimmImageSpec(model="test_vit", weights="random")
    with pytest.raises(ExtractorConfigError, match=r"unknown option\(s\) \['size'\] for extractor 'image/timm'"):
        registry.spec_from_dict("video/frames", {"image": {"size": 3}})


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (specs.TimmImageSpec, {"batch_size": 0}, "batch_size=0 must be an integer >= 1"),
        (specs.TimmImageSpec, {"num_workers": -1}, "num_workers=-1 must be an integer >= 0"),
        (specs.HFTextSpec, {"weights": "/some/file.pth"}, "weights='/some/file.pth' is not valid; use 'pretrained' or"),
        (specs.HFTextSpec, {"precision": "fp8"}, r"precision='fp8' is not one of \('auto', 'fp32', 'bf16', 'fp16'\)"),
        (specs.TimmImageSpec, {"read_retries": -1}, r"read_retries=-1 must be an integer >= 0"),
        (specs.CrepeAudioSpec, {"read_backoff_s": "1"}, r"read_backoff_s='1' must be a number of seconds"),
        (specs.CrepeAudioSpec, {"model": "medium"}, "model='medium' is not a CREPE capacity; use 'tiny' or 'full'"),
        (specs.CrepeAudioSpec, {"window_s": 0}, "window_s=0 must be > 0 seconds"),
        (specs.HFAudioSpec, {"max_windows": 0}, "max_windows=0 must be an integer >= 1"),
        (specs.VideoFramesSpec, {"pooling": "median"}, r"pooling='median' is not one of \('mean', 'mean_max'\)"),
        (specs.VideoFramesSpec, {"num_frames": 0}, "num_frames=0 must be an integer >= 1"),
        (specs.HFTextSpec, {"config_overrides": 5}, "config_overrides=5 is not a mapping"),
    ],
)
def test_invalid_spec_values_raise_named_errors(cls, kwargs, message):
    with pytest.raises(ExtractorConfigError, match=message):
        cls(**kwargs)


def test_specs_are_hashable_with_config_overrides():
    spec = specs.HFTextSpec(weights="random", config_overrides={"num_hidden_layers": 2, "hidden_size": 32})
    assert spec.config_overrides == (("hidden_size", 32), ("num_hidden_layers", 2))
    assert hash(spec) == hash(specs.HFTextSpec(weights="random", config_overrides={"hidden_size": 32,
                                                                                    "num_hidden_layers": 2}))


def test_assemble_result_zeroes_failed_rows():
    rows = {0: np.ones(3, np.float32), 2: np.full(3, 2.0, np.float32)}
    result = base.assemble_result(3, 3, rows, [base.ItemError(1, "missing", "gone")])
    assert result.ok.tolist() == [True, False, True]
    assert result.vectors[1].tolist() == [0.0, 0.0, 0.0] and result.vectors.dtype == np.float32
