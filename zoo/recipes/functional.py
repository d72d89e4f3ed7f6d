"""The functional pieces every recipe's step is made of: forwards at given parameters, gradients, norms.

A step takes (model, opt, x, y, cfg, autocast), with `opt` a zoo.optim.SGD over the model's parameters, and
returns (loss, logits) as tensors. Each step is written functionally, so that the same definition runs eagerly
and compiles into ONE graph with torch.compile(fullgraph=True) (zoo.train --compile-step):
- forwards go through torch.func.functional_call with the parameters and buffers as arguments (forward_at);
- gradients, for parameters and inputs alike, come from zoo.pgd.gradient: torch.func inside a compiled
  step, torch.autograd.grad eagerly, never .backward(), so the step has no graph break and touches no .grad;
- the forward that trains moves BatchNorm's running statistics (its buffers are an argument of the
  differentiated function, updated in place); every other forward (a SAM-like second pass, every attack
  forward) is given no running statistics, so BatchNorm normalises with the batch's own and leaves the
  buffers as they were (num_batches_tracked counts only the forwards that moved them);
- the update is zoo.optim.SGD's foreach ops with the learning rate a device tensor;
- nothing reads a value back to the host (.item(), .cpu(), .tolist(), Python branches on tensors).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from zoo import distributed as dist
from zoo.pgd import gradient

_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters, detached: torch.func differentiates with respect to them, and nothing outside
    the transform records a graph (the SGD update writes into the parameters themselves)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def untracked_stats(model: nn.Module) -> dict[str, None]:
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
    whose BatchNorm running statistics the forward then updates in place, or untracked_stats(model), with which it
    moves none and mutates nothing (so torch.func may differentiate through it)."""
    return lambda x: functional_call(model, {**params, **stats}, (x,))


def frozen_forward(model: nn.Module) -> Callable:
    """x -> logits at the model's own parameters (detached), moving no running statistic: the forward the
    training attacks use."""
    return forward_at(model, parameters_of(model), untracked_stats(model))


def value_and_grad(model: nn.Module, objective: Callable, params: dict | None = None,
                   track_stats: bool = True):
    """(gradients, loss, logits): objective(forward) -> (loss, logits) differentiated with respect to the
    parameters (default the model's own; SAM passes w + e). With track_stats the forwards update BatchNorm's
    running statistics in place; without, they leave them alone. The gradients are averaged over torchrun's
    ranks (zoo.distributed.average), a list in the parameters' order. The gradient is zoo.pgd.gradient's; the
    buffers BatchNorm updates are an argument of the differentiated function, as torch.func requires.
    """
    params = parameters_of(model) if params is None else params
    buffers = dict(model.named_buffers()) if track_stats else {}
    untracked = {} if track_stats else untracked_stats(model)

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


def inner(a, b) -> torch.Tensor:
    """<a, b> over all tensors taken together, as two flat vectors (LookSAM's and GSAM's projections)."""
    return torch.stack([(u * v).sum() for u, v in zip(a, b)]).sum()


@torch.no_grad()
def shifted(params: dict, deltas) -> dict:
    """w + delta as a new set of tensors: w itself is never moved and restored, so a step leaves from exactly w."""
    return {n: p.detach() + d for (n, p), d in zip(params.items(), deltas)}
