"""Recipes on attacked inputs: PGD-AT, SAM on PGD examples, TRADES, AWP and FGSM-RS.

Every training attack is zoo.pgd's PGD, the projection the bench evaluates with, run on the model's train-mode
forward with BatchNorm's running statistics left alone (frozen_forward).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.pgd import pgd
from zoo.recipes.clean import perturbed_update, sam_step, sam_tag, standard_step
from zoo.recipes.functional import frozen_forward, value_and_grad
from zoo.recipes.registry import register


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


def at_tag(cfg):
    return f"{cfg.norm.lower()}{cfg.eps.replace('/', '_')}"


def awp_perturbation(params, grads, gamma: float) -> list[torch.Tensor]:
    """AWP (Wu et al. 2020): per layer, v_l = gamma * ||w_l|| * g_l / ||g_l|| on weight tensors (convolution and
    linear weights, ndim > 1), nothing on biases and BatchNorm parameters; g is the adversarial loss's gradient
    (one normalised ascent step, as the paper's single proxy step does)."""
    return [gamma * torch.linalg.vector_norm(p.detach()) * g / (torch.linalg.vector_norm(g) + 1e-12)
            if p.ndim > 1 else torch.zeros_like(p) for p, g in zip(params, grads)]


@register("pgd_at", tag=at_tag, summary="Madry PGD adversarial training (--norm, --eps, --alpha, --steps)",
          adversarial=True)
def pgd_at_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return standard_step(model, opt, x_adv, y, cfg, autocast)


@register("sam_at", tag=lambda cfg: f"{sam_tag(cfg)}-{at_tag(cfg)}",
          summary="SAM on PGD adversarial examples: weight and input perturbation together", adversarial=True,
          settings=("rho", "adaptive"), rho=0.05, passes=lambda cfg: 2.0)
def sam_at_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return sam_step(model, opt, x_adv, y, cfg, autocast)


@register("trades", tag=lambda cfg: f"beta{cfg.beta:g}-{at_tag(cfg)}",
          summary="TRADES, Zhang et al. 2019 (--beta, default 6; eps/alpha/steps as PGD-AT)", adversarial=True,
          settings=("beta",), passes=lambda cfg: 2.0)
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


@register("awp", tag=lambda cfg: f"gamma{cfg.gamma:g}-{at_tag(cfg)}",
          summary="AWP, Wu et al. 2020: PGD-AT with an adversarial weight perturbation (--gamma, default 5e-3)",
          adversarial=True, settings=("gamma",), passes=lambda cfg: 2.0)
def awp_step(model, opt, x, y, cfg, autocast):
    x_adv = adversarial_batch(model, x, y, cfg, autocast)
    return perturbed_update(model, opt, x_adv, y, autocast, lambda ps, gs: awp_perturbation(ps, gs, cfg.gamma))


# the same step as PGD-AT: what differs is its attack's defaults, one step of 1.25 eps (Wong et al.)
register("fgsm_rs", tag=at_tag, summary="fast AT, Wong et al. 2020: one FGSM step of 1.25*eps from a uniform "
         "random start", adversarial=True, alpha_of_eps=1.25, attack_steps=1)(pgd_at_step)
