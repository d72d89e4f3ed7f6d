"""What an attack will cost on this machine, measured before it runs: the model's seconds per gradient call and
per forward call at the evaluation's batch, times the calls the attack makes when every point survives (its
most; a point that falls ends its part early). An estimate: the rate measured on a few calls, not a bound."""
from __future__ import annotations

import time

import torch

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
    """Seconds an attack of this config takes on n points when every point survives: its catalogue entry's cost
    per batch (bench.attacks.registry), times the batches (None for attacks without a model loop: clean,
    corruptions)."""
    from bench.attacks.registry import ATTACKS

    entry = ATTACKS.get(config["attack"])
    if entry is None or entry.cost is None:
        return None
    return -(-n // batch_size) * entry.cost(config, t_grad, t_fwd)


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '2 h 05 min': for people."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
