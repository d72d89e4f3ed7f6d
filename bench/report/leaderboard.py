"""Leaderboards: pure functions of result rows -> markdown, and the writer of leaderboard.md with its PNG plots."""
from __future__ import annotations

import os

import pandas as pd

from bench.report.escape import md
from zoo.files import write_text_atomic

ATTACK_LABEL = {"pgd": "PGD", "autoattack": "AA", "autoattack-fast": "AA-fast"}


def latest_ok(rows: list[dict]) -> pd.DataFrame:
    """One row per (model, attack, norm, eps, data, n): the latest successful one."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return pd.DataFrame()
    df = pd.DataFrame(ok)
    df["eps_key"] = df["eps"].round(8)
    df["norm"] = df["norm"].fillna("")
    return df.sort_values("time").drop_duplicates(["model_id", "attack", "norm", "eps_key", "data", "n"], keep="last")


def missing_evaluations(rows: list[dict]) -> list[dict]:
    """Every evaluation asked for that has no result: its latest row failed and no row with its key is ok.
    One entry each: model, model_id, evaluation (attack, norm, eps), attack, norm, eps_key, data, n, reason and
    how many times it failed. A model that did not load is one entry with attack 'load'."""
    ok = {r.get("key") for r in rows if r.get("status") == "ok"}
    latest, failures = {}, {}
    for r in rows:
        key = r.get("key")
        if r.get("status") == "failed" and key not in ok:
            latest[key] = r
            failures[key] = failures.get(key, 0) + 1
    out = []
    for key, r in latest.items():
        attack = "load" if r.get("stage") == "load" else str(r.get("attack") or "")
        norm = r.get("norm") or ""
        eps = r.get("eps_str") if norm else ""
        eps_key = round(float(r.get("eps") or 0.0), 8) if isinstance(r.get("eps"), (int, float)) else 0.0
        out.append({"model": str(r.get("model") or r.get("path") or "?"), "model_id": r.get("model_id"),
                    "evaluation": " ".join(str(x) for x in (ATTACK_LABEL.get(attack, attack), norm, eps) if x),
                    "attack": attack, "norm": norm, "eps_key": eps_key, "eps_str": eps, "data": r.get("data"),
                    "n": r.get("n"), "reason": str(r.get("error") or "no reason recorded"),
                    "failures": failures[key]})
    return sorted(out, key=lambda m: (m["model"], m["evaluation"]))


def missing_markdown(missing: list[dict]) -> list[str]:
    """The section every output carries when an evaluation is missing, so a table never looks complete."""
    if not missing:
        return []
    out = [f"## Missing evaluations ({len(missing)})", "",
           "These evaluations were asked for and have no result: their rows failed (they are retried on a rerun, "
           "up to the retry bound; `--retry-failed` runs them regardless). Tables show `failed` where their "
           "numbers would be.", "",
           "| Model | Evaluation | Data | Failed | Reason |", "|---|---|---|---|---|"]
    for m in missing:
        out.append(f"| {md(m['model'])} | {md(m['evaluation'])} | {md(str(m['data']))}, n={md(str(m['n']))} | "
                   f"{m['failures']}x | {md(m['reason'][:200])} |")
    return out + [""]


FLAGS = "flagged"  # table.attrs key: per row, the cells whose AutoAttack run raised one of pyautoattack's checks


def _flagged(row) -> bool:
    checks = row.get("aa_checks") if hasattr(row, "get") else None
    return isinstance(checks, dict) and any(checks.values())


def _pct(v) -> str:
    return "" if v is None or pd.isna(v) else f"{100 * v:.2f}"


def _recipe(r) -> str:
    hp = r.get("hparams") or ""
    return f"{r.get('recipe', '')} {hp}".strip()


def robust_columns(df: pd.DataFrame, norm: str) -> list[tuple[str, float, str]]:
    """(attack, eps, eps_str) present for this norm, attacks in a fixed order, eps ascending."""
    sub = df[df["norm"] == norm]
    cols = sub[["attack", "eps_key", "eps_str"]].drop_duplicates(["attack", "eps_key"])
    return in_column_order((a, e, s) for a, e, s in cols.itertuples(index=False))


def in_column_order(cols) -> list[tuple[str, float, str]]:
    """(attack, eps, eps_str) columns, eps ascending, attacks in ATTACK_LABEL's order within an eps."""
    order = {a: i for i, a in enumerate(ATTACK_LABEL)}
    return sorted(cols, key=lambda t: (t[1], order.get(t[0], 9)))


