"""Fusion core: alignment with missing modalities, normalisation, the three fusion methods, pairs."""

from __future__ import annotations

import numpy as np
import pytest

from fusion import (
    SEED_WEIGHTS,
    AlignmentError,
    BlockNormalizer,
    ConcatFusion,
    DuplicateItemError,
    FusionInputError,
    GatedFusion,
    NotFittedError,
    UnknownFusionError,
    WeightedFusion,
    align_modalities,
    cooccurrence_pairs,
    load_fusion,
    make_fusion,
)


def _ids(n: int) -> list[str]:
    return [f"item-{i}" for i in range(n)]


def _random_blocks(n: int = 60, seed: int = 0):
    """Text for all but the last 10 items, image for the first 40 (so 20..49 have both), audio for none."""
    rng = np.random.default_rng(seed)
    ids = _ids(n)
    text_rows, image_rows = np.arange(n - 10), np.arange(40)
    tables = {
        "text": ([ids[i] for i in text_rows], rng.normal(size=(len(text_rows), 8)).astype(np.float32) + 2.0),
        "image": ([ids[i] for i in image_rows], rng.normal(size=(len(image_rows), 5)).astype(np.float32)),
    }
    return align_modalities(ids, tables)


def _fit(method: str, blocks, **params):
    if method == "gated":
        rng = np.random.default_rng(1)
        pairs = rng.integers(0, blocks.n_items, size=(200, 2))
        return GatedFusion(dim=8, epochs=2, batch_size=64, **params).fit(blocks, pairs=pairs)
    return make_fusion(method, **params).fit(blocks)


# --- alignment -------------------------------------------------------------------------------------


def test_align_mask_and_zero_rows_for_missing_modalities():
    ids = ["a", "b", "c"]
    text = np.array([[1, 2], [3, 4]], dtype=np.float32)
    image = np.array([[5, 6, 7]], dtype=np.float32)
    tables = {"text": (["c", "a"], text), "image": (["b", "not-in-catalog"], np.vstack([image, image]))}
    blocks = align_modalities(ids, tables)
    assert blocks.modalities == ("text", "image")
    np.testing.assert_array_equal(blocks.mask, [[True, False], [False, True], [True, False]])
    np.testing.assert_array_equal(blocks.blocks["text"], [[3, 4], [0, 0], [1, 2]])
    np.testing.assert_array_equal(blocks.blocks["image"], [[0, 0, 0], [5, 6, 7], [0, 0, 0]])


def test_align_rejects_duplicates_and_bad_vectors():
    with pytest.raises(DuplicateItemError, match=r"modality 'text' has duplicate item ids \['a'\]"):
        align_modalities(["a", "b"], {"text": (["a", "a"], np.ones((2, 3), np.float32))})
    with pytest.raises(DuplicateItemError, match=r"item_ids has duplicates \['b'\]"):
        align_modalities(["a", "b", "b"], {"text": (["a"], np.ones((1, 3), np.float32))})
    with pytest.raises(AlignmentError, match=r"NaN or inf \(items \['b'\]\)"):
        align_modalities(["a", "b"], {"text": (["a", "b"], np.array([[1.0], [np.nan]], np.float32))})
    with pytest.raises(AlignmentError, match="vectors have shape"):
        align_modalities(["a"], {"text": (["a"], np.ones((2, 3), np.float32))})


@pytest.mark.parametrize("method", ["concat", "weighted", "gated"])
def test_fused_rows_unit_norm_when_any_modality_present_else_zero(method):
    blocks = _random_blocks()
    # an item with no modality at all: neither text (last 10 lack it) nor image (only first 40 have it)
    fused = _fit(method, blocks).transform(blocks)
    norms = np.linalg.norm(fused, axis=1)
    has_any = blocks.mask.any(axis=1)
    assert fused.dtype == np.float32
    assert (~has_any).sum() == 10
    np.testing.assert_allclose(norms[has_any], 1.0, atol=1e-5)
    np.testing.assert_array_equal(norms[~has_any], 0.0)


