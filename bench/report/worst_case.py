"""The worst case over every attack run: a point is robust only if it survived all of them.

Each attack's robust accuracy is an upper bound on the true one; RobustBench's "best known robust accuracy" is
the tightest of them. With per-point flags we can do better than the minimum of the bounds: a point PGD fooled
is not robust, even if AutoAttack missed it. For one model, dataset, norm and eps, every ok row of an attack
whose catalogue entry joins the worst case (bench.attacks.registry: PGD with any steps, restarts and seed,
AutoAttack and its versions, and every attack added since) that covers the first n test points contributes its
flags on those points; the worst case is their AND. Rows cover "the first n points in order", so a row on 1017 points
also covers a table of the first 64.

Pure functions of rows; rows without per-point flags (written before flags existed) cannot contribute.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.attacks.evaluation import eps_key
from bench.attacks.registry import detailed_label, in_worst_case
from bench.store.points import decode_states


def attack_label(row: dict) -> str:
    """PGD-10, PGD-20x5 (restarts), AA, AA-fast, AA-rand: the attack and what makes it stronger or weaker."""
    return detailed_label(row["attack"], row.get("attack_config") or {})


@dataclass
class WorstCase:
    robust: np.ndarray  # bool per point: survived every attack
    own: dict = field(default_factory=dict)  # attack label -> that attack's own robust flags on these points

    @property
    def n(self) -> int:
        return len(self.robust)

    @property
    def acc(self) -> float:
        return float(self.robust.mean()) if self.n else float("nan")

    @property
    def attacks(self) -> list[str]:
        return list(self.own)

    def missed_by(self, label: str) -> int:
        """Points the attack left robust that another attack fooled."""
        return int((self.own[label] & ~self.robust).sum())


def _flags(rows: list[dict]) -> dict:
    """(model_id, data, norm, eps_key) -> [(n, label, robust flags)], one entry per distinct row key."""
    out, seen = {}, set()
    for r in rows:
        if r.get("status") != "ok" or not in_worst_case(r.get("attack")) or "points" not in r or r["key"] in seen:
            continue
        seen.add(r["key"])
        _, robust = decode_states(r["points"])
        out.setdefault((r["model_id"], r["data"], r["norm"], eps_key(r["eps"])), []).append(
            (len(robust), attack_label(r), robust))
    return out


def worst_cases(rows: list[dict]) -> dict[tuple, WorstCase]:
    """{(model_id, data, n, norm, eps_key): WorstCase} for every n some attack row was run on."""
    out = {}
    for (mid, data, norm, eps), runs in _flags(rows).items():
        for n in sorted({m for m, _, _ in runs}):
            own = {}
            for m, label, robust in runs:
                if m >= n:
                    # two runs of one attack label (e.g. two PGD seeds) count as one attack: AND of both
                    own[label] = own[label] & robust[:n] if label in own else robust[:n].copy()
            worst = np.logical_and.reduce(list(own.values()))
            out[(mid, data, n, norm, eps)] = WorstCase(worst, dict(sorted(own.items())))
    return out


def attack_sanity_warnings(rows: list[dict]) -> list[str]:
    """RobustBench's attack should never leave more points robust than a floor attack of the catalogue (PGD) on
    the same model and ball (the latest row of each)."""
    from bench.attacks.registry import floor_attacks, label_of, robustbench_attack

    protocol, floors = robustbench_attack(), floor_attacks()
    best = {}
    for r in rows:
        if r.get("status") == "ok" and r["attack"] in (protocol, *floors):
            best[(r["model_id"], r["norm"], eps_key(r["eps"]), r["data"], r["n"], r["attack"])] = r["robust_acc"]
    out = []
    for (mid, norm, eps, data, n, attack), acc in best.items():
        if attack != protocol:
            continue
        for floor in floors:
            floor_acc = best.get((mid, norm, eps, data, n, floor))
            if floor_acc is not None and acc > floor_acc + 1e-9:
                out.append(f"{label_of(protocol)} ({acc:.4f}) is more accurate than {label_of(floor)} "
                           f"({floor_acc:.4f}) on {mid[:12]} {norm} eps={eps:.4g}: an attack may be broken")
    return out
