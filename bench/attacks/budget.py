"""What an attack will cost on this machine, measured before it runs: the model's seconds per gradient call and
per forward call at the evaluation's batch, times the calls the attack makes when every point survives (its
most; a point that falls ends its part early). An estimate: the rate measured on a few calls, not a bound."""
from __future__ import annotations

import time

import torch

# FAB's projection onto the decision boundary runs beside its model calls; on CPU it made FAB-T take 1.5x what
# its calls alone cost (sharp_small, 64 digits: 31 s against 20 s)
FAB_OVERHEAD = 1.5


def call_seconds(model, x: torch.Tensor, batch_size: int, reps: int = 3) -> tuple[float, float]:
    """(seconds per forward+backward to the input, seconds per forward) at batch min(len(x), batch_size): the
    fastest of reps calls after two warm-up calls of each (a first call pays for allocations and kernel
    selection, and a call slowed by other work on the machine would inflate the estimate); the model's weights
    and mode are left as they were."""
    xb = x[:batch_size].detach()

    def grad_call():
        xg = xb.clone().requires_grad_(True)
        model(xg).float().sum().backward(inputs=[xg])

    def fwd_call():
        with torch.no_grad():
            model(xb)

    out = []
    for call in (grad_call, fwd_call):
        call()
        call()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out.append(min(times))
    return out[0], out[1]


def seconds_if_all_survive(config: dict, n: int, batch_size: int, t_grad: float, t_fwd: float) -> float | None:
    """Seconds an attack of this config takes on n points when every point survives (None for attacks without a
    model loop: clean, corruptions)."""
    batches = -(-n // batch_size)
    if config["attack"] == "pgd":
        return batches * config["restarts"] * (config["steps"] * t_grad + t_fwd)
    if config["attack"].startswith("autoattack"):
        from bench.attacks.autoattack import stage_calls, standard_attack

        aa = standard_attack(torch.nn.Identity(), norm=config["norm"], eps=config["eps"])
        total = 0.0
        for stage in config["stages"]:
            grads, fwds = stage_calls(aa, stage)
            total += (grads * t_grad + fwds * t_fwd) * (FAB_OVERHEAD if stage.startswith("fab") else 1.0)
        return batches * total
    return None


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '2 h 05 min': for people."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
