"""AutoAttack (pyautoattack 0.2.0) driven stage by stage, with our own resumable state.

RobustBench's `benchmark()` passes arguments pyautoattack 0.2.0 rejects, and pyautoattack's own `state_path`
resume always fails on reload (it stores the attack set as a string). So we configure AutoAttack exactly as
`version='standard'` does, then run one stage at a time on the points still robust (the standard protocol),
saving per-point robust flags and adversarial images after each stage. An interrupted evaluation resumes
at the first unfinished stage.
"""
from __future__ import annotations

import logging
import os
import sys
import time

import torch

from bench.evaluate import predict
from zoo.checkpoint import save_atomic


def _import_autoattack():
    import pyautoattack

    sys.modules.setdefault("autoattack", pyautoattack)  # robustbench imports it under this name
    return pyautoattack.AutoAttack


class Float32Logits(torch.nn.Module):
    """AutoAttack's APGD-T casts inputs to float; models in reduced precision must hand back fp32 logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).float()


def run_autoattack(model, x, y, *, norm, eps, stages, seed=0, batch_size=250, state_path=None):
    """Returns (x_adv, info); info['stage_acc'] maps each stage to the robust accuracy after it."""
    AutoAttack = _import_autoattack()
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    device = x.device
    wrapped = Float32Logits(model).eval()
    aa = AutoAttack(wrapped, norm=norm, eps=eps, version="standard", device=str(device), seed=seed)

    state = None
    if state_path and os.path.exists(state_path):
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            if state["n"] != len(y) or state["stages"] != list(stages):
                state = None
        except Exception:  # a state torn by a kill is simply recomputed
            state = None
    if state is None:
        flags = (predict(wrapped, x, batch_size) == y).cpu()
        state = {"n": len(y), "stages": list(stages), "done": [], "stage_acc": {"clean": flags.float().mean().item()},
                 "flags": flags, "x_adv": x.detach().cpu().clone(), "seconds": {}}
    flags, x_adv = state["flags"].clone(), state["x_adv"].to(device)
    resumed = list(state["done"])

    for stage in stages:
        if stage in state["done"]:
            continue
        t0 = time.perf_counter()
        idx = flags.nonzero().flatten()
        if len(idx):
            aa.attacks_to_run = [stage]  # the standard version's parameters stay as _set_version left them
            adv, _ = aa.run_standard_evaluation(x[idx.to(device)], y[idx.to(device)], batch_size=batch_size)
            fooled = (predict(wrapped, adv, batch_size) != y[idx.to(device)]).cpu()
            flags[idx[fooled]] = False
            x_adv[idx[fooled].to(device)] = adv[fooled.to(device)]
        state["done"].append(stage)
        state["stage_acc"][stage] = flags.float().mean().item()
        state["seconds"][stage] = time.perf_counter() - t0
        state["flags"], state["x_adv"] = flags.clone(), x_adv.detach().cpu()
        if state_path:
            save_atomic(state, state_path)
    return x_adv, {"stage_acc": state["stage_acc"], "stage_seconds": state["seconds"], "resumed_stages": resumed}
