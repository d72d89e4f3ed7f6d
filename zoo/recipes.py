"""Training recipes. They differ only in their step function; zoo.train owns the one loop.

A step takes (model, optimizer, x, y, cfg, autocast) and returns (loss, logits) as tensors, without host syncs.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.pgd import pgd


@dataclass(frozen=True)
class Recipe:
    name: str
    step: Callable
    tag: Callable  # cfg -> the key hyperparameters in the checkpoint name
    summary: str
    adversarial: bool = False  # trains on attacked inputs (its cfg.norm/eps are the training threat model)


RECIPES: dict[str, Recipe] = {}


def register(name: str, tag: Callable, summary: str, adversarial: bool = False):
    def deco(step):
        RECIPES[name] = Recipe(name, step, tag, summary, adversarial)
        return step
    return deco


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


@contextmanager
def frozen_bn_stats(model: nn.Module):
    """BatchNorm still normalises with batch statistics but its running statistics stay as they are.

    Used for SAM's perturbed second pass and for attack forwards inside adversarial training, so that only
    the forward on the examples actually trained on moves the running statistics.
    """
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, mom in saved:
            m.momentum = mom


def _ce_backward(model, x, y, autocast):
    with autocast():
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
    loss.backward()
    return loss.detach(), logits.detach()


def global_norm(tensors) -> torch.Tensor:
    """L2 norm of all tensors taken together, as one flat vector (SAM's ||g||, the sharpness measure's radius)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


ASAM_ETA = 0.01  # Kwon et al. 2021's eta in T_w = |w| + eta


