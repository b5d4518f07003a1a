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
    proposals = {"vector": (np.array([[3, 1]]), np.array([[0.9, 0.5]])),
                 "lexical": (np.array([[7, -1]]), np.array([[4.0, 0.0]]))}
    ids, fused, found = fuse_proposals(fusion, proposals, depth=2)
    ids, fused, found = ids[0], fused[0], {name: f[0] for name, f in found.items()}
    assert set(ids.tolist()) == {1, 3, 7}
    filled = {"vector": np.array([0.5, 0.9, 0.5]), "lexical": np.array([0.0, 0.0, 4.0])}
    expected = dict(zip([1, 3, 7], fusion.fuse(filled), strict=True))
    np.testing.assert_allclose(fused, [expected[i] for i in ids.tolist()])
    assert np.isnan(found["lexical"][ids.tolist().index(3)])
    assert found["vector"][ids.tolist().index(3)] == pytest.approx(0.9)


def one_query(fusion: Fusion, proposals: dict, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """A query's fusion written plainly, one candidate at a time: the rule the batch follows."""
    given = {name: {int(i): float(s) for i, s in zip(*pair, strict=True) if i >= 0}
             for name, pair in proposals.items()}
    given = {name: found for name, found in given.items() if found}
    candidates = sorted({i for found in given.values() for i in found})
    filled = {}
    for name, found in given.items():
        floor = 0.0 if name == "lexical" and len(found) < depth else min(found.values())
        filled[name] = np.array([found.get(i, floor) for i in candidates])
    fused = fusion.fuse(filled) if filled else np.zeros(0)
    order = sorted(range(len(candidates)), key=lambda n: (-fused[n], candidates[n]))
    return np.array(candidates)[order], fused[order]


@pytest.mark.parametrize("method", ["zscore", "rrf"])
def test_a_batch_fuses_each_query_as_alone(method: str) -> None:
    rng = np.random.default_rng(2)
    fusion = Fusion(method, {"vector": 0.2, "caption": 0.3, "lexical": 0.5})
    depth, queries = 6, 40
    proposals = {}
    for name in ("vector", "caption", "lexical"):
        ids = np.stack([rng.choice(15, depth, replace=False) for _ in range(queries)])
        ids[rng.random(ids.shape) < (0.5 if name == "lexical" else 0.1)] = -1  # fewer proposed
        ids[0] = -1  # a query no signal proposes anything for
        scores = np.round(rng.random(ids.shape) * 4, 1) * (ids >= 0)  # ties happen
        proposals[name] = (ids, scores)
    ids, fused, _ = fuse_proposals(fusion, proposals, depth)
    for row in range(queries):
        alone = one_query(fusion, {n: (i[row], s[row]) for n, (i, s) in proposals.items()}, depth)
        kept = ids[row] >= 0
        assert ids[row][kept].tolist() == alone[0].tolist()
        np.testing.assert_allclose(fused[row][kept], alone[1], rtol=1e-12, atol=1e-12)
        assert np.isneginf(fused[row][~kept]).all()


def test_emulation_proposes_only_matching_lexical_items() -> None:
    found = proposals_of({"lexical": np.array([[0.0, 2.0, 0.0, 1.0]])}, depth=3)
    assert found["lexical"][0].tolist() == [[1, 3, -1]]


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