@pytest.mark.parametrize("method", ["concat", "weighted", "gated"])
def test_save_load_round_trip_gives_identical_vectors(method, tmp_path):
    blocks = _random_blocks()
    fusion = _fit(method, blocks)
    fusion.save(tmp_path / "fusion")
    loaded = load_fusion(tmp_path / "fusion")
    assert type(loaded) is type(fusion) and loaded.dim_ == fusion.dim_
    np.testing.assert_array_equal(loaded.transform(blocks), fusion.transform(blocks))


# --- normaliser ------------------------------------------------------------------------------------


def test_normalizer_centres_on_present_rows_and_keeps_missing_rows_zero():
    x = np.array([[10.0, 1.0], [10.0, -1.0], [0.0, 0.0]], dtype=np.float32)
    present = np.array([True, True, False])
    out = BlockNormalizer(center=True).fit_transform(x, present)
    # mean of present rows is (10, 0): centred rows are (0, 1), (0, -1); the shared direction is gone
    np.testing.assert_allclose(out, [[0, 1], [0, -1], [0, 0]], atol=1e-6)


def test_normalizer_save_load_round_trip_identical(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6)).astype(np.float32) @ rng.normal(size=(6, 6)).astype(np.float32)
    present = rng.random(50) > 0.2
    norm = BlockNormalizer(center=True, whiten=True, pca_dim=4).fit(x, present)
    norm.save(tmp_path / "norm.npz")
    loaded = BlockNormalizer.load(tmp_path / "norm.npz")
    assert loaded.dim_ == 4 and loaded.get_params() == norm.get_params()
    np.testing.assert_array_equal(loaded.transform(x, present), norm.transform(x, present))


def test_whitening_decorrelates_present_rows():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 3)) @ np.array([[5.0, 0, 0], [4.0, 1.0, 0], [0, 0, 0.1]])
    norm = BlockNormalizer(whiten=True, pca_dim=3).fit(x)
    y = (x - norm.mean_) @ norm.components_ * norm.scale_  # the pre-L2 whitened coordinates
    np.testing.assert_allclose(np.cov(y.T), np.eye(3), atol=1e-3)


def test_normalizer_errors_name_the_fix():
    with pytest.raises(NotFittedError, match="not fitted; call fit"):
        BlockNormalizer().transform(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"pca_dim=0 must be an int >= 1, or None"):
        BlockNormalizer(pca_dim=0).fit(np.ones((4, 3)))
    # pca_dim is an upper bound, so one setting serves modalities of different widths
    assert BlockNormalizer(pca_dim=5).fit(np.random.default_rng(0).normal(size=(4, 3))).dim_ == 3


# --- concat / weighted -----------------------------------------------------------------------------


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_concat_inner_product_is_weighted_sum_of_block_cosines():
    rng = np.random.default_rng(5)
    ids = _ids(20)
    dims = {"text": 6, "image": 4, "audio": 3, "video": 5}
    tables = {m: (ids, rng.normal(size=(20, d)).astype(np.float32)) for m, d in dims.items()}
    blocks = align_modalities(ids, tables)
    fusion = ConcatFusion(weights=SEED_WEIGHTS, center=False).fit(blocks)
    fused = fusion.transform(blocks)
    for i, j in [(0, 1), (2, 7), (5, 19)]:
        expected = sum(SEED_WEIGHTS[m] * _cos(tables[m][1][i], tables[m][1][j]) for m in dims)
        assert float(fused[i] @ fused[j]) == pytest.approx(expected, abs=1e-5)


def test_concat_with_missing_modality_renormalises_by_present_weights():
    ids = ["full", "text-only"]
    text = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    image = np.array([[0.0, 1.0]], np.float32)
    blocks = align_modalities(ids, {"text": (ids, text), "image": (["full"], image)})
    fused = ConcatFusion(weights={"text": 0.2, "image": 0.3}, center=False).fit(blocks).transform(blocks)
    # text cosine 1, image missing for one side: 0.2 * 1 / sqrt((0.2 + 0.3) * 0.2) = sqrt(0.4)
    assert float(fused[0] @ fused[1]) == pytest.approx(np.sqrt(0.4), abs=1e-6)


