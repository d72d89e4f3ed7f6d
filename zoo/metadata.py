"""What a checkpoint's metadata may hold: every field has a type and a range, checked when the file is loaded.

A checkpoint from someone else is untrusted input, and its metadata ends up in rows, leaderboards, web pages,
generated Python and commands shown to the user. The writers escape for their formats; this check makes sure
that what reaches them is what a sharpbench checkpoint can hold (a known recipe or an identifier, names, finite
numbers, short strings without control characters), so a malformed file is refused at the door with one line
naming the field, instead of failing later inside a report.
"""
from __future__ import annotations

import math
import re

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")  # architecture names (timm: resnet18, vit_b.augreg)
SHA256 = re.compile(r"^[0-9a-f]{64}$")
CLASS_NAME = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")  # a folder's name: no control characters or separators
MAX_CLASSES = 100000
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # recipes, field names
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # newlines, escapes, NUL, Unicode line separators
MAX_TEXT = 512  # characters in one metadata string (a dataset spec holding a path is the longest)
MAX_HISTORY = 100_000  # epochs
SEED_RANGE = 2 ** 63


class MetadataError(ValueError):
    """One field of a checkpoint's metadata is malformed; the message names it."""


def text(value, field: str, max_len: int = MAX_TEXT, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str):
        raise MetadataError(f"{field} is {type(value).__name__}, not a string")
    if len(value) > max_len:
        raise MetadataError(f"{field} is {len(value)} characters long (at most {max_len})")
    if CONTROL.search(value):
        raise MetadataError(f"{field} holds a control character (newline, escape, NUL)")
    if pattern is not None and not pattern.match(value):
        raise MetadataError(f"{field} {value[:40]!r} is not a name ({pattern.pattern})")
    return value


