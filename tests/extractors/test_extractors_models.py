"""Model loading, weight mapping and per-extractor behaviour, on tiny models (fast, offline)."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import soundfile
import torch
from extractor_fixtures import smooth_rgb, write_image, write_tone, write_video

from extractors import registry, specs
from extractors.base import ExtractorConfigError, WeightMappingError, WeightsNotFoundError
from extractors.image import load_timm_state
from extractors.weights import map_state_dict_by_order


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("model_images")
    return [str(write_image(root / f"i{i}.jpg", smooth_rgb(10 + i, (48, 40)))) for i in range(5)]


def _tiny_timm(**changes):
    return registry.create("image/timm", spec=dataclasses.replace(registry.tiny_spec("image/timm"), **changes))


def test_timm_weights_file_loads_strictly_and_fingerprints_by_content(tmp_path, images):
    from safetensors.torch import save_file

    random_ext = _tiny_timm(seed=3)
    state = {key: value.clone() for key, value in random_ext.model.state_dict().items()}
    save_file(state, tmp_path / "a.safetensors")
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "a.safetensors", tmp_path / "copy" / "b.safetensors")
    from_file = _tiny_timm(weights=str(tmp_path / "a.safetensors"))
    moved = _tiny_timm(weights=str(tmp_path / "copy" / "b.safetensors"))
    np.testing.assert_allclose(from_file.embed(images).vectors, random_ext.embed(images).vectors, atol=1e-6)
    assert from_file.fingerprint == moved.fingerprint  # same bytes, another path
    assert from_file.fingerprint != random_ext.fingerprint
    state["conv_stem.weight"] += 0.5
    save_file(state, tmp_path / "c.safetensors")
    changed = _tiny_timm(weights=str(tmp_path / "c.safetensors"))
    assert changed.fingerprint != from_file.fingerprint
    assert not np.allclose(changed.embed(images).vectors, from_file.embed(images).vectors, atol=1e-4)


def test_checkpoint_with_other_parameter_names_is_mapped_in_order():
    model = _tiny_timm(seed=1).model
    target = _tiny_timm(seed=2).model
    renamed = {("_conv_stem.weight" if i == 0 else f"_blocks.{i}"): v
               for i, (k, v) in enumerate(model.state_dict().items())}
    load_timm_state(target, renamed, source_name="foreign.pth")
    for (key, value), (_, expected) in zip(target.state_dict().items(), model.state_dict().items()):
        torch.testing.assert_close(value, expected, msg=key)


def test_order_mapping_refuses_a_shape_mismatch_or_a_count_mismatch():
    source = {"_conv_stem.weight": torch.zeros(8, 3, 3, 3), "_bn0.weight": torch.zeros(4)}
    target = {"conv_stem.weight": torch.zeros(8, 3, 3, 3), "bn1.weight": torch.zeros(8)}
    with pytest.raises(WeightMappingError,
                       match=r"tensor #1 '_bn0.weight' \(4,\) does not fit model parameter 'bn1.weight' \(8,\)"):
        map_state_dict_by_order(source, target, source_name="x.pth")
    with pytest.raises(WeightMappingError, match="x.pth has 2 tensors but the model has 1"):
        map_state_dict_by_order(source, {"conv_stem.weight": torch.zeros(8, 3, 3, 3)}, source_name="x.pth")
    with pytest.raises(WeightMappingError, match="does not fit timm model"):
        load_timm_state(_tiny_timm().model, {"head.weight": torch.zeros(1)}, source_name="y.pth")


def test_missing_weights_raise_named_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="weights file .*nope.pth does not exist"):
        _tiny_timm(weights=str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsNotFoundError, match="no offline weights for timm model 'test_resnet'"):
        registry.create("image/timm", model="test_resnet", num_workers=0)
    with pytest.raises(WeightsNotFoundError, match="'someone/not-cached' is neither a local directory nor in the"):
        registry.create("text/hf", model="someone/not-cached")
    with pytest.raises(ExtractorConfigError, match="model='resnet_9000' is not a timm architecture"):
        registry.create("image/timm", model="resnet_9000")
    with pytest.raises(ExtractorConfigError, match="'bert' is not an audio one"):
        registry.create("audio/hf", model="bert", weights="random")


def test_decoding_in_worker_processes_gives_the_same_vectors(images):
    in_process = _tiny_timm(num_workers=0).embed(images + ["/no/such.jpg"])
    in_workers = _tiny_timm(num_workers=2, batch_size=2).embed(images + ["/no/such.jpg"])
    np.testing.assert_allclose(in_workers.vectors, in_process.vectors, atol=1e-6)
    assert [e.kind for e in in_workers.errors] == ["missing"]


def test_text_is_truncated_at_max_length_and_bad_values_are_item_errors():
    ext = registry.create("text/hf", spec=dataclasses.replace(registry.tiny_spec("text/hf"), max_length=12))
    words = " ".join(f"word{i}" for i in range(40))
    result = ext.embed([words, words + " and a different ending", None, 42, "short"])
    np.testing.assert_allclose(result.vectors[0], result.vectors[1], atol=1e-6)
    assert [(e.index, e.kind) for e in result.errors] == [(2, "empty"), (3, "unsupported")]
    assert ext.max_length == 12
    default = registry.create("text/hf", spec=registry.tiny_spec("text/hf"))
    assert default.max_length == 256  # the bundled sentence-transformers limit
    assert default.fingerprint != ext.fingerprint


def test_preprocessing_and_model_changes_change_fingerprints():
    crepe = registry.tiny_spec("audio/crepe")
    prints = {
        registry.create("audio/crepe", spec=crepe).fingerprint,
        registry.create("audio/crepe", spec=dataclasses.replace(crepe, hop_ms=10.0)).fingerprint,
        registry.create("audio/crepe", spec=dataclasses.replace(crepe, weights="random")).fingerprint,
        _tiny_timm().fingerprint,
        _tiny_timm(model="test_resnet").fingerprint,
    }
    assert len(prints) == 5
    same = registry.create("audio/crepe", spec=dataclasses.replace(crepe, batch_size=1, num_workers=3))
    assert same.fingerprint == registry.create("audio/crepe", spec=crepe).fingerprint


def test_video_mean_max_pooling_doubles_dim_and_keeps_the_mean(tmp_path):
    clips = [str(write_video(tmp_path / f"c{i}.mp4", n_frames=6 + i, seed=i)) for i in range(2)]
    base = dataclasses.replace(registry.tiny_spec("video/frames"), normalize=False)
    mean = registry.create("video/frames", spec=base)
    mean_max = registry.create("video/frames", spec=dataclasses.replace(base, pooling="mean_max"))
    assert mean_max.dim == 2 * mean.dim
    vectors = mean_max.embed(clips).vectors
    np.testing.assert_allclose(vectors[:, : mean.dim], mean.embed(clips).vectors, atol=1e-6)
    assert np.all(vectors[:, mean.dim :] >= vectors[:, : mean.dim] - 1e-6)  # max >= mean
    assert mean_max.fingerprint != mean.fingerprint
    from_table = registry.create("video/frames", spec=dataclasses.replace(
        base, image={"model": "test_efficientnet", "weights": "random", "batch_size": 4}))  # fmt: skip
    assert from_table.fingerprint == mean.fingerprint  # the same image spec, written as a table


def test_clip_loads_a_local_full_clip_checkpoint(tmp_path, images):
    from PIL import Image
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "vocab_size": 99, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path / "clip")
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor.save_pretrained(tmp_path / "clip")
    ext = registry.create("image/hf-clip", model=str(tmp_path / "clip"), num_workers=0)
    assert ext.dim == 8
    pixels = processor(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        expected = clip.get_image_features(pixel_values=pixels)
    expected = torch.nn.functional.normalize(getattr(expected, "pooler_output", expected), dim=-1).numpy()
    np.testing.assert_allclose(ext.embed(images).vectors, expected, atol=1e-5)


def test_audio_hf_runs_an_encoder_decoder_model_on_its_encoder(tmp_path):
    spec = specs.HFAudioSpec(
        model="whisper", weights="random", window_s=2.0, max_windows=2, num_workers=0,
        config_overrides={"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                          "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32},
    )  # fmt: skip
    ext = registry.create("audio/hf", spec=spec)
    clips = [str(write_tone(tmp_path / f"t{i}.wav", seconds=0.5 + i, freq=300.0 + 200 * i)) for i in range(3)]
    result = ext.embed(clips)
    assert ext.dim == 16 and result.ok.all() and np.isfinite(result.vectors).all()
    assert np.unique(result.vectors.round(5), axis=0).shape[0] == 3


def test_crepe_ignores_leading_digital_silence(tmp_path):
    rate = 16_000
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "tone.wav", tone, rate)
    soundfile.write(tmp_path / "padded.wav", np.concatenate([np.zeros(rate // 2), tone]), rate)
    soundfile.write(tmp_path / "other.wav", 0.3 * np.sin(2 * np.pi * 1500 * t), rate)
    spec = dataclasses.replace(registry.tiny_spec("audio/crepe"), window_s=3.0)
    vectors = registry.create("audio/crepe", spec=spec).embed(
        [str(tmp_path / name) for name in ("tone.wav", "padded.wav", "other.wav")]
    ).vectors
    assert vectors[0] @ vectors[1] > 0.99
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