def test_text_only_item_is_nearest_to_its_text_twin():
    # (WeightedFusion sums unrelated PCA spaces, so it gives no such guarantee: it is a baseline.)
    rng = np.random.default_rng(6)
    n = 40
    ids = _ids(n)
    text = rng.normal(size=(n, 16)).astype(np.float32)
    text[1] = text[0]  # item 1 is a new item with only text, identical to item 0's text
    image_rows = [i for i in range(n) if i != 1]
    image = rng.normal(size=(len(image_rows), 8)).astype(np.float32)
    blocks = align_modalities(ids, {"text": (ids, text), "image": ([ids[i] for i in image_rows], image)})
    fused = ConcatFusion(weights=SEED_WEIGHTS).fit(blocks).transform(blocks)
    sims = fused @ fused[1]
    sims[1] = -np.inf
    assert int(np.argmax(sims)) == 0
    # text cosine 1 (centring moves both identically), image missing on one side: sqrt(0.2 / 0.5)
    assert sims[0] == pytest.approx(np.sqrt(0.4), abs=1e-5)


def test_weights_must_cover_every_modality():
    blocks = _random_blocks()
    with pytest.raises(FusionInputError, match=r"no entry for modalities \['image'\]"):
        ConcatFusion(weights={"text": 1.0}).fit(blocks)
    with pytest.raises(FusionInputError, match="all weights .* are 0"):
        WeightedFusion(weights={"text": 0.0, "image": 0.0}).fit(blocks)


def test_weighted_pads_modalities_with_fewer_dims():
    blocks = _random_blocks()  # image has 5 dims < dim 8
    fusion = WeightedFusion(dim=8).fit(blocks)
    image_only = blocks.mask[:, 1] & ~blocks.mask[:, 0]
    fused = fusion.transform(blocks)
    assert fused.shape == (60, 8)
    np.testing.assert_array_equal(fused[image_only][:, 5:], 0.0)


# --- gated -----------------------------------------------------------------------------------------


