"""What the site shows, as plain data: pure functions of rows, checkpoint metadata and measures.

Nothing here escapes: the templates do (Jinja2 autoescaping), and data handed to JavaScript goes through Jinja's
`tojson`, which makes it safe inside a <script> element. File names derived from model names are sanitized here.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from bench.report.leaderboard import ATTACK_LABEL, STRENGTH, latest_ok, rank_choice, robust_columns
from bench.report.worst_case import worst_cases
from bench.stats import wilson

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits (scikit-learn)",
                 "synthetic": "synthetic"}


def dataset_name(spec: str) -> str:
    if spec in DATASET_NAMES:
        return DATASET_NAMES[spec]
    if spec.startswith("npz:"):
        return f"npz {spec.rsplit('/', 1)[-1]}"
    return spec


def slug(name: str, model_id: str) -> str:
    """A file name for a model's page: its name made safe, and the start of its id (names may repeat)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:60] or "model"
    return f"{safe}-{model_id[:10]}"


def _num(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def acc_cell(acc, correct=None, n=None, ci=None) -> dict:
    """An accuracy with its Wilson 95% interval (recomputed from the counts when present)."""
    acc = _num(acc)
    if acc is None:
        return {"v": None}
    if correct is not None and n:
        lo, hi = wilson(int(correct), int(n))
    elif ci:
        lo, hi = ci
    else:
        lo = hi = None
    return {"v": acc, "lo": lo, "hi": hi, "n": n}


def cost_of(meta: dict | None) -> dict:
    """Training cost from the checkpoint: recorded `cost`, else what its history and precision say."""
    if not meta:
        return dict.fromkeys(("device", "device_name", "train_seconds", "images_per_s", "peak_memory_bytes", "epochs"))
    cost = meta.get("cost") or {}
    hist = meta.get("history") or []
    seconds = cost.get("train_seconds", sum(e.get("seconds") or 0 for e in hist) or None)
    ips = cost.get("images_per_s")
    if ips is None and hist:
        total = sum((e.get("seconds") or 0) * (e.get("images_per_s") or 0) for e in hist)
        ips = total / seconds if seconds else None
    device = cost.get("device") or (meta.get("precision") or {}).get("device")
    return {"device": device, "device_name": cost.get("device_name"), "train_seconds": seconds,
            "images_per_s": ips, "peak_memory_bytes": cost.get("peak_memory_bytes"),
            "epochs": len(hist)}


def models(rows: list[dict], metas: dict) -> dict[str, dict]:
    """model_id -> what the site says about a model: name, page, arch, recipe, settings, training, cost."""
    out = {}
    for r in rows:
        if r.get("status") != "ok" or r["model_id"] in out:
            continue
        meta = metas.get(r["model_id"])
        out[r["model_id"]] = {
            "id": r["model_id"], "name": r["model"], "page": f"models/{slug(r['model'], r['model_id'])}.html",
            "slug": slug(r["model"], r["model_id"]), "arch": r.get("arch") or "", "recipe": r.get("recipe") or "",
            "hparams": r.get("hparams") or "", "config": f"{r.get('recipe') or ''} {r.get('hparams') or ''}".strip(),
            "train_data": r.get("train_data") or "", "seed": r.get("train_seed"), "verified": bool(r.get("verified")),
            "path": r.get("path") or "", "meta": meta, "cost": cost_of(meta)}
    return out


def _column_key(attack: str, eps_str: str) -> str:
    return f"{ATTACK_LABEL.get(attack, attack)} {eps_str}"


def sections(rows: list[dict], model_info: dict) -> list[dict]:
    """One leaderboard section per (dataset, n, threat model), as the markdown leaderboard groups them:
    columns (attacks x eps, the worst case where more than one attack ran, corruptions), one line per model
    ranked by the strongest attack at the largest eps, and one line per configuration (mean ± std over seeds)."""
    df = latest_ok(rows)
    if df.empty:
        return []
    worst = worst_cases(rows)
    out = []
    for (data, n), part in df.groupby(["data", "n"]):
        norms = sorted(x for x in part["norm"].unique() if x) or [""]
        for norm in norms:
            cols = robust_columns(part, norm) if norm else []
            attack_cols = []
            for a, e, s in cols:
                attack_cols.append({"key": _column_key(a, s), "title": _column_key(a, s), "kind": "acc",
                                    "attack": a, "eps": float(e), "eps_str": s})
            lines = []
            for mid, m in part.groupby("model_id"):
                info = model_info[mid]
                cells = {}
                clean = m[m["attack"] == "clean"]
                src = clean.iloc[0] if len(clean) else m.iloc[0]
                cells["clean"] = acc_cell(src["clean_acc"], src.get("clean_correct"), src["n"])
                flags = {}
                for c in attack_cols:
                    hit = m[(m["attack"] == c["attack"]) & (m["norm"] == norm) & (m["eps_key"] == round(c["eps"], 8))]
                    if len(hit):
                        h = hit.iloc[0]
                        cells[c["key"]] = acc_cell(h["robust_acc"], h.get("robust_correct"), h["n"])
                        checks = h.get("aa_checks") if isinstance(h.get("aa_checks"), dict) else {}
                        fired = {k: v for k, v in checks.items() if v}
                        if fired:
                            cells[c["key"]]["flag"] = "; ".join(f"{k}: {v}" for k, v in fired.items())
                for c in {(c["eps"], c["eps_str"]) for c in attack_cols}:
                    wc = worst.get((mid, data, int(n), norm, round(c[0], 8)))
                    if wc is not None and len(wc.attacks) > 1:
                        missed = {a: wc.missed_by(a) for a in wc.attacks if a.startswith("AA") and wc.missed_by(a)}
                        cells[f"Worst {c[1]}"] = {**acc_cell(wc.acc, int(wc.robust.sum()), wc.n),
                                                   "attacks": wc.attacks, "aa_missed": missed}
                corr = m[m["attack"] == "corruptions"]
                if len(corr):
                    cells["corruptions"] = acc_cell(corr.iloc[0]["robust_acc"])
                    flags["corruption_source"] = corr.iloc[0].get("corruption_source")
                lines.append({"model": info, "cells": cells, **flags})
            worst_cols = {k for line in lines for k in line["cells"] if k.startswith("Worst ")}
            columns = []
            for eps_str in dict.fromkeys(c["eps_str"] for c in attack_cols):  # each eps: its attacks, its worst
                group = [c for c in attack_cols if c["eps_str"] == eps_str]
                columns += group
                if f"Worst {eps_str}" in worst_cols:
                    columns.append({"key": f"Worst {eps_str}", "title": f"Worst {eps_str}", "kind": "worst",
                                    "eps": group[0]["eps"], "eps_str": eps_str})
            if any("corruptions" in line["cells"] for line in lines):
                columns.append({"key": "corruptions", "title": "Corruptions", "kind": "acc"})
            rank_by = _rank_column(attack_cols, worst_cols, any("corruptions" in ln["cells"] for ln in lines))
            lines.sort(key=lambda line: (-(line["cells"].get(rank_by, {}).get("v") or -1) if rank_by else 0,
                                         -(line["cells"]["clean"]["v"] or 0), line["model"]["name"]))
            for i, line in enumerate(lines, 1):
                line["rank"] = i
            out.append({"id": None, "data": data, "dataset": dataset_name(data), "n": int(n),
                        "norm": norm or "corruptions", "columns": columns, "lines": lines, "rank_by": rank_by,
                        "groups": configuration_groups(lines, columns), "plots": plot_data(lines, attack_cols, norm)})
    # each dataset's threat models in RobustBench's order, the most test points first
    norm_order = {"Linf": 0, "L2": 1, "corruptions": 2}
    out.sort(key=lambda s: (s["data"], norm_order.get(s["norm"], 3), -s["n"]))
    for i, s in enumerate(out):
        s["id"] = f"s{i}"
    return out


def _rank_column(attack_cols, worst_cols, has_corruptions) -> str | None:
    """The leaderboard's one rank rule (bench.report.leaderboard.rank_choice), as this page's column key."""
    choice = rank_choice([(c["attack"], c["eps"], c["eps_str"]) for c in attack_cols],
                         lambda s: f"Worst {s}" in worst_cols)
    if choice is None:
        return "corruptions" if has_corruptions else None
    if choice[0] == "worst":
        return f"Worst {choice[1]}"
    return _column_key(choice[1], choice[2])


def configuration_groups(lines: list[dict], columns: list[dict]) -> list[dict]:
    """Models of the same architecture, recipe and settings (seeds differ): mean ± sample std per column."""
    groups = defaultdict(list)
    for line in lines:
        m = line["model"]
        groups[(m["arch"], m["config"], m["train_data"])].append(line)
    out = []
    for (arch, config, train_data), members in groups.items():
        cells = {}
        for key in ["clean"] + [c["key"] for c in columns]:
            vals = [x["cells"][key]["v"] for x in members if x["cells"].get(key, {}).get("v") is not None]
            if vals:
                cells[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                              "k": len(vals)}
        out.append({"id": f"g{len(out)}", "arch": arch, "config": config, "train_data": train_data,
                    "seeds": sorted((x["model"]["seed"] for x in members), key=lambda s: (s is None, s)),
                    "members": members, "cells": cells})
    return out


def plot_data(lines: list[dict], attack_cols: list[dict], norm: str) -> dict:
    """Per attack: each model's robust accuracy against eps (eps 0 = clean) with Wilson intervals, for the
    robust-vs-eps and trade-off plots; models in rank order, named as in the table."""
    scale = 255 if norm == "Linf" else 1
    series = {}
    for attack in sorted({c["attack"] for c in attack_cols}, key=lambda a: STRENGTH.get(a, 9)):
        cols = sorted((c for c in attack_cols if c["attack"] == attack), key=lambda c: c["eps"])
        label = ATTACK_LABEL.get(attack, attack)
        traces = []
        for line in lines:
            pts = [(0.0, line["cells"]["clean"])] + [(c["eps"] * scale, line["cells"].get(c["key"], {"v": None}))
                                                     for c in cols]
            pts = [(x, cell) for x, cell in pts if cell.get("v") is not None]
            traces.append({"name": line["model"]["name"], "id": line["model"]["id"], "x": [x for x, _ in pts],
                           "y": [100 * c["v"] for _, c in pts],
                           "lo": [100 * c["lo"] if c.get("lo") is not None else None for _, c in pts],
                           "hi": [100 * c["hi"] if c.get("hi") is not None else None for _, c in pts],
                           "clean": 100 * line["cells"]["clean"]["v"]})
        series[label] = {"eps": [c["eps"] * scale for c in cols], "eps_str": [c["eps_str"] for c in cols],
                         "traces": traces}
    return {"norm": norm, "x_label": "eps (x/255)" if norm == "Linf" else "eps", "series": series}


def model_page(info: dict, rows: list[dict], measures: list[dict]) -> dict:
    """Everything the model's own page shows: settings, training curves, every row, AutoAttack stages and
    checks, the corruptions grid, measures, and the command that reproduces each row."""
    from bench.corruptions.generator import CORRUPTIONS, SEVERITIES
    from bench.report.escape import sh

    mine = sorted((r for r in rows if r.get("model_id") == info["id"]),
                  key=lambda r: (r.get("status") != "ok", r.get("attack", ""), r.get("norm") or "", r.get("eps", 0)))
    meta = info.get("meta") or {}
    table = []
    for r in mine:
        cfg = r.get("attack_config") or {}
        table.append({
            "status": r["status"], "attack": r.get("attack", r.get("stage", "")), "norm": r.get("norm") or "",
            "eps": r.get("eps_str", ""), "n": r.get("n"), "data": r.get("data", ""),
            "config": ", ".join(f"{k}={v}" for k, v in sorted(cfg.items()) if k not in ("attack",)),
            "clean": acc_cell(r.get("clean_acc"), r.get("clean_correct"), r.get("n")) if r["status"] == "ok" else {"v": None},
            "robust": acc_cell(r.get("robust_acc"), r.get("robust_correct"), r.get("n")) if r["status"] == "ok" else {"v": None},
            "seconds": r.get("seconds"), "device": r.get("device", ""), "precision": r.get("precision", ""),
            "flags": "per-point" if "points" in r else "counts only", "error": r.get("error", ""),
            "time": r.get("time", ""), "command": reproduce(r, sh)})
    order = ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]  # AutoAttack's stages in the order they run
    stages = [{"attack": f"{r['attack']} {r['norm']} {r['eps_str']}",
               "stage_acc": dict(sorted((r.get("stage_acc") or {}).items(),
                                        key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))),
               "checks": r.get("aa_checks") or {}} for r in mine if r.get("status") == "ok" and r.get("stage_acc")]
    corr = [r for r in mine if r.get("status") == "ok" and r.get("attack") == "corruptions"
            and r.get("corruption_severity_acc")]
    heat = None
    if corr:
        per = corr[-1]["corruption_severity_acc"]
        names = [c for c in CORRUPTIONS if any(f"{c}/{s}" in per for s in SEVERITIES)]
        heat = {"corruptions": names, "severities": list(SEVERITIES), "source": corr[-1].get("corruption_source"),
                "z": [[100 * per[f"{c}/{s}"] if f"{c}/{s}" in per else None for s in SEVERITIES] for c in names]}
    history = meta.get("history") or []
    config = meta.get("config") or {}
    return {"info": info, "rows": table, "stages": stages, "heatmap": heat,
            "curves": {"epoch": [e.get("epoch") for e in history], "train_loss": [e.get("train_loss") for e in history],
                       "train_acc": [e.get("train_acc") for e in history], "test_acc": [e.get("test_acc") for e in history]},
            "config": sorted(config.items()), "dataset": meta.get("dataset") or {},
            "versions": meta.get("versions") or {}, "precision": meta.get("precision") or {},
            "measures": [m for m in measures if m.get("model_id") == info["id"]]}


