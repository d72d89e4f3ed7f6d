"""Attacks: callables `attack(model, x, y) -> x_adv` on [0,1] inputs, built by name from one registry.

Each attack carries `config` (everything that changes its result: the cache key uses it) and, after a call,
`info` (per-stage accuracies and the like). Models run in eval mode and fp32 here: robust/not-robust
decisions are never taken under reduced precision.

The registry is the attack catalogue: each entry says what the rest of the bench needs of an attack by its name
(its column's label, its strength in the rank rule, the norms it takes, whether its flags join the worst case,
whether RobustBench's protocol counts it, its cost per batch), so an attack is added in one file: its factory
and its `register` call (bench/attacks/__init__.py imports the file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from zoo.pgd import THREAT_NORMS, check_norm, pgd


@dataclass
class Attack:
    name: str
    config: dict
    fn: Callable
    info: dict = field(default_factory=dict)
    state_path: str | None = None  # where a resumable attack keeps its progress (set per evaluation)
    bar: object = None  # a tqdm bar an attack may show its stages and ETA on (set per evaluation)
    say: Callable | None = None  # without a bar: where it says one line per stage (set per evaluation)
    board: object = None  # a shared attack's bench.store.batches.BatchBoard (set per evaluation; None: alone)

    def __call__(self, model, x, y):
        self.info = {}
        return self.fn(self, model, x, y)


@dataclass(frozen=True)
class AttackEntry:
    """What the bench knows of an attack by its name."""
    factory: Callable  # (norm, eps, **options) -> Attack
    label: str  # its columns' short name ("AA 8/255")
    strength: float | None = None  # the rank rule: where several attacks ran, the lowest decides (None: never)
    norms: tuple = THREAT_NORMS  # the balls it attacks in
    worst_case: bool = True  # its per-point flags join the worst case over attacks (the Worst column)
    robustbench: bool = False  # RobustBench's protocol counts it: its rows can be the leaderboard's number
    # (config, seconds per gradient call, per forward) -> seconds one batch costs when every point survives (its
    # most; a point that falls ends its part early); None: no model loop to estimate
    cost: Callable | None = None
    keep_images: bool = False  # its images are always kept beside the rows (they are the evidence: imported)
    correct_only: bool = False  # it attacks only the points right on clean inputs (the others count as fooled)
    staged: bool = False  # it runs in stages, each shown on the evaluation's bar (or said on a line in a log)
    # the floor the protocol's attack is checked against: RobustBench's attack leaving more points robust than this
    # one on the same model and ball is a sign that an attack is broken (bench.run warns)
    floor: bool = False
    # (config, eps) -> the bench.run flags beyond --attacks/--norm/--eps that remake a row of it (the site's
    # "reproduce" command); None: none
    flags: Callable | None = None
    # the attack a study runs over its eps grid (the seed paper's evaluation: cheap, its rows independent of the
    # batch); one entry has it
    grid: bool = False
    detail: Callable | None = None  # config -> its label with what makes it stronger or weaker ("PGD-20x5")
    # its batches can be shared by every process on one results folder (bench.store.batches): one that finds the
    # evaluation held by another joins it, with the one-process row as the result
    shared: bool = False


ATTACKS: dict[str, AttackEntry] = {}


def register(name: str, *, label: str, **entry):
    def deco(factory):
        ATTACKS[name] = AttackEntry(factory, label, **entry)
        return factory
    return deco


def label_of(name: str) -> str:
    """An attack's short name in tables ('AA'); an unknown name is itself."""
    return ATTACKS[name].label if name in ATTACKS else name


NEVER_DECIDES = 9.0  # strength_of an attack that never decides a rank


def strength_of(name: str) -> float:
    """Its place in the rank rule (lowest decides); attacks that never decide, and unknown ones, come last."""
    entry = ATTACKS.get(name)
    return NEVER_DECIDES if entry is None or entry.strength is None else entry.strength


