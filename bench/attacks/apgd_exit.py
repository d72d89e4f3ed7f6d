"""APGD with an exact early exit: a point misclassified inside the ball leaves the working batch.

pyautoattack's APGD (CE, DLR and targeted, at Linf, L2 and L1) runs every point for all its iterations and only
records success (`acc = min(acc, pred)`), so a point fooled at the first step costs as much as one that survives.
In eval mode a point's trajectory does not depend on its batch-mates, and a point fooled inside the ball stays
counted as fooled whatever follows, so dropping it changes no flag: the points left take exactly the steps they
would have taken, and the random starts are drawn as before (only at the start of a run, on the same points).
What differs is the image kept for a dropped point: the first iterate that fooled the model (pyautoattack keeps
the last), which `bench.verify` replays like any other.

`with_early_exit(aa)` swaps the class of pyautoattack's own APGD objects for these subclasses, keeping every
parameter they were configured with; only `attack_single_run` is overridden. It stays pyautoattack's own where
the exit would not be exact: L1's larger radii (decr_eps_pgd's first phases, where a point fooled is outside
the ball) and averaged gradients of a randomized model (eot_iter > 1, where a point's draws depend on its batch).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted, L1_projection
from pyautoattack.checks import check_zero_gradients
from pyautoattack.other_utils import L0_norm, L1_norm, L2_norm

PER_POINT = ("x", "y", "y_target", "x_adv", "x_adv_old", "grad", "grad_best", "x_best", "loss_best",
             "loss_best_last_check", "reduced_last_check", "step_size", "topk", "sp_old", "idx")


def _criterion(attack):
    """The per-point loss pyautoattack's attack_single_run picks for attack.loss."""
    return {"ce": nn.CrossEntropyLoss(reduction="none"),
            "ce-targeted-cfts": lambda x, y: -1. * F.cross_entropy(x, y, reduction="none"),
            "dlr": attack.dlr_loss, "dlr-targeted": getattr(attack, "dlr_loss_targeted", None),
            "ce-targeted": getattr(attack, "ce_loss_targeted", None)}[attack.loss]


def _gradient(attack, w: dict, criterion) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, per-point loss, gradient) at w's x_adv, as pyautoattack takes them (eot_iter draws averaged)."""
    attack.y_target = w["y_target"]
    x_adv = w["x_adv"].requires_grad_()
    grad = torch.zeros_like(w["x"])
    for _ in range(attack.eot_iter):
        with torch.enable_grad():
            logits = attack.model(x_adv)
            loss_indiv = criterion(logits, w["y"])
            loss = loss_indiv.sum()
        grad += torch.autograd.grad(loss, [x_adv])[0].detach()
    grad /= float(attack.eot_iter)
    return logits, loss_indiv, grad


def _start(attack, x, y, x_init) -> torch.Tensor:
    """The starting point, drawn from the global generator exactly as pyautoattack draws it."""
    if attack.norm == "Linf":
        t = 2 * torch.rand(x.shape).to(attack.device).detach() - 1
        x_adv = x + attack.eps * torch.ones_like(x).detach() * attack.normalize(t)
    elif attack.norm == "L2":
        t = torch.randn(x.shape).to(attack.device).detach()
        x_adv = x + attack.eps * torch.ones_like(x).detach() * attack.normalize(t)
    else:  # L1
        t = torch.randn(x.shape).to(attack.device).detach()
        x_adv = x + t + L1_projection(x, t, attack.eps)
    if x_init is not None:
        x_adv = x_init.clone()
    return x_adv.clamp(0., 1.)


