"""Cheaper or sharper versions of SAM, each as its paper defines it: LookSAM, ESAM, GSAM, MSAM and m-RWP.

Every step is built from the same functional pieces as SAM's (zoo.recipes.functional), so each compiles into one
graph under --compile-step, and BatchNorm is handled as SAM handles it: the first forward at w moves the running
statistics and every forward at perturbed weights moves none (MSAM, whose one forward is at perturbed weights,
moves them there, as its paper's code does). Under torchrun every gradient is averaged over the ranks before it
is used (value_and_grad), so each perturbation, projection and stored direction is computed from the global
gradient and is the same on every rank; random draws (ESAM's mask, RWP's noise) come from the global generator,
which every rank seeds alike per epoch (zoo.train), so every rank draws the same.

The defaults are the papers' (or their authors' published CIFAR scripts'); each recipe says which.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.recipes.clean import perturbed_gradients, sam_perturbation
from zoo.recipes.functional import (cross_entropy, forward_at, global_norm, inner, parameters_of, shifted,
                                    untracked_stats, value_and_grad)
from zoo.recipes.registry import register

VARIANTS = ("looksam", "esam", "gsam", "msam", "rwp")  # the recipes this module registers
LOOKSAM_DIRECTION = "looksam_direction"  # the optimizer-held tensors of LookSAM's reused direction


def _sam_gradients(model, x, y, cfg, autocast):
    """(g, g_s, loss, logits): the gradient at w and SAM's at w + rho g / ||g||."""
    return perturbed_gradients(model, x, y, autocast, lambda ps, gs: sam_perturbation(ps, gs, cfg.rho, False))


def looksam_full_step(model, opt, x, y, cfg, autocast):
    """LookSAM (Liu et al., CVPR 2022, "Towards Efficient and Scalable Sharpness-Aware Minimization",
    Algorithm 1), every k-th step (cfg.looksam_k; the paper's k = 5): a full SAM step,

        g = grad L(w),  g_s = grad L(w + rho g / ||g||),  w <- w - lr g_s,

    keeping the direction of g_s's component orthogonal to g,

        g_v = g_s - (<g_s, g> / ||g||^2) g,  stored as g_v / ||g_v||   (the paper's g_s - ||g_s|| cos(theta) g/||g||).
    """
    g, g_s, loss, logits = _sam_gradients(model, x, y, cfg, autocast)
    with torch.no_grad():
        along = inner(g_s, g) / (inner(g, g) + 1e-12)
        g_v = [a - along * b for a, b in zip(g_s, g)]
        norm = global_norm(g_v) + 1e-12
        for kept, v in zip(opt.recipe_state[LOOKSAM_DIRECTION], g_v):
            kept.copy_(v / norm)
    opt.update(g_s)
    return loss, logits


def looksam_reuse_step(model, opt, x, y, cfg, autocast):
    """LookSAM's other steps (Algorithm 1): one gradient, and the stored orthogonal direction added back at the
    gradient's scale, g_s = g + alpha * ||g|| * g_v / ||g_v|| (cfg.looksam_alpha; the paper's alpha = 0.7)."""
    g, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast))
    with torch.no_grad():
        scale = cfg.looksam_alpha * global_norm(g)
        g_s = [gi + scale * vi for gi, vi in zip(g, opt.recipe_state[LOOKSAM_DIRECTION])]
    opt.update(g_s)
    return loss, logits