def number(value, field: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False,
           optional: bool = False):
    if value is None and optional:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise MetadataError(f"{field} is {type(value).__name__}, not {'an integer' if integer else 'a number'}")
    if not math.isfinite(value):
        raise MetadataError(f"{field} is {value}, not a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise MetadataError(f"{field} is {value}, outside {lo}..{hi}")
    return value


def flag(value, field: str, optional: bool = False):
    if value is None and optional:
        return value
    if not isinstance(value, bool):
        raise MetadataError(f"{field} is {type(value).__name__}, not true/false")
    return value


def choice(value, field: str, options) -> str:
    if value not in options:
        raise MetadataError(f"{field} is {str(value)[:40]!r}, not one of {', '.join(map(repr, options))}")
    return value


def plain(value, field: str):
    """A value of a field this version does not know: a number, a flag, null or a short string."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return number(value, field)
    return text(value, field)


def mapping(value, field: str, keys=None) -> dict:
    if not isinstance(value, dict):
        raise MetadataError(f"{field} is {type(value).__name__}, not a mapping")
    for k in value:
        if not isinstance(k, str) or not IDENTIFIER.match(k):
            raise MetadataError(f"{field} has a key {str(k)[:40]!r} that is not an identifier")
        if keys is not None and k not in keys:
            raise MetadataError(f"{field} has an unknown key {k!r} (known: {', '.join(sorted(keys))})")
    return value


def radius(value, field: str) -> str:
    """An eps or step size as the CLI writes it ("8/255", "0.5", "" for the default)."""
    from zoo.pgd import parse_eps

    text(value, field, max_len=32)
    if value:
        try:
            v = parse_eps(value)
        except ValueError:
            raise MetadataError(f"{field} {value!r} is not a radius like 8/255 or 0.5") from None
        number(v, field, lo=0, hi=1e6)
    return value


def check_config(cfg) -> None:
    """A resolved TrainConfig as stored; fields of later versions must still be plain values."""
    from zoo.config import COMPILE_STEP_MODES, TrainConfig

    mapping(cfg, "config")
    rules = {
        "arch": lambda v, f: text(v, f, 128, NAME), "recipe": lambda v, f: text(v, f, 64, IDENTIFIER),
        "data": text, "data_dir": text, "device": lambda v, f: text(v, f, 64), "out": text,
        "n_train": lambda v, f: number(v, f, lo=0, integer=True, optional=True),
        "image_size": lambda v, f: number(v, f, lo=1, hi=4096, integer=True, optional=True),
        "epochs": lambda v, f: number(v, f, lo=0, hi=1e6, integer=True),
        "batch_size": lambda v, f: number(v, f, lo=1, hi=1e7, integer=True),
        "lr": lambda v, f: number(v, f, lo=0), "momentum": lambda v, f: number(v, f, lo=0),
        "weight_decay": lambda v, f: number(v, f, lo=0), "schedule": lambda v, f: choice(v, f, ("piecewise", "cosine")),
        "rho": lambda v, f: number(v, f, lo=0, optional=True), "adaptive": flag,
        "looksam_k": lambda v, f: number(v, f, lo=1, hi=1e6, integer=True),
        "looksam_alpha": lambda v, f: number(v, f, lo=0), "gsam_alpha": lambda v, f: number(v, f, lo=0),
        "esam_beta": lambda v, f: number(v, f, lo=0, hi=1), "esam_gamma": lambda v, f: number(v, f, lo=0, hi=1),
        "rwp_sigma": lambda v, f: number(v, f, lo=0), "rwp_lambda": lambda v, f: number(v, f, lo=0, hi=1),
        "beta": lambda v, f: number(v, f, lo=0), "gamma": lambda v, f: number(v, f, lo=0),
        "norm": lambda v, f: choice(v, f, ("Linf", "L2")), "eps": radius, "alpha": radius,
        "steps": lambda v, f: number(v, f, lo=0, hi=1e6, integer=True),
        "seed": lambda v, f: number(v, f, lo=-SEED_RANGE, hi=SEED_RANGE, integer=True),
        "amp": lambda v, f: choice(v, f, ("", "bf16", "off")),
        "channels_last": lambda v, f: flag(v, f, optional=True),
        "compile": lambda v, f: text(v, f, 64, re.compile(r"^$|^[A-Za-z_][A-Za-z0-9_]*$")),
        "compile_step": lambda v, f: choice(v, f, COMPILE_STEP_MODES), "drop_last": flag,
    }
    assert set(rules) == {f for f in TrainConfig.__dataclass_fields__}, "a TrainConfig field has no rule"
    for k, v in cfg.items():
        rules.get(k, plain)(v, f"config.{k}")


def check_dataset(ds) -> None:
    mapping(ds, "dataset", keys={"spec", "n_train", "n_test", "augment", "classes", "fingerprint", "image_size"})
    if "spec" in ds:
        text(ds["spec"], "dataset.spec")
    if "classes" in ds:
        class_list(ds["classes"], "dataset.classes")
    if "fingerprint" in ds:
        text(ds["fingerprint"], "dataset.fingerprint", 64, SHA256)
    if "image_size" in ds:
        number(ds["image_size"], "dataset.image_size", lo=1, hi=4096, integer=True)
    for k in ("n_train", "n_test"):
        if k in ds:
            number(ds[k], f"dataset.{k}", lo=0, integer=True, optional=True)
    if "augment" in ds:
        aug = mapping(ds["augment"], "dataset.augment", keys={"pad", "flip"})
        if "pad" in aug:
            number(aug["pad"], "dataset.augment.pad", lo=0, hi=32, integer=True)
        if "flip" in aug:
            flag(aug["flip"], "dataset.augment.flip")


def class_list(value, field: str) -> list[str]:
    """Class names (a folder's class folders): at most MAX_CLASSES, each a file name without control characters
    or path separators."""
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_CLASSES:
        raise MetadataError(f"{field} is not a list of 2..{MAX_CLASSES} class names")
    for i, v in enumerate(value):
        text(v, f"{field}[{i}]", 255, CLASS_NAME)
    return value


def check_normalization(norm) -> None:
    mapping(norm, "normalization", keys={"mean", "std"})
    stats = [norm.get("mean"), norm.get("std")]
    if not all(isinstance(s, (list, tuple)) and 1 <= len(s) <= 4 for s in stats) or len(stats[0]) != len(stats[1]):
        raise MetadataError("normalization is not per-channel mean and std of equal length")
    for i, v in enumerate(stats[0]):
        number(v, f"normalization.mean[{i}]", lo=-1e3, hi=1e3)
    for i, v in enumerate(stats[1]):
        number(v, f"normalization.std[{i}]", lo=1e-6, hi=1e3)  # std = 0 would divide by zero


def check_flat(value, field: str, leaf) -> None:
    for k, v in mapping(value, field).items():
        leaf(v, f"{field}.{k}")


def check_history(history) -> None:
    if not isinstance(history, list):
        raise MetadataError(f"history is {type(history).__name__}, not a list of epochs")
    if len(history) > MAX_HISTORY:
        raise MetadataError(f"history has {len(history)} epochs (at most {MAX_HISTORY})")
    for i, epoch in enumerate(history):
        check_flat(epoch, f"history[{i}]", lambda v, f: number(v, f, optional=True))


CHECKS = {
    "arch": lambda v: text(v, "arch", 128, NAME),
    "recipe": lambda v: text(v, "recipe", 64, IDENTIFIER),
    "seed": lambda v: number(v, "seed", lo=-SEED_RANGE, hi=SEED_RANGE, integer=True, optional=True),
    "config": check_config,
    "dataset": check_dataset,
    "normalization": check_normalization,
    "history": check_history,
    "metrics": lambda v: check_flat(v, "metrics", lambda x, f: number(x, f, optional=True)),
    "versions": lambda v: check_flat(v, "versions", lambda x, f: text(x, f, 64)),
    "created": lambda v: text(v, "created", 64),
    "distributed": lambda v: check_flat(v, "distributed", lambda x, f: number(x, f, optional=True)),
    "precision": lambda v: check_flat(v, "precision", plain),
    "cost": lambda v: check_flat(v, "cost", plain),
}


def check_metadata(ckpt: dict) -> None:
    """Raise MetadataError naming the first malformed field of a checkpoint dict (fields absent are not checked
    here: which are required is the loader's business)."""
    for key, check in CHECKS.items():
        if key in ckpt:
            check(ckpt[key])
