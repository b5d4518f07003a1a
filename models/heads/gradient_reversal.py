"""Gradient reversal: identity forward, gradient times -coeff backward.

The coefficient comes from a pure schedule of training progress (Ganin & Lempitsky, 2015), so
it is testable on its own and the module holds no hidden step counter.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def grl_lambda(progress: float, gamma: float = 10.0) -> float:
    """lambda(p) = 2 / (1 + exp(-gamma p)) - 1: 0 at the start, close to 1 at the end."""
    p = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return _ReverseGrad.apply(x, coeff)


class GradientReversal(nn.Module):
    """`GradientReversal()(x, coeff)`; the caller passes coeff = weight * grl_lambda(progress)."""

    def forward(self, x: torch.Tensor, coeff: float) -> torch.Tensor:
        return reverse_gradient(x, coeff)
