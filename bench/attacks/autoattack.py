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
import time

import torch

from bench.attacks.predict import predict
from bench.deps import import_autoattack
from zoo.files import save_atomic


class Float32Logits(torch.nn.Module):
    """AutoAttack's APGD-T casts inputs to float; models in reduced precision must hand back fp32 logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).float()


# pyautoattack's sanity checks (pyautoattack/checks.py), each recognised by words of the warning it logs
CHECKS = {
    "randomized": ("randomized defense",),
    "output_range": ("probability distribution",),
    "zero_gradients": ("zero gradient",),
    "dynamic_defence": ("dynamic defense",),
    "n_classes": ("target classes", "DLR loss"),
    "square": ("Square Attack has decreased",),
}


class _CheckLog(logging.Handler):
    """Collects the warnings pyautoattack logs through its `auto-attack` logger while attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _classify(messages, found: dict) -> dict:
    """found[check] = the first message of each check that fired (None: it ran and passed)."""
    for m in messages:
        for name, words in CHECKS.items():
            if found.get(name) is None and any(w in m for w in words):
                found[name] = m
    return found


def _reset_dynamic_counter(checks) -> None:
    # the dynamic-defence check counts calls in a module-level dict it never resets: one flagged model (or a
    # backward run under a trace) would flag every later model in the process
    for k in checks.funcs:
        checks.funcs[k] = 0


def _pre_checks(aa, checks, x, y, batch_size, logger) -> None:
    """The checks one run_standard_evaluation call makes on the evaluated points' first batch, run once per
    evaluation (the staged calls below make them again on each stage's robust points)."""
    xb, yb = x[:batch_size], y[:batch_size]
    _reset_dynamic_counter(checks)
    checks.check_randomized(aa.get_logits, xb, yb, bs=batch_size, logger=logger)
    n_cls = checks.check_range_output(aa.get_logits, xb, logger=logger)
    checks.check_dynamic(aa.model, xb, False, logger=logger)
    checks.check_n_classes(n_cls, aa.attacks_to_run, aa.apgd_targeted.n_target_classes, aa.fab.n_target_classes,
                           logger=logger)


def run_autoattack(model, x, y, *, norm, eps, stages, seed=0, batch_size=250, state_path=None):
    """Returns (x_adv, info); info['stage_acc'] maps each stage to the robust accuracy after it, info['aa_checks']
    each of pyautoattack's sanity checks to None (passed) or the warning it gave."""
    AutoAttack = import_autoattack()
    from pyautoattack import checks

    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.WARNING)
    device = x.device
    wrapped = Float32Logits(model).eval()
    aa = AutoAttack(wrapped, norm=norm, eps=eps, version="standard", device=str(device), seed=seed)
    catcher = _CheckLog()
    logger.addHandler(catcher)
    logger.propagate = False  # flagged checks are recorded in the row and printed once by bench.run
    try:
        return _run_stages(aa, checks, wrapped, x, y, stages, batch_size, state_path, catcher, logger)
    finally:
        logger.removeHandler(catcher)
        logger.propagate = True

def _run_stages(aa, checks, wrapped, x, y, stages, batch_size, state_path, catcher, logger):
    device = x.device
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
        _pre_checks(aa, checks, x, y, batch_size, logger)
        state = {"n": len(y), "stages": list(stages), "done": [], "stage_acc": {"clean": flags.float().mean().item()},
                 "flags": flags, "x_adv": x.detach().cpu().clone(), "seconds": {},
                 "checks": _classify(catcher.messages, {})}
    found = dict(state.get("checks", {}))
    flags, x_adv = state["flags"].clone(), state["x_adv"].to(device)
    resumed = list(state["done"])

    for stage in stages:
        if stage in state["done"]:
            continue
        t0 = time.perf_counter()
        idx = flags.nonzero().flatten()
        if len(idx):
            aa.attacks_to_run = [stage]  # the standard version's parameters stay as _set_version left them
            _reset_dynamic_counter(checks)
            adv, _ = aa.run_standard_evaluation(x[idx.to(device)], y[idx.to(device)], batch_size=batch_size)
            fooled = (predict(wrapped, adv, batch_size) != y[idx.to(device)]).cpu()
            flags[idx[fooled]] = False
            x_adv[idx[fooled].to(device)] = adv[fooled.to(device)]
        state["done"].append(stage)
        state["stage_acc"][stage] = flags.float().mean().item()
        state["seconds"][stage] = time.perf_counter() - t0
        state["flags"], state["x_adv"] = flags.clone(), x_adv.detach().cpu()
        # one stage per call hides Square's check from pyautoattack (it compares stages within one call): apply
        # its rule to the whole evaluation's stage accuracies, Square's against the stages before it
        checks.check_square_sr(dict(state["stage_acc"]), logger=logger)
        state["checks"] = found = _classify(catcher.messages, found)
        if state_path:
            save_atomic(state, state_path)
    aa_checks = {name: found.get(name) for name in CHECKS}
    from importlib.metadata import version

    return x_adv, {"stage_acc": state["stage_acc"], "stage_seconds": state["seconds"], "resumed_stages": resumed,
                   "aa_checks": aa_checks, "pyautoattack": version("pyautoattack")}
