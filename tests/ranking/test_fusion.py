"""models.fusion: the fused order against a naive loop, the served emulation against the list
path, and weights that make no sense refused."""

from __future__ import annotations

import numpy as np
import pytest

from models.fusion import Fusion, fuse_proposals, hybrid_scores, proposals_of


def naive_zscore(signals: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    out = np.zeros(len(next(iter(signals.values()))))
    for name, scores in signals.items():
        std = scores.std()
        out += weights.get(name, 0) * ((scores - scores.mean()) / std if std else 0 * scores)
    return out


def test_zscore_equals_a_naive_loop() -> None:
    rng = np.random.default_rng(0)
    signals = {"vector": rng.normal(size=50), "caption": rng.normal(size=50) * 7,
               "lexical": np.abs(rng.normal(size=50)) * 12}
    fusion = Fusion("zscore", {"vector": 0.2, "caption": 0.5, "lexical": 0.3})
    np.testing.assert_allclose(fusion.fuse(signals), naive_zscore(signals, fusion.weights))


def test_rrf_uses_ranks_only() -> None:
    signals = {"vector": np.array([0.9, 0.8, 0.1]), "lexical": np.array([0.0, 3.0, 1.0])}
    fused = Fusion("rrf", {"vector": 1, "lexical": 1}).fuse(signals)
    expected = [1 / 61, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62]  # lexical non-match gives nothing
    np.testing.assert_allclose(fused, expected)
    scaled = {"vector": signals["vector"] * 100, "lexical": signals["lexical"] ** 2}
    np.testing.assert_allclose(Fusion("rrf", {"vector": 1, "lexical": 1}).fuse(scaled), fused)


def test_a_signal_alone_keeps_its_order() -> None:
    rng = np.random.default_rng(1)
    scores = {"vector": rng.normal(size=(4, 30)), "lexical": np.zeros((4, 30))}
    fused = hybrid_scores(scores, Fusion("zscore", {"vector": 1.0}), depth=30)
    assert (np.argsort(-fused, axis=1) == np.argsort(-scores["vector"], axis=1)).all()


def test_proposals_fill_what_a_signal_did_not_propose() -> None:
    fusion = Fusion("zscore", {"vector": 0.5, "lexical": 0.5})
    proposals = {"vector": (np.array([3, 1]), np.array([0.9, 0.5])),
                 "lexical": (np.array([7]), np.array([4.0]))}
    ids, fused, found = fuse_proposals(fusion, proposals, depth=2)
    assert set(ids.tolist()) == {1, 3, 7}
    filled = {"vector": np.array([0.5, 0.9, 0.5]), "lexical": np.array([0.0, 0.0, 4.0])}
    expected = dict(zip([1, 3, 7], fusion.fuse(filled), strict=True))
    np.testing.assert_allclose(fused, [expected[i] for i in ids.tolist()])
    assert np.isnan(found["lexical"][ids.tolist().index(3)])
    assert found["vector"][ids.tolist().index(3)] == pytest.approx(0.9)


def test_emulation_proposes_only_matching_lexical_items() -> None:
    found = proposals_of({"lexical": np.array([0.0, 2.0, 0.0, 1.0])}, depth=3)
    assert found["lexical"][0].tolist() == [1, 3]


@pytest.mark.parametrize(("method", "weights"), [
    ("sum", {"vector": 1}), ("zscore", {"colour": 1}), ("zscore", {"vector": -1}),
    ("zscore", {"vector": 0, "lexical": 0}), ("zscore", {"vector": float("nan")}),
])
def test_bad_fusions_are_refused(method: str, weights: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Fusion(method, weights)  # type: ignore[arg-type]


def test_round_trip_through_a_manifest_dict() -> None:
    fusion = Fusion("rrf", {"vector": 0.4, "lexical": 0.6})
    assert Fusion.from_dict(fusion.as_dict()) == fusion
    assert fusion.with_weights({"caption": 1.0}).weights["caption"] == 1.0
