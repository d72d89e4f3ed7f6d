"""A cell of the study's grid: one checkpoint to train, then its evaluations and measures.

Cells are what workers claim. Each has a key (the resolved training settings that make its checkpoint, so a
changed preset makes new cells), and a cost (epochs x training images x forward-backward passes per step) so
that the most expensive cells start first and the last to finish is a short one.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, replace

from bench.grid.presets import Preset, training_grid


@dataclass(frozen=True)
class Cell:
    cfg: object  # zoo.config.TrainConfig, resolved
    key: str
    path: str  # the checkpoint it makes
    cost: float  # relative: epochs x images x passes per step

    @property
    def name(self) -> str:
        return os.path.basename(self.path).removesuffix(".pt")


def passes(cfg) -> float:
    """Forward-backward passes per training step: the recipe's own (Recipe.passes), and its training attack's
    steps counted as 2/3 of one each (an input gradient only)."""
    from zoo.recipes import get_recipe

    recipe = get_recipe(cfg.recipe)
    return recipe.passes(cfg) + (cfg.steps * 2 / 3 if recipe.adversarial else 0)


def cell_key(cfg) -> str:
    """What makes the checkpoint: every resolved setting but where it runs and is written, and but the settings
    of other recipes (a SAM cell's key does not hold TRADES' beta)."""
    from zoo.recipes import get_recipe, recipe_settings

    others = recipe_settings() - set(get_recipe(cfg.recipe).all_settings())
    d = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "out", "compile") and k not in others}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cells(p: Preset, device: str, zoo_dir: str, compile_: bool = False, n_train: int | None = None) -> list[Cell]:
    """The grid's cells, most expensive first (ties in the grid's order)."""
    from zoo.train import checkpoint_name

    out = []
    for cfg in training_grid(p, device, zoo_dir, compile_):
        cfg = cfg.resolved()
        images = cfg.n_train or n_train or 50_000
        out.append(Cell(cfg, cell_key(cfg), os.path.join(zoo_dir, checkpoint_name(cfg)),
                        cfg.epochs * images * passes(cfg)))
    return sorted(out, key=lambda c: -c.cost)


def resumed_epoch(path: str) -> int:
    """The last finished epoch a killed training left in its resume state (0 when there is none)."""
    from zoo.checkpoint import CheckpointError, load_checkpoint
    from zoo.train import resume_path

    state = resume_path(path)
    if not os.path.exists(state):
        return 0
    try:
        return int(load_checkpoint(state).get("epoch", 0))
    except (CheckpointError, OSError, ValueError):
        return 0


def stale_settings(cell: Cell) -> list[str]:
    """The settings the cell's existing checkpoint was trained with otherwise ([] when there is none, or it is
    this cell's)."""
    from zoo.checkpoint import CheckpointError, load_checkpoint
    from zoo.train import config_mismatch

    if not os.path.exists(cell.path):
        return []
    try:
        return config_mismatch(load_checkpoint(cell.path)["config"], cell.cfg)
    except (CheckpointError, KeyError, TypeError):
        return ["weights (the file does not load)"]


def train_cell(cell: Cell, progress: bool) -> tuple[str, int, float]:
    """Train (or reuse, or resume) the cell's checkpoint; returns (path, epoch resumed from, seconds). A
    checkpoint of other settings under its name is replaced (bench.study refuses that without --retrain)."""
    from zoo.train import train

    path = cell.path
    stale = stale_settings(cell)
    if os.path.exists(path) and not stale:
        print(f"reuse {path}", file=sys.stderr)
        return path, -1, 0.0
    if stale:  # same name, other settings (the preset changed): retrain rather than report stale numbers
        print(f"{path} was trained with other {', '.join(stale)}; retraining", file=sys.stderr)
        os.remove(path)
    start = resumed_epoch(path)
    t0 = time.perf_counter()
    print(f"train {cell.name}" + (f" (resuming after epoch {start})" if start else ""), file=sys.stderr)
    path = train(cell.cfg, resume=True, progress=progress)
    return path, start, time.perf_counter() - t0


def evaluations(p: Preset, data: str, device: str, out: str, progress: bool, compile_: bool = False,
                retry_failed: bool = False) -> tuple:
    """(the settings, the evaluations) of each checkpoint, as bench.eval.engine takes them: clean, PGD per norm,
    AutoAttack per norm, corruptions, the sharpness and feature measures, each with its number of points (rows in
    OUT/results.jsonl and OUT/measures.jsonl, each claimed and cached)."""
    from bench.attacks.registry import grid_attack, robustbench_attack
    from bench.eval.engine import EvalSettings, plan
    from bench.eval.measures import measures_spec

    settings = EvalSettings(data=data, device=device, out=out, progress=progress, pgd_steps=p.pgd_steps,
                            corruptions=",".join(p.corruptions) if p.corruptions else None,
                            compile="inductor" if compile_ else None, retry_failed=retry_failed)
    asked = [replace(settings, attacks="clean", n_examples=p.eval_n)]
    asked += [replace(settings, attacks=grid_attack(), norm=norm, eps=",".join(eps), n_examples=p.eval_n)
              for norm, eps in p.eval_eps.items()]
    asked += [replace(settings, attacks=robustbench_attack(), norm=norm, eps=",".join(eps), n_examples=p.aa_n)
              for norm, eps in p.aa_eps.items()]
    asked.append(replace(settings, attacks="corruptions", n_examples=p.eval_n))
    return settings, [spec for s in asked for spec in plan(s)] + [measures_spec(p.feature_eps, p.measure_n)]


def bench_cell(p: Preset, path: str, data: str, device: str, out: str, progress: bool, compile_: bool = False,
               retry_failed: bool = False) -> list:
    """Run the cell's evaluations and measures through bench.eval.engine, in one run; returns every evaluation's
    Outcome."""
    from bench.eval.engine import evaluate

    settings, specs = evaluations(p, data, device, out, progress, compile_, retry_failed)
    print(f"bench: {len(specs)} evaluations", file=sys.stderr)
    return evaluate([path], settings, specs)
