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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.attacks.predict import predict
from bench.deps import import_autoattack
from zoo.distributed import worker_name
from zoo.files import save_atomic


class Float32Logits(torch.nn.Module):
    """AutoAttack's APGD-T casts inputs to float; models in reduced precision must hand back fp32 logits. Each
    call runs on_call (the progress bar counts AutoAttack's model calls)."""

    def __init__(self, model, on_call=None):
        super().__init__()
        self.model = model
        self.on_call = on_call

    def forward(self, x):
        if self.on_call is not None:
            self.on_call()
        return self.model(x).float()


class Bf16Search(torch.nn.Module):
    """The model under bf16 autocast: what AutoAttack's search runs on with --precision bf16 (its logits are
    cast back to fp32 by Float32Logits; the flags are decided by the fp32 model)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x)


PRECISIONS = ("fp32", "bf16")  # AutoAttack's search


# pyautoattack's version='standard' targets: APGD-T (by norm) and FAB-T; RobustBench's protocol assumes them
STANDARD_TARGETS = {"apgd-t": {"Linf": 9, "L2": 9, "L1": 5}, "fab-t": 9}
EOT_ITER = 20  # the rand version's draws per gradient (pyautoattack's _set_version('rand'))


@dataclass(frozen=True)
class AttackSettings:
    """What AutoAttack runs with for a model with num_classes classes. The DLR losses need 3 (untargeted) and 4
    (targeted) classes: below that the stage runs on pyautoattack's cross-entropy counterpart instead, and
    says so."""
    version: str  # standard | rand
    apgd_targets: int  # APGD-T's target classes: the standard's, at most num_classes - 1
    fab_targets: int  # FAB-T's, likewise
    targeted_loss: str  # dlr-targeted (standard) | ce-targeted (fewer than 4 classes)
    untargeted_loss: str  # APGD-DLR's (rand version): dlr | ce (fewer than 3 classes)
    eot_iter: int  # draws of the model per gradient: 1, or EOT_ITER for the rand version
    standard: bool  # RobustBench's protocol: the standard version with its full targets and losses

    def key_fields(self) -> dict:
        """What the attack config (the cache key) adds to the version's: only what departs from it, so rows of
        models with 10 or more classes keep their keys."""
        out = {}
        if self.version == "standard":
            if (self.apgd_targets, self.fab_targets) != (self._std_apgd, STANDARD_TARGETS["fab-t"]):
                out.update(apgd_t_targets=self.apgd_targets, fab_t_targets=self.fab_targets)
            if self.targeted_loss != "dlr-targeted":
                out["apgd_t_loss"] = self.targeted_loss
        else:
            out.update(eot_iter=self.eot_iter, apgd_dlr_loss=self.untargeted_loss)
        return out

    @property
    def n_target_classes(self) -> int:
        """What rows record: the targets of FAB-T (and of APGD-T at Linf and L2), 9 when standard."""
        return self.fab_targets

    _std_apgd: int = 9


def attack_settings(version: str, norm: str, num_classes: int) -> AttackSettings:
    if num_classes < 2:
        raise ValueError(f"AutoAttack needs at least 2 classes; the model has {num_classes}")
    std_apgd = STANDARD_TARGETS["apgd-t"][norm]
    apgd, fab = min(std_apgd, num_classes - 1), min(STANDARD_TARGETS["fab-t"], num_classes - 1)
    targeted = "dlr-targeted" if num_classes >= 4 else "ce-targeted"
    untargeted = "dlr" if num_classes >= 3 else "ce"
    standard = version == "standard" and (apgd, fab, targeted) == (std_apgd, STANDARD_TARGETS["fab-t"],
                                                                   "dlr-targeted")
    return AttackSettings(version, apgd, fab, targeted, untargeted, EOT_ITER if version == "rand" else 1, standard,
                          std_apgd)


def apply_settings(aa, s: AttackSettings) -> None:
    """Set pyautoattack's attack objects to the settings: targets, and the losses that replace an undefined DLR."""
    aa.apgd_targeted.n_target_classes = s.apgd_targets
    aa.fab.n_target_classes = s.fab_targets
    if s.targeted_loss == "ce-targeted":
        aa.apgd_targeted.dlr_loss_targeted = aa.apgd_targeted.ce_loss_targeted
    if s.untargeted_loss == "ce":
        aa.apgd.dlr_loss = lambda logits, y: F.cross_entropy(logits, y, reduction="none")