def _step(attack, w: dict, i: int, n_fts: int) -> torch.Tensor:
    """One of pyautoattack's momentum steps from w's x_adv, projected onto the ball and the box."""
    x, eps, step_size, grad = w["x"], attack.eps, w["step_size"], w["grad"]
    x_adv = w["x_adv"].detach()
    grad2 = x_adv - w["x_adv_old"]
    w["x_adv_old"] = x_adv.clone()
    a = 0.75 if i > 0 else 1.0
    if attack.norm == "Linf":
        x_adv_1 = x_adv + step_size * torch.sign(grad)
        x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
        return torch.clamp(torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps), x + eps),
                           0.0, 1.0)
    if attack.norm == "L2":
        x_adv_1 = x_adv + step_size * attack.normalize(grad)
        x_adv_1 = torch.clamp(x + attack.normalize(x_adv_1 - x) * torch.min(
            eps * torch.ones_like(x).detach(), L2_norm(x_adv_1 - x, keepdim=True)), 0.0, 1.0)
        x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
        return torch.clamp(x + attack.normalize(x_adv_1 - x) * torch.min(
            eps * torch.ones_like(x).detach(), L2_norm(x_adv_1 - x, keepdim=True)), 0.0, 1.0)
    u = torch.arange(x.shape[0], device=attack.device)
    grad_topk = grad.abs().view(x.shape[0], -1).sort(-1)[0]
    topk_curr = torch.clamp((1. - w["topk"]) * n_fts, min=0, max=n_fts - 1).long()
    grad_topk = grad_topk[u, topk_curr].view(-1, *[1] * (len(x.shape) - 1))
    sparsegrad = grad * (grad.abs() >= grad_topk).float()
    x_adv_1 = x_adv + step_size * sparsegrad.sign() / (L1_norm(sparsegrad.sign(), keepdim=True) + 1e-10)
    delta_u = x_adv_1 - x
    return x + delta_u + L1_projection(x, delta_u, eps)


def _check_step_size(attack, w: dict, loss_steps: torch.Tensor, i: int, k: int, alpha: float, n_fts: int) -> int:
    """pyautoattack's checkpoint: halve the step of points whose loss oscillates or stalled (Linf, L2), or adapt
    the sparsity and step (L1), restarting them from their best point; returns the next checkpoint's length."""
    if attack.norm in ("Linf", "L2"):
        fl_oscillation = attack.check_oscillation(loss_steps, i, k, w["loss_best"], k3=attack.thr_decr)
        fl_reduce_no_impr = (1. - w["reduced_last_check"]) * (w["loss_best_last_check"] >= w["loss_best"]).float()
        fl_oscillation = torch.max(fl_oscillation, fl_reduce_no_impr)
        w["reduced_last_check"] = fl_oscillation.clone()
        w["loss_best_last_check"] = w["loss_best"].clone()
        if fl_oscillation.sum() > 0:
            ind_fl_osc = (fl_oscillation > 0).nonzero().squeeze()
            w["step_size"][ind_fl_osc] /= 2.0
            w["x_adv"][ind_fl_osc] = w["x_best"][ind_fl_osc].clone()
            w["grad"][ind_fl_osc] = w["grad_best"][ind_fl_osc].clone()
        return max(k - attack.size_decr, attack.n_iter_min)
    sp_curr = L0_norm(w["x_best"] - w["x"])
    fl_redtopk = (sp_curr / w["sp_old"]) < .95
    w["topk"] = sp_curr / n_fts / 1.5
    w["step_size"][fl_redtopk] = alpha * attack.eps
    w["step_size"][~fl_redtopk] /= 1.5
    w["step_size"].clamp_(alpha * attack.eps / 10., alpha * attack.eps)
    w["sp_old"] = sp_curr.clone()
    w["x_adv"][fl_redtopk] = w["x_best"][fl_redtopk].clone()
    w["grad"][fl_redtopk] = w["grad_best"][fl_redtopk].clone()
    return k


