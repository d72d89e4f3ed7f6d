"""What RobustBench accepts as a claim, and why a row is not one: pure functions of rows and the checkpoint.

Each problem is one line: what is wrong with the claim, then the command that fixes it.
"""
from __future__ import annotations

import functools
import re

from bench.attacks.registry import counts_for_robustbench, robustbench_attack
from bench.corruptions.generator import CORRUPTIONS, SEVERITIES
from bench.defaults import IMAGENET_EPS, RB_EPS, RB_LEADERBOARDS
from bench.report.escape import sh
from zoo.pgd import parse_eps

RB_N = 10_000  # the full CIFAR test set, in order
FULL_N = {"imagenet": 5000}  # ImageNet's leaderboards: RobustBench's fixed list of 5000 validation images
AA_STANDARD = ["apgd-ce", "apgd-t", "fab-t", "square"]


def full_n(dataset: str) -> int:
    """The points a claim on `dataset` is over: the whole test set (ImageNet: RobustBench's 5000-image list)."""
    return FULL_N.get(dataset, RB_N)


def leaderboard_eps(dataset: str, threat: str) -> tuple[str, float]:
    """The fixed radius of RobustBench's (dataset, threat) leaderboard: ("8/255", 8/255) for CIFAR Linf."""
    eps = (IMAGENET_EPS if dataset == "imagenet" else RB_EPS)[threat]
    return eps, parse_eps(eps)
# what a name may hold at all: it names files (model_info/<ds>/<threat>/<Name>.json, models/.../<Name>.pt), so no
# path separators, dots or spaces; RobustBench's own names use letters, digits, '_' and '-' (Jia2022LAS-AT_34_10)
SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
# RobustBench's convention: <Surname><Year><FirstWordOfTitle>, then an optional suffix (Wang2023Better_WRN-70-16)
NAME_RULE = re.compile(r"^[A-Z][A-Za-z]*[0-9]{4}[A-Za-z0-9_-]*$")


def _rerun(ckpt: str, dataset: str, attacks: str, extra: str = "") -> str:
    data = "imagenet:DIR" if dataset == "imagenet" else dataset
    return (f"`python -m bench.run --models {sh(ckpt)} --attacks {attacks} --data {data} --n-examples "
            f"{full_n(dataset)}{extra}`")


@functools.lru_cache(maxsize=1)
def zoo_names() -> dict[tuple[str, str], frozenset]:
    """{(dataset, threat model): names} in robustbench's model-zoo dictionaries, as installed."""
    from bench.deps import import_robustbench

    import_robustbench()
    from robustbench.model_zoo import model_dicts

    return {(ds.value, tm.value): frozenset(entries) for ds, d in model_dicts.items() for tm, entries in d.items()}


def unsafe_name(name: str) -> list[str]:
    """Fatal even for a draft: a name that cannot be a file name in RobustBench's repository."""
    if not SAFE_NAME.match(name):
        return [f"model name {name[:60]!r} cannot name RobustBench's files: use letters, digits, '_' and '-', "
                "starting with a letter (e.g. Smith2026Sharp or Smith2026Sharp_WRN-28-10)"]
    return []


def name_problems(name: str, dataset: str | None = None, threat: str | None = None) -> list[str]:
    """Why RobustBench would not take this name: not its convention (names its own zoo holds are accepted), or
    already taken in the leaderboard the claim is for."""
    out = unsafe_name(name)
    if out:
        return out
    known = set().union(*zoo_names().values())
    if not NAME_RULE.match(name) and name not in known:
        out.append(f"model name {name!r} does not follow RobustBench's <Surname><Year><FirstWordOfTitle> (e.g. "
                   "Wong2020Fast, Wang2023Better_WRN-70-16); pass such a --name")
    if dataset and threat and name in zoo_names().get((dataset, threat), ()):
        out.append(f"model name {name!r} already names an entry of RobustBench's {dataset} {threat} zoo; pass "
                   "another --name (e.g. with a suffix)")
    return out


