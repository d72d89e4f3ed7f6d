"""Training recipes. They differ only in their step function; zoo.train owns the one loop.

A step takes (model, opt, x, y, cfg, autocast), with `opt` a zoo.optim.SGD over the model's parameters, and
returns (loss, logits) as tensors. Each step is written functionally, so that the same definition runs eagerly
and compiles into ONE graph with torch.compile(fullgraph=True) (zoo.train --compile-step):
- forwards go through torch.func.functional_call with the parameters and buffers as arguments (forward_at);
- gradients, for parameters and inputs alike, come from zoo.pgd.gradient: torch.func inside a compiled
  step, torch.autograd.grad eagerly, never .backward(), so the step has no graph break and touches no .grad;
- the forward that trains moves BatchNorm's running statistics (its buffers are an argument of the
  differentiated function, updated in place); every other forward (SAM/AWP's second pass, every attack
  forward) is given no running statistics, so BatchNorm normalises with the batch's own and leaves the
  buffers as they were (num_batches_tracked counts only the forwards that moved them);
- the update is zoo.optim.SGD's foreach ops with the learning rate a device tensor;
- nothing reads a value back to the host (.item(), .cpu(), .tolist(), Python branches on tensors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from zoo import distributed as dist
from zoo.pgd import gradient, pgd


@dataclass(frozen=True)
class Recipe:
    name: str
    step: Callable
    tag: Callable  # cfg -> the key hyperparameters in the checkpoint name
    summary: str
    adversarial: bool = False  # trains on attacked inputs (its cfg.norm/eps are the training threat model)
    alpha_of_eps: float = 0.25  # the training attack's default step size, a fraction of eps (TrainConfig.resolved)
    attack_steps: int = 0  # the training attack's default steps; 0 = the norm's (zoo.config.AT_DEFAULTS)


RECIPES: dict[str, Recipe] = {}


def register(name: str, tag: Callable, summary: str, adversarial: bool = False, **attack_defaults):
    def deco(step):
        RECIPES[name] = Recipe(name, step, tag, summary, adversarial, **attack_defaults)
        return step
    return deco


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters, detached: torch.func differentiates with respect to them, and nothing outside
    the transform records a graph (the SGD update writes into the parameters themselves)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def _untracked(model: nn.Module) -> dict[str, None]:
    """BatchNorm's running statistics replaced by None: a train-mode forward then normalises with the batch's
    statistics and updates nothing (torch's BatchNorm with track_running_stats off for that call)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for stat in _BN_STATS:
                if getattr(m, stat, None) is not None:
                    out[f"{name}.{stat}" if name else stat] = None
    return out


def forward_at(model: nn.Module, params: dict, stats: dict) -> Callable:
    """x -> logits of the model at these parameters: the one forward of the recipes. stats: the model's buffers,
    whose BatchNorm running statistics the forward then updates in place, or _untracked(model), with which it
    moves none and mutates nothing (so torch.func may differentiate through it)."""
    return lambda x: functional_call(model, {**params, **stats}, (x,))


def frozen_forward(model: nn.Module) -> Callable:
    """x -> logits at the model's own parameters (detached), moving no running statistic: the forward the
    training attacks use."""
    return forward_at(model, _parameters(model), _untracked(model))


def value_and_grad(model: nn.Module, objective: Callable, params: dict | None = None,
                   track_stats: bool = True):
    """(gradients, loss, logits): objective(forward) -> (loss, logits) differentiated with respect to the
    parameters (default the model's own; SAM passes w + e). With track_stats the forwards update BatchNorm's
    running statistics in place; without, they leave them alone. The gradients are averaged over torchrun's
    ranks (zoo.distributed.average), a list in the parameters' order. The gradient is zoo.pgd.gradient's; the
    buffers BatchNorm updates are an argument of the differentiated function, as torch.func requires.
    """
    params = _parameters(model) if params is None else params
    buffers = dict(model.named_buffers()) if track_stats else {}
    untracked = {} if track_stats else _untracked(model)

    def f(p, b):
        loss, logits = objective(forward_at(model, p, {**b, **untracked}))
        return loss, (loss.detach(), logits.detach())

    grads, (loss, logits) = gradient(f, params, buffers, has_aux=True)
    return dist.average(list(grads.values())), loss, logits


def cross_entropy(x, y, autocast) -> Callable:
    """The objective of plain training on (x, y): mean cross-entropy, computed in fp32 from (bf16) logits."""
    def objective(forward):
        with autocast():
            logits = forward(x)
        return F.cross_entropy(logits.float(), y), logits
    return objective


def global_norm(tensors) -> torch.Tensor:
    """L2 norm of all tensors taken together, as one flat vector (SAM's ||g||, the sharpness measure's radius)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors]))


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


def awp_perturbation(params, grads, gamma: float) -> list[torch.Tensor]:
    """AWP (Wu et al. 2020): per layer, v_l = gamma * ||w_l|| * g_l / ||g_l|| on weight tensors (convolution and
    linear weights, ndim > 1), nothing on biases and BatchNorm parameters; g is the adversarial loss's gradient
    (one normalised ascent step, as the paper's single proxy step does)."""
    return [gamma * torch.linalg.vector_norm(p.detach()) * g / (torch.linalg.vector_norm(g) + 1e-12)
            if p.ndim > 1 else torch.zeros_like(p) for p, g in zip(params, grads)]


def perturbed_update(model, opt, x, y, autocast, perturbation):
    """Two passes: gradient at w, gradient at w + e(w) (e from `perturbation(params, grads)`), step from w with
    the second. SAM and AWP differ only in e. w + e is a new set of tensors, so w is never moved and restored:
    the step leaves from exactly w. The second pass moves no running statistic.

    Under torchrun both gradients are averaged over the ranks, so e(w) is computed from the global gradient and
    every rank perturbs identically (no m-sharpness across devices).
    """
    params = _parameters(model)
    grads, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast), params)
    with torch.no_grad():
        e = perturbation(list(params.values()), grads)
        moved = {n: p.detach() + ei for (n, p), ei in zip(params.items(), e)}
    grads, _, _ = value_and_grad(model, cross_entropy(x, y, autocast), moved, track_stats=False)
    opt.update(grads)
    return loss, logits