class _Result:
    """The run's full-batch outputs, as pyautoattack returns them: each point's best-loss image and loss (as of
    its exit, for a dropped point), whether it is still classified right, and an image that fooled the model."""

    def __init__(self, x_adv: torch.Tensor, loss: torch.Tensor):
        self.x_best, self.loss_best = x_adv.clone(), loss.detach().clone()
        self.acc = torch.ones(len(x_adv), dtype=torch.bool, device=x_adv.device)
        self.x_best_adv = x_adv.clone()

    def settle(self, w: dict, loss_steps: torch.Tensor, fooled: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Record the fooled points (their image: `images`), drop them from the working batch w; returns the
        loss history of the points left."""
        if fooled.any():
            idx = w["idx"][fooled]
            self.acc[idx] = False
            self.x_best_adv[idx] = images[fooled] + 0.
            self.x_best[idx], self.loss_best[idx] = w["x_best"][fooled], w["loss_best"][fooled]
            keep = ~fooled
            for name in PER_POINT:
                if w.get(name) is not None:
                    w[name] = w[name][keep]
            loss_steps = loss_steps[:, keep]
        return loss_steps

    def outputs(self, w: dict) -> tuple:
        self.x_best[w["idx"]], self.loss_best[w["idx"]] = w["x_best"], w["loss_best"]
        return self.x_best, self.acc, self.loss_best, self.x_best_adv


def _run(attack, x, y, x_init=None) -> tuple:
    """attack_single_run with the early exit; the same arguments and outputs as pyautoattack's."""
    if len(x.shape) < attack.ndims:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    criterion, target = _criterion(attack), attack.y_target
    w = {"x": x, "y": y, "y_target": target, "x_adv": _start(attack, x, y, x_init),
         "idx": torch.arange(len(x), device=x.device)}
    logits, loss_indiv, w["grad"] = _gradient(attack, w, criterion)
    w["grad_best"] = w["grad"].clone()
    if attack.loss in ("dlr", "dlr-targeted"):
        check_zero_gradients(w["grad"], logger=attack.logger)
    w["x_adv"] = w["x_adv"].detach()
    out = _Result(w["x_adv"], loss_indiv)
    w["x_best"], w["loss_best"] = w["x_adv"].clone(), loss_indiv.detach().clone()
    alpha = 2. if attack.norm in ("Linf", "L2") else 1.
    w["step_size"] = alpha * attack.eps * torch.ones([x.shape[0], *([1] * attack.ndims)]).to(attack.device).detach()
    w["x_adv_old"] = w["x_adv"].clone()
    n_fts, k = math.prod(attack.orig_dim), attack.n_iter_2 + 0
    if attack.norm == "L1":
        k = max(int(.04 * attack.n_iter), 1)
        if x_init is None:
            w["topk"] = .2 * torch.ones([x.shape[0]], device=attack.device)
            w["sp_old"] = n_fts * torch.ones_like(w["topk"])
        else:
            w["topk"] = L0_norm(w["x_adv"] - x) / n_fts / 1.5
            w["sp_old"] = L0_norm(w["x_adv"] - x)
    w["loss_best_last_check"] = w["loss_best"].clone()
    w["reduced_last_check"] = torch.ones_like(w["loss_best"])
    loss_steps = torch.zeros([attack.n_iter, x.shape[0]]).to(attack.device)
    loss_steps = out.settle(w, loss_steps, logits.detach().max(1)[1] != w["y"], w["x_adv"])
    counter3 = 0
    for i in range(attack.n_iter):
        if len(w["idx"]) == 0:
            break
        with torch.no_grad():
            w["x_adv"] = _step(attack, w, i, n_fts) + 0.
        logits, loss_indiv, w["grad"] = _gradient(attack, w, criterion)
        with torch.no_grad():
            y1 = loss_indiv.detach().clone()
            loss_steps[i] = y1 + 0
            ind = (y1 > w["loss_best"]).nonzero().squeeze()
            w["x_best"][ind] = w["x_adv"][ind].clone()
            w["grad_best"][ind] = w["grad"][ind].clone()
            w["loss_best"][ind] = y1[ind] + 0
            # fooled inside the ball: recorded and dropped (the others' checkpoint below is their own)
            loss_steps = out.settle(w, loss_steps, logits.detach().max(1)[1] != w["y"], w["x_adv"].detach())
            counter3 += 1
            if counter3 == k:
                k = _check_step_size(attack, w, loss_steps, i, k, alpha, n_fts)
                counter3 = 0
    attack.y_target = target
    return out.outputs(w)


class _EarlyExit:
    def attack_single_run(self, x, y, x_init=None):
        if self.eps != self.eps_orig or self.eot_iter != 1 or getattr(self, "is_tf_model", False):
            return super().attack_single_run(x, y, x_init)  # not exact there: pyautoattack's own
        return _run(self, x, y, x_init)


class APGDExit(_EarlyExit, APGDAttack):
    """pyautoattack's APGD (CE, DLR) with the early exit."""


class APGDTargetedExit(_EarlyExit, APGDAttack_targeted):
    """pyautoattack's APGD-T with the early exit."""


def with_early_exit(aa):
    """pyautoattack's AutoAttack `aa` with its APGD objects given the early exit, their settings untouched."""
    if type(aa.apgd) is APGDAttack:
        aa.apgd.__class__ = APGDExit
    if type(aa.apgd_targeted) is APGDAttack_targeted:
        aa.apgd_targeted.__class__ = APGDTargetedExit
    return aa
