"""A catalog over train.fusion.fit_items is fused from vectors streamed out of the store: the same current rows
as the in-memory read, and the same fused vectors as transforming everything at once with the fitted fusion."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fusion.align import align_modalities
from pipelines.config import load_config
from pipelines.model.space import build_space
from pipelines.store.layout import Store
from pipelines.store.vectors import StoredVectors

N_ITEMS = 2_500


def _store(tmp_path) -> tuple[Store, dict[str, np.ndarray]]:
    """Two modalities in several parts; some items re-extracted (a stale row and its newer content), some
    images missing; returns the current vector of every (modality, item)."""
    rng = np.random.default_rng(3)
    store = Store(tmp_path / "store")
    ids = [f"i{i:05d}" for i in range(N_ITEMS)]
    current = {}
    for modality, dim, present in (("text", 12, N_ITEMS), ("image", 20, N_ITEMS - 700)):
        have = ids[:present]
        vectors = rng.normal(size=(present, dim)).astype(np.float32)
        for start in range(0, present, 900):  # several part files
            chunk = slice(start, start + 900)
            store.write_embeddings(modality, "fp", have[chunk], [f"h{i}" for i in have[chunk]], vectors[chunk])
        changed = have[:50]  # re-extracted with new content: the newer rows are current
        newer = rng.normal(size=(50, dim)).astype(np.float32)
        store.write_embeddings(modality, "fp", changed, [f"new{i}" for i in changed], newer)
        hashes = [f"new{i}" if n < 50 else f"h{i}" for n, i in enumerate(have)]
        store.write_current(modality, "fp", pl.DataFrame({"item_id": have, "content_hash": hashes}))
        vectors[:50] = newer
        current[modality] = dict(zip(have, vectors, strict=True))
    return store, current


def test_stored_vectors_read_exactly_the_current_rows_in_batches(tmp_path):
    store, current = _store(tmp_path)
    for modality, expected in current.items():
        stored = store.current_vectors(modality)
        assert isinstance(stored, StoredVectors) and len(stored) == len(expected)
        assert list(stored.ids) == sorted(expected)
        seen = np.zeros(len(stored), dtype=int)
        for positions, vectors in stored.batches(rows=333):  # batches smaller than a part
            seen[positions] += 1
            for position, vector in zip(positions, vectors, strict=True):
                np.testing.assert_array_equal(vector, expected[stored.ids[position]])
        assert (seen == 1).all()
        frame = store.scan_current(modality).select("item_id", "embedding").collect()
        ids, vectors = stored.load()
        assert list(ids) == frame["item_id"].to_list()
        np.testing.assert_array_equal(vectors, frame["embedding"].to_numpy())


@pytest.mark.parametrize("method", ["concat", "weighted"])
def test_streamed_space_equals_the_fitted_fusion_applied_at_once(tmp_path, method):
    store, current = _store(tmp_path)
    cfg = load_config(None, ["data.demo=false", f"train.fusion.method='{method}'", "train.fusion.fit_items=1000",
                             "train.fusion.pca_dim=8", "train.fusion.dim=8"]).train
    item_ids = np.array(sorted(current["text"]), dtype=object)
    tables = {m: store.current_vectors(m) for m in ("text", "image")}
    space = build_space(item_ids, tables, pl.DataFrame(), cfg, with_index=False)

    # fitted on a sample, not on everything: the fitted mean is not the full mean
    full_text = np.stack([current["text"][i] for i in item_ids])
    assert not np.allclose(space.fusion.normalizers_["text"].mean_, full_text.mean(axis=0))
    raw = align_modalities(list(item_ids), {m: t.load() for m, t in tables.items()})
    np.testing.assert_allclose(space.fused, space.fusion.transform(raw), atol=1e-5)
    for modality in ("text", "image"):
        expected = space.fusion.normalizers_[modality].transform(raw.blocks[modality], raw.present(modality))
        np.testing.assert_allclose(space.aligned.blocks[modality], expected, atol=1e-5)
        np.testing.assert_array_equal(space.aligned.present(modality), raw.present(modality))
    assert space.aligned.blocks["image"].shape == (N_ITEMS, 8)  # reduced while streaming, never held raw
    assert not space.aligned.present("image")[-700:].any()


def test_a_catalog_within_fit_items_is_fused_in_memory_as_before(tmp_path):
    store, current = _store(tmp_path)
    cfg = load_config(None, ["data.demo=false"]).train
    item_ids = np.array(sorted(current["text"]), dtype=object)
    tables = {m: store.current_vectors(m) for m in ("text", "image")}
    space = build_space(item_ids, tables, pl.DataFrame(), cfg, with_index=False)
    raw = align_modalities(list(item_ids), {m: t.load() for m, t in tables.items()})
    np.testing.assert_allclose(space.fusion.normalizers_["text"].mean_, raw.blocks["text"].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(space.fused, space.fusion.transform(raw), atol=1e-6)
