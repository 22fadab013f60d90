"""Config loading: the demo preset is valid, unknown and mistyped keys are named, overrides apply."""

import pytest

from pipelines.config import ConfigError, load_config


def test_demo_preset_is_the_default_and_valid():
    cfg = load_config()
    assert cfg.data.demo and cfg.extract.modalities == ("text", "image", "audio", "video")
    assert cfg.extract.extractors["image"].extractor == "image/timm"
    assert cfg.extract.extractors["image"].spec_options() == {"batch_size": 32}
    assert cfg.train.fusion.method == "concat"


def test_overrides_are_typed():
    cfg = load_config(overrides=["extract.shard_size=8", "train.ranker.kind=mlp", "store.root=/tmp/x",
                                 "extract.modalities=['text']"])
    assert cfg.extract.shard_size == 8 and cfg.train.ranker.kind == "mlp"
    assert cfg.store.root == "/tmp/x" and cfg.extract.modalities == ("text",)


@pytest.mark.parametrize("override, pattern", [
    ("extract.shard_sise=8", r"unknown key 'extract\.shard_sise'"),
    ("extract.shard_size=lots", r"'extract\.shard_size': Input should be a valid integer.*'lots'"),
    ("train.fusion.method=magic",
     r"'train\.fusion\.method': .*'magic' is not a registered fusion method; choose from \['concat', 'gated', "),
    ("extract.extractors.smell={extractor='x'}", r"unknown modality \['smell'\]"),
    ("nonsense", r"override 'nonsense' is not KEY=VALUE"),
    ("train.ranker.params={num_leafs=3}",
     r"\['num_leafs'\] are not arguments of the lgbm ranker; valid: .*'num_leaves'"),
    ("train.new_items.positions=[0]", r"distinct 1-based positions"),
    ("train.split.kind=weekly", r"'train\.split\.kind': Input should be 'per_user' or 'global'"),
])
def test_bad_config_is_named(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(overrides=[override])


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found\. Fix: pass an existing TOML file"):
        load_config(tmp_path / "nope.toml")


def test_one_extractor_option_can_be_overridden_alone():
    cfg = load_config(overrides=["extract.extractors.image.batch_size=8"])
    image = cfg.extract.extractors["image"]
    assert image.extractor == "image/timm" and image.spec_options() == {"batch_size": 8}
    assert cfg.extract.extractors["text"].extractor == "text/hf"
