"""Projected gradient descent on inputs in [0,1]: the one PGD used by PGD-AT training and by the bench.

It lives in `zoo` because bench already depends on zoo (to rebuild checkpoints); bench's `pgd` attack wraps it.
Gradients are taken with respect to the input only (torch.autograd.grad), so the model's .grad buffers are
never touched: a SAM step on adversarial examples sees only its own gradients.
"""
from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

NORMS = ("Linf", "L2")


def parse_eps(value) -> float:
    """'8/255' -> 0.03137..., '0.5' -> 0.5, 0.5 -> 0.5."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"cannot read eps {value!r}; write a number or a fraction such as 8/255") from e


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return norm


def _l2(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.ndim - 1)))


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _l2(delta)).clamp(max=1.0)


def random_start(x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    if norm == "Linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:  # a random direction with a radius uniform in [0, eps]
        d = torch.randn_like(x)
        r = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)
        delta = d / _l2(d) * r * eps
    return (x + delta).clamp(0, 1) - x


def pgd(model, x: torch.Tensor, y: torch.Tensor, *, norm: str = "Linf", eps: float = 8 / 255,
        alpha: float | None = None, steps: int = 10, restarts: int = 1, rand_init: bool = True) -> torch.Tensor:
    """Maximise cross-entropy within the eps-ball around x, staying in [0,1].

    With several restarts, each example keeps the first restart that fools the model (else the last one).
    The caller decides train/eval mode; the model's parameters receive no gradient.
    """
    check_norm(norm)
    if eps == 0 or steps == 0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if alpha is None else alpha  # Madry et al.'s step rule
    x = x.detach()
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for r in range(restarts):
        delta = random_start(x, norm, eps) if rand_init else torch.zeros_like(x)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta).float(), y)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                step = grad.sign() if norm == "Linf" else grad / _l2(grad)
                delta = project(delta + alpha * step, norm, eps)
                delta = (x + delta).clamp(0, 1) - x
        x_adv = (x + delta).detach()
        if restarts == 1:
            return x_adv
        with torch.no_grad():
            now = model(x_adv).argmax(1) != y
        take = now & ~fooled if r < restarts - 1 else ~fooled
        best[take] = x_adv[take]
        fooled |= now
    return best