def decides_rank(name: str) -> bool:
    """The rank rule counts it (it has a strength): its rows can rank a table, a plot or a claim."""
    return strength_of(name) < NEVER_DECIDES


def counts_for_robustbench(name: str) -> bool:
    """Its rows can be RobustBench's number (the protocol's attack: AutoAttack standard)."""
    return name in ATTACKS and ATTACKS[name].robustbench


def robustbench_attack() -> str:
    """The name of the attack RobustBench's protocol runs."""
    return next(name for name, entry in ATTACKS.items() if entry.robustbench)


def detailed_label(name: str, config: dict) -> str:
    """An attack's label with what its config changes in its strength (the worst case names its attacks so):
    PGD-10, PGD-20x5 (restarts), AA, AA-fast."""
    entry = ATTACKS.get(name)
    return label_of(name) if entry is None or entry.detail is None else entry.detail(config)


def stage_order() -> list[str]:
    """Every staged attack's stages, in the order they run (a stage in several is placed by its first)."""
    return list(dict.fromkeys(s for entry in ATTACKS.values() for s in getattr(entry.factory, "stages", ())))


def grid_attack() -> str:
    """The name of the attack a study runs over its eps grid (grid=True)."""
    return next(name for name, entry in ATTACKS.items() if entry.grid)


def floor_attacks() -> list[str]:
    """The attacks the protocol's attack is checked against (floor=True)."""
    return [name for name, entry in ATTACKS.items() if entry.floor]


def run_flags(name: str, config: dict, eps: float) -> list[str]:
    """The bench.run flags, beyond the evaluation's own, that remake a row of this attack with this config."""
    entry = ATTACKS.get(name)
    return [] if entry is None or entry.flags is None else entry.flags(config, eps)


def in_worst_case(name: str) -> bool:
    return name in ATTACKS and ATTACKS[name].worst_case


def has_column(name: str) -> bool:
    """An attack with a robust-accuracy column of its own (every attack but clean)."""
    return name in ATTACKS and name != "clean"


def column_order(name: str) -> int:
    """Attacks' columns within one eps come in the order they were registered."""
    return list(ATTACKS).index(name) if name in ATTACKS else len(ATTACKS)


def make_attack(name: str, *, norm: str = "Linf", eps: float = 8 / 255, **opts) -> Attack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}, corruptions")
    check_norm(norm, THREAT_NORMS)
    if norm not in ATTACKS[name].norms:
        raise ValueError(f"{name} attacks in {', '.join(ATTACKS[name].norms)}, not {norm}; pick one of those norms "
                         "or another attack")
    return ATTACKS[name].factory(norm=norm, eps=float(eps), **opts)


def _pgd_cost(config: dict, t_grad: float, t_fwd: float) -> float:
    return config["restarts"] * (config["steps"] * t_grad + t_fwd)


def _pgd_flags(config: dict, eps: float) -> list[str]:
    out = ["--pgd-steps", str(config.get("steps")), "--restarts", str(config.get("restarts", 1))]
    steps, alpha = config.get("steps"), config.get("alpha")
    if steps and alpha is not None and abs(alpha - 2.5 * eps / steps) > 1e-9:  # not the default step 2.5 eps/steps
        out += ["--pgd-alpha", f"{alpha:.10g}"]
    return out


def _pgd_detail(config: dict) -> str:
    restarts = config.get("restarts", 1)
    return f"PGD-{config.get('steps', '?')}" + (f"x{restarts}" if restarts and restarts > 1 else "")


def _autoattack_cost(config: dict, t_grad: float, t_fwd: float) -> float:
    from bench.attacks.autoattack import stage_calls, stage_overhead, standard_attack

    aa = standard_attack(torch.nn.Identity(), norm=config["norm"], eps=config["eps"])
    total = 0.0
    for stage in config["stages"]:
        grads, fwds = stage_calls(aa, stage)
        total += (grads * t_grad + fwds * t_fwd) * stage_overhead(stage)
    return total


