"""Recipes on clean inputs: standard training and SAM (with ASAM, its adaptive radius).

SAM and AWP (zoo.recipes.adversarial) share one two-pass update, perturbed_update, and differ only in the
perturbation; the cheaper SAM variants are in zoo.recipes.sam_variants.
"""
from __future__ import annotations

import torch

from zoo.recipes.functional import cross_entropy, global_norm, parameters_of, shifted, value_and_grad
from zoo.recipes.registry import register

ASAM_ETA = 0.01  # Kwon et al. 2021's eta in T_w = |w| + eta


def sam_perturbation(params, grads, rho: float, adaptive: bool) -> list[torch.Tensor]:
    """SAM (Foret et al. 2021): e(w) = rho * g / ||g||.

    ASAM (Kwon et al. 2021): e(w) = rho * T_w^2 g / ||T_w g|| with the element-wise T_w = |w| + eta, eta = 0.01,
    on weight tensors (convolution and linear weights, ndim > 1) and T_w = 1 on biases and BatchNorm parameters,
    the paper's split between weights and biases. (Kwon et al.'s code picks parameters by name, `'weight' in
    name`, which also scales BatchNorm's affine weight; davda54/sam's variant scales every parameter by |w|,
    without eta, and suggests rho 2.0.) The radius defaults to the paper's 0.5 (TrainConfig.resolved).
    """
    if adaptive:
        t = [p.detach().abs() + ASAM_ETA if p.ndim > 1 else None for p in params]
        scaled = [g if ti is None else ti * g for ti, g in zip(t, grads)]  # T_w g
        norm = global_norm(scaled)
        return [rho * (s if ti is None else ti * s) / (norm + 1e-12) for ti, s in zip(t, scaled)]
    norm = global_norm(grads)
    return [rho * g / (norm + 1e-12) for g in grads]


def perturbed_gradients(model, x, y, autocast, perturbation):
    """Two passes: (gradient at w, gradient at w + e(w), loss at w, logits at w), e from
    `perturbation(params, grads)`. w + e is a new set of tensors, so w is never moved and restored. The second
    pass moves no running statistic.

    Under torchrun both gradients are averaged over the ranks, so e(w) is computed from the global gradient and
    every rank perturbs identically (no m-sharpness across devices).
    """
    params = parameters_of(model)
    grads, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast), params)
    with torch.no_grad():
        e = perturbation(list(params.values()), grads)
    moved = shifted(params, e)
    moved_grads, _, _ = value_and_grad(model, cross_entropy(x, y, autocast), moved, track_stats=False)
    return grads, moved_grads, loss, logits


def perturbed_update(model, opt, x, y, autocast, perturbation):
    """The step from exactly w with the gradient at w + e(w) (perturbed_gradients). SAM and AWP differ only in e;
    LookSAM, GSAM and m-RWP (zoo.recipes.sam_variants) combine the two gradients otherwise."""
    _, moved_grads, loss, logits = perturbed_gradients(model, x, y, autocast, perturbation)
    opt.update(moved_grads)
    return loss, logits


def sam_tag(cfg):
    return f"{'asam' if cfg.adaptive else 'rho'}{cfg.rho:g}"


@register("standard", tag=lambda cfg: "", summary="SGD on clean images")
def standard_step(model, opt, x, y, cfg, autocast):
    grads, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast))
    opt.update(grads)
    return loss, logits


@register("sam", tag=sam_tag, summary="sharpness-aware minimization (--rho, --adaptive for ASAM)",
          settings=("rho", "adaptive"), rho=0.05, passes=lambda cfg: 2.0)
def sam_step(model, opt, x, y, cfg, autocast):
    return perturbed_update(model, opt, x, y, autocast,
                            lambda ps, gs: sam_perturbation(ps, gs, cfg.rho, cfg.adaptive))