STRENGTH = {"autoattack": 0, "autoattack-fast": 1, "pgd": 2}  # which attack decides the rank (strongest first)


def rank_choice(cols, has_worst) -> tuple | None:
    """THE rank rule, for every table (markdown, site, report): most robust first by the tightest upper bound at
    the largest eps: the worst case over attacks where more than one attack ran there, else the strongest attack
    run there (AA over AA-fast over PGD); ties by clean accuracy, then name. cols: (attack, eps, eps_str);
    has_worst(eps_str): whether the table has that eps's worst case. Returns ("worst", eps_str),
    ("attack", attack, eps_str), or None for a table without attacks (ranked by corruptions, else clean)."""
    if not cols:
        return None
    eps = max(e for _, e, _ in cols)
    top = [c for c in cols if c[1] == eps]
    if has_worst(top[0][2]):
        return ("worst", top[0][2])
    a, _, s = min(top, key=lambda t: STRENGTH.get(t[0], 9))
    return ("attack", a, s)


def _rank_columns(cols, table) -> list[str]:
    choice = rank_choice(cols, lambda s: f"Worst {s}" in table.columns)
    if choice is None:
        return ["Corruptions"] if table["Corruptions"].notna().any() else []
    return [f"Worst {choice[1]}" if choice[0] == "worst" else f"{ATTACK_LABEL.get(choice[1], choice[1])} {choice[2]}"]


MISSING = "missing"  # table.attrs key: per row, the columns whose evaluation failed (no number to show)
WORST = "worst"  # table.attrs key: per row, {worst-case column: (contributing attacks, {attack: points it missed})}


