"""What a study's grid costs on a given GPU, projected from measured speeds: training and evaluation hours.

    project(preset, speeds, k_speedup) -> {"train_h", "eval_h", "cells": [...]}

speeds holds what gpu_check measured on the device in front of it: training images/s of the standard, SAM and
PGD-AT(10) steps; PGD's seconds per image per step; AutoAttack's seconds per image on a standard and on a PGD-AT
model (AutoAttack spends its time on the points still robust, so robust models cost more); a forward's seconds
per image. Adversarial training with s attack steps is interpolated from standard (no attack) and PGD-AT(10):
each attack step costs the same. k_speedup: aggregate images/s of K trainings sharing the GPU over one alone,
per recipe family; evaluation runs large batches that fill the GPU, so it is not sped up by K.
"""
from __future__ import annotations

from bench.grid.cells import Cell, cells
from bench.grid.presets import Preset

TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}


def seconds_per_image(cfg, speeds: dict) -> float:
    """Training seconds per image of one config, from the measured standard, SAM and PGD-AT(10) speeds: each
    forward-backward pass beyond the first (Recipe.passes) costs what SAM's second costs, each attack step a
    tenth of what PGD-AT(10) adds to standard training."""
    from zoo.recipes import get_recipe

    t_std, t_sam, t_at10 = 1 / speeds["standard"], 1 / speeds["sam"], 1 / speeds["pgd_at"]
    per_attack_step = (t_at10 - t_std) / 10
    recipe = get_recipe(cfg.recipe)
    attack = cfg.steps if recipe.adversarial else 0
    return t_std + (recipe.passes(cfg) - 1) * (t_sam - t_std) + attack * per_attack_step


def family(recipe: str) -> str:
    """Which measured AutoAttack rate and K-per-GPU speed-up a recipe's cells take: adversarial training's or
    standard training's."""
    from zoo.recipes import get_recipe

    return "pgd_at" if get_recipe(recipe).adversarial else "standard"


def evaluation_seconds(p: Preset, cell: Cell, speeds: dict) -> float:
    """The preset's evaluations of one checkpoint: PGD over its eps grid, AutoAttack over its eps, corruptions."""
    pgd = sum(len(e) for e in p.eval_eps.values()) * p.eval_n * p.pgd_steps * speeds["pgd_s_per_image_step"]
    robust = family(cell.cfg.recipe) == "pgd_at"
    aa_rate = speeds["aa_s_per_image_pgd_at" if robust else "aa_s_per_image_standard"]
    aa = sum(len(e) for e in p.aa_eps.values()) * p.aa_n * aa_rate
    n_sets = 75 if p.corruptions is None else 5 * len(p.corruptions)
    corruptions = (n_sets + 1) * p.eval_n * speeds["forward_s_per_image"]
    return pgd + aa + corruptions


def project(p: Preset, speeds: dict, k_speedup: dict | None = None, train_images: int | None = None) -> dict:
    """Hours of the preset's grid (every seed) on one GPU: training at K per GPU, evaluation at one."""
    k_speedup = k_speedup or {}
    images = train_images or TRAIN_IMAGES.get(p.data, 50_000)
    out = []
    for cell in cells(p, "cuda", "zoo"):
        n = cell.cfg.n_train or images
        train_s = cell.cfg.epochs * n * seconds_per_image(cell.cfg, speeds)
        train_s /= k_speedup.get(family(cell.cfg.recipe), 1.0)
        out.append({"cell": cell.name, "train_s": train_s, "eval_s": evaluation_seconds(p, cell, speeds)})
    return {"train_h": sum(c["train_s"] for c in out) / 3600, "eval_h": sum(c["eval_s"] for c in out) / 3600,
            "cells": out}