def _clustered_blocks(n: int = 240, n_clusters: int = 4, seed: int = 0):
    """Two modalities whose weak cluster signal is buried under stronger, cluster-free nuisance axes."""
    rng = np.random.default_rng(seed)
    cluster = np.repeat(np.arange(n_clusters), n // n_clusters)

    def modality(d):
        centers = rng.normal(size=(n_clusters, d))
        scale = np.where(np.arange(d) < d // 2, 3.0, 1.0)
        return (centers[cluster] + rng.normal(size=(n, d)) * scale).astype(np.float32)

    text, image = modality(16), modality(12)
    has_text = rng.random(n) > 0.2
    has_image = (rng.random(n) > 0.3) | ~has_text
    ids = _ids(n)
    tables = {
        "text": ([ids[i] for i in np.flatnonzero(has_text)], text[has_text]),
        "image": ([ids[i] for i in np.flatnonzero(has_image)], image[has_image]),
    }
    anchors = rng.integers(0, n, size=3000)
    partners = np.array([rng.choice(np.flatnonzero(cluster == cluster[a])) for a in anchors])
    return align_modalities(ids, tables), cluster, np.stack([anchors, partners], axis=1)


def _cluster_gap(vectors, cluster):
    """Mean same-cluster cosine minus mean cross-cluster cosine."""
    sims = vectors @ vectors.T
    same = cluster[:, None] == cluster[None, :]
    off_diag = ~np.eye(len(cluster), dtype=bool)
    return float(sims[same & off_diag].mean() - sims[~same].mean())


def test_gated_learns_co_consumption_clusters():
    blocks, cluster, pairs = _clustered_blocks()
    params = dict(dim=16, batch_size=128, lr=1e-2, seed=0)
    before = _cluster_gap(GatedFusion(epochs=0, **params).fit(blocks, pairs=pairs).transform(blocks), cluster)
    after = _cluster_gap(GatedFusion(epochs=4, **params).fit(blocks, pairs=pairs).transform(blocks), cluster)
    assert after > 0.25
    assert after > before + 0.2


def test_gated_aligns_to_target_embeddings_with_missing_targets():
    blocks, cluster, _ = _clustered_blocks(seed=1)
    rng = np.random.default_rng(2)
    targets = np.eye(4, dtype=np.float32)[cluster] + 0.1 * rng.normal(size=(len(cluster), 4)).astype(np.float32)
    targets[::5] = np.nan  # items the collaborative model never saw: no target
    params = dict(dim=16, batch_size=32, lr=1e-2, seed=0)
    before = _cluster_gap(GatedFusion(epochs=0, **params).fit(blocks, targets=targets).transform(blocks), cluster)
    after = _cluster_gap(GatedFusion(epochs=8, **params).fit(blocks, targets=targets).transform(blocks), cluster)
    assert after > before + 0.2


def test_gated_is_deterministic_given_seed():
    blocks, _, pairs = _clustered_blocks(n=80)
    fusion = GatedFusion(dim=8, epochs=2, seed=7, batch_size=64)
    runs = [fusion.fit(blocks, pairs=pairs).transform(blocks) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_gated_needs_a_training_signal():
    blocks = _random_blocks()
    with pytest.raises(FusionInputError, match="needs pairs or targets.*cooccurrence_pairs"):
        GatedFusion().fit(blocks)
    with pytest.raises(FusionInputError, match=r"item_idx outside \[0, 60\)"):
        GatedFusion().fit(blocks, pairs=np.array([[0, 60]]))


# --- factory, errors, pairs ------------------------------------------------------------------------


def test_make_fusion_names_valid_methods():
    with pytest.raises(UnknownFusionError, match=r"'bogus'.*\['concat', 'gated', 'weighted'\]"):
        make_fusion("bogus")
    with pytest.raises(FusionInputError, match="bad parameters"):
        make_fusion("concat", dim=3)
    assert isinstance(make_fusion("gated", dim=32), GatedFusion)


def test_transform_before_fit_and_with_changed_blocks():
    blocks = _random_blocks()
    with pytest.raises(NotFittedError, match="not fitted; call fit"):
        ConcatFusion().transform(blocks)
    fusion = ConcatFusion().fit(blocks)
    ids = list(blocks.item_ids)
    other = align_modalities(ids, {"text": (ids, np.ones((60, 8), np.float32))})
    with pytest.raises(FusionInputError, match=r"lack modalities \['image'\]"):
        fusion.transform(other)
    wider = align_modalities(
        ids, {"text": (ids, np.ones((60, 9), np.float32)), "image": (ids, np.ones((60, 5), np.float32))}
    )
    with pytest.raises(FusionInputError, match="differ from the fitted dims"):
        fusion.transform(wider)


def test_cooccurrence_pairs_stay_within_users():
    user_idx = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    item_idx = np.array([1, 2, 3, 3, 4, 5, 6, 6])  # user 2 has one item, user 3 one distinct item
    pairs = cooccurrence_pairs(user_idx, item_idx, max_pairs=500, seed=0)
    allowed = {(1, 2), (1, 3), (2, 3), (3, 4)}
    assert {tuple(p) for p in pairs.tolist()} == allowed  # 500 draws find every pair, and only these
    np.testing.assert_array_equal(pairs, cooccurrence_pairs(user_idx, item_idx, max_pairs=500, seed=0))
    assert len(cooccurrence_pairs(user_idx, item_idx, max_pairs=1, seed=0)) == 1
    assert cooccurrence_pairs([0, 1], [5, 6], max_pairs=10, seed=0).shape == (0, 2)
