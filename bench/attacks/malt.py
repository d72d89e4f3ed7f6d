"""MALT (Melamed, Yehudai and Shamir, "MALT Powers Up Adversarial Attacks", NeurIPS 2024): targeted APGD on the
classes a linear model of the network says are nearest, instead of on the classes of highest logit.

For a point x of label y and every other class t, the margin the network's linearization at x must cross to make
t win, in the attack's own norm:

    m_t = (z_y(x) - z_t(x)) / || grad_x (z_y - z_t)(x) ||_q,   q the dual of the threat model's norm
                                                               (Linf -> L1, L2 -> L2, L1 -> Linf),

is the distance to t's decision boundary were the network linear. The k classes of smallest m_t are attacked one
after another with pyautoattack's APGD-T, exactly as AutoAttack's standard version configures it for the norm
(100 iterations, one restart, the targeted DLR loss, at L1 its eps schedule, its random stream from its seed),
each on the points still robust. k defaults to 5, MALT's number of targets as this project reads the paper
(AutoAttack's APGD-T takes 9 by logit); `malt_targets` sets it. MALT is not RobustBench's protocol: its rows join
the worst case over attacks, never the AutoAttack column.
"""
from __future__ import annotations

import torch

from bench.attacks.registry import Attack, register

DUAL = {"Linf": 1, "L2": 2, "L1": float("inf")}  # the norm the linearized margin divides by
TARGETS = 5


def linearized_margins(model, x: torch.Tensor, y: torch.Tensor, norm: str) -> torch.Tensor:
    """(n, classes): m_t for every class t (inf at y), one gradient call per class."""
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    rows = torch.arange(len(y), device=x.device)
    out = torch.full((len(y), classes), float("inf"), device=x.device)
    for t in range(classes):
        xg = x.detach().clone().requires_grad_(True)
        z = model(xg).float()
        gap = z[rows, y] - z[:, t]
        grad, = torch.autograd.grad(gap.sum(), xg)
        margin = gap.detach() / grad.flatten(1).norm(p=DUAL[norm], dim=1).clamp_min(1e-12)
        out[:, t] = torch.where(y == t, torch.full_like(margin, float("inf")), margin)
    return out


def ranked_targets(model, x, y, norm: str, k: int) -> torch.Tensor:
    """(n, k): each point's k nearest classes by the linearized margin, nearest first."""
    return linearized_margins(model, x, y, norm).argsort(dim=1)[:, :k]


def malt_apgd(apgd, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """pyautoattack's APGD-T (`apgd`, configured as AutoAttack configures it) with each point's targets given:
    its own loop over targets and restarts, on the points still robust, from its own seed; only the choice of
    target differs (pyautoattack takes the k-th highest logit)."""
    import math

    apgd.init_hyperparam(x)
    x, y = x.detach().clone().float().to(apgd.device), y.detach().clone().long().to(apgd.device)
    with torch.no_grad():
        acc = apgd.model(x).max(1)[1] == y
    adv = x.clone()
    torch.random.manual_seed(apgd.seed)
    torch.cuda.random.manual_seed(apgd.seed)
    if apgd.use_largereps:  # L1: pyautoattack's schedule of radii and iterations
        epss = [3. * apgd.eps_orig, 2. * apgd.eps_orig, 1. * apgd.eps_orig]
        iters = [math.ceil(c) for c in (.3 * apgd.n_iter_orig, .3 * apgd.n_iter_orig, .4 * apgd.n_iter_orig)]
        iters[-1] = apgd.n_iter_orig - sum(iters[:-1])
    for rank in range(targets.shape[1]):
        for _ in range(apgd.n_restarts):
            idx = acc.nonzero().flatten()
            if not len(idx):
                return adv
            apgd.y_target = targets[idx, rank].to(apgd.device)
            if apgd.use_largereps:
                _, acc_curr, _, adv_curr = apgd.decr_eps_pgd(x[idx], y[idx], epss, iters)
            else:
                _, acc_curr, _, adv_curr = apgd.attack_single_run(x[idx], y[idx])
            fooled = (acc_curr == 0).nonzero().flatten()
            acc[idx[fooled]] = False
            adv[idx[fooled]] = adv_curr[fooled].clone()
    return adv


def _cost(config: dict, t_grad: float, t_fwd: float) -> float:
    """A batch's seconds when every point survives: one gradient call per class to rank, then per target
    APGD's iterations (and its first gradient) and the forwards that check it."""
    from bench.attacks.autoattack import stage_overhead

    return config["classes"] * t_grad + config["targets"] * (101 * t_grad + 2 * t_fwd) * stage_overhead("apgd-t")


@register("malt", label="MALT", strength=1.5, cost=_cost)
def _malt(norm, eps, seed=0, batch_size=250, num_classes=10, malt_targets=TARGETS, **_):
    from bench.attacks.apgd_exit import with_early_exit
    from bench.attacks.autoattack import Float32Logits, standard_attack
    from bench.attacks.predict import predict

    k = max(1, min(int(malt_targets), num_classes - 1))

    def run(self, model, x, y):
        wrapped = Float32Logits(model).eval()
        aa = with_early_exit(standard_attack(wrapped, norm=norm, eps=eps, seed=seed, device=str(x.device)))
        apgd = aa.apgd_targeted  # a point fooled inside the ball leaves its batch: the same flags, less work
        x_adv = x.clone()
        robust = predict(wrapped, x, batch_size) == y
        for i in range(0, len(x), batch_size):  # pyautoattack reseeds per batch: batches are independent
            idx = i + robust[i:i + batch_size].nonzero().flatten()
            if len(idx):
                targets = ranked_targets(wrapped, x[idx], y[idx], norm, k)
                apgd.seed = seed
                x_adv[idx] = malt_apgd(apgd, x[idx], y[idx], targets)
        self.info = {"targets": k}
        return x_adv.detach()

    # APGD's random starts are drawn per batch (pyautoattack reseeds each): the batch is part of the result, so
    # it is part of the key
    cfg = {"attack": "malt", "norm": norm, "eps": round(eps, 10), "seed": seed, "targets": k, "batch": batch_size,
           "classes": num_classes, "apgd": "pyautoattack standard APGD-T (dlr-targeted, 100 iterations)"}
    return Attack("malt", cfg, run)
