"""What the site shows, as plain data: pure functions of rows, checkpoint metadata and measures.

Nothing here escapes: the templates do (Jinja2 autoescaping), and data handed to JavaScript goes through Jinja's
`tojson`, which makes it safe inside a <script> element. File names derived from model names are sanitized here.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np

from bench.attacks.registry import label_of, run_flags, stage_order, strength_of
from bench.eval.loading import source_kind
from bench.report.numbers import human
from bench.report.results import CLEAN, CORRUPTIONS, corruptions_note
from bench.stats import wilson
from bench.store.schema import HF_REPO_ID

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet", "digits": "digits (scikit-learn)",
                 "synthetic": "synthetic"}


def dataset_name(spec: str) -> str:
    """A dataset spec as people name it: 'CIFAR-10', 'CIFAR-10 subset' for an npz copy named after it; the spec
    itself shows on hover."""
    if spec in DATASET_NAMES:
        return DATASET_NAMES[spec]
    if spec.startswith("npz:"):
        stem = spec.rsplit("/", 1)[-1].removesuffix(".npz")
        for key in ("cifar100", "cifar10"):
            if key in stem.lower():
                return f"{DATASET_NAMES[key]} subset"
        return stem
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
    from bench.report.results import config_of

    out = {}
    for r in rows:
        if r.get("status") != "ok" or r["model_id"] in out:
            continue
        meta = metas.get(r["model_id"])
        out[r["model_id"]] = {
            "id": r["model_id"], "name": r["model"], "page": f"models/{slug(r['model'], r['model_id'])}.html",
            "slug": slug(r["model"], r["model_id"]), "arch": r.get("arch") or "", "recipe": r.get("recipe") or "",
            "hparams": r.get("hparams") or "", "config": config_of(r),
            "train_data": r.get("train_data") or "", "seed": r.get("train_seed"), "verified": bool(r.get("verified")),
            "path": r.get("path") or "", "source": source_kind(r.get("path") or ""), "meta": meta,
            "cost": cost_of(meta)}
    return out


def _cell(line: dict | None) -> dict | None:
    """A results-model line as the template's cell: value, interval, n, and the marks it carries."""
    if line is None:
        return None
    if line["status"] == "failed":
        return {"v": None, "failed": line["reason"]}
    if line["acc"] is None:
        return {"v": None}
    cell = {"v": line["acc"], "lo": line["lo"], "hi": line["hi"], "n": line["n"] if line["correct"] is not None else None}
    if line["flag"]:
        cell["flag"] = line["flag"]
    if line["protocol"]:
        cell["protocol"] = line["protocol"]
    if line["kind"] == "worst":
        cell["attacks"] = line["attacks"]
        cell["aa_missed"] = {a: k for a, k in line["missed"].items() if a.startswith("AA") and k}
    return cell


def sections(results, model_info: dict) -> list[dict]:
    """One leaderboard section per board of the results model (bench.report.results.boards), in its order and
    its rank: columns (attacks x eps, the worst case where more than one attack ran, corruptions), one line per
    model, and one line per configuration (mean ± std over seeds)."""
    groups = results.groups
    out = []
    for i, b in enumerate(results.boards):
        columns = [{"key": c.key, "title": c.key, "kind": "worst" if c.kind == "worst" else "acc",
                    "attack": c.attack, "eps": c.eps, "eps_str": c.eps_str} for c in b.columns]
        lines = []
        for rank, mid in enumerate(b.models, 1):
            cells = {"clean": _cell(b.cell(mid, CLEAN)) or {"v": None}}
            for c in b.columns:
                cell = _cell(b.cell(mid, c.key))
                if cell is not None:
                    cells[c.key] = cell
            corr = b.cell(mid, CORRUPTIONS)
            line = {"model": model_info[mid], "cells": cells, "rank": rank}
            if corr is not None:
                line["corruption_source"] = corr["corruption_source"]
            lines.append(line)
        attack_cols = [c for c in columns if c["kind"] == "acc" and c["attack"]]
        out.append({"id": f"s{i}", "data": b.data, "dataset": dataset_name(b.data), "n": b.n,
                    "norm": b.norm or "corruptions", "columns": columns, "lines": lines, "rank_by": b.rank_by,
                    "groups": configuration_groups(lines, columns, b.rank_by, groups), "corruptions_note": corruptions_note(b),
                    "plots": plot_data(lines, attack_cols, b.norm)})
    return out


def configuration_groups(lines: list[dict], columns: list[dict], rank_by: str | None,
                         seed_groups: dict) -> list[dict]:
    """Models of the same seed group (bench.report.results.seed_groups: architecture, recipe and settings,
    training data; seeds differ), each trained model once however often it was read: mean ± sample std per
    column, ranked by the board's rule on the means (bench.report.results.rank_groups)."""
    from bench.report.results import rank_groups

    groups, seen = defaultdict(list), set()
    for line in lines:  # in rank order: a model read twice counts as its better-ranked reading
        g = seed_groups[line["model"]["id"]]
        if g["model"] not in seen:
            seen.add(g["model"])
            groups[g["key"]].append(line)
    out = []
    for (arch, config, train_data), members in groups.items():
        cells = {}
        for key in ["clean"] + [c["key"] for c in columns]:
            vals = [x["cells"][key]["v"] for x in members if (x["cells"].get(key) or {}).get("v") is not None]
            if vals:
                cells[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                              "k": len(vals)}
        out.append({"arch": arch, "config": config, "train_data": train_data,
                    "seeds": sorted((x["model"]["seed"] for x in members), key=lambda s: (s is None, s)),
                    "members": members, "cells": cells})
    out = rank_groups(out, lambda g, key: (g["cells"].get("clean" if key == CLEAN else key) or {}).get("mean"),
                      rank_by, lambda g: (g["arch"], g["config"]))
    for i, g in enumerate(out):
        g["id"] = f"g{i}"
    return out