def leaderboard_tables(rows: list[dict]) -> dict[tuple[str, str, int], pd.DataFrame]:
    """{(norm, data, n): table} with columns Model, Arch, Recipe, Clean, <attack eps>..., Worst <eps> (where more
    than one attack ran at that eps: a point counts only if it survived all of them), Corruptions."""
    from bench.report.worst_case import worst_cases

    df = latest_ok(rows)
    if df.empty:
        return {}
    worst = worst_cases(rows)
    missing = [m for m in missing_evaluations(rows) if m["attack"] in ATTACK_LABEL]
    tables = {}
    for (data, n), part in df.groupby(["data", "n"]):
        here = [m for m in missing if m["data"] == data and m["n"] == n and m["model_id"] in set(part["model_id"])]
        norms = sorted({x for x in part["norm"].unique() if x} | {m["norm"] for m in here}) or [""]
        for norm in norms:
            cols = robust_columns(part, norm) if norm else []
            for m in here:  # a failed evaluation keeps its column, showing `failed`
                if m["norm"] == norm and not any(a == m["attack"] and e == m["eps_key"] for a, e, _ in cols):
                    cols.append((m["attack"], m["eps_key"], m["eps_str"]))
            cols = in_column_order(cols)
            lines = []
            for mid, m in part.groupby("model_id"):
                first = m.iloc[0]
                line = {"Model": first["model"], "Arch": first.get("arch", ""), "Recipe": _recipe(first)}
                clean = m[m["attack"] == "clean"]
                line["Clean"] = clean.iloc[0]["clean_acc"] if len(clean) else m.iloc[0]["clean_acc"]
                flagged = []
                for a, e, s in cols:
                    hit = m[(m["attack"] == a) & (m["norm"] == norm) & (m["eps_key"] == e)]
                    line[f"{ATTACK_LABEL.get(a, a)} {s}"] = hit.iloc[0]["robust_acc"] if len(hit) else None
                    if len(hit) and _flagged(hit.iloc[0]):
                        flagged.append(f"{ATTACK_LABEL.get(a, a)} {s}")
                line[FLAGS] = flagged
                line[MISSING] = [f"{ATTACK_LABEL.get(x['attack'], x['attack'])} {x['eps_str']}" for x in here
                                 if x["model_id"] == mid and x["norm"] == norm
                                 and m[(m["attack"] == x["attack"]) & (m["norm"] == norm)
                                       & (m["eps_key"] == x["eps_key"])].empty]
                line[WORST] = {}
                for e, s in dict.fromkeys((e, s) for _, e, s in cols):
                    wc = worst.get((mid, data, int(n), norm, e))
                    if wc is not None and len(wc.attacks) > 1:
                        line[f"Worst {s}"] = wc.acc
                        line[WORST][f"Worst {s}"] = (wc.attacks, {a: wc.missed_by(a) for a in wc.attacks})
                corr = m[m["attack"] == "corruptions"]
                line["Corruptions"] = corr.iloc[0]["robust_acc"] if len(corr) else None
                lines.append(line)
            table = pd.DataFrame(lines)
            by = _rank_columns(cols, table)
            table = table.sort_values(by + ["Clean", "Model"], ascending=[False] * (len(by) + 1) + [True],
                                      na_position="last").reset_index(drop=True)
            table.attrs[FLAGS] = table.pop(FLAGS).tolist()  # per row, in the table's order
            table.attrs[MISSING] = table.pop(MISSING).tolist()
            table.attrs[WORST] = table.pop(WORST).tolist()
            # each eps's worst case right after that eps's attack columns
            head = ["Model", "Arch", "Recipe", "Clean"]
            ordered = []
            for _, _, s in cols:
                for c in (f"{ATTACK_LABEL.get(a, a)} {s}" for a, _, s2 in cols if s2 == s):
                    if c not in ordered:
                        ordered.append(c)
                if f"Worst {s}" in table.columns and f"Worst {s}" not in ordered:
                    ordered.append(f"Worst {s}")
            table = table[head + ordered + ["Corruptions"]]
            if table["Corruptions"].isna().all():
                table = table.drop(columns=["Corruptions"])
            tables[(norm, data, int(n))] = table
    # evaluations that failed on points no other row of theirs covers (AutoAttack on its own first n): a table of
    # their own, so that every missing number still has its place, marked `failed`
    by_model = {mid: m.iloc[-1] for mid, m in df.groupby("model_id")}
    alone = {}
    for x in missing:
        if x["norm"] and (x["norm"], x["data"], x["n"]) not in tables and x["model_id"] in by_model:
            alone.setdefault((x["norm"], x["data"], x["n"]), []).append(x)
    for key, group in alone.items():
        cols = in_column_order({(x["attack"], x["eps_key"], x["eps_str"]) for x in group})
        names = [f"{ATTACK_LABEL.get(a, a)} {s}" for a, _, s in cols]
        lines, failed = [], []
        for mid in dict.fromkeys(x["model_id"] for x in group):
            first = by_model[mid]
            lines.append({"Model": first["model"], "Arch": first.get("arch", ""), "Recipe": _recipe(first),
                          "Clean": None, **{c: None for c in names}})
            failed.append([f"{ATTACK_LABEL.get(x['attack'], x['attack'])} {x['eps_str']}" for x in group
                           if x["model_id"] == mid])
        table = pd.DataFrame(lines)
        table.attrs[FLAGS], table.attrs[MISSING], table.attrs[WORST] = [[]] * len(lines), failed, [{}] * len(lines)
        tables[(key[0], key[1], int(key[2]))] = table
    return tables