def paper_problems(*, title: str, link: str, venue: str, reported: str | None) -> list[str]:
    """RobustBench renders an empty link and an empty venue as such: a submission states all four."""
    out = []
    for flag, value in (("--title", title), ("--link", link), ("--venue", venue)):
        if not (value or "").strip():
            out.append(f"{flag} is empty; RobustBench shows the paper's {flag[2:]} on its leaderboard: pass "
                       f"{flag} (for a paper not yet out, e.g. --venue 'arXiv, Nov 2026' and the preprint's link)")
    if reported is None or not str(reported).strip():
        out.append("--reported is missing: RobustBench shows the robust accuracy the paper reports beside its own; "
                   "pass --reported (the paper's number, in %)")
    return out


CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}  # the classes RobustBench's loaders build each with


# training data that is known not to be any RobustBench dataset (an npz file may be a copy of CIFAR; the tests'
# synthetic images stand in for one and are taken by their class count)
OTHER_DATA = ("digits",)
OTHER_DATA_PREFIXES = ("folder:",)


def leaderboard_problems(dataset: str, threat: str, num_classes: int | None = None,
                         train_data: str | None = None) -> list[str]:
    """Fatal even for a draft: no such leaderboard, a model trained on data that is no RobustBench dataset (its
    images are not the leaderboard's, whatever its class count), or a model whose class count is not the dataset's
    (RobustBench builds every entry with the dataset's classes, so the weights would not load)."""
    from bench.report.escape import public_spec

    if train_data in OTHER_DATA or str(train_data or "").startswith(OTHER_DATA_PREFIXES):
        return [f"the model was trained on {public_spec(train_data)}, not a RobustBench dataset "
                f"({', '.join(RB_LEADERBOARDS)}): it has no RobustBench leaderboard (publish it with --hf DIR instead)"]
    if threat not in RB_LEADERBOARDS.get(dataset, ()):
        have = ", ".join(f"{d}: {'/'.join(t)}" for d, t in RB_LEADERBOARDS.items())
        return [f"RobustBench has no {dataset} {threat} leaderboard ({have}); pick one of these"]
    if num_classes is not None and num_classes != CLASSES[dataset]:
        return [f"the model has {num_classes} classes and RobustBench's {dataset} leaderboards take "
                f"{CLASSES[dataset]}; a model trained on other data has no RobustBench leaderboard (publish it with "
                "--hf DIR instead)"]
    return []


def row_problems(row: dict, *, ckpt: str, dataset: str, threat: str, eps_str: str, eps: float) -> list[str]:
    """Why this measured row cannot be RobustBench's number for (dataset, threat); [] when it can."""
    out = []
    attacks = "clean,corruptions --corruptions-source official" if threat == "corruptions" else "clean,autoattack"
    if row.get("data") != dataset or row.get("n") != full_n(dataset):
        out.append(f"the {row.get('attack')} row was measured on the first {row.get('n')} test points of "
                   f"{row.get('data')}; RobustBench's claim is over all {full_n(dataset)} {dataset} test points in "
                   "order: "
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
    want_str, want = leaderboard_eps(dataset, threat)
    if abs(eps - want) > 1e-9:
        out.append(f"RobustBench's {threat} leaderboard is at eps {want_str}, not {eps_str}: export with --eps "
                   f"{want_str} after running {_rerun(ckpt, dataset, robustbench_attack(), f' --norm {threat} --eps {want_str}')}")
    cfg = row.get("attack_config", {})
    if not counts_for_robustbench(row.get("attack")) or cfg.get("version") != "standard" or cfg.get("stages") != AA_STANDARD:
        out.append(f"the claim comes from {row.get('attack')} ({', '.join(cfg.get('stages', [])) or 'no stages'}); "
                   f"RobustBench requires AutoAttack standard ({', '.join(AA_STANDARD)}): run "
                   f"{_rerun(ckpt, dataset, robustbench_attack(), f' --norm {threat} --eps {want_str}')}")
    elif row.get("rb_standard") is False:
        from bench.report.results import protocol_note

        out.append(f"the AutoAttack row is not RobustBench's standard protocol: {protocol_note(row)}")
    return out


def additional_data(train_spec: str, dataset: str, stated: bool | None) -> tuple[bool, list[str]]:
    """RobustBench's `additional_data`: does training use data beyond the benchmark's own training set?"""
    if stated is not None:
        return stated, []
    if train_spec == dataset:
        return False, []
    return False, [f"the model was trained on {train_spec}, not the {dataset} training set, so whether it used "
                   "additional data cannot be read off the checkpoint: pass --additional-data true or false"]