def sam_perturbation(params, rho: float, adaptive: bool) -> list[torch.Tensor]:
    """SAM (Foret et al. 2021): e(w) = rho * g / ||g||.

    ASAM (Kwon et al. 2021): e(w) = rho * T_w^2 g / ||T_w g|| with the element-wise T_w = |w| + eta, eta = 0.01,
    on weight tensors (convolution and linear weights, ndim > 1) and T_w = 1 on biases and BatchNorm parameters,
    the paper's split between weights and biases. (Kwon et al.'s code picks parameters by name, `'weight' in
    name`, which also scales BatchNorm's affine weight; davda54/sam's variant scales every parameter by |w|,
    without eta, and suggests rho 2.0.) The radius defaults to the paper's 0.5 (TrainConfig.resolved).
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if adaptive:
        t = [p.detach().abs() + ASAM_ETA if p.ndim > 1 else None for p in params]
        scaled = [g if ti is None else ti * g for ti, g in zip(t, grads)]  # T_w g
        norm = global_norm(scaled)
        return [rho * (s if ti is None else ti * s) / (norm + 1e-12) for ti, s in zip(t, scaled)]
    norm = global_norm(grads)
    return [rho * g / (norm + 1e-12) for g in grads]


def awp_perturbation(params, gamma: float) -> list[torch.Tensor]:
    """AWP (Wu et al. 2020): per layer, v_l = gamma * ||w_l|| * g_l / ||g_l|| on weight tensors (convolution and
    linear weights, ndim > 1), nothing on biases and BatchNorm parameters; g is the adversarial loss's gradient
    (one normalised ascent step, as the paper's single proxy step does)."""
    out = []
    for p in params:
        if p.ndim > 1 and p.grad is not None:
            out.append(gamma * torch.linalg.vector_norm(p.detach()) * p.grad
                       / (torch.linalg.vector_norm(p.grad) + 1e-12))
        else:
            out.append(torch.zeros_like(p))
    return out


def perturbed_update(model, opt, x, y, autocast, perturbation):
    """Two passes: gradient at w, move to w + e(w) (e from `perturbation(params)`, reading the gradient), take
    the gradient there, step from w. SAM and AWP differ only in e.

    Under DistributedDataParallel both backward passes all-reduce, so e(w) is computed from the global
    gradient and every rank perturbs identically (no m-sharpness across devices).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt.zero_grad(set_to_none=True)
    loss, logits = _ce_backward(model, x, y, autocast)
    with torch.no_grad():
        e = perturbation(params)
        torch._foreach_add_(params, e)
    opt.zero_grad(set_to_none=True)
    with frozen_bn_stats(model):
        _ce_backward(model, x, y, autocast)
    with torch.no_grad():
        torch._foreach_sub_(params, e)
    opt.step()
    return loss, logits


def sam_update(model, opt, x, y, cfg, autocast):
    return perturbed_update(model, opt, x, y, autocast, lambda ps: sam_perturbation(ps, cfg.rho, cfg.adaptive))


def adversarial_batch(model, x, y, cfg, autocast, **pgd_kw):
    """The training attack: zoo.pgd's PGD (the bench's projection), BatchNorm running statistics frozen."""
    with frozen_bn_stats(model), autocast():
        return pgd(model, x, y, norm=cfg.norm, eps=cfg.eps_value, alpha=cfg.alpha_value, steps=cfg.steps,
                   **pgd_kw)


def trades_loss(logits_nat, logits_adv, y, beta: float) -> torch.Tensor:
    """TRADES (Zhang et al. 2019): CE(f(x), y) + beta * KL(f(x) || f(x')), the KL averaged over the batch."""
    kl = F.kl_div(F.log_softmax(logits_adv.float(), 1), F.softmax(logits_nat.float(), 1), reduction="batchmean")
    return F.cross_entropy(logits_nat.float(), y) + beta * kl


def _at_tag(cfg):
    return f"{cfg.norm.lower()}{cfg.eps.replace('/', '_')}"


def _sam_tag(cfg):
    return f"{'asam' if cfg.adaptive else 'rho'}{cfg.rho:g}"


@register("standard", tag=lambda cfg: "", summary="SGD on clean images")
def standard_step(model, opt, x, y, cfg, autocast):
    opt.zero_grad(set_to_none=True)
    loss, logits = _ce_backward(model, x, y, autocast)
    opt.step()
    return loss, logits


@register("sam", tag=_sam_tag, summary="sharpness-aware minimization (--rho, --adaptive for ASAM)")
def sam_step(model, opt, x, y, cfg, autocast):
    return sam_update(model, opt, x, y, cfg, autocast)


@register("pgd_at", tag=_at_tag, summary="Madry PGD adversarial training (--norm, --eps, --alpha, --steps)", adversarial=True)
def pgd_at_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return standard_step(model, opt, x_adv, y, cfg, autocast)


@register("sam_at", tag=lambda cfg: f"{_sam_tag(cfg)}-{_at_tag(cfg)}",
          summary="SAM on PGD adversarial examples: weight and input perturbation together", adversarial=True)
def sam_at_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return sam_update(model, opt, x_adv, y, cfg, autocast)


@register("trades", tag=lambda cfg: f"beta{cfg.beta:g}-{_at_tag(cfg)}",
          summary="TRADES, Zhang et al. 2019 (--beta, default 6; eps/alpha/steps as PGD-AT)", adversarial=True)
def trades_step(model, opt, x, y, cfg, autocast):
    # inner maximisation of KL(f(x) || f(x')) from x + 0.001 * N(0, I), through the same PGD and projection
    x_adv = adversarial_batch(model, x, y, cfg, autocast, loss="kl", init_std=0.001)
    opt.zero_grad(set_to_none=True)
    with autocast():
        logits_nat, logits_adv = model(x), model(x_adv)
        loss = trades_loss(logits_nat, logits_adv, y, cfg.beta)
    loss.backward()
    opt.step()
    return loss.detach(), logits_nat.detach()


@register("awp", tag=lambda cfg: f"gamma{cfg.gamma:g}-{_at_tag(cfg)}",
          summary="AWP, Wu et al. 2020: PGD-AT with an adversarial weight perturbation (--gamma, default 5e-3)",
          adversarial=True)
def awp_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return perturbed_update(model, opt, x_adv, y, autocast, lambda ps: awp_perturbation(ps, cfg.gamma))


@register("fgsm_rs", tag=_at_tag,
          summary="fast AT, Wong et al. 2020: one FGSM step of 1.25*eps from a uniform random start", adversarial=True)
def fgsm_rs_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)  # steps = 1, alpha = 1.25 eps (TrainConfig.resolved)
    return standard_step(model, opt, x_adv, y, cfg, autocast)