def reproduce(row: dict, sh) -> str:
    """The bench.run command that recomputes this row (same checkpoint, attack config, data and n)."""
    cfg = row.get("attack_config") or {}
    if row.get("status") != "ok":
        return f"python -m bench.run --models {sh(row.get('path') or row.get('model', ''))} --retry-failed"
    parts = ["python -m bench.run", "--models", sh(row.get("path") or row["model"]), "--attacks", sh(row["attack"]),
             "--data", sh(row["data"]), "--n-examples", str(int(row["n"]))]
    if row.get("norm"):
        parts += ["--norm", sh(row["norm"]), "--eps", sh(row["eps_str"])]
    if row["attack"] == "pgd":
        parts += ["--pgd-steps", str(cfg.get("steps")), "--restarts", str(cfg.get("restarts", 1))]
        if cfg.get("steps") and cfg.get("alpha") is not None and abs(cfg["alpha"] - 2.5 * row["eps"] / cfg["steps"]) > 1e-9:
            parts += ["--pgd-alpha", sh(f"{cfg['alpha']:.10g}")]
    if row["attack"] == "corruptions":
        parts += ["--corruptions", sh(",".join(cfg.get("names", []))), "--corruptions-source", sh(cfg.get("source", "auto"))]
    if "seed" in cfg and cfg["seed"] != 0:
        parts += ["--seed", str(cfg["seed"])]
    return " ".join(parts)