# pyautoattack's own work beside the model calls, as a factor on what the calls alone cost: APGD's step and
# momentum bookkeeping, FAB's projection onto the decision boundary, Square's sampling. Measured stage by stage
# on the smoke study's PGD-AT sharp_small (64 digits, every point surviving every stage, 2 CPU threads: APGD-CE
# and APGD-T 1.5x, FAB-T 2.6x, Square 1.6x); a larger model spends relatively less beside its calls, so for it
# the estimate runs high, which is the side an estimate "if every point survives" should err on.
STAGE_OVERHEAD = {"apgd": 1.5, "fab": 2.6, "square": 1.6}


def stage_overhead(stage: str) -> float:
    return STAGE_OVERHEAD.get(stage.split("-")[0], 1.0)


def stage_calls(aa, stage: str) -> tuple[int, int]:
    """(gradient calls, forward-only calls) that one batch of still-robust points costs in a stage at most, from
    the attack's own settings; counted on pyautoattack 0.2.0's loops with every point surviving (a point that
    falls ends its part early, and Square stops when none is left). At L1 APGD runs its iterations in three
    parts (each with a first gradient), and under EOT each gradient is eot_iter calls."""
    if stage in ("apgd-ce", "apgd-dlr"):
        a = aa.apgd
        return a.n_restarts * ((a.n_iter + (3 if a.use_largereps else 1)) * a.eot_iter + 1), 9
    if stage == "apgd-t":
        t = aa.apgd_targeted
        return (t.n_target_classes * t.n_restarts * (t.n_iter + (3 if t.use_largereps else 1)) + 1,
                2 * t.n_target_classes)
    if stage == "fab-t":
        return aa.fab.n_target_classes * aa.fab.n_iter + 1, aa.fab.n_target_classes * (aa.fab.n_iter + 4)
    if stage == "square":
        return 1, aa.square.n_queries + 11
    raise ValueError(f"unknown AutoAttack stage {stage!r}")


def standard_attack(model, *, norm: str, eps: float, seed: int = 0, device: str = "cpu", version: str = "standard"):
    """pyautoattack's AutoAttack configured as `version` does it (its parameters read by stage_calls)."""
    AutoAttack = import_autoattack()
    return AutoAttack(model, norm=norm, eps=eps, version=version, device=device, seed=seed)


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


def deterministic(model, x) -> bool:
    """Whether two forwards of one batch give the same logits up to float rounding (a GPU kernel may differ in
    the last bits; a model that samples differs by far more)."""
    with torch.no_grad():
        return torch.allclose(model(x).float(), model(x).float(), rtol=1e-5, atol=1e-6)


RANDOMIZED = ("the model is randomized (two forwards of one batch differ): AutoAttack's standard version does "
              "not average its gradients; evaluate it with --attacks autoattack-rand (EOT over 20 draws)")


def _pre_checks(aa, checks, x, y, batch_size, logger) -> None:
    """The checks one run_standard_evaluation call makes on the evaluated points' first batch, run once per
    evaluation (the staged calls below make them again on each stage's robust points)."""
    xb, yb = x[:batch_size], y[:batch_size]
    _reset_dynamic_counter(checks)
    if aa.version != "rand":  # as pyautoattack: the rand version is for randomized models
        checks.check_randomized(aa.get_logits, xb, yb, bs=batch_size, logger=logger)
    n_cls = checks.check_range_output(aa.get_logits, xb, logger=logger)
    checks.check_dynamic(aa.model, xb, False, logger=logger)
    checks.check_n_classes(n_cls, aa.attacks_to_run, aa.apgd_targeted.n_target_classes, aa.fab.n_target_classes,
                           logger=logger)


