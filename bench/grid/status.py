"""Where a study stands: its cells done, running (with their worker and epoch) and waiting, with estimates of
the time left from the speeds its finished cells measured. A pure function of the results folder and the
checkpoints folder; `python -m bench.study ... --status` prints it."""
from __future__ import annotations

import os
import time

from bench.grid.cells import Cell
from bench.grid.queue import Study, check_cell_row, finished
from bench.store.leases import owner_of
from bench.store.rows import RowStore


def _state(cell: Cell) -> tuple[int, float | None]:
    """(finished epochs, mean seconds per epoch so far) from the cell's resume state."""
    from zoo.checkpoint import CheckpointError, load_checkpoint
    from zoo.train import resume_path

    path = resume_path(cell.path)
    if not os.path.exists(path):
        return 0, None
    try:
        state = load_checkpoint(path)
    except (CheckpointError, OSError):
        return 0, None
    hist = state.get("history") or []
    per_epoch = sum(e.get("seconds") or 0 for e in hist) / len(hist) if hist else None
    return int(state.get("epoch", 0)), per_epoch


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def status(study: Study) -> dict:
    """{done, running, waiting, failed: [cell lines], eta_seconds, workers} for the study's grid."""
    grid = study.cells()
    store = RowStore(study.cells_path, check=check_cell_row)
    store.refresh(final=True)
    done = finished(store)
    failed = {r["cell"]: r for r in store.rows if r["kind"] == "cell" and r["status"] == "failed"}
    # seconds per unit of cost, from the finished cells that trained here (not reused)
    measured = [(done[c.key].get("seconds") or 0, c.cost) for c in grid
                if c.key in done and (done[c.key].get("train_seconds") or 0) > 0]
    rate = sum(s for s, _ in measured) / sum(c for _, c in measured) if measured else None
    claim_dir = os.path.join(study.out, ".claims")
    lines = {"done": [], "running": [], "waiting": [], "failed": []}
    workers, remaining = set(), []
    for c in grid:
        if c.key in done:
            lines["done"].append({"cell": c.name, "worker": done[c.key]["worker"],
                                  "seconds": done[c.key].get("seconds")})
            continue
        owner = owner_of(claim_dir, f"cell-{c.key}")
        epoch, per_epoch = _state(c)
        if owner is not None:
            who = f"{owner.get('host')}:{owner.get('pid')}"
            workers.add(who)
            left = (c.cfg.epochs - epoch) * per_epoch if per_epoch else (rate * c.cost if rate else None)
            lines["running"].append({"cell": c.name, "worker": who, "epoch": f"{epoch}/{c.cfg.epochs}",
                                     "eta_seconds": left})
            remaining.append(left)
        else:
            key = "failed" if c.key in failed else "waiting"
            est = rate * c.cost * (1 - epoch / c.cfg.epochs) if rate else None
            lines[key].append({"cell": c.name, "epoch": f"{epoch}/{c.cfg.epochs}", "eta_seconds": est,
                               **({"error": failed[c.key].get("error"), "missing": failed[c.key].get("missing", [])}
                                  if key == "failed" else {})})
            remaining.append(est)
    known = [r for r in remaining if r is not None]
    eta = (sum(known) / max(len(workers), 1)) if known and len(known) == len(remaining) else None
    from bench.grid.launch import slurm_tasks

    by_recipe: dict = {}
    for c in grid:  # the plan: each recipe's share of the grid's modelled cost (Recipe.passes), and its hours
        by_recipe[c.cfg.recipe] = by_recipe.get(c.cfg.recipe, 0.0) + c.cost
    total = sum(by_recipe.values()) or 1.0
    plan = [{"recipe": r, "share": v / total, "seconds": rate * v if rate else None} for r, v in by_recipe.items()]
    return {**lines, "eta_seconds": 0.0 if not remaining else eta, "workers": sorted(workers), "cells": len(grid),
            "slurm": slurm_tasks(study.out), "plan": plan}


def format_status(s: dict) -> str:
    out = [f"{len(s['done'])} done, {len(s['running'])} running, {len(s['waiting'])} waiting"
           + (f", {len(s['failed'])} failed" if s["failed"] else "") + f" of {s['cells']} cells; "
           f"{len(s['workers'])} live workers; about {_hms(s['eta_seconds'])} left"
           + ("" if s["eta_seconds"] is not None else " (no finished cell to measure speed from yet)"),
           time.strftime("as of %Y-%m-%d %H:%M:%S")]
    if s.get("plan"):
        out.append("  plan: each recipe's share of the grid's modelled cost (epochs x images x passes per step)"
                   + (", and its hours at the measured speed" if any(p["seconds"] for p in s["plan"]) else "") + ": "
                   + ", ".join(f"{p['recipe']} {100 * p['share']:.0f}%"
                               + (f" ({_hms(p['seconds'])})" if p["seconds"] else "") for p in s["plan"]))
    for line in s["running"]:
        out.append(f"  running  {line['cell']:48s} epoch {line['epoch']:>7s}  {line['worker']}  "
                   f"~{_hms(line['eta_seconds'])} left")
    for line in s["waiting"]:
        out.append(f"  waiting  {line['cell']:48s} epoch {line['epoch']:>7s}  ~{_hms(line['eta_seconds'])}")
    for line in s["failed"]:
        out.append(f"  failed   {line['cell']:48s} {line.get('error', '')}")
        for m in line.get("missing", []):
            out.append(f"             {m['status']:8s} {m['evaluation']}: {m['reason']}")
    for line in s["done"]:
        out.append(f"  done     {line['cell']:48s} {_hms(line['seconds']):>8s}  {line['worker']}")
    for task in s.get("slurm", []):
        reason = "" if task["reason"] in ("None", "") else f" ({task['reason']})"
        out.append(f"  slurm    array task {task['task']:20s} {task['state']}{reason}")
    return "\n".join(out)
