"""The study's claims, each declared once as data, and the one engine that decides them.

A claim compares groups (a recipe with its settings, seeds pooled) on one metric: clean accuracy, PGD robust
accuracy at a threat model's smallest or largest eps, or a measure. The engine decides each comparison from
per-point flags where both groups have them (paired bootstrap interval and McNemar, bench.report.paired: held,
did not hold, inconclusive); where the rows lack flags it compares group means instead and says so on the line.
A claim judged on several comparisons (every SAM setting against standard) gets their verdict when they agree,
else "mixed", each named.

    decide(pm, s, flags) -> [line]    pm: per-model table, s: its summary (bench.report.study_report), flags: bench.report.results.Results.flags
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.attacks.registry import grid_attack, robustbench_attack
from bench.report.escape import md
from bench.report.results import RobustColumn

# the study's two attacks, from the catalogue: the one its eps grid runs (PGD, the seed paper's evaluation) and
# RobustBench's (AutoAttack); reports name their columns through these
GRID, PROTOCOL = grid_attack(), robustbench_attack()

# recipes that train on perturbed inputs: the "AT" side of every verdict; fgsm_rs is the cheapest (one step)
AT_RECIPES = ("pgd_at", "trades", "awp", "fgsm_rs")
FAMILIES = {"standard": ("standard",), "sam": ("sam",), "at": AT_RECIPES, "fgsm_rs": ("fgsm_rs",)}
RECIPE_ORDER = {"standard": 0, "sam": 1, "pgd_at": 2, "trades": 3, "awp": 4, "fgsm_rs": 5, "sam_at": 6}
MEANS = "group means"  # the label of a line decided without per-point flags


@dataclass(frozen=True)
class Claim:
    name: str  # the verdict's title; {norm} and {eps} are filled from the threat model and the metric's eps
    groups: tuple  # selectors "[each|best] FAMILY" (FAMILIES); compare: (A, B); order: every family, descending
    metric: str  # "clean", "pgd small" / "pgd large" (the norm's smallest / largest PGD eps), or a measure name
    norm: str = ""  # the threat model of a robust metric or measure ({norm} in a measure's name)
    threshold: float = 0.0  # on A - B, in accuracy (0.01 = one point)
    side: str = ">"  # the claim: A - B > threshold, or < threshold
    same_clean: float | None = None  # compare only when the groups' mean clean accuracies are this close
    kind: str = "compare"  # "compare" (A against B) or "order" (each family's means in the declared order)
    note: str = ""  # said after the verdict


_SAM_SMALL = "SAM raises small-eps robustness ({norm} {eps}, PGD)"
_AT_LARGE = "PGD-AT buys more robustness at large eps than SAM ({norm} {eps}, PGD)"
_BEST = "(Each side's best setting by mean, chosen on these same points.)"
_FEATURES = "Feature perturbation ordering standard ≥ SAM ≥ AT under a {norm} attack"
_WHY = "The paper's explanation expects SAM's effect to be a weaker form of AT's."

CLAIMS = (
    Claim(_SAM_SMALL, ("each sam", "standard"), "pgd small", "Linf"),
    Claim(_AT_LARGE, ("best at", "best sam"), "pgd large", "Linf", note=_BEST),
    Claim(_SAM_SMALL, ("each sam", "standard"), "pgd small", "L2"),
    Claim(_AT_LARGE, ("best at", "best sam"), "pgd large", "L2", note=_BEST),
    Claim("SAM keeps clean accuracy (within 1 point)", ("each sam", "standard"), "clean", threshold=-0.01),
    Claim("PGD-AT costs clean accuracy", ("each at", "standard"), "clean", side="<"),
    Claim("SAM vs the cheapest AT at equal clean accuracy ({norm} {eps}, PGD)", ("best sam", "each fgsm_rs"),
          "pgd small", "Linf", same_clean=0.01,
          note="Read with the trade-off plot (tradeoff.png): the cheapest AT is one FGSM step per batch."),
    Claim(_FEATURES, ("standard", "sam", "at"), "feature_shift", "Linf", kind="order", note=_WHY),
    Claim(_FEATURES, ("standard", "sam", "at"), "feature_shift", "L2", kind="order", note=_WHY),
)


def eps_columns(pm: pd.DataFrame, attack: str, norm: str) -> list:
    """The per-model table's RobustColumns of one attack (or "worst") and norm, eps ascending."""
    from zoo.pgd import parse_eps

    cols = [c for c in pm.columns if isinstance(c, RobustColumn) and c.attack == attack and c.norm == norm]
    return sorted(cols, key=lambda c: parse_eps(c.eps_str))


