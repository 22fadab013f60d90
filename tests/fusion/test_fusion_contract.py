"""The contract every registered fusion method keeps (parametrized over FUSION_METHODS): it declares what it
learns from and fits on exactly that, gives unit rows (zeros for an item with no modality), saves and loads
to identical vectors, is deterministic, and names the error when used unfitted."""

from __future__ import annotations

import numpy as np
import pytest

from fusion import FUSION_METHODS, NotFittedError, align_modalities, load_fusion, make_fusion

SMALL = {"gated": {"dim": 8, "epochs": 2, "batch_size": 64}, "weighted": {"dim": 8}}


def _blocks():
    rng = np.random.default_rng(0)
    ids = [f"item-{i}" for i in range(50)]
    tables = {"text": (ids[:45], rng.normal(size=(45, 8)).astype(np.float32)),
              "image": (ids[10:40], rng.normal(size=(30, 5)).astype(np.float32))}
    return align_modalities([*ids, "no-vector"], tables)


def _learning_inputs(cls, n_items: int) -> dict:
    """What the pipeline would hand over, from the method's own declaration."""
    rng = np.random.default_rng(1)
    if "pairs" in cls.learns_from:
        return {"pairs": rng.integers(0, n_items, size=(200, 2))}
    if "targets" in cls.learns_from:
        return {"targets": rng.normal(size=(n_items, 4)).astype(np.float32)}
    return {}


@pytest.fixture(params=sorted(FUSION_METHODS))
def method(request) -> str:
    return request.param


def _fitted(method: str):
    blocks = _blocks()
    cls = FUSION_METHODS[method]
    return make_fusion(method, **SMALL.get(method, {})).fit(blocks, **_learning_inputs(cls, blocks.n_items)), blocks


def test_declarations_are_well_formed(method):
    cls = FUSION_METHODS[method]
    assert cls.method == method and cls.learns_from <= {"pairs", "targets"} and isinstance(cls.takes_weights, bool)


def test_rows_are_unit_or_zero_and_round_trip_through_save(method, tmp_path):
    fusion, blocks = _fitted(method)
    fused = fusion.transform(blocks)
    norms = np.linalg.norm(fused, axis=1)
    assert fused.dtype == np.float32 and fused.shape[0] == blocks.n_items
    present = blocks.mask.any(axis=1)
    np.testing.assert_allclose(norms[present], 1.0, rtol=1e-5)
    assert (~present).sum() == 6 and np.all(norms[~present] == 0.0)  # items with no modality
    fusion.save(tmp_path / method)
    np.testing.assert_array_equal(load_fusion(tmp_path / method).transform(blocks), fused)


def test_fit_is_deterministic(method):
    first, blocks = _fitted(method)
    second, _ = _fitted(method)
    np.testing.assert_allclose(second.transform(blocks), first.transform(blocks), rtol=1e-5, atol=1e-6)


def test_transform_before_fit_is_a_named_error(method):
    with pytest.raises(NotFittedError):
        make_fusion(method, **SMALL.get(method, {})).transform(_blocks())
