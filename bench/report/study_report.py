"""The study's report: per-group (recipe + hyperparameters) mean ± std over seeds, plots, and the claims tested.

`per_model` and `summarize` are pure functions of rows (through the results model, bench.report.results); the
claims are decided by bench.report.claims; `write_report` writes REPORT.md and the PNGs.
"""
from __future__ import annotations

import json
import os

import pandas as pd

from bench.attacks.evaluation import Evaluation
from bench.report.claims import GRID, PROTOCOL, decide, eps_columns
from bench.report.escape import md, md_code
from bench.report.tables import eps_curve, missing_markdown
from bench.report.numbers import human, percent
from bench.report.results import CLEAN, CORRUPTIONS, RobustColumn
from bench.report.variants import (EPOCHS_NOTE, STEP_TIMES, STEPS_NOTE, check_step_row, epoch_seconds, step_times,
                                   variant_section)
from zoo.checkpoint import load_checkpoint
from zoo.files import write_text_atomic


def _column_name(board, line) -> RobustColumn | str | None:
    """The per-model table's column for a results-model line: a RobustColumn (an attack's, or the worst case's),
    or 'corruptions'."""
    if line["kind"] in ("attack", "worst"):
        return RobustColumn(line["attack"] if line["kind"] == "attack" else "worst", board.norm, line["eps_str"])
    return "corruptions" if line["kind"] == "corruptions" else None


def per_model(results, measures: list[dict]) -> pd.DataFrame:
    """One line per trained model, read from the results model (bench.report.results): clean (on the board with
    the most points), each (attack, norm, eps) robust accuracy and worst case (from the most points it was run
    on), AutoAttack's own clean accuracy (aa_clean: on AutoAttack's points), corruptions, measures. One line per
    seed group's trained model (a model read twice, as a .pt and from the Hub, is one line)."""
    groups = results.groups
    lines: dict = {}
    taken: dict = {}  # (model, column) -> points of the board the value came from
    for b in sorted(results.boards, key=lambda b: -b.n):
        for ln in b.records():
            if ln["status"] != "ok" or ln["acc"] is None:
                continue
            g = groups[ln["model_id"]]
            line = lines.setdefault(g["model"], {"model": ln["model"], "group": g["name"], "recipe": ln["recipe"],
                                                 "seed": ln["seed"]})
            name = "clean" if ln["kind"] == "clean" else _column_name(b, ln)
            if name is not None and (g["model"], name) not in taken:
                taken[(g["model"], name)] = b.n
                line[name] = ln["acc"]
            if ln["attack"] == PROTOCOL and "aa_clean" not in line:
                line["aa_clean"] = (b.cell(ln["model_id"], CLEAN) or {}).get("acc")
    for m in measures:
        trained = groups.get(m["model_id"], {}).get("model")
        if trained in lines:
            lines[trained].update({k: m[k] for k in m if k.startswith(("sharpness", "feature_shift"))})
    return pd.DataFrame(list(lines.values()))


def rank_key(results) -> RobustColumn | str | None:
    """The per-model column the report's groups are ranked by: the first board's rank column (RobustBench's first
    threat model, the most test points), named as per_model names it."""
    all_boards = results.boards
    if not all_boards or all_boards[0].rank_by is None:
        return None
    b = all_boards[0]
    if b.rank_by == CORRUPTIONS:
        return "corruptions"
    col = next(c for c in b.columns if c.key == b.rank_by)
    return RobustColumn(col.attack or "worst", b.norm, col.eps_str)


def summarize(pm: pd.DataFrame, rank_by: str | None = None) -> pd.DataFrame:
    """Mean and std over seeds per group; columns are (name, 'mean'|'std'|'n'). Groups are ranked by the
    leaderboard's rule on their means (bench.report.results.rank_groups): rank_by's mean (per_model's column name,
    see rank_key), then clean accuracy, then name."""
    from bench.report.results import rank_groups

    metrics = [c for c in pm.columns if c not in ("model", "group", "recipe", "seed")]
    g = pm.groupby("group")
    out = {}
    for c in metrics:
        out[(c, "mean")] = g[c].mean()
        out[(c, "std")] = g[c].std(ddof=1)
    out[("seeds", "n")] = g.size()
    s = pd.DataFrame(out)

    def mean(grp, key):
        col = "clean" if key == CLEAN else key
        v = s.loc[grp, (col, "mean")] if (col, "mean") in s.columns else None
        return None if v is None or pd.isna(v) else float(v)

    return s.loc[rank_groups(list(s.index), mean, rank_by, str)]