def to_markdown(tables: dict, missing: list[dict] | None = None) -> str:
    out = ["# Leaderboard", "",
           "Accuracy in % on the first n test points. Robust columns: a point counts only if it is classified "
           "right clean and under the attack. AA = AutoAttack (standard), PGD = our PGD with random start. "
           "Corruptions = mean over 15 CIFAR-10-C corruptions x 5 severities.", "", *missing_markdown(missing or [])]
    marked = False
    for (norm, data, n), table in sorted(tables.items()):
        out.append(f"## {norm or 'clean / corruptions'} - {md(data)}, n={n}")
        out.append("")
        flags = table.attrs.get(FLAGS, [[]] * len(table))
        shown = table.copy()
        for c in shown.columns[:3]:  # names and settings come from files: text, never table structure or HTML
            shown[c] = shown[c].map(lambda v: md("" if v is None or (isinstance(v, float) and pd.isna(v)) else v))
        for c in shown.columns[3:]:
            shown[c] = shown[c].map(_pct)
        for i, cells in enumerate(table.attrs.get(MISSING, [])):
            for c in cells:
                if c in shown.columns:
                    shown.loc[i, c] = "failed"
        for i, cells in enumerate(flags):
            for c in cells:
                shown.loc[i, c] += " †"
                marked = True
        notes = []
        for i, cells in enumerate(table.attrs.get(WORST, [])):
            for col, (attacks, missed) in cells.items():
                aa_missed = {a: k for a, k in missed.items() if a.startswith("AA") and k}
                if aa_missed:
                    shown.loc[i, col] += " ↓"
                notes.append(f"- {md(table.loc[i, 'Model'])}, {md(col)}: over " + ", ".join(map(md, attacks)) +
                             "".join(f"; {md(a)} missed {k} point{'s' * (k > 1)} another attack fooled"
                                     for a, k in aa_missed.items()))
        shown.columns = [md(c) for c in shown.columns]
        align = ["left"] * 3 + ["right"] * (len(shown.columns) - 3)
        out.append(shown.to_markdown(index=False, disable_numparse=True, colalign=align))  # keep "50.00" as written
        out.append("")
        if notes:
            out += ["Worst case: a point counts as robust only if it survived every attack run on it (rows with "
                    "per-point flags). ↓: lower than AutoAttack's own number, because AutoAttack missed points "
                    "another attack fooled.", "", *notes, ""]
    if marked:
        out += ["† AutoAttack flagged this evaluation (randomized or probability outputs, zero gradients, a dynamic "
                "defence, too few classes, or Square beating the gradient attacks): the number may overstate "
                "robustness; see `aa_checks` in its row.", ""]
    return "\n".join(out)


def write_plots(rows: list[dict], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = latest_ok(rows)
    written = []
    if df.empty:
        return written
    for norm in sorted(x for x in df["norm"].unique() if x):
        sub = df[df["norm"] == norm]
        attack = "autoattack" if (sub["attack"] == "autoattack").any() else "pgd"
        sub = sub[sub["attack"] == attack]
        if sub.empty:
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for mid, m in sub.groupby("model_id"):
            m = m.sort_values("eps")
            clean = df[(df["model_id"] == mid) & (df["attack"] == "clean")]
            c0 = clean.iloc[0]["clean_acc"] if len(clean) else m.iloc[0]["clean_acc"]
            xs = [0.0] + list(m["eps"] * (255 if norm == "Linf" else 1))
            label = f"{m.iloc[0]['model']}"
            ax1.plot(xs, [100 * c0] + list(100 * m["robust_acc"]), marker="o", label=label)
            last = m.iloc[-1]
            ax2.scatter(100 * last["robust_acc"], 100 * c0, s=40)
            ax2.annotate(label, (100 * last["robust_acc"], 100 * c0), fontsize=7)
        ax1.set_xlabel("eps" + (" (x/255)" if norm == "Linf" else ""))
        ax1.set_ylabel(f"robust accuracy (%), {ATTACK_LABEL[attack]}")
        ax1.set_title(f"{norm}: robust accuracy against eps")
        ax1.legend(fontsize=6)
        ax1.grid(alpha=0.3)
        ax2.set_xlabel(f"robust accuracy (%) at the largest eps, {ATTACK_LABEL[attack]}")
        ax2.set_ylabel("clean accuracy (%)")
        ax2.set_title(f"{norm}: clean against robust")
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out, f"robustness_{norm}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_leaderboard(rows: list[dict], out: str) -> str:
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "leaderboard.md")
    plots = write_plots(rows, out)
    text = to_markdown(leaderboard_tables(rows), missing_evaluations(rows))
    if plots:
        text += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots) + "\n"
    write_text_atomic(path, text)
    return path