def esam_step(model, opt, x, y, cfg, autocast):
    """ESAM (Du et al., ICLR 2022, "Efficient Sharpness-aware Minimization for Improved Training of Neural
    Networks", Algorithm 1). Stochastic Weight Perturbation: the ascent on a random subset of the weights,

        e = (rho / beta) * m * g / ||g||,   m_i ~ Bernoulli(beta) per coordinate (cfg.esam_beta),

    and Sharpness-sensitive Data Selection: the second gradient on the gamma-fraction of the batch whose loss
    rose most under e (cfg.esam_gamma; |B+| = max(1, floor(gamma |B|)), ties by index),

        B+ = top_{gamma |B|} (l_i(w + e) - l_i(w)),   w <- w - lr grad L_{B+}(w + e).

    Defaults: beta 0.6, gamma 0.5, rho 0.05, the authors' CIFAR-10 ResNet-18 script. The mask is drawn from the
    global generator (seeded per epoch by the training loop), one uniform draw per coordinate, parameters in order.
    """
    params = parameters_of(model)
    g, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast), params)
    with torch.no_grad():
        scale = cfg.rho / (cfg.esam_beta * (global_norm(g) + 1e-12))
        e = [(torch.rand_like(gi) < cfg.esam_beta) * gi * scale for gi in g]
        moved = shifted(params, e)
        with autocast():
            after = forward_at(model, moved, untracked_stats(model))(x)
        rise = (F.cross_entropy(after.float(), y, reduction="none")
                - F.cross_entropy(logits.float(), y, reduction="none"))
        chosen = torch.topk(rise, max(1, int(cfg.esam_gamma * len(y)))).indices
    grads, _, _ = value_and_grad(model, cross_entropy(x[chosen], y[chosen], autocast), moved, track_stats=False)
    opt.update(grads)
    return loss, logits


def gsam_step(model, opt, x, y, cfg, autocast):
    """GSAM (Zhuang et al., ICLR 2022, "Surrogate Gap Guided Sharpness-Aware Minimization", Algorithm 1): the SAM
    gradient g_f = grad L(w + rho g/||g||) minus alpha times the plain gradient's component orthogonal to it,

        g_perp = g - (<g, g_f> / ||g_f||^2) g_f,   w <- w - lr (g_f - alpha g_perp),

    which descends the perturbed loss and, orthogonally, the surrogate gap. alpha: cfg.gsam_alpha, 0.2 as the
    authors' CIFAR example; rho constant (the paper also schedules it with the learning rate; not here, so the
    study can match SAM's radius)."""
    g, g_f, loss, logits = _sam_gradients(model, x, y, cfg, autocast)
    with torch.no_grad():
        along = inner(g, g_f) / (inner(g_f, g_f) + 1e-12)
        direction = [a - cfg.gsam_alpha * (b - along * a) for a, b in zip(g_f, g)]
    opt.update(direction)
    return loss, logits


def msam_step(model, opt, x, y, cfg, autocast):
    """Momentum-SAM (Becker et al. 2024, "Momentum-SAM: Sharpness Aware Minimization without Computational
    Overhead", Algorithm 1): the ascent along the normalized momentum buffer v (SGD's, which accumulates the
    gradients), so the step takes no extra gradient,

        w~ = w - rho v / ||v||,   v <- mu v + grad L(w~) + wd w,   w <- w - lr v.

    The perturbation points against the momentum, as the authors' code does (w~ lies back along the trajectory).
    Their code keeps the weights at w~ between steps and applies weight decay there; here w stays the model's
    weights and the decay is on w, as in every other recipe. rho: 3.0, the authors' CIFAR (SGD) configurations;
    at the first step v = 0 and w~ = w."""
    params = parameters_of(model)
    with torch.no_grad():
        scale = cfg.rho / (global_norm(opt.momentum_buffers) + 1e-12)
        e = [-scale * v for v in opt.momentum_buffers]
    grads, loss, logits = value_and_grad(model, cross_entropy(x, y, autocast), shifted(params, e))
    opt.update(grads)
    return loss, logits