def _fmt(mean, std) -> str:
    if not percent(mean):
        return ""
    return percent(mean, 1) + (f" ± {percent(std, 1)}" if percent(std) else "")


def _label(c: RobustColumn) -> str:
    worst = c.attack == "worst"
    return f"Worst {c.norm} {c.eps_str}" if worst else Evaluation(c.attack, c.norm, c.eps_str).title


# the seed paper's evaluation: PGD-10 at Linf 1/255 and 2/255, L2 16/255 and 32/255
SEED_COLUMNS = [RobustColumn(GRID, "Linf", "1/255"), RobustColumn(GRID, "Linf", "2/255"),
                RobustColumn(GRID, "L2", "16/255"), RobustColumn(GRID, "L2", "32/255")]
HEADS = {"clean": "Clean", "corruptions": "Corruptions", "aa_clean": "Clean (AA points)"}


def results_table(pm: pd.DataFrame, s: pd.DataFrame) -> str:
    """Clean, the seed's four PGD columns first, the other PGD columns, then AutoAttack's columns next to the
    clean accuracy on AutoAttack's own points and the worst case over every attack on those points (Worst: a
    point counts only if PGD and AutoAttack both failed on it), then corruptions: no column compares different
    images."""
    pgd = eps_columns(pm, GRID, "Linf") + eps_columns(pm, GRID, "L2")
    seed = [c for c in SEED_COLUMNS if c in pgd]
    aa = eps_columns(pm, PROTOCOL, "Linf") + eps_columns(pm, PROTOCOL, "L2")
    aa += eps_columns(pm, "worst", "Linf") + eps_columns(pm, "worst", "L2")  # on AutoAttack's points
    cols = (["clean"] + seed + [c for c in pgd if c not in seed] + (["aa_clean"] + aa if aa else [])
            + (["corruptions"] if "corruptions" in pm.columns else []))
    head = ["Group", "seeds"] + [HEADS[c] if isinstance(c, str) else md(_label(c)) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for grp in s.index:
        vals = [_fmt(s.loc[grp, (c, "mean")], s.loc[grp, (c, "std")]) for c in cols]
        lines.append(f"| {md(grp)} | {int(s.loc[grp, ('seeds', 'n')])} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def measures_table(s: pd.DataFrame) -> str:
    keys = [k for k in ("sharpness_worst", "sharpness_random", "feature_shift_Linf", "feature_shift_L2")
            if (k, "mean") in s.columns]
    if not keys:
        return "(no measures)"
    lines = ["| Group | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for grp in s.index:
        vals = []
        for k in keys:
            m, sd = s.loc[grp, (k, "mean")], s.loc[grp, (k, "std")]
            vals.append(human(m) + ("" if pd.isna(sd) else f" ± {human(sd)}"))
        lines.append(f"| {md(grp)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _finish(ax, xlabel, ylabel, title=None, fontsize=7):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=fontsize)


def _save(fig, out, name) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_robust_vs_eps(ax, pm, s, norm):
    from zoo.pgd import parse_eps

    cols = eps_columns(pm, GRID, norm)
    scale = 255 if norm == "Linf" else 1
    xs = [parse_eps(c.eps_str) * scale for c in cols]
    for grp in s.index:
        keys = ["clean"] + cols
        ys = [100 * s.loc[grp, (k, "mean")] for k in keys]
        es = [0 if pd.isna(e) else 100 * e for e in (s.loc[grp, (k, "std")] for k in keys)]
        eps_curve(ax, xs, ys[1:], ys[0], grp, es[1:], es[0])
    _finish(ax, "eps" + (" (x/255)" if norm == "Linf" else ""), "PGD robust accuracy (%)",
            f"{norm}: robust accuracy against eps")


def _plot_tradeoff(ax, pm, s, norm):
    col = eps_columns(pm, GRID, norm)[0]
    pts = [(100 * s.loc[g, (col, "mean")], 100 * s.loc[g, ("clean", "mean")], g) for g in s.index]
    for x, y, g in pts:
        ax.scatter(x, y, s=45, label=g)
    front, best_y = [], -1
    for x, y, _ in sorted(pts, key=lambda t: -t[0]):  # Pareto front: no point both more robust and more accurate
        if y > best_y:
            front.append((x, y))
            best_y = y
    ax.plot(*zip(*sorted(front)), "k--", lw=1, label="Pareto front")
    _finish(ax, f"PGD robust accuracy (%), {norm} {col.eps_str}", "clean accuracy (%)", f"clean-robust trade-off ({norm})")


def _plots(pm, s, histories, out) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    norms = [n for n in ("Linf", "L2") if eps_columns(pm, GRID, n)]
    for name, draw in (("robust_vs_eps.png", _plot_robust_vs_eps), ("tradeoff.png", _plot_tradeoff)):
        if norms:
            fig, axes = plt.subplots(1, len(norms), figsize=(5.5 * len(norms), 4.2), squeeze=False)
            for ax, norm in zip(axes[0], norms):
                draw(ax, pm, s, norm)
            paths.append(_save(fig, out, name))
    if histories:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for name, h in histories.items():
            ep = [e["epoch"] for e in h]
            a1.plot(ep, [e["train_loss"] for e in h], label=name)
            a2.plot(ep, [100 * e["test_acc"] for e in h], label=name)
        _finish(a1, "epoch", "training loss (on the examples trained on)", fontsize=6)
        _finish(a2, "epoch", "clean test accuracy (%)", fontsize=6)
        fig.suptitle("training curves (first seed)")
        paths.append(_save(fig, out, "training_curves.png"))
    return paths


def _at_text(at: dict) -> str:
    return f"{at['norm']} {at['eps']}: {at['steps']} steps of {at['alpha']}"


def protocol(preset_cfg: dict, rows: list[dict], precisions: set[str]) -> list[str]:
    """How this run's protocol differs from the seed paper's code and from RobustBench's, in plain lines."""
    ats = [_at_text(a) for a in preset_cfg.get("at", ())]
    sam_ats = [f"rho {rho} with {_at_text(a)}" for rho, a in preset_cfg.get("sam_at", ())]
    aa = [r for r in rows if r.get("status") == "ok" and r.get("attack") == PROTOCOL]
    aa_seeds = sorted({r["attack_config"].get("seed") for r in aa if "attack_config" in r})
    pgd_n, aa_n = preset_cfg.get("eval_n"), preset_cfg.get("aa_n")
    return [
        "Differences from the seed paper's public code (its protocol: PreActResNet-18, 100 epochs, PGD-AT with "
        "5 steps by default, PGD-10 evaluation at Linf 1/255 and 2/255, L2 16/255 and 32/255):", "",
        f"- **PGD-AT steps per eps**: here {'; '.join(ats) or 'no PGD-AT'}"
        + (f"; SAM+AT {'; '.join(sam_ats)}" if sam_ats else "") + ". The seed uses 5 steps by default "
        "(alpha 2/255 at 8/255).",
        f"- **Precision of training forwards (attack forwards included)**: {', '.join(sorted(precisions)) or 'unknown'}; "
        "the seed runs fp32.",
        "- **BatchNorm during attacks**: attack forwards inside PGD-AT and SAM+AT normalise with batch statistics but "
        "leave the running statistics alone; the seed builds attacks in train mode, so every attack forward updates "
        "them.",
        "- **SAM's second pass**: BatchNorm running statistics are frozen on the perturbed pass; the seed updates "
        "them on both passes. SAM+AT's ascent direction here is the clean SAM gradient on the attacked batch; the "
        "seed's includes the attack's parameter gradients (it skips zero_grad after PGD's backward).",
        f"- **Seeds**: set (weights, data order, augmentation, attack starts; seeds {list(preset_cfg.get('seeds', []))}); "
        "the seed code sets none.",
        "- **Checkpoint**: the last epoch's, as in the seed code (no early stopping on robust accuracy).",
        f"- **Evaluation**: PGD-{preset_cfg.get('pgd_steps')} with one random start per example seeded by (seed, "
        "restart, index), on the first "
        f"{pgd_n} test points; the seed evaluates PGD-10 on the full test set, and its \"AutoAttack\" is a 5-step "
        "targeted APGD, where AutoAttack here is pyautoattack's standard version.", "",
        "Differences from RobustBench's protocol:", "",
        f"- **n**: AutoAttack on the first {aa_n} test points and PGD on the first {pgd_n}; RobustBench reports the "
        "first 10000 (the full CIFAR-10 test set).",
        f"- **AutoAttack seed**: {', '.join(str(s) for s in aa_seeds) or 'no AutoAttack row'} (fixed and in the rows' "
        "cache keys); AutoAttack itself uses the time when given none.",
        "- **Data**: " + ("the real CIFAR-10 subset (5085 training images), not the full training set."
                          if "npz:" in str(preset_cfg.get("data")) else f"{preset_cfg.get('data')}."),
    ]


def write_report(rows, measures, ckpt_paths, out, *, preset, preset_cfg, command, device, seconds, results) -> str:
    """REPORT.md; results: the rows' Results (bench.report.outputs.results_of, computed once for every output)."""
    os.makedirs(out, exist_ok=True)
    pm = per_model(results, measures)
    s = summarize(pm, rank_key(results))
    histories, precisions, timings = {}, set(), {}
    first_seed = min(preset_cfg["seeds"])
    group_of = {r["model"]: results.groups[r["model_id"]]["name"] for r in rows
                if r.get("status") == "ok" and r.get("model_id") in results.groups}
    for p in ckpt_paths:
        ck = load_checkpoint(p)
        precisions.add((ck.get("precision") or {}).get("train", "fp32 (recorded before precision was stored)"))
        name = os.path.basename(p).removesuffix(".pt")
        if ck.get("seed") == first_seed:
            histories[name] = ck["history"]
        if name in group_of:
            timings[(group_of[name], ck.get("seed"))] = ck["history"]
    plots = _plots(pm, s, histories, out)
    question = ("does a cheaper SAM keep SAM's robustness?" if preset_cfg.get("variants")
                else "does SAM alone improve adversarial robustness?")
    text = [f"# Study report: {question} (preset `{preset}`)", "",
            f"Produced by {md_code(command)} on {md(device)}; {seconds['train'] / 60:.1f} min of training and "
            f"{seconds.get('eval', 0) / 60:.1f} min of evaluation, as the checkpoints' epoch times and the rows' "
            "seconds record them (summed: workers run cells side by side, and reruns reuse both).", "",
            *missing_markdown(results.missing),
            "## What held on this run", ""]
    verdicts = decide(pm, s, results.flags)
    text += [f"- {c}" for c in verdicts]
    text += ["", "Each verdict compares two groups on the same test points. Where both have per-point flags: the "
             "difference (A minus B, in points, seeds averaged) with its 95% interval from a bootstrap that "
             "resamples seeds and test points, and McNemar's counts of points only one of them got right (seed by "
             "seed). **held**: the whole interval is on the claimed side; **did not hold**: the whole interval is "
             "on the other side; **inconclusive**: the interval straddles the claim's threshold, so this data "
             "cannot decide. Comparisons marked *group means* had no per-point flags (or compare a measure): they "
             "compare means over seeds, and with few seeds and test points a difference of a few points is within "
             "noise (see the ± columns and the 95% intervals in results.jsonl). The claims are declared in "
             "`bench/report/claims.py`.", ""]
    text += variant_section(results.flags, pm, *variant_costs(out, timings), scale=scale_text(preset_cfg, device))
    text += [
             "## Accuracy (%; mean ± std over seeds)", "",
             f"Clean, PGD and Corruptions: the first {preset_cfg['eval_n']} test points; the seed paper's "
             f"evaluation columns come first. PGD: {preset_cfg['pgd_steps']} steps, random start, step "
             f"2.5·eps/steps. AA: AutoAttack standard on the first {preset_cfg['aa_n']} test points, shown beside "
             "its own clean accuracy on those points (Clean (AA points)), so no column is compared with one "
             f"computed on other images. Corruptions: {corruptions_text(preset_cfg)}.", "",
             results_table(pm, s), "", "## Protocol", "", *protocol(preset_cfg, rows, precisions), "",
             "## Why: sharpness and feature perturbation", "",
             "sharpness_worst: loss increase at the worst weight perturbation of L2 radius 0.05 (5 ascent steps); "
             "sharpness_random: mean increase under random perturbations of that radius; feature_shift: mean "
             "relative change of penultimate features under a PGD attack at the eps named in the preset.", "",
             measures_table(s), "", "## Plots", ""]
    text += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
    text += ["", "## Preset", "", "```json", json.dumps(preset_cfg, indent=1, default=str), "```", ""]
    path = os.path.join(out, "REPORT.md")
    write_text_atomic(path, "\n".join(text))
    return path


def variant_costs(out: str, timings: dict) -> tuple[dict, str]:
    """(costs, what they are) for the variants' cost column: OUT/step_times.jsonl's side-by-side step times when
    the study folder holds them, else the checkpoints' epoch times."""
    from bench.store.rows import read_rows

    path = os.path.join(out, STEP_TIMES)
    rows = read_rows(path, check=check_step_row) if os.path.exists(path) else []
    return (step_times(rows), STEPS_NOTE) if rows else (epoch_seconds(timings), EPOCHS_NOTE)


def scale_text(preset_cfg: dict, device: str) -> str:
    """The study's scale in one sentence, said wherever a verdict could be read as more general than it is."""
    data = str(preset_cfg.get("data", ""))
    what = "the real CIFAR-10 subset (5085 training images)" if "npz:" in data else md(data)
    return (f"Scale: {md(str(preset_cfg.get('arch')))}, {preset_cfg.get('epochs')} epochs on {what}, "
            f"{len(preset_cfg.get('seeds', ()))} seeds, on {md(device)}; a small-data study: these verdicts say "
            "what holds at this scale, not on full CIFAR-10 with a large network.")


def corruptions_text(preset_cfg: dict) -> str:
    """What the study's Corruptions column averages, from its preset: the corruptions, severities and data."""
    from bench.corruptions.generator import CORRUPTIONS, SEVERITIES

    names = list(preset_cfg.get("corruptions") or CORRUPTIONS)
    return (f"the mean over {len(names)} corruption{'s' * (len(names) != 1)} ({', '.join(names)}) x severities "
            f"{SEVERITIES[0]}-{SEVERITIES[-1]}, regenerated with CIFAR-10-C's generator on the "
            f"{md(str(preset_cfg.get('data', '')))} test points (not the official files) unless stated in the rows")


HEADLINE = ("clean", RobustColumn(GRID, "Linf", "1/255"), RobustColumn(GRID, "Linf", "8/255"),
            RobustColumn(PROTOCOL, "Linf", "8/255"))


def headline_table(results, measures: list[dict] | None = None, columns=HEADLINE) -> str:
    """A study's headline, as the README shows it: each group's mean ± std over seeds on a few columns, ranked
    as the report ranks them. A pure function of the rows' Results (and measures), so a test can hold the README
    to it."""
    pm = per_model(results, measures or [])
    s = summarize(pm, rank_key(results))
    cols = [c for c in columns if (c, "mean") in s.columns]
    head = ["Group", "seeds"] + [HEADS.get(c, c) if isinstance(c, str) else md(_label(c)) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for grp in s.index:
        vals = [_fmt(s.loc[grp, (c, "mean")], s.loc[grp, (c, "std")]) for c in cols]
        lines.append(f"| {md(grp)} | {int(s.loc[grp, ('seeds', 'n')])} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
