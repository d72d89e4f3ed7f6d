"""The study's report: per-group (recipe + hyperparameters) mean ± std over seeds, plots, and the claims tested.

`summarize` and `claims` are pure functions of rows; `write_report` writes REPORT.md and the PNGs.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from bench.report.escape import md, md_code
from bench.report.leaderboard import missing_evaluations, missing_markdown, latest_ok
from zoo.checkpoint import load_checkpoint


def group_of(r) -> str:
    hp = r.get("hparams") or ""
    return f"{r['recipe']} {hp}".strip()


def per_model(rows: list[dict], measures: list[dict]) -> pd.DataFrame:
    """One line per checkpoint: clean, each (attack, norm, eps) robust accuracy, corruptions, measures."""
    df = latest_ok(rows)
    if df.empty:
        return df
    lines = {}
    for r in df.to_dict("records"):
        line = lines.setdefault(r["model_id"], {"model": r["model"], "group": group_of(r), "recipe": r["recipe"],
                                                "seed": r.get("train_seed")})
        if r["attack"] == "clean":
            line["clean"] = r["clean_acc"]
        elif r["attack"] == "autoattack":
            line[f"autoattack|{r['norm']}|{r['eps_str']}"] = r["robust_acc"]
            line["aa_clean"] = r["clean_acc"]  # clean accuracy on AutoAttack's own (fewer) points
        elif r["attack"] == "corruptions":
            line["corruptions"] = r["robust_acc"]
        else:
            line[f"{r['attack']}|{r['norm']}|{r['eps_str']}"] = r["robust_acc"]
    from bench.report.worst_case import worst_cases

    eps_strs = {(r["norm"], round(float(r["eps"]), 8)): r["eps_str"] for r in df.to_dict("records") if r["norm"]}
    best: dict = {}
    for (mid, _data, n, norm, eps), wc in worst_cases(rows).items():
        col = f"worst|{norm}|{eps_strs.get((norm, eps), eps)}"
        if mid in lines and len(wc.attacks) > 1 and n >= best.get((mid, col), 0):
            best[(mid, col)] = n  # the most points on which more than one attack ran
            lines[mid][col] = wc.acc
    for m in measures:
        if m["model_id"] in lines:
            lines[m["model_id"]].update({k: m[k] for k in m if k.startswith(("sharpness", "feature_shift"))})
    return pd.DataFrame(list(lines.values()))


def _eps_cols(df, attack, norm):
    from zoo.pgd import parse_eps

    """Columns 'attack|norm|eps' of one attack and norm, eps ascending; returned split as (attack, norm, eps)."""
    cols = [tuple(c.split("|")) for c in df.columns if c.count("|") == 2]
    return sorted((c for c in cols if c[0] == attack and c[1] == norm), key=lambda c: parse_eps(c[2]))


def summarize(pm: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per group; columns are (name, 'mean'|'std'|'n')."""
    metrics = [c for c in pm.columns if c not in ("model", "group", "recipe", "seed")]
    g = pm.groupby("group")
    out = {}
    for c in metrics:
        out[(c, "mean")] = g[c].mean()
        out[(c, "std")] = g[c].std(ddof=1)
    out[("seeds", "n")] = g.size()
    order = {"standard": 0, "sam": 1, "pgd_at": 2, "trades": 3, "awp": 4, "fgsm_rs": 5, "sam_at": 6}
    s = pd.DataFrame(out)
    return s.loc[sorted(s.index, key=lambda k: (order.get(k.split()[0], 9), k))]


def _key(c) -> str:
    return "|".join(c) if isinstance(c, tuple) else c


def _fmt(mean, std) -> str:
    if mean is None or pd.isna(mean):
        return ""
    return f"{100 * mean:.1f}" + ("" if std is None or pd.isna(std) else f" ± {100 * std:.1f}")


def _label(c) -> str:
    return f"{ {'autoattack': 'AA', 'worst': 'Worst'}.get(c[0], 'PGD')} {c[1]} {c[2]}"