class StageProgress:
    """AutoAttack's progress. On a tqdm bar: the stage, the points still robust, and the stage's model calls at
    most (the bar's total, reset when a stage starts), so the ETA tqdm shows is the stage's own, from its own
    rate: FAB-T's slow calls do not make Square's look slow, nor the reverse. Without a bar (the output is not a
    terminal), `say` gets one line per stage when it ends. With neither it does nothing."""

    def __init__(self, bar, aa, stages, n: int, batch_size: int, say=None):
        self.bar, self.aa, self.stages, self.n, self.batch_size = bar, aa, list(stages), n, batch_size
        self.say, self.t0 = say, time.perf_counter()

    def budget(self, stage: str, robust: int) -> int:
        """The stage's calls at most: its own, and the forward that checks its images, per batch."""
        return -(-robust // self.batch_size) * (sum(stage_calls(self.aa, stage)) + 1)

    def _show(self, text: str) -> None:
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.refresh()

    def start(self, stage: str, robust: int) -> None:
        self.t0 = time.perf_counter()
        if self.bar is not None:
            i = self.stages.index(stage)
            self.bar.reset(total=self.budget(stage, robust))
            self._show(f"{stage} ({i + 1}/{len(self.stages)}), {robust} of {self.n} robust")

    def call(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def end(self, stage: str, robust: int) -> None:
        """The stage is over (perhaps early, its points fooled)."""
        if self.bar is not None:
            self._show(f"{stage} done, {robust} of {self.n} robust")
        elif self.say is not None:
            i = self.stages.index(stage)
            self.say(f"  {stage} ({i + 1}/{len(self.stages)}) done: {robust} of {self.n} robust, "
                     f"{time.perf_counter() - self.t0:.1f} s")


def run_autoattack(model, x, y, *, norm, eps, stages, seed=0, batch_size=250, state_path=None, bar=None,
                   version="standard", num_classes=10, say=None, early_exit=True, board=None, precision="fp32"):
    """Returns (x_adv, info); info['stage_acc'] maps each stage to the robust accuracy after it, info['aa_checks']
    each of pyautoattack's sanity checks to None (passed) or the warning it gave, info['workers'] how many
    processes computed its batches. bar: a tqdm bar to show the stage, the points still robust and an ETA on.
    early_exit: APGD drops a point once it is fooled inside the ball (bench.attacks.apgd_exit: the same flags,
    less work); False runs pyautoattack's loops as they are. board: a bench.store.batches.BatchBoard whose
    workers share every stage's batches (None: this process runs them all). precision: the search's, fp32
    (RobustBench's) or bf16 (autocast); each stage's fooled points, and so every flag, are decided by the fp32
    model either way, and a bf16 run is never RobustBench's standard."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown AutoAttack precision {precision!r}; known: {', '.join(PRECISIONS)}")
    from pyautoattack import checks

    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.WARNING)
    device = x.device
    wrapped = Float32Logits(model).eval()  # the fp32 model: it decides every flag
    searched = wrapped if precision == "fp32" else Float32Logits(Bf16Search(model)).eval()
    aa = standard_attack(searched, norm=norm, eps=eps, seed=seed, device=str(device), version=version)
    if early_exit:
        from bench.attacks.apgd_exit import with_early_exit

        with_early_exit(aa)
    settings = attack_settings(version, norm, num_classes)
    apply_settings(aa, settings)
    progress = StageProgress(bar, aa, stages, len(y), batch_size, say)
    wrapped.on_call = searched.on_call = progress.call
    catcher = _CheckLog()
    logger.addHandler(catcher)
    logger.propagate = False  # flagged checks are recorded in the row and printed once by bench.run
    try:
        x_adv, info = _run_stages(aa, checks, wrapped, x, y, stages, batch_size, state_path, catcher, logger,
                                  progress, board or LocalBatches())
    finally:
        logger.removeHandler(catcher)
        logger.propagate = True
    found = info["aa_checks"]
    if settings.targeted_loss != "dlr-targeted" or settings.untargeted_loss != "dlr":
        # pyautoattack warns that the DLR loss needs more classes: its cross-entropy counterpart ran instead
        if found.get("n_classes") and "DLR loss" in found["n_classes"]:
            found["n_classes"] = None
    info["deterministic"] = deterministic(model, x[:batch_size])  # not through `wrapped`: the bar counts its calls
    if not info["deterministic"] and version != "rand":
        found["randomized"] = RANDOMIZED
    info["rb_standard"] = settings.standard and precision == "fp32"
    if version == "rand":  # no targeted stage
        info["eot_iter"] = settings.eot_iter
    else:
        info["n_target_classes"] = settings.n_target_classes
    return x_adv, info


class LocalBatches:
    """A stage's batches run here, in order (a BatchBoard's interface, for one process alone)."""

    def __init__(self):
        self.workers: set[str] = set()  # who computed a batch: this process, once it has

    def run(self, stage, batches, compute) -> list[dict]:
        self.workers.update([worker_name()] if batches else [])
        return [{"idx": b, **compute(b)} for b in batches]


def stage_batches(idx: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The batches pyautoattack's run_standard_evaluation makes of a stage's robust points, in its order: it
    reseeds at each, so each batch's result depends only on its own points."""
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


def _run_stages(aa, checks, wrapped, x, y, stages, batch_size, state_path, catcher, logger, progress, board):
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
                 "checks": _classify(catcher.messages, {}), "workers": []}
    found = dict(state.get("checks", {}))
    board.workers.update(state.get("workers", []))
    flags, x_adv = state["flags"].clone(), state["x_adv"].to(device)
    resumed = list(state["done"])

    for stage in stages:
        if stage in state["done"]:
            continue
        t0 = time.perf_counter()
        idx = flags.nonzero().flatten()
        progress.start(stage, len(idx))
        if len(idx):
            aa.attacks_to_run = [stage]  # the standard version's parameters stay as _set_version left them

            def compute(b):  # one of pyautoattack's batches, as its own call would run it
                _reset_dynamic_counter(checks)
                adv, _ = aa.run_standard_evaluation(x[b.to(device)], y[b.to(device)], batch_size=batch_size)
                fooled = predict(wrapped, adv, batch_size) != y[b.to(device)]
                return {"fooled": fooled.cpu(), "adv": adv[fooled].cpu()}

            for r in board.run(stage, stage_batches(idx, batch_size), compute):
                done = r["idx"][r["fooled"]]
                flags[done] = False
                x_adv[done.to(device)] = r["adv"].to(device)
        progress.end(stage, int(flags.sum()))
        state["done"].append(stage)
        state["stage_acc"][stage] = flags.float().mean().item()
        state["seconds"][stage] = time.perf_counter() - t0
        state["flags"], state["x_adv"] = flags.clone(), x_adv.detach().cpu()
        state["workers"] = sorted(board.workers)
        # one stage per call hides Square's check from pyautoattack (it compares stages within one call): apply
        # its rule to the whole evaluation's stage accuracies, Square's against the stages before it
        checks.check_square_sr(dict(state["stage_acc"]), logger=logger)
        state["checks"] = found = _classify(catcher.messages, found)
        if state_path:
            save_atomic(state, state_path)
    aa_checks = {name: found.get(name) for name in CHECKS}
    from importlib.metadata import version

    return x_adv, {"stage_acc": state["stage_acc"], "stage_seconds": state["seconds"], "resumed_stages": resumed,
                   "aa_checks": aa_checks, "pyautoattack": version("pyautoattack"), "workers": len(board.workers)}
