"""SGD with momentum and weight decay as tensor ops, so a compiled training step traces its update.

torch.optim.SGD's `step()` breaks a torch.compile graph on purpose and its `zero_grad()` is marked untraceable;
this one is a few foreach ops on the gradients a step returns, with the learning rate a tensor on the device (a
schedule changes its value in place, never the graph). It computes what torch.optim.SGD computes with
dampening 0: d = g + wd * w; b = momentum * b + d; w = w - lr * b (nesterov: w = w - lr * (d + momentum * b)).
The momentum buffers start at zero, which equals torch's first-step copy of d. Its state_dict has
torch.optim.SGD's layout, so resume states written by either load into the other. A recipe that keeps tensors
from one step to the next (LookSAM's reused direction) names them (Recipe.state): they are held per parameter
beside the momentum buffer, in the same per-parameter state, so a resumed run continues them exactly.

Under torchrun, the recipes average a step's gradients over the ranks before the update
(zoo.distributed.average: one flat all-reduce, which is what DistributedDataParallel's reducer computes), on every
gradient they use, so SAM's perturbation is computed from the global gradient as before.
"""
from __future__ import annotations

import torch


class SGD:
    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, state: tuple = ()):
        self.params = [p for p in params if p.requires_grad]
        device = self.params[0].device if self.params else torch.device("cpu")
        self.lr = torch.tensor(float(lr), device=device)  # read by the step; set_lr fills it in place
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)
        self.momentum_buffers = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        # the recipe's own tensors, one per parameter under each name, zero until its step writes them
        self.recipe_state = {name: [torch.zeros_like(p) for p in self.params] for name in state}

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)

    @torch.no_grad()
    def update(self, grads: list[torch.Tensor]) -> None:
        """One SGD step from these gradients (one per parameter, in the parameters' order), in place."""
        d = torch._foreach_add(grads, self.params, alpha=self.weight_decay) if self.weight_decay else list(grads)
        if self.momentum:
            torch._foreach_mul_(self.momentum_buffers, self.momentum)
            torch._foreach_add_(self.momentum_buffers, d)
            d = (torch._foreach_add(d, self.momentum_buffers, alpha=self.momentum) if self.nesterov
                 else self.momentum_buffers)
        torch._foreach_sub_(self.params, torch._foreach_mul(d, self.lr))

    def state_dict(self) -> dict:
        return {"state": {i: {"momentum_buffer": b, **{k: v[i] for k, v in self.recipe_state.items()}}
                          for i, b in enumerate(self.momentum_buffers)},
                "param_groups": [{"lr": float(self.lr), "momentum": self.momentum, "dampening": 0.0,
                                  "weight_decay": self.weight_decay, "nesterov": self.nesterov,
                                  "params": list(range(len(self.params)))}]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        group = state["param_groups"][0]
        if len(group["params"]) != len(self.params):
            raise ValueError(f"optimizer state holds {len(group['params'])} parameters; the model has "
                             f"{len(self.params)}")
        self.set_lr(float(group["lr"]))
        for i, b in enumerate(self.momentum_buffers):
            own = state["state"].get(i, state["state"].get(str(i), {}))
            for buf, saved in [(b, own.get("momentum_buffer"))] + [(v[i], own.get(k))
                                                                  for k, v in self.recipe_state.items()]:
                buf.copy_(saved if saved is not None else torch.zeros_like(buf))
