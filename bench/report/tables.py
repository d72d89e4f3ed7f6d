"""Leaderboards: pure functions of result rows -> markdown, and the writer of leaderboard.md with its PNG plots."""
from __future__ import annotations

import os

import pandas as pd

from bench.report.escape import md
from bench.report.numbers import percent
from zoo.files import write_text_atomic

from bench.attacks.registry import decides_rank, label_of, strength_of
from bench.report.results import CLEAN, corruptions_note, latest_frame


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
MISSING = "missing"  # table.attrs key: per row, the columns whose evaluation failed (no number to show)
PROTOCOL = "protocol"  # table.attrs key: per row, {column: why its AutoAttack is not RobustBench's standard}
WORST = "worst"  # table.attrs key: per row, {worst-case column: (contributing attacks, {attack: points it missed})}


def board_table(board) -> pd.DataFrame:
    """One board as the markdown's table: Model, Arch, Recipe, Clean, the board's columns, models in rank order;
    attrs FLAGS, MISSING and WORST per row."""
    keys = [c.key for c in board.columns]
    lines, flags, missing, worst, protocol = [], [], [], [], []
    for mid in board.models:
        clean = board.cell(mid, CLEAN)  # every model of a board has its Clean line (None when it failed alone)
        line = {"Model": clean["model"], "Arch": clean["arch"], "Recipe": f"{clean['recipe']} {clean['hparams']}".strip(),
                "Clean": clean["acc"]}
        f, m, w, p = [], [], {}, {}
        for key in keys:
            cell = board.cell(mid, key) or {}
            line[key] = cell.get("acc")
            if cell.get("flag"):
                f.append(key)
            if cell.get("protocol"):
                p[key] = cell["protocol"]
            if cell.get("status") == "failed":
                m.append(key)
            if cell.get("kind") == "worst":
                w[key] = (cell["attacks"], cell["missed"])
        lines.append(line)
        flags.append(f)
        missing.append(m)
        worst.append(w)
        protocol.append(p)
    table = pd.DataFrame(lines, columns=["Model", "Arch", "Recipe", "Clean"] + keys)
    table.attrs[FLAGS], table.attrs[MISSING], table.attrs[WORST] = flags, missing, worst
    table.attrs[PROTOCOL] = protocol
    return table


CORRUPTION_SETS = "corruption_sets"  # table.attrs key: what the Corruptions column averages, as one sentence


def leaderboard_tables(results) -> dict[tuple[str, str, int], pd.DataFrame]:
    """{(norm, data, n): table} from the results model's boards (bench.report.results), in its rank order: columns
    Model, Arch, Recipe, Clean, <attack eps>..., Worst <eps> (where more than one attack ran at that eps: a point
    counts only if it survived all of them), Corruptions."""
    tables = {}
    for b in results.boards:
        tables[(b.norm, b.data, b.n)] = table = board_table(b)
        table.attrs[CORRUPTION_SETS] = corruptions_note(b)
    return tables