# the seed paper's evaluation: PGD-10 at Linf 1/255 and 2/255, L2 16/255 and 32/255
SEED_COLUMNS = [("pgd", "Linf", "1/255"), ("pgd", "Linf", "2/255"), ("pgd", "L2", "16/255"), ("pgd", "L2", "32/255")]
HEADS = {"clean": "Clean", "corruptions": "Corruptions", "aa_clean": "Clean (AA points)"}


def results_table(pm: pd.DataFrame, s: pd.DataFrame) -> str:
    """Clean, the seed's four PGD columns first, the other PGD columns, then AutoAttack's columns next to the
    clean accuracy on AutoAttack's own points and the worst case over every attack on those points (Worst: a
    point counts only if PGD and AutoAttack both failed on it), then corruptions: no column compares different
    images."""
    pgd = _eps_cols(pm, "pgd", "Linf") + _eps_cols(pm, "pgd", "L2")
    seed = [c for c in SEED_COLUMNS if c in pgd]
    aa = _eps_cols(pm, "autoattack", "Linf") + _eps_cols(pm, "autoattack", "L2")
    aa += _eps_cols(pm, "worst", "Linf") + _eps_cols(pm, "worst", "L2")  # on AutoAttack's points
    cols = ["clean"] + seed + [c for c in pgd if c not in seed] + (["aa_clean"] + aa if aa else []) + \
        (["corruptions"] if "corruptions" in pm.columns else [])
    head = ["Group", "seeds"] + [HEADS[c] if isinstance(c, str) else md(_label(c)) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for grp in s.index:
        vals = [_fmt(s.loc[grp, (_key(c), "mean")], s.loc[grp, (_key(c), "std")]) for c in cols]
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
            vals.append(f"{m:.4f}" + ("" if pd.isna(sd) else f" ± {sd:.4f}"))
        lines.append(f"| {md(grp)} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


# recipes that train on perturbed inputs: the "AT" side of every verdict; fgsm_rs is the cheapest (one step)
AT_RECIPES = ("pgd_at", "trades", "awp", "fgsm_rs")


def point_flags(rows: list[dict]) -> dict:
    """{group: {column: {train seed: boolean flags}}} from rows with per-point flags: column 'clean' (right
    clean, from clean rows) and (attack, norm, eps_str) (robust under that attack)."""
    from bench.store.points import decode_states

    df = latest_ok(rows)
    out: dict = {}
    if df.empty or "points" not in df.columns:
        return out
    for r in df.to_dict("records"):
        if not isinstance(r.get("points"), dict) or r["attack"] == "corruptions":
            continue
        clean, robust = decode_states(r["points"])
        col = "clean" if r["attack"] == "clean" else (r["attack"], r["norm"], r["eps_str"])
        out.setdefault(group_of(r), {}).setdefault(col, {})[r.get("train_seed")] = clean if col == "clean" else robust
    return out


def _paired_line(flags, a: str, b: str, col, threshold: float, side: str):
    """(verdict, 'A vs B: +x points [lo, hi] (McNemar ...)') or None when either lacks flags on this column."""
    from bench.report.paired import compare, describe, verdict

    fa, fb = flags.get(a, {}).get(col), flags.get(b, {}).get(col)
    if not fa or not fb or len({len(f) for f in (*fa.values(), *fb.values())}) != 1:
        return None
    p = compare(fa, fb)
    return verdict(p, threshold, side), f"{md(a)} vs {md(b)}: {describe(p, (md(a), md(b)))}"


def _combined(results) -> str:
    """One verdict for a claim judged on several comparisons: theirs when they agree, else each named."""
    verdicts = [v for v, _ in results]
    return verdicts[0] if len(set(verdicts)) == 1 else "mixed"


def paired_claims(pm: pd.DataFrame, s: pd.DataFrame, flags: dict) -> list[str] | None:
    """The paper's claims decided from per-point flags (bench.report.paired); None when the rows have none."""
    if "standard" not in s.index or "standard" not in flags:
        return None
    sams = [g for g in s.index if g.startswith("sam ") or g == "sam"]
    ats = [g for g in s.index if g.split()[0] in AT_RECIPES]
    out = []

    def m(g, c):
        c = _key(c)
        return s.loc[g, (c, "mean")] if (c, "mean") in s.columns else np.nan

    def claim(title, comparisons, note=""):
        results = [r for r in comparisons if r is not None]
        if not results:
            return
        if len(results) == 1:
            body = f"{results[0][0]}: {results[0][1]}"
        else:
            body = f"{_combined(results)}: " + "; ".join(f"{text}, {v}" for v, text in results)
        out.append(f"**{title}:** {body}." + (f" {note}" if note else ""))

    for norm in ("Linf", "L2"):
        cols = _eps_cols(pm, "pgd", norm)
        if not cols or not sams:
            continue
        small, large = cols[0], cols[-1]
        claim(f"SAM raises small-eps robustness ({norm} {small[2]}, PGD)",
              [_paired_line(flags, g, "standard", small, 0.0, ">") for g in sams])
        if ats:
            at_best = max(ats, key=lambda g: m(g, large))
            sam_best = max(sams, key=lambda g: m(g, large))
            claim(f"PGD-AT buys more robustness at large eps than SAM ({norm} {large[2]}, PGD)",
                  [_paired_line(flags, at_best, sam_best, large, 0.0, ">")],
                  "(Each side's best setting by mean, chosen on these same points.)")
    if sams:
        claim("SAM keeps clean accuracy (within 1 point)",
              [_paired_line(flags, g, "standard", "clean", -0.01, ">") for g in sams])
    if ats:
        claim("PGD-AT costs clean accuracy", [_paired_line(flags, g, "standard", "clean", 0.0, "<") for g in ats])
    return out or None


def claims(pm: pd.DataFrame, s: pd.DataFrame, flags: dict | None = None) -> list[str]:
    """Plain-word verdicts on the paper's claims, with the numbers they rest on: from per-point flags (paired
    intervals, three verdicts) where the rows carry them, else from group means."""
    paired = paired_claims(pm, s, flags) if flags else None
    out = list(paired or [])
    if paired:
        return out + [c for c in _mean_claims(pm, s) if c.startswith(("**SAM vs the cheapest", "**Feature"))]
    return _mean_claims(pm, s)


def _mean_claims(pm: pd.DataFrame, s: pd.DataFrame) -> list[str]:
    """Verdicts from group means (rows without per-point flags, and the claims no point decides)."""
    out = []
    if "standard" not in s.index:
        return ["No standard-trained model: nothing to compare against."]
    sams = [g for g in s.index if g.startswith("sam ") or g == "sam"]
    ats = [g for g in s.index if g.split()[0] in AT_RECIPES]

    def m(g, c):
        c = _key(c)
        return s.loc[g, (c, "mean")] if (c, "mean") in s.columns else np.nan

    for norm in ("Linf", "L2"):
        cols = _eps_cols(pm, "pgd", norm)
        if not cols or not sams:
            continue
        small, large = cols[0], cols[-1]
        std_small = m("standard", small)
        best = max(sams, key=lambda g: m(g, small))
        held = m(best, small) > std_small
        out.append(f"**SAM raises small-eps robustness ({norm} {small[2]}, PGD):** "
                   f"{'held' if held else 'did not hold'}: best SAM ({md(best)}) {100 * m(best, small):.1f}% vs standard "
                   f"{100 * std_small:.1f}%; all SAM settings: "
                   + ", ".join(f"{md(g)} {100 * m(g, small):.1f}%" for g in sams) + ".")
        if ats:
            at_best = max(ats, key=lambda g: m(g, large))
            held = m(at_best, large) > max(m(g, large) for g in sams)
            out.append(f"**PGD-AT buys more robustness at large eps ({norm} {large[2]}):** "
                       f"{'held' if held else 'did not hold'}: {md(at_best)} {100 * m(at_best, large):.1f}% vs best SAM "
                       f"{100 * max(m(g, large) for g in sams):.1f}% and standard {100 * m('standard', large):.1f}%.")
    if sams:
        diffs = {g: m(g, "clean") - m("standard", "clean") for g in sams}
        worst = min(diffs, key=diffs.get)
        held = diffs[worst] > -0.01
        out.append(f"**SAM keeps clean accuracy (within 1 point):** {'held' if held else 'did not hold'}: standard "
                   f"{100 * m('standard', 'clean'):.1f}%, SAM " +
                   ", ".join(f"{md(g)} {100 * m(g, 'clean'):.1f}%" for g in sams) + ".")
    if ats:
        lost = {g: m(g, "clean") - m("standard", "clean") for g in ats}
        held = all(v < 0 for v in lost.values())
        out.append(f"**PGD-AT costs clean accuracy:** {'held' if held else 'did not hold'}: " +
                   ", ".join(f"{md(g)} {100 * lost[g]:+.1f} pts" for g in ats) + " against standard.")
    cheap = [g for g in s.index if g.split()[0] == "fgsm_rs"]
    small = (_eps_cols(pm, "pgd", "Linf") or [None])[0]
    if cheap and sams and small is not None:
        c = cheap[0]
        best = max(sams, key=lambda g: m(g, small))
        gap = m(best, "clean") - m(c, "clean")
        equal = abs(gap) <= 0.01
        sam_wins = m(best, small) >= m(c, small)
        out.append(f"**SAM vs the cheapest AT ({md(c)}) at equal clean accuracy:** " + (
            f"{'SAM at least as robust' if sam_wins else 'the cheapest AT more robust'}: {md(best)} "
            f"{100 * m(best, small):.1f}% vs {100 * m(c, small):.1f}% under PGD Linf {small[2]}, clean "
            f"{100 * m(best, 'clean'):.1f}% vs {100 * m(c, 'clean'):.1f}%." if equal else
            f"not comparable at equal clean accuracy: clean {100 * m(best, 'clean'):.1f}% ({md(best)}) vs "
            f"{100 * m(c, 'clean'):.1f}% ({md(c)}), a {100 * abs(gap):.1f}-point gap; read the trade-off plot "
            f"(tradeoff.png): robust under PGD Linf {small[2]} {100 * m(best, small):.1f}% vs "
            f"{100 * m(c, small):.1f}%."))
    for norm in ("Linf", "L2"):
        key = f"feature_shift_{norm}"
        if (key, "mean") not in s.columns or not sams or not ats:
            continue
        fs = {g: m(g, key) for g in s.index}
        ordered = fs["standard"] >= max(fs[g] for g in sams) and max(fs[g] for g in sams) >= min(fs[g] for g in ats)
        out.append(f"**Feature perturbation ordering standard ≥ SAM ≥ AT under a {norm} attack:** "
                   f"{'held' if ordered else 'did not hold'}: relative penultimate-feature shift " +
                   ", ".join(f"{md(g)} {fs[g]:.3f}" for g in s.index) +
                   ". The paper's explanation expects SAM's effect to be a weaker form of AT's.")
    return out


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

    cols = _eps_cols(pm, "pgd", norm)
    scale = 255 if norm == "Linf" else 1
    xs = [0] + [parse_eps(c[2]) * scale for c in cols]
    for grp in s.index:
        keys = ["clean"] + [_key(c) for c in cols]
        ys = [100 * s.loc[grp, (k, "mean")] for k in keys]
        es = [0 if pd.isna(e) else 100 * e for e in (s.loc[grp, (k, "std")] for k in keys)]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=grp)
    _finish(ax, "eps" + (" (x/255)" if norm == "Linf" else ""), "PGD robust accuracy (%)",
            f"{norm}: robust accuracy against eps")


def _plot_tradeoff(ax, pm, s, norm):
    col = _eps_cols(pm, "pgd", norm)[0]
    pts = [(100 * s.loc[g, (_key(col), "mean")], 100 * s.loc[g, ("clean", "mean")], g) for g in s.index]
    for x, y, g in pts:
        ax.scatter(x, y, s=45, label=g)
    front, best_y = [], -1
    for x, y, _ in sorted(pts, key=lambda t: -t[0]):  # Pareto front: no point both more robust and more accurate
        if y > best_y:
            front.append((x, y))
            best_y = y
    ax.plot(*zip(*sorted(front)), "k--", lw=1, label="Pareto front")
    _finish(ax, f"PGD robust accuracy (%), {norm} {col[2]}", "clean accuracy (%)", f"clean-robust trade-off ({norm})")


def _plots(pm, s, histories, out) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    norms = [n for n in ("Linf", "L2") if _eps_cols(pm, "pgd", n)]
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
    aa = [r for r in rows if r.get("status") == "ok" and r.get("attack") == "autoattack"]
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


def write_report(rows, measures, ckpt_paths, out, *, preset, preset_cfg, command, device, seconds) -> str:
    os.makedirs(out, exist_ok=True)
    pm = per_model(rows, measures)
    s = summarize(pm)
    histories, precisions = {}, set()
    first_seed = min(preset_cfg["seeds"])
    for p in ckpt_paths:
        ck = load_checkpoint(p)
        precisions.add((ck.get("precision") or {}).get("train", "fp32 (recorded before precision was stored)"))
        if ck.get("seed") == first_seed:
            histories[os.path.basename(p).removesuffix(".pt")] = ck["history"]
    plots = _plots(pm, s, histories, out)
    text = [f"# Study report: does SAM alone improve adversarial robustness? (preset `{preset}`)", "",
            f"Produced by {md_code(command)} on {md(device)}; {seconds['train'] / 60:.1f} min of training and "
            f"{seconds.get('eval', 0) / 60:.1f} min of evaluation, as the checkpoints' epoch times and the rows' "
            "seconds record them (summed: workers run cells side by side, and reruns reuse both).", "",
            *missing_markdown(missing_evaluations(rows)),
            "## What held on this run", ""]
    flags = point_flags(rows)
    verdicts = claims(pm, s, flags)
    text += [f"- {c}" for c in verdicts]
    if paired_claims(pm, s, flags):
        text += ["", "Each verdict compares two groups on the same test points: the difference (A minus B, in "
                 "points, seeds averaged) with its 95% interval from a bootstrap that resamples seeds and test "
                 "points, and McNemar's counts of points only one of them got right (seed by seed). **held**: the "
                 "whole interval is on the claimed side; **did not hold**: the whole interval is on the other side; "
                 "**inconclusive**: the interval straddles the claim's threshold, so this data cannot decide. "
                 "The SAM-vs-cheapest-AT and feature-shift lines compare group means.", ""]
    else:
        text += ["", "Verdicts compare group means (these rows carry no per-point flags); with few seeds and few "
                 "test points, differences of a few points are within noise (see the ± columns and the 95% "
                 "intervals in results.jsonl).", ""]
    text += [
             "## Accuracy (%; mean ± std over seeds)", "",
             f"Clean, PGD and Corruptions: the first {preset_cfg['eval_n']} test points; the seed paper's "
             f"evaluation columns come first. PGD: {preset_cfg['pgd_steps']} steps, random start, step "
             f"2.5·eps/steps. AA: AutoAttack standard on the first {preset_cfg['aa_n']} test points, shown beside "
             "its own clean accuracy on those points (Clean (AA points)), so no column is compared with one "
             "computed on other images. Corruptions: CIFAR-10-C parameters, regenerated with the CIFAR "
             "generator's algorithm (not the official files) unless stated in the rows.", "",
             results_table(pm, s), "", "## Protocol", "", *protocol(preset_cfg, rows, precisions), "",
             "## Why: sharpness and feature perturbation", "",
             "sharpness_worst: loss increase at the worst weight perturbation of L2 radius 0.05 (5 ascent steps); "
             "sharpness_random: mean increase under random perturbations of that radius; feature_shift: mean "
             "relative change of penultimate features under a PGD attack at the eps named in the preset.", "",
             measures_table(s), "", "## Plots", ""]
    text += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
    text += ["", "## Preset", "", "```json", json.dumps(preset_cfg, indent=1, default=str), "```", ""]
    path = os.path.join(out, "REPORT.md")
    with open(path, "w") as f:
        f.write("\n".join(text))
    return path