def adversarial_batch(model, x, y, cfg, autocast, **pgd_kw):
    """The training attack: zoo.pgd's PGD (the bench's projection) on the model's train-mode forward with
    BatchNorm's running statistics left alone."""
    with autocast():
        return pgd(frozen_forward(model), x, y, norm=cfg.norm, eps=cfg.eps_value, alpha=cfg.alpha_value,
                   steps=cfg.steps, **pgd_kw)


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
    grads, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast))
    opt.update(grads)
    return loss, logits


@register("sam", tag=_sam_tag, summary="sharpness-aware minimization (--rho, --adaptive for ASAM)")
def sam_step(model, opt, x, y, cfg, autocast):
    return perturbed_update(model, opt, x, y, autocast,
                            lambda ps, gs: sam_perturbation(ps, gs, cfg.rho, cfg.adaptive))


@register("pgd_at", tag=_at_tag, summary="Madry PGD adversarial training (--norm, --eps, --alpha, --steps)", adversarial=True)
def pgd_at_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return standard_step(model, opt, x_adv, y, cfg, autocast)


@register("sam_at", tag=lambda cfg: f"{_sam_tag(cfg)}-{_at_tag(cfg)}",
          summary="SAM on PGD adversarial examples: weight and input perturbation together", adversarial=True)
def sam_at_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return sam_step(model, opt, x_adv, y, cfg, autocast)


@register("trades", tag=lambda cfg: f"beta{cfg.beta:g}-{_at_tag(cfg)}",
          summary="TRADES, Zhang et al. 2019 (--beta, default 6; eps/alpha/steps as PGD-AT)", adversarial=True)
def trades_step(model, opt, x, y, cfg, autocast):
    # inner maximisation of KL(f(x) || f(x')) from x + 0.001 * N(0, I), through the same PGD and projection
    x_adv = adversarial_batch(model, x, y, cfg, autocast, loss="kl", init_std=0.001)

    def objective(forward):
        with autocast():
            logits_nat, logits_adv = forward(x), forward(x_adv)
        return trades_loss(logits_nat, logits_adv, y, cfg.beta), logits_nat

    grads, loss, logits = value_and_grad(model, objective)
    opt.update(grads)
    return loss, logits


@register("awp", tag=lambda cfg: f"gamma{cfg.gamma:g}-{_at_tag(cfg)}",
          summary="AWP, Wu et al. 2020: PGD-AT with an adversarial weight perturbation (--gamma, default 5e-3)",
          adversarial=True)
def awp_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return perturbed_update(model, opt, x_adv, y, autocast, lambda ps, gs: awp_perturbation(ps, gs, cfg.gamma))


# the same step as PGD-AT: what differs is its attack's defaults, one step of 1.25 eps (Wong et al.)
register("fgsm_rs", tag=_at_tag, summary="fast AT, Wong et al. 2020: one FGSM step of 1.25*eps from a uniform "
         "random start", adversarial=True, alpha_of_eps=1.25, attack_steps=1)(pgd_at_step)