def to_markdown(tables: dict, missing: list[dict] | None = None) -> str:
    out = ["# Leaderboard", "",
           "Accuracy in % on the first n test points. Robust columns: a point counts only if it is classified "
           "right clean and under the attack. AA = AutoAttack (standard), PGD = our PGD with random start.", "",
           *missing_markdown(missing or [])]
    marked = False
    for (norm, data, n), table in sorted(tables.items()):
        out.append(f"## {norm or 'clean / corruptions'} - {md(data)}, n={n}")
        out.append("")
        flags = table.attrs.get(FLAGS, [[]] * len(table))
        shown = table.copy()
        for c in shown.columns[:3]:  # names and settings come from files: text, never table structure or HTML
            shown[c] = shown[c].map(lambda v: md("" if v is None or (isinstance(v, float) and pd.isna(v)) else v))
        for c in shown.columns[3:]:
            shown[c] = shown[c].map(percent)
        for i, cells in enumerate(table.attrs.get(MISSING, [])):
            for c in cells:
                if c in shown.columns:
                    shown.loc[i, c] = "failed"
        for i, cells in enumerate(flags):
            for c in cells:
                shown.loc[i, c] += " †"
                marked = True
        departures = []
        for i, cells in enumerate(table.attrs.get(PROTOCOL, [])):
            for c, why in cells.items():
                shown.loc[i, c] += " ‡"
                departures.append(f"- {md(table.loc[i, 'Model'])}, {md(c)}: {md(why)}")
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
        if departures:
            out += ["‡ Not RobustBench's standard AutoAttack (its numbers are not comparable with RobustBench's "
                    "leaderboards, and bench.export refuses them):", "", *departures, ""]
        if table.attrs.get(CORRUPTION_SETS):
            out += [md(table.attrs[CORRUPTION_SETS]), ""]
        if notes:
            out += ["Worst case: a point counts as robust only if it survived every attack run on it (rows with "
                    "per-point flags). ↓: lower than AutoAttack's own number, because AutoAttack missed points "
                    "another attack fooled.", "", *notes, ""]
    if marked:
        out += ["† AutoAttack flagged this evaluation (randomized or probability outputs, zero gradients, a dynamic "
                "defence, too few classes, or Square beating the gradient attacks): the number may overstate "
                "robustness; see `aa_checks` in its row.", ""]
    return "\n".join(out)


def eps_curve(ax, eps: list, acc: list, clean: float, label: str, err: list | None = None, clean_err=None):
    """One model's robust accuracy against eps: a line through the measured radii only, and clean accuracy at
    eps 0 joined to the first radius by a dotted line (nothing between them was measured); one radius is a
    point."""
    line = ax.errorbar(eps, acc, yerr=err, marker="o", capsize=2, label=label,
                       linestyle="-" if len(eps) > 1 else "none")
    color = line[0].get_color()
    if eps:
        ax.plot([0, eps[0]], [clean, acc[0]], linestyle=":", linewidth=1, color=color)
    ax.errorbar([0], [clean], yerr=None if clean_err is None else [clean_err], marker="o", mfc="none", capsize=2,
                color=color, linestyle="none")


def write_plots(rows: list[dict], out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = latest_frame(rows)
    written = []
    if df.empty:
        return written
    for norm in sorted(x for x in df["norm"].unique() if x):
        sub = df[df["norm"] == norm]
        ranked = [a for a in sub["attack"].unique() if decides_rank(a)]
        if not ranked:
            continue
        attack = min(ranked, key=strength_of)  # the rank rule's: the strongest attack run decides the plot
        sub = sub[sub["attack"] == attack]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        for mid, m in sub.groupby("model_id"):
            m = m.sort_values("eps")
            clean = df[(df["model_id"] == mid) & (df["attack"] == "clean")]
            c0 = clean.iloc[0]["clean_acc"] if len(clean) else m.iloc[0]["clean_acc"]
            label = f"{m.iloc[0]['model']}"
            eps_curve(ax1, list(m["eps"] * (255 if norm == "Linf" else 1)), list(100 * m["robust_acc"]), 100 * c0,
                      label)
            last = m.iloc[-1]
            ax2.scatter(100 * last["robust_acc"], 100 * c0, s=40)
            ax2.annotate(label, (100 * last["robust_acc"], 100 * c0), fontsize=7)
        ax1.set_xlabel("eps" + (" (x/255)" if norm == "Linf" else ""))
        ax1.set_ylabel(f"robust accuracy (%), {label_of(attack)}")
        ax1.set_title(f"{norm}: robust accuracy against eps")
        ax1.legend(fontsize=6)
        ax1.grid(alpha=0.3)
        ax2.set_xlabel(f"robust accuracy (%) at the largest eps, {label_of(attack)}")
        ax2.set_ylabel("clean accuracy (%)")
        ax2.set_title(f"{norm}: clean against robust")
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out, f"robustness_{norm}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_leaderboard(rows: list[dict], out: str, results) -> str:
    """leaderboard.md and its plots; results: the rows' bench.report.results.Results (bench.report.outputs)."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "leaderboard.md")
    plots = write_plots(rows, out)
    text = to_markdown(leaderboard_tables(results), results.missing)
    if plots:
        text += "\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots) + "\n"
    write_text_atomic(path, text)
    return path