@register("clean", label="clean", worst_case=False)
def _clean(norm, eps, **_):
    return Attack("clean", {"attack": "clean"}, lambda self, model, x, y: x.clone())


@register("pgd", label="PGD", strength=3, norms=("Linf", "L2"), cost=_pgd_cost, floor=True, flags=_pgd_flags,
          grid=True, detail=_pgd_detail)
def _pgd(norm, eps, pgd_steps=20, pgd_alpha=None, restarts=1, seed=0, batch_size=250, **_):
    check_norm(norm)  # Linf and L2: L1 is AutoAttack's (APGD-L1)
    alpha = 2.5 * eps / pgd_steps if pgd_alpha is None else pgd_alpha
    batch_size = batch_size or 250

    def run(self, model, x, y):
        # example i's random starts are seeded by (seed, restart, i): rows do not depend on the batch size
        return torch.cat([pgd(model, x[i:i + batch_size], y[i:i + batch_size], norm=norm, eps=eps, alpha=alpha,
                              steps=pgd_steps, restarts=restarts, example_ids=range(i, min(i + batch_size, len(x))),
                              seed=seed)
                          for i in range(0, len(x), batch_size)])

    cfg = {"attack": "pgd", "norm": norm, "eps": round(eps, 10), "steps": pgd_steps, "alpha": round(alpha, 10),
           "restarts": restarts, "seed": seed, "loss": "ce", "rand_init": "per-example(seed,restart,index)"}
    return Attack("pgd", cfg, run)


AUTOATTACK_BATCH = 250  # AutoAttack's working batch unless --batch-size says otherwise (the CPU default)


def _autoattack(name, stages, version):
    def factory(norm, eps, seed=0, batch_size=AUTOATTACK_BATCH, num_classes=10, precision="fp32", **_):
        from bench.attacks.autoattack import attack_settings, run_autoattack

        batch_size = batch_size or AUTOATTACK_BATCH
        settings = attack_settings(version, norm, num_classes)

        def run(self, model, x, y):
            x_adv, self.info = run_autoattack(model, x, y, norm=norm, eps=eps, stages=stages, seed=seed,
                                              batch_size=batch_size, state_path=self.state_path, bar=self.bar,
                                              version=version, num_classes=num_classes, say=self.say,
                                              board=self.board, precision=precision)
            return x_adv

        cfg = {"attack": name, "norm": norm, "eps": round(eps, 10), "version": version, "stages": list(stages),
               "seed": seed, **settings.key_fields()}
        if batch_size != AUTOATTACK_BATCH:  # the batch is part of the result: pyautoattack draws random starts
            cfg["batch"] = batch_size  # per batch of the points still robust (the default's rows keep their key)
        if precision != "fp32":  # the search's arithmetic changes which points it finds (fp32 rows keep their key)
            cfg["search_precision"] = precision
        return Attack(name, cfg, run)
    factory.stages = tuple(stages)  # what stage_order reads
    return factory


# AutoAttack standard: APGD-CE, APGD-T (9 targets; 5 at L1), FAB-T (9 targets), Square (5000 queries); with
# fewer than 10 classes the targeted stages target every other class (attack_settings)
register("autoattack", label="AA", strength=0, robustbench=True, cost=_autoattack_cost,
         correct_only=True, staged=True, shared=True)(
    _autoattack("autoattack", ("apgd-ce", "apgd-t", "fab-t", "square"), "standard"))
# screening: the two gradient stages only, same parameters
register("autoattack-fast", label="AA-fast", strength=2, cost=_autoattack_cost, correct_only=True,
         staged=True, shared=True)(
    _autoattack("autoattack-fast", ("apgd-ce", "apgd-t"), "standard"))
# randomized defences: APGD-CE and APGD-DLR, each gradient the mean over 20 draws of the model (EOT)
register("autoattack-rand", label="AA-rand", strength=1, cost=_autoattack_cost, correct_only=True,
         staged=True, shared=True)(
    _autoattack("autoattack-rand", ("apgd-ce", "apgd-dlr"), "rand"))
