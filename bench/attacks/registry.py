"""Attacks: callables `attack(model, x, y) -> x_adv` on [0,1] inputs, built by name from one registry.

Each attack carries `config` (everything that changes its result: the cache key uses it) and, after a call,
`info` (per-stage accuracies and the like). Models run in eval mode and fp32 here: robust/not-robust
decisions are never taken under reduced precision.
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

    def __call__(self, model, x, y):
        self.info = {}
        return self.fn(self, model, x, y)


ATTACKS: dict[str, Callable] = {}


def register(name: str):
    def deco(factory):
        ATTACKS[name] = factory
        return factory
    return deco


def make_attack(name: str, *, norm: str = "Linf", eps: float = 8 / 255, **opts) -> Attack:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}, corruptions")
    check_norm(norm, THREAT_NORMS)
    return ATTACKS[name](norm=norm, eps=float(eps), **opts)


@register("clean")
def _clean(norm, eps, **_):
    return Attack("clean", {"attack": "clean"}, lambda self, model, x, y: x.clone())


@register("pgd")
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


def _autoattack(name, stages, version):
    def factory(norm, eps, seed=0, batch_size=250, num_classes=10, **_):
        from bench.attacks.autoattack import attack_settings, run_autoattack

        settings = attack_settings(version, norm, num_classes)

        def run(self, model, x, y):
            x_adv, self.info = run_autoattack(model, x, y, norm=norm, eps=eps, stages=stages, seed=seed,
                                              batch_size=batch_size, state_path=self.state_path, bar=self.bar,
                                              version=version, num_classes=num_classes, say=self.say)
            return x_adv

        cfg = {"attack": name, "norm": norm, "eps": round(eps, 10), "version": version, "stages": list(stages),
               "seed": seed, **settings.key_fields()}
        return Attack(name, cfg, run)
    return factory


# AutoAttack standard: APGD-CE, APGD-T (9 targets; 5 at L1), FAB-T (9 targets), Square (5000 queries); with
# fewer than 10 classes the targeted stages target every other class (attack_settings)
register("autoattack")(_autoattack("autoattack", ("apgd-ce", "apgd-t", "fab-t", "square"), "standard"))
# screening: the two gradient stages only, same parameters
register("autoattack-fast")(_autoattack("autoattack-fast", ("apgd-ce", "apgd-t"), "standard"))
# randomized defences: APGD-CE and APGD-DLR, each gradient the mean over 20 draws of the model (EOT)
register("autoattack-rand")(_autoattack("autoattack-rand", ("apgd-ce", "apgd-dlr"), "rand"))
