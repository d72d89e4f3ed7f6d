"""Projected gradient descent on inputs in [0,1]: the one PGD used by PGD-AT training and by the bench.

It lives in `zoo` because bench already depends on zoo (to rebuild checkpoints); bench's `pgd` attack wraps it.
Gradients are taken with respect to the input only (`gradient`), so the model's .grad buffers are never
touched, and inside a compiled training step the loop traces into the step's one graph.
`model` is any callable from [0,1] images to logits that mutates nothing: an eval-mode module in the bench, the
training step's forward with BatchNorm's running statistics left out (zoo.recipes) in training.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from zoo.radius import parse_eps  # noqa: F401 - radii are read where the balls are

NORMS = ("Linf", "L2")  # PGD's, in training and in the bench's pgd attack
THREAT_NORMS = (*NORMS, "L1")  # every ball the bench evaluates and checks: AutoAttack's three
# absolute slack on top of eps when a distance is checked: float32 rounding of x + delta and the clamp, which
# adds up over more coordinates the wider the norm sums (L1 sums all 3072 of a CIFAR image)
BALL_TOLERANCE = {"Linf": 1e-6, "L2": 1e-5, "L1": 1e-4}


def check_norm(norm: str, allowed: tuple[str, ...] = NORMS) -> str:
    if norm not in allowed:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(allowed)}")
    return norm


def _l2(v: torch.Tensor) -> torch.Tensor:
    return v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.ndim - 1)))


def perturbation_size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Each example's perturbation under the norm (Linf: the largest absolute change; L2: the Euclidean length;
    L1: the sum of absolute changes): what every check of "inside the eps ball" measures, in the bench, its
    verifier and the site."""
    d = delta.flatten(1)
    if norm == "L1":
        return d.abs().sum(1)
    return d.abs().amax(1) if norm == "Linf" else d.norm(dim=1)


def project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    if norm == "Linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _l2(delta)).clamp(max=1.0)


def _example_generator(seed: int, restart: int, index: int) -> torch.Generator:
    """A CPU generator owned by one example of the evaluated set: its draws do not depend on the batch it is in."""
    digest = hashlib.sha256(f"pgd-start/{seed}/{restart}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def random_start(x: torch.Tensor, norm: str, eps: float, *, example_ids=None, seed: int = 0,
                 restart: int = 0) -> torch.Tensor:
    """A random point of the eps-ball around x, inside [0,1], returned as a perturbation.

    Without example_ids the draws come from the global RNG (training: one seeded stream per epoch). With them,
    example i's draws come from its own generator, seeded by (seed, restart, i): the bench's starts are then the
    same whatever the batch size, sharding or resumption.
    """
    if example_ids is None:
        if norm == "Linf":
            delta = torch.empty_like(x).uniform_(-eps, eps)
        else:  # a random direction with a radius uniform in [0, eps]
            d = torch.randn_like(x)
            r = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype)
            delta = d / _l2(d) * r * eps
        return (x + delta).clamp(0, 1) - x
    gens = [_example_generator(seed, restart, int(i)) for i in example_ids]
    if norm == "Linf":
        u = torch.stack([torch.rand(x.shape[1:], generator=g) for g in gens]).to(x)
        delta = (2 * u - 1) * eps
    else:
        d = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x)
        r = torch.stack([torch.rand((), generator=g) for g in gens]).to(x).view(-1, *([1] * (x.ndim - 1)))
        delta = d / _l2(d) * r * eps
    return (x + delta).clamp(0, 1) - x


def gradient(f, wrt, *rest, has_aux: bool = False):
    """d f(wrt, *rest) / d wrt, with f's aux when has_aux (f then returns (value, aux)); wrt is a tensor or a dict
    of tensors: the one gradient of zoo, for inputs (PGD) and for parameters (the recipes). Inside a compiled
    training step it is torch.func.grad, which dynamo traces into the step's one graph (torch.autograd.grad would
    break it); eagerly torch.autograd.grad, which can also run a model compiled on its own (--compile), where
    torch.func.grad from eager code cannot. Both take the same gradient of the same function."""
    if torch.compiler.is_compiling():
        with torch.no_grad():  # torch.func.grad differentiates inside; nothing outside records a graph
            return torch.func.grad(f, has_aux=has_aux)(wrt, *rest)
    with torch.enable_grad():
        leaves = ({k: v.detach().requires_grad_(True) for k, v in wrt.items()} if isinstance(wrt, dict)
                  else wrt.detach().requires_grad_(True))
        value, aux = f(leaves, *rest) if has_aux else (f(leaves, *rest), None)
        grads = torch.autograd.grad(value, list(leaves.values()) if isinstance(wrt, dict) else [leaves])
    grads = dict(zip(leaves, grads)) if isinstance(wrt, dict) else grads[0]
    return (grads, aux) if has_aux else grads


def pgd(model, x: torch.Tensor, y: torch.Tensor, *, norm: str = "Linf", eps: float = 8 / 255,
        alpha: float | None = None, steps: int = 10, restarts: int = 1, rand_init: bool = True,
        example_ids=None, seed: int = 0, loss: str = "ce", init_std: float | None = None) -> torch.Tensor:
    """Maximise a loss within the eps-ball around x, staying in [0,1].

    loss "ce": cross-entropy with the labels (PGD, FGSM); "kl": KL(f(x) || f(x + delta)) against the model's own
    clean prediction (TRADES' inner maximisation). init_std starts from delta ~ init_std * N(0, I) (TRADES'
    0.001) instead of a uniform point of the ball. With several restarts, each example keeps the first restart
    that fools the model (else the last one). example_ids (indices of x's rows in the evaluated set) give each
    example its own random starts, seeded by (seed, restart, index); without them the starts come from the
    global RNG. The caller decides train/eval mode; the model's parameters receive no gradient.
    """
    check_norm(norm)
    if eps == 0 or steps == 0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if alpha is None else alpha  # Madry et al.'s step rule
    if loss not in ("ce", "kl"):
        raise ValueError(f"unknown PGD loss {loss!r}; choose ce or kl")
    x = x.detach()
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    if loss == "kl":
        with torch.no_grad():
            p_clean = F.softmax(model(x).float(), 1)

    def objective(delta):
        # summed, not averaged: each example's gradient is then the same whatever its batch (a mean would scale
        # it by 1/batch size, which L2's normalised step removes only up to rounding)
        logits = model(x + delta).float()
        if loss == "ce":
            return F.cross_entropy(logits, y, reduction="sum")
        return F.kl_div(F.log_softmax(logits, 1), p_clean, reduction="sum")

    for r in range(restarts):
        if init_std is not None:
            delta = init_std * torch.randn_like(x)
        elif rand_init:
            delta = random_start(x, norm, eps, example_ids=example_ids, seed=seed, restart=r)
        else:
            delta = torch.zeros_like(x)
        for _ in range(steps):
            grad = gradient(objective, delta)
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
