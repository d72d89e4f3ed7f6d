"""Which study a zoo folder's checkpoints belong to: each study owns its own (bench.study's OUT/zoo by default),
and a second study never silently replaces the first one's checkpoints.

The claim is a small file in the zoo folder naming the study's results folder, relative to the zoo folder, so
that moving a study (its results and its zoo together) keeps it.
"""
from __future__ import annotations

import json
import os

ZOO_OWNER = ".study.json"  # in a zoo folder: which study's checkpoints it holds


def claim_zoo(study, retrain: bool) -> None:
    """Each study owns its checkpoints folder. A folder that another study (another --out) claims, or that holds
    one of this grid's checkpoint names trained with other settings, is refused in one line naming both, unless
    retrain: a second study never silently replaces the first one's checkpoints. The folder is then claimed."""
    from bench.grid.cells import stale_settings

    # the study's folder as seen from the zoo folder: the claim survives moving both together (the default zoo
    # folder, OUT/zoo, says "..")
    mine = os.path.relpath(os.path.realpath(study.out), os.path.realpath(study.zoo_dir))
    held = _claim(study.zoo_dir)
    if not retrain:
        if held is not None and held != mine:
            raise ValueError(f"--zoo-dir {study.zoo_dir} holds the checkpoints of the study in "
                             f"{os.path.normpath(os.path.join(study.zoo_dir, held))}, not of this one ({study.out}); "
                             "leave --zoo-dir out (each study keeps its own, OUT/zoo), or pass --retrain to take the "
                             "folder over (checkpoints of other settings are trained again)")
        for cell in study.cells():
            stale = stale_settings(cell)
            if stale:
                raise ValueError(f"{cell.path} was trained with other {', '.join(stale)}, not by this study "
                                 f"({study.out}); pass another --zoo-dir, or --retrain to replace it")
    os.makedirs(study.zoo_dir, exist_ok=True)
    if held != mine:
        from zoo.files import write_text_atomic

        write_text_atomic(os.path.join(study.zoo_dir, ZOO_OWNER), json.dumps({"out": mine}) + "\n")


def _claim(zoo_dir: str) -> str | None:
    """The claim's results folder, relative to the zoo folder, as written; None when there is no readable one."""
    try:
        with open(os.path.join(zoo_dir, ZOO_OWNER), encoding="utf-8") as f:
            held = json.load(f)["out"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return held if isinstance(held, str) else None


def claimed_out(zoo_dir: str) -> str | None:
    """The results folder of the study that claims this zoo folder (a path usable from here), or None."""
    held = _claim(zoo_dir)
    return None if held is None else os.path.normpath(os.path.join(zoo_dir, held))
