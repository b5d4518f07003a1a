"""Metric losses against loops, and gradient reversal with its pure schedule."""

from __future__ import annotations

import math

import pytest
import torch

from models.heads.gradient_reversal import GradientReversal, grl_lambda
from models.losses.contrastive import contrastive_loss
from models.losses.masks import label_masks
from models.losses.polynomial import polynomial_loss
from models.losses.triplet import triplet_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    sim = torch.rand(6, 6, generator=gen) * 2 - 1
    labels = torch.tensor([0, 1, 0, 2, 1, 3])
    pos, neg = label_masks(labels, labels)
    return sim, pos, neg


def naive_polynomial(sim: torch.Tensor, pos: torch.Tensor, hardest: bool) -> float:
    def side(s: torch.Tensor, p: torch.Tensor) -> float:
        total = 0.0
        for i in range(s.shape[0]):
            positives = [float(s[i, j]) for j in range(s.shape[1]) if p[i, j]]
            if not positives:
                continue
            total += sum(max(0.0, 0.2 * v * v - 0.7 * v + 0.5) for v in positives)
            negs = [
                max(0.0, 0.9 * v * v - 0.4 * v + 0.03)
                for j, v in enumerate(s[i].tolist())
                if not p[i, j] and v + 0.2 > min(positives)
            ]
            total += (max(negs) if negs else 0.0) if hardest else sum(negs)
        return total

    return (side(sim, pos) + side(sim.T, pos.T)) / sim.shape[0]


@pytest.mark.parametrize("hardest", [False, True])
def test_polynomial_matches_loop(batch, hardest: bool) -> None:
    sim, pos, neg = batch
    assert float(polynomial_loss(sim, pos, neg, hardest)) == pytest.approx(
        naive_polynomial(sim, pos, hardest), rel=1e-5
    )


def test_triplet_hardest_matches_loop(batch) -> None:
    sim, pos, neg = batch

    def side(s: torch.Tensor, p: torch.Tensor) -> float:
        values = []
        for i in range(s.shape[0]):
            hard = max(float(s[i, j]) for j in range(s.shape[1]) if not p[i, j])
            values += [max(0.0, 0.2 + hard - float(s[i, j])) for j in range(s.shape[1]) if p[i, j]]
        return sum(values) / len(values)

    expected = (side(sim, pos) + side(sim.T, pos.T)) / 2
    assert float(triplet_loss(sim, pos, neg)) == pytest.approx(expected, rel=1e-5)


def test_contrastive_matches_loop(batch) -> None:
    sim, pos, neg = batch

    def side(s: torch.Tensor, p: torch.Tensor) -> float:
        out = []
        for i in range(s.shape[0]):
            log_z = math.log(sum(math.exp(float(v) / 0.1) for v in s[i]))
            terms = [float(s[i, j]) / 0.1 - log_z for j in range(s.shape[1]) if p[i, j]]
            out.append(-sum(terms) / len(terms))
        return sum(out) / len(out)

    expected = (side(sim, pos) + side(sim.T, pos.T)) / 2
    assert float(contrastive_loss(sim, pos, neg, 0.1)) == pytest.approx(expected, rel=1e-5)


def test_grl_schedule_is_pure_and_ramps() -> None:
    assert grl_lambda(0.0) == 0.0
    assert grl_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0.9999 < grl_lambda(1.0) < 1.0
    assert grl_lambda(2.0) == grl_lambda(1.0)  # clamped


def test_gradient_reversal_flips_and_scales_gradient() -> None:
    x = torch.ones(3, requires_grad=True)
    y = GradientReversal()(x, 0.5)
    assert torch.equal(y, x)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_similarity_preservation_against_a_loop() -> None:
    from models.losses.geometry import similarity_preservation

    gen = torch.Generator().manual_seed(0)
    learned = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=1)
    reference = torch.randn(5, 8, generator=gen)
    ref = torch.nn.functional.normalize(reference, dim=1)
    tau, total = 0.1, 0.0
    for i in range(5):
        others = [j for j in range(5) if j != i]
        q = torch.softmax(torch.stack([ref[i] @ ref[j] for j in others]) / tau, 0)
        p = torch.softmax(torch.stack([learned[i] @ learned[j] for j in others]) / tau, 0)
        total += float((q * (q.log() - p.log())).sum())
    assert math.isclose(float(similarity_preservation(learned, reference, tau)), total / 5,
                        rel_tol=1e-5)
    # zero when the learned space is the reference itself, whatever the reference's scale
    assert float(similarity_preservation(ref, 3.0 * reference, tau)) == pytest.approx(0, abs=1e-6)
