"""What RobustBench accepts as a claim, and why a row is not one: pure functions of rows and the checkpoint.

Each problem is one line: what is wrong with the claim, then the command that fixes it.
"""
from __future__ import annotations

import re

from bench.corruptions.generator import CORRUPTIONS, SEVERITIES

RB_N = 10_000  # the full CIFAR test set, in order
RB_EPS = {"Linf": ("8/255", 8 / 255), "L2": ("0.5", 0.5)}  # the leaderboards' fixed radii
AA_STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]
# the threat models RobustBench 1.1.1 keeps a CIFAR leaderboard (and a zoo dictionary) for
LEADERBOARDS = {"cifar10": ("Linf", "L2", "corruptions"), "cifar100": ("Linf", "corruptions")}
NAME_RULE = re.compile(r"^[A-Z][A-Za-z]*[0-9]{4}[A-Z][A-Za-z0-9_]*$")  # <Surname><Year><FirstWordOfTitle>[_suffix]


def _rerun(ckpt: str, dataset: str, attacks: str, extra: str = "") -> str:
    return f"`python -m bench.run --models {ckpt} --attacks {attacks} --data {dataset} --n-examples {RB_N}{extra}`"


def name_problems(name: str) -> list[str]:
    if not name.isidentifier():
        return [f"model name {name!r} is not a Python identifier (RobustBench's files and zoo entries are named "
                "after it); pass --name like Smith2026Sharpness"]
    if not NAME_RULE.match(name):
        return [f"model name {name!r} does not follow RobustBench's <Surname><Year><FirstWordOfTitle> (e.g. "
                "Wong2020Fast); pass such a --name"]
    return []


def leaderboard_problems(dataset: str, threat: str) -> list[str]:
    if threat not in LEADERBOARDS.get(dataset, ()):
        have = ", ".join(f"{d}: {'/'.join(t)}" for d, t in LEADERBOARDS.items())
        return [f"RobustBench has no {dataset} {threat} leaderboard ({have}); pick one of these"]
    return []


def row_problems(row: dict, *, ckpt: str, dataset: str, threat: str, eps_str: str, eps: float) -> list[str]:
    """Why this measured row cannot be RobustBench's number for (dataset, threat); [] when it can."""
    out = []
    attacks = "clean,corruptions --corruptions-source official" if threat == "corruptions" else "clean,autoattack"
    if row.get("data") != dataset or row.get("n") != RB_N:
        out.append(f"the {row.get('attack')} row was measured on the first {row.get('n')} test points of "
                   f"{row.get('data')}; RobustBench's claim is over all {RB_N} {dataset} test points in order: "
                   f"run {_rerun(ckpt, dataset, attacks)}")
    if threat == "corruptions":
        cfg = row.get("attack_config", {})
        if cfg.get("source") != "official" or row.get("corruption_source") != "official":
            out.append(f"the corruptions row used {row.get('corruption_source', cfg.get('source'))} sets; "
                       "RobustBench's corruptions number is over the official files: run "
                       f"{_rerun(ckpt, dataset, 'corruptions', ' --corruptions-source official')}")
        missing = sorted(set(CORRUPTIONS) - set(cfg.get("names", [])))
        if missing or sorted(cfg.get("severities", [])) != list(SEVERITIES):
            out.append(f"the corruptions row covers {len(cfg.get('names', []))} corruptions x "
                       f"{len(cfg.get('severities', []))} severities (missing: {', '.join(missing) or 'none'}); "
                       f"RobustBench's number is the mean over all {len(CORRUPTIONS)} x {len(SEVERITIES)}: rerun "
                       "without --corruptions")
        return out
    want_str, want = RB_EPS[threat]
    if abs(eps - want) > 1e-9:
        out.append(f"RobustBench's {threat} leaderboard is at eps {want_str}, not {eps_str}: export with --eps "
                   f"{want_str} after running {_rerun(ckpt, dataset, 'autoattack', f' --norm {threat} --eps {want_str}')}")
    cfg = row.get("attack_config", {})
    if row.get("attack") != "autoattack" or cfg.get("version") != "standard" or cfg.get("stages") != AA_STANDARD:
        out.append(f"the claim comes from {row.get('attack')} ({', '.join(cfg.get('stages', [])) or 'no stages'}); "
                   f"RobustBench requires AutoAttack standard ({', '.join(AA_STANDARD)}): run "
                   f"{_rerun(ckpt, dataset, 'autoattack', f' --norm {threat} --eps {want_str}')}")
    return out


def additional_data(train_spec: str, dataset: str, stated: bool | None) -> tuple[bool, list[str]]:
    """RobustBench's `additional_data`: does training use data beyond the benchmark's own training set?"""
    if stated is not None:
        return stated, []
    if train_spec == dataset:
        return False, []
    return False, [f"the model was trained on {train_spec}, not the {dataset} training set, so whether it used "
                   "additional data cannot be read off the checkpoint: pass --additional-data true or false"]