def rwp_noise(params, sigma: float) -> list[torch.Tensor]:
    """RWP's filter-wise Gaussian perturbation: for a weight tensor (ndim > 1) each output filter j gets
    N(0, (sigma ||w_j||)^2) per coordinate; a bias or BatchNorm parameter gets N(0, (sigma ||w||)^2)."""
    out = []
    for p in params:
        if p.ndim > 1:
            std = sigma * torch.linalg.vector_norm(p.detach().flatten(1), dim=1).view(-1, *[1] * (p.ndim - 1))
        else:
            std = sigma * (torch.linalg.vector_norm(p.detach()) + 1e-16)
        out.append(torch.randn_like(p) * std)
    return out


def rwp_step(model, opt, x, y, cfg, autocast):
    """m-RWP (Li et al., TMLR 2024, "Revisiting Random Weight Perturbation for Efficiently Improving
    Generalization"): the gradient of the mixed loss

        L_m(w) = lambda E_e[L(w + e)] + (1 - lambda) L(w),   e ~ rwp_noise(w, sigma),

    estimated with one draw: g = lambda grad L(w + e) + (1 - lambda) grad L(w). The two gradients do not depend
    on each other (the paper computes them on two devices at once); here they run one after the other on the
    same batch. Defaults: lambda 0.5, sigma 0.01, the authors' m-RWP script (cfg.rwp_lambda, cfg.rwp_sigma)."""
    g, g_e, loss, logits = perturbed_gradients(model, x, y, autocast, lambda ps, gs: rwp_noise(ps, cfg.rwp_sigma))
    with torch.no_grad():
        mixed = [cfg.rwp_lambda * a + (1 - cfg.rwp_lambda) * b for a, b in zip(g_e, g)]
    opt.update(mixed)
    return loss, logits


register("looksam", tag=lambda cfg: f"rho{cfg.rho:g}-k{cfg.looksam_k}-a{cfg.looksam_alpha:g}",
         summary="LookSAM, Liu et al. 2022: SAM every k steps, its orthogonal direction reused between "
                 "(--looksam-k 5, --looksam-alpha 0.7, --rho)",
         settings=("rho", "looksam_k", "looksam_alpha"), rho=0.05, passes=lambda cfg: 1 + 1 / cfg.looksam_k,
         step_at=lambda cfg, i: looksam_full_step if i % cfg.looksam_k == 0 else looksam_reuse_step,
         state=(LOOKSAM_DIRECTION,))(looksam_full_step)
register("esam", tag=lambda cfg: f"rho{cfg.rho:g}-b{cfg.esam_beta:g}-g{cfg.esam_gamma:g}",
         summary="ESAM, Du et al. 2022: ascent on a random beta of the weights, second gradient on the gamma of "
                 "the batch most sharpened (--esam-beta 0.6, --esam-gamma 0.5, --rho)",
         settings=("rho", "esam_beta", "esam_gamma"), rho=0.05,
         passes=lambda cfg: 1 + 1 / 3 + cfg.esam_gamma)(esam_step)  # a forward alone: a third of a pass
register("gsam", tag=lambda cfg: f"rho{cfg.rho:g}-a{cfg.gsam_alpha:g}",
         summary="GSAM, Zhuang et al. 2022: SAM's gradient minus alpha times the plain gradient's orthogonal part "
                 "(--gsam-alpha 0.2, --rho)",
         settings=("rho", "gsam_alpha"), rho=0.05, passes=lambda cfg: 2.0)(gsam_step)
register("msam", tag=lambda cfg: f"rho{cfg.rho:g}",
         summary="Momentum-SAM, Becker et al. 2024: the ascent along the normalized momentum, one gradient a "
                 "step (--rho, default 3)",
         settings=("rho",), rho=3.0)(msam_step)
register("rwp", tag=lambda cfg: f"sigma{cfg.rwp_sigma:g}-l{cfg.rwp_lambda:g}",
         summary="m-RWP, Li et al. 2024: gradients at w and at w + filter-wise Gaussian noise, mixed "
                 "(--rwp-sigma 0.01, --rwp-lambda 0.5)",
         settings=("rwp_sigma", "rwp_lambda"), passes=lambda cfg: 2.0)(rwp_step)
