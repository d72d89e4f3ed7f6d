"""Why, measured: weight-space sharpness and input-attack feature perturbation of a trained model.

Both run in eval mode (BatchNorm uses running statistics) so that they are deterministic functions of the
weights, the data and the seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.pgd import pgd
from zoo.recipes import global_norm


def _loss(model, x, y, batch_size=500) -> torch.Tensor:
    total = 0.0
    for i in range(0, len(y), batch_size):
        total = total + F.cross_entropy(model(x[i:i + batch_size]).float(), y[i:i + batch_size], reduction="sum")
    return total / len(y)


def sharpness(model, x, y, *, rho: float = 0.05, steps: int = 5, n_random: int = 5, seed: int = 0) -> dict:
    """Loss increase at the worst weight perturbation of L2 radius rho (normalised gradient ascent, projected
    onto the ball), and the mean increase under random perturbations of the same radius."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        base = _loss(model, x, y).item()
    e = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        loss = _loss(model, x, y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            gn = global_norm(grads) + 1e-12
            e = [ei + (2.0 * rho / steps) * g / gn for ei, g in zip(e, grads)]
            en = global_norm(e)
            e = [ei * min(1.0, rho / float(en)) for ei in e]
            for p, s, ei in zip(params, saved, e):
                p.copy_(s + ei)
    with torch.no_grad():
        worst = _loss(model, x, y).item()
        g = torch.Generator().manual_seed(seed)
        rand = []
        for _ in range(n_random):
            d = [torch.randn(p.shape, generator=g).to(p) for p in params]
            dn = global_norm(d)
            for p, s, di in zip(params, saved, d):
                p.copy_(s + rho * di / dn)
            rand.append(_loss(model, x, y).item() - base)
        for p, s in zip(params, saved):
            p.copy_(s)
    return {"loss": base, "sharpness_worst": worst - base, "sharpness_random": sum(rand) / len(rand), "rho": rho}


def feature_perturbation(model, x, y, *, norm: str, eps: float, steps: int = 10, seed: int = 0) -> dict:
    """How far penultimate features move under a PGD attack of radius eps, relative to their size:
    mean ||f(x_adv) - f(x)|| / ||f(x)||."""
    model.eval()
    torch.manual_seed(seed)
    x_adv = pgd(model, x, y, norm=norm, eps=eps, steps=steps)
    with torch.no_grad():
        f0, f1 = model.features(x), model.features(x_adv)
        rel = ((f1 - f0).norm(dim=1) / f0.norm(dim=1).clamp_min(1e-12)).mean().item()
    return {"feature_shift": rel, "norm": norm, "eps": eps}