def plot_data(lines: list[dict], attack_cols: list[dict], norm: str) -> dict:
    """Per attack: each model's robust accuracy against eps (eps 0 = clean) with Wilson intervals, for the
    robust-vs-eps and trade-off plots; models in rank order, named as in the table."""
    scale = 255 if norm == "Linf" else 1
    series = {}
    for attack in sorted({c["attack"] for c in attack_cols}, key=strength_of):
        cols = sorted((c for c in attack_cols if c["attack"] == attack), key=lambda c: c["eps"])
        label = label_of(attack)
        traces = []
        for line in lines:
            pts = [(0.0, line["cells"]["clean"])] + [(c["eps"] * scale, line["cells"].get(c["key"], {"v": None}))
                                                     for c in cols]
            pts = [(x, cell) for x, cell in pts if cell.get("v") is not None]
            traces.append({"name": line["model"]["name"], "id": line["model"]["id"], "x": [x for x, _ in pts],
                           "y": [100 * c["v"] for _, c in pts],
                           "lo": [100 * c["lo"] if c.get("lo") is not None else None for _, c in pts],
                           "hi": [100 * c["hi"] if c.get("hi") is not None else None for _, c in pts],
                           "clean": None if line["cells"]["clean"]["v"] is None else 100 * line["cells"]["clean"]["v"]})
        series[label] = {"eps": [c["eps"] * scale for c in cols], "eps_str": [c["eps_str"] for c in cols],
                         "traces": traces}
    return {"norm": norm, "x_label": "eps (x/255)" if norm == "Linf" else "eps", "series": series}


def replay_text(row: dict, verifications: list[dict]) -> str:
    """What bench.verify last said about this row's stored images (for this very file): 'replayed: 10 of 10',
    'replay failed: ...', or '' when it has not been run on them."""
    ref = row.get("adversarial")
    if not ref:
        return ""
    mine = [v for v in verifications if v.get("key") == row.get("key") and v.get("sha256") == ref.get("sha256")]
    if not mine:
        return "images stored, not replayed yet"
    v = mine[-1]
    if v["status"] != "ok":
        return f"replay failed: {v.get('reason', '')}"
    return f"replayed: {v['replayed']} of {v['fooled']}" if v.get("replayed") is not None else "replayed: bound holds"


def hub_of(info: dict, mine: list[dict], published: list[dict]) -> dict | None:
    """The Hub repository a model is on: the one its rows were loaded from (hf-hub:), else the latest one its
    weights were exported to; its card's URL and its hf-hub: name."""
    repo = next((r["hf_repo"] for r in mine if isinstance(r.get("hf_repo"), str)), None)
    if repo is None:
        weights = {r.get("weights_sha256") for r in mine} - {None}
        hits = [p for p in published if p["model_id"] == info["id"] or p["weights_sha256"] in weights]
        repo = hits[-1]["repo_id"] if hits else None
    if repo is None or not HF_REPO_ID.match(repo):
        return None
    return {"repo": repo, "url": f"https://huggingface.co/{repo}", "name": f"hf-hub:{repo}"}


def model_page(info: dict, rows: list[dict], measures: list[dict], verifications: list[dict] | None = None,
               published: list[dict] | None = None) -> dict:
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
            "config": ", ".join(f"{k}={human(v, k)}" for k, v in sorted(cfg.items()) if k not in ("attack",)),
            "clean": acc_cell(r.get("clean_acc"), r.get("clean_correct"), r.get("n")) if r["status"] == "ok" else {"v": None},
            "robust": acc_cell(r.get("robust_acc"), r.get("robust_correct"), r.get("n")) if r["status"] == "ok" else {"v": None},
            "seconds": r.get("seconds"), "device": r.get("device", ""), "precision": r.get("precision", ""),
            "flags": "per-point" if "points" in r else "counts only", "error": r.get("error", ""),
            "replay": replay_text(r, verifications or []),
            "time": r.get("time", ""), "command": reproduce(r, sh)})
    order = ["clean", *stage_order()]  # the stages in the order they run
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
    return {"info": info, "rows": table, "stages": stages, "heatmap": heat, "hub": hub_of(info, mine, published or []),
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
             "--data", "imagenet:DIR" if row["data"] == "imagenet" else sh(row["data"]), "--n-examples",
             str(int(row["n"]))]  # ImageNet rows do not say where its folder was
    if row.get("norm"):
        parts += ["--norm", sh(row["norm"]), "--eps", sh(row["eps_str"])]
    parts += [sh(flag) for flag in run_flags(row["attack"], cfg, row["eps"])]
    if row["attack"] == "corruptions":
        parts += ["--corruptions", sh(",".join(cfg.get("names", []))), "--corruptions-source", sh(cfg.get("source", "auto"))]
    if "seed" in cfg and cfg["seed"] != 0:
        parts += ["--seed", str(cfg["seed"])]
    return " ".join(parts)
