"""Extractor options are checked against the extractor's spec (names, types, values) before anything runs,
also when one option is overridden alone (the modality's default extractor is then implied)."""

from __future__ import annotations

import pytest

from extractors import registry, specs
from extractors.base import ExtractorConfigError
from pipelines.config import ConfigError, load_config
from pipelines.extract.flow import extractor_ref


def ref_for(*overrides: str):
    cfg = load_config(None, list(overrides))
    return {modality: extractor_ref(cfg, modality) for modality in cfg.extract.modalities}


def test_one_option_alone_keeps_the_default_extractor_and_reaches_its_spec():
    refs = ref_for("extract.extractors.image.num_workers=0", "extract.extractors.audio.hop_ms=100",
                   "extract.extractors.video.image.precision='bf16'", "extract.extractors.text.precision='fp32'")
    assert (refs["image"].name, refs["image"].options["num_workers"]) == ("image/timm", 0)
    assert (refs["audio"].name, refs["audio"].options["hop_ms"]) == ("audio/crepe", 100)
    assert refs["video"].name == "video/frames" and refs["text"].options["precision"] == "fp32"
    video = registry.spec_from_dict("video/frames", refs["video"].options)
    assert video.image == specs.TimmImageSpec(precision="bf16")


@pytest.mark.parametrize(("override", "message"), [
    ("extract.extractors.image.batchsize=8", (r"extract.extractors.image: unknown option\(s\) \['batchsize'\] for "
                                              r"extractor 'image/timm'; valid options: \[.*'batch_size'")),
    ("extract.extractors.image.normalize=yes", (r"option normalize='yes' for extractor 'image/timm' must be bool, got "
                                                r"str; write it as a TOML bool \(e.g. normalize=true\)")),
    ("extract.extractors.audio.hop_ms='fast'", r"option hop_ms='fast' for extractor 'audio/crepe' must be float"),
    ("extract.extractors.text.max_length='long'", r"option max_length='long' .* must be int \| None"),
    ("extract.extractors.audio.read_retries=-2", r"extract.extractors.audio: read_retries=-2 must be an integer >= 0"),
    ("extract.extractors.image.precision='fp8'", r"precision='fp8' is not one of \('auto', 'fp32', 'bf16', 'fp16'\)"),
    ("extract.extractors.video.image.modle='x'", r"unknown option\(s\) \['modle'\] for extractor 'image/timm'"),
    ("extract.extractors.video.num_frames=2.5", r"option num_frames=2.5 for extractor 'video/frames' must be int"),
])
def test_a_bad_single_option_is_a_config_error_naming_the_option_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        ref_for(override)


def test_create_checks_option_types_too():
    with pytest.raises(ExtractorConfigError, match=r"option batch_size=True for extractor 'text/hf' must be int"):
        registry.create("text/hf", batch_size=True)
