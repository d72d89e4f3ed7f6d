"""The bench's defaults, each said once: where a run writes, its rows' file, the radii, the retry bound."""
from __future__ import annotations

import os

OUT = "runs/bench"  # bench.run's --out: the user's work, ignored by git; the repository's results/ holds committed figures
ROWS_FILE = "results.jsonl"  # a results folder's rows (append-only); leaderboards, reports and the site read them
MEASURES_FILE = "measures.jsonl"  # its sharpness and feature-perturbation rows (bench.eval.measures), beside them

# the threat models RobustBench 1.1.1 keeps a leaderboard (and a zoo dictionary) for, per dataset; ImageNet's
# corruptions_3d is not one this bench evaluates
RB_LEADERBOARDS = {"cifar10": ("Linf", "L2", "corruptions"), "cifar100": ("Linf", "corruptions"),
                   "imagenet": ("Linf", "corruptions")}
# RobustBench's leaderboards' fixed radii (CIFAR-10/100; ImageNet's Linf one is its own)
RB_EPS = {"Linf": "8/255", "L2": "0.5"}
IMAGENET_EPS = {"Linf": "4/255"}
# a norm's radius when --eps is not given: RobustBench's, and at L1 the 12 Croce & Hein's "Mind the box"
# (ICML 2021) evaluates CIFAR-10 at
DEFAULT_EPS = {**RB_EPS, "L1": "12"}

# The retry policy, for bench.run and the study alike. An evaluation that failed this many times on the same
# file and settings is refused without running: a bad setting fails the same way every time, while an
# evaluation may also meet a passing fault (out of memory beside another job, a full disk). A model's load
# depends on the file's bytes only, so a load that failed once is refused until the file changes. A worker
# killed mid-way writes no failed row and does not count. --retry-failed runs either once more regardless.
MAX_FAILURES = 3
MAX_LOAD_FAILURES = 1


def rows_path(out: str) -> str:
    """The rows of results folder `out`."""
    return os.path.join(out, ROWS_FILE)


def measures_path(out: str) -> str:
    """The measures' rows of results folder `out`."""
    return os.path.join(out, MEASURES_FILE)
