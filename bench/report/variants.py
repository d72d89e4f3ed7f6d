"""Does a cheaper SAM keep SAM's robustness? Per SAM variant, three paired answers with their intervals.

For each group of a SAM variant (zoo.recipes.sam_variants) in a study:
1. does it keep SAM's robustness gain over standard training: the variant against the standard group on the same
   test points (bench.report.paired: bootstrap over seeds and points, McNemar), held when the whole interval is
   above zero;
2. does it differ from SAM: the same comparison against the SAM group of the same radius, two-sided (higher or
   lower when the whole interval is on one side, else no difference resolved);
3. what did a step cost relative to SAM: step times measured side by side (scripts/speed.py --sam-variants
   --rows, OUT/step_times.jsonl), paired by round, else the ratio of the checkpoints' epoch seconds, paired by
   seed and epoch (every group trains the same number of steps per epoch); a geometric mean with a bootstrap
   interval that resamples the pairs' outer level (rounds or seeds), then the inner.

    variant_section(flags, pm, costs, cost_note, scale) -> markdown lines   (flags: Results.flags; costs: epoch_seconds(...))
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.attacks.evaluation import Evaluation
from bench.report.claims import GRID, PROTOCOL, eps_columns
from bench.report.escape import md
from bench.report.paired import compare, verdict
from zoo.recipes.sam_variants import VARIANTS

HIGHER, LOWER, SAME = "higher", "lower", "no difference resolved"


def epoch_seconds(histories: dict) -> dict:
    """{group: {seed: [seconds of epochs 2..E]}} from {(group, seed): a checkpoint's history}; the first epoch
    is left out (it holds the process's warm-up: allocations, caches)."""
    out: dict = {}
    for (group, seed), history in histories.items():
        secs = [e.get("seconds") for e in history[1:]]
        if secs and all(isinstance(s, (int, float)) and s > 0 for s in secs):
            out.setdefault(group, {})[seed] = secs
    return out


STEP_TIMES = "step_times.jsonl"  # beside a study's rows: step times measured side by side (scripts/speed.py)


def check_step_row(row) -> None:
    from bench.store.schema import RowError

    if not isinstance(row, dict) or row.get("kind") != "step_time" or row.get("mode") not in ("eager", "compiled"):
        raise RowError("not a step-time row")
    if not isinstance(row.get("recipe"), str) or not isinstance(row.get("round"), int) or isinstance(row.get("round"), bool):
        raise RowError("a step-time row names its recipe and round")
    t = row.get("seconds_per_step")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1e6:
        raise RowError("seconds_per_step is not a positive number")


def step_times(rows: list[dict], mode: str = "eager") -> dict:
    """{recipe: {round: [seconds per step]}} from step-time rows: each round timed every recipe once, side by
    side, so a variant and SAM pair by round."""
    out: dict = {}
    for r in rows:
        if r.get("mode") == mode:
            out.setdefault(r["recipe"], {}).setdefault(r["round"], []).append(float(r["seconds_per_step"]))
    return out


def cost_ratio(a: dict, b: dict, *, replicates: int = 4000, seed: int = 0) -> tuple[float, float, float] | None:
    """Geometric mean of A's epoch seconds over B's, paired by (seed, epoch), with its 95% bootstrap interval
    (seeds resampled, then epochs within each); None when they share no seed."""
    seeds = sorted(set(a) & set(b))
    logs = [np.log(np.asarray(a[s][:len(b[s])], float) / np.asarray(b[s][:len(a[s])], float)) for s in seeds]
    logs = [x for x in logs if len(x)]
    if not logs:
        return None
    rng = np.random.default_rng(seed)
    point = float(np.mean([x.mean() for x in logs]))
    reps = np.empty(replicates)
    for i in range(replicates):
        picked = rng.integers(0, len(logs), len(logs))
        reps[i] = np.mean([logs[k][rng.integers(0, len(logs[k]), len(logs[k]))].mean() for k in picked])
    return float(np.exp(point)), float(np.exp(np.quantile(reps, 0.025))), float(np.exp(np.quantile(reps, 0.975)))


def _recipe(group: str) -> str:
    return group.split()[0]


def _sam_for(variant: str, sams: list[str]) -> str | None:
    """The SAM group of the variant's radius (its name's rho token), else the first SAM group."""
    token = next((t for t in variant.split()[-1].split("-") if t.startswith("rho")), None)
    same = [g for g in sams if token and g.split()[-1] == token]
    return (same or sams or [None])[0]


def _paired(flags, a, b, col):
    fa, fb = flags.get(a, {}).get(col), flags.get(b, {}).get(col)
    if not fa or not fb or len({len(f) for f in (*fa.values(), *fb.values())}) != 1:
        return None
    return compare(fa, fb)


def _interval(p) -> str:
    return f"{100 * p.diff:+.1f} [{100 * p.lo:+.1f}, {100 * p.hi:+.1f}]"


def two_sided(lo: float, hi: float, at: float = 0.0) -> str:
    return HIGHER if lo > at else LOWER if hi < at else SAME


def answers(flags: dict, pm: pd.DataFrame, costs: dict) -> list[dict]:
    """One dict per variant group: the column judged on, and the three answers (None where data is missing)."""
    groups = sorted(set(pm["group"])) if "group" in pm.columns else []
    sams = [g for g in groups if _recipe(g) == "sam"]
    linf = eps_columns(pm, GRID, "Linf")
    col = linf[0] if linf else None
    out = []
    for v in (g for g in groups if _recipe(g) in VARIANTS):
        sam = _sam_for(v, sams)
        gain = _paired(flags, v, "standard", col) if col is not None else None
        vs_sam = _paired(flags, v, sam, col) if col is not None and sam else None
        mine, theirs = costs.get(v) or costs.get(_recipe(v), {}), costs.get(sam) or costs.get("sam", {})
        cost = cost_ratio(mine, theirs) if sam else None
        out.append({"group": v, "sam": sam, "column": col, "gain": gain, "vs_sam": vs_sam, "cost": cost})
    return out


def _cell(p, judge) -> str:
    return "no per-point flags" if p is None else f"{judge(p)}: {_interval(p)} points"


EPOCHS_NOTE = ("the checkpoints' epoch seconds, paired by seed and epoch (on a machine busy with other work they "
               "are noisy: `scripts/speed.py --sam-variants --rows OUT/step_times.jsonl` measures them side by side)")
STEPS_NOTE = ("step times measured side by side in one process, every round timing every recipe once, eager, "
              "paired by round (`scripts/speed.py --sam-variants --rows`, OUT/step_times.jsonl)")


def variant_section(flags: dict, pm: pd.DataFrame, costs: dict, cost_note: str = EPOCHS_NOTE,
                    scale: str = "") -> list[str]:
    """REPORT.md's section on the SAM variants: the headline table of the three answers, then each variant against
    SAM on the other columns. Empty when the study trained no variant."""
    found = answers(flags, pm, costs)
    if not found:
        return []
    col = found[0]["column"]
    where = f"PGD {col.norm} {col.eps_str}" if col is not None else "no PGD column"
    lines = ["## Does a cheaper SAM keep SAM's robustness?", "",
             f"Per variant, on the same test points ({md(where)}, the small radius at which SAM's gain is judged): "
             "its robustness gain over standard training (**held** when the whole 95% interval is above zero), "
             "its difference from SAM at the same radius (**higher**/**lower** when the whole interval is on one "
             "side), both in points with the paired bootstrap's interval; and a training step's cost relative to "
             f"SAM's: {cost_note}, as a geometric mean with a bootstrap interval." + (f" {scale}" if scale else ""),
             "",
             "| variant | gain over standard | vs SAM | cost per step vs SAM |", "|---|---|---|---|"]
    for a in found:
        cost = a["cost"]
        cost_text = ("no epoch times" if cost is None else
                     f"{'cheaper' if cost[2] < 1 else 'dearer' if cost[1] > 1 else SAME}: "
                     f"{cost[0]:.2f}x [{cost[1]:.2f}, {cost[2]:.2f}]")
        lines.append(f"| {md(a['group'])} | {_cell(a['gain'], verdict)} | "
                     f"{_cell(a['vs_sam'], lambda p: two_sided(p.lo, p.hi))} | {cost_text} |")
    others = ["clean"] + [cs[0] for cs in (eps_columns(pm, GRID, "L2"), eps_columns(pm, PROTOCOL, "Linf")) if cs]
    if others:
        heads = ["Clean" if c == "clean" else Evaluation(c.attack, c.norm, c.eps_str).title for c in others]
        lines += ["", "Each variant minus SAM on the other columns (points, 95% interval; AA: AutoAttack on its own, "
                  "fewer points):", "",
                  "| variant | " + " | ".join(md(h) for h in heads) + " |", "|---|" + "---|" * len(heads)]
        for a in found:
            cells = []
            for c in others:
                p = _paired(flags, a["group"], a["sam"], c) if a["sam"] else None
                cells.append("n/a" if p is None else f"{two_sided(p.lo, p.hi)}: {_interval(p)}")
            lines.append(f"| {md(a['group'])} | " + " | ".join(cells) + " |")
    return lines + [""]