class _Study:
    """What the engine reads: group means, group names by family, flags."""

    def __init__(self, pm, s, flags):
        self.pm, self.s, self.flags = pm, s, flags or {}
        self.groups = sorted(s.index, key=lambda g: (RECIPE_ORDER.get(g.split()[0], 9), g))

    def mean(self, g, col) -> float:
        return float(self.s.loc[g, (col, "mean")]) if (col, "mean") in self.s.columns else np.nan

    def select(self, selector: str, col) -> list[str]:
        how, _, family = selector.rpartition(" ")
        found = [g for g in self.groups if g.split()[0] in FAMILIES[family]]
        if how == "best" and found:
            return [max(found, key=lambda g: -np.inf if np.isnan(self.mean(g, col)) else self.mean(g, col))]
        return found

    def column(self, claim: Claim):
        if claim.metric == "clean":
            return "clean"
        if claim.metric.startswith("pgd "):
            cols = eps_columns(self.pm, GRID, claim.norm)
            if not cols:
                return None
            return cols[0] if claim.metric == "pgd small" else cols[-1]
        key = f"{claim.metric}_{claim.norm}" if claim.norm else claim.metric
        return key if (key, "mean") in self.s.columns else None


def _verdict_of(diff: float, threshold: float, side: str) -> str:
    from bench.report.paired import HELD, NOT_HELD

    return HELD if (diff > threshold if side == ">" else diff < threshold) else NOT_HELD


def _comparison(st: _Study, claim: Claim, a: str, b: str, col) -> tuple[str, str] | None:
    """(verdict, 'A vs B: ...') from paired flags where both groups have them on this column, else from means."""
    from bench.report.paired import compare, describe, verdict

    fa, fb = st.flags.get(a, {}).get(col), st.flags.get(b, {}).get(col)
    if fa and fb and len({len(f) for f in (*fa.values(), *fb.values())}) == 1:
        p = compare(fa, fb)
        return verdict(p, claim.threshold, claim.side), f"{md(a)} vs {md(b)}: {describe(p, (md(a), md(b)))}"
    ma, mb = st.mean(a, col), st.mean(b, col)
    if np.isnan(ma) or np.isnan(mb):
        return None
    return (_verdict_of(ma - mb, claim.threshold, claim.side),
            f"{md(a)} vs {md(b)}: {100 * ma:.1f}% vs {100 * mb:.1f}%, {100 * (ma - mb):+.1f} points ({MEANS})")


def _title(claim: Claim, col) -> str:
    eps = getattr(col, "eps_str", "")
    return claim.name.format(norm=claim.norm, eps=eps)


def _compare(st: _Study, claim: Claim) -> str | None:
    col = st.column(claim)
    if col is None:
        return None
    side_a, side_b = (st.select(sel, col) for sel in claim.groups)
    pairs = [(a, b) for a in side_a for b in side_b if a != b]
    if not pairs:
        return None
    if claim.same_clean is not None:
        far = [(a, b) for a, b in pairs if abs(st.mean(a, "clean") - st.mean(b, "clean")) > claim.same_clean]
        if far:
            a, b = far[0]
            gap = abs(st.mean(a, "clean") - st.mean(b, "clean"))
            return (f"**{_title(claim, col)}:** not comparable at equal clean accuracy: clean "
                    f"{100 * st.mean(a, 'clean'):.1f}% ({md(a)}) vs {100 * st.mean(b, 'clean'):.1f}% ({md(b)}), a "
                    f"{100 * gap:.1f}-point gap (more than {100 * claim.same_clean:g}); robust "
                    f"{100 * st.mean(a, col):.1f}% vs {100 * st.mean(b, col):.1f}%." +
                    (f" {claim.note}" if claim.note else ""))
    results = [r for r in (_comparison(st, claim, a, b, col) for a, b in pairs) if r is not None]
    if not results:
        return None
    if len(results) == 1:
        body = f"{results[0][0]}: {results[0][1]}"
    else:
        verdicts = {v for v, _ in results}
        body = f"{verdicts.pop() if len(verdicts) == 1 else 'mixed'}: " + "; ".join(f"{t}, {v}" for v, t in results)
    return f"**{_title(claim, col)}:** {body}." + (f" {claim.note}" if claim.note else "")


def _order(st: _Study, claim: Claim) -> str | None:
    """The families' average means in the declared order, highest first (ties allowed): means only, since a
    measure has no per-point flags."""
    col = st.column(claim)
    if col is None:
        return None
    sides = [st.select(sel, col) for sel in claim.groups]
    if not all(sides):
        return None
    avg = [float(np.mean([st.mean(g, col) for g in side])) for side in sides]
    held = all(x >= y for x, y in zip(avg, avg[1:]))
    return (f"**{_title(claim, col)}:** {'held' if held else 'did not hold'}: relative penultimate-feature shift "
            + ", ".join(f"{md(g)} {st.mean(g, col):.3f}" for g in st.groups) +
            f" ({MEANS}, each family's average in the declared order)." + (f" {claim.note}" if claim.note else ""))


def decide(pm: pd.DataFrame, s: pd.DataFrame, flags: dict | None = None) -> list[str]:
    """Every declared claim the study can decide, in CLAIMS' order, as one markdown line each."""
    st = _Study(pm, s, flags)
    if "standard" not in s.index:
        return ["No standard-trained model: nothing to compare against."]
    out = []
    for claim in CLAIMS:
        line = (_order if claim.kind == "order" else _compare)(st, claim)
        if line is not None:
            out.append(line)
    return out
