"""Adversarial images beside the rows: what makes a robust-accuracy row checkable by anyone.

An attack row run with --save-adversarial names one file, OUT/adversarial/<row key>.pt: a float32 tensor shaped
like the evaluated test points (n x C x H x W, in [0,1]), RobustBench's format for external evaluations. A
point the attack did not fool keeps what the attack returned. The row holds the file's path (relative to the
results folder) and its sha256; bench.verify replays it. Files from elsewhere are data: read with
torch.load(weights_only=True) after their size and checksum are checked.
"""
from __future__ import annotations

import os
import re

import torch

from zoo.checkpoint import sha256_file
from zoo.files import save_atomic
from zoo.errors import typed_line

FOLDER = "adversarial"
REF = re.compile(r"^adversarial/[0-9a-f]{20}\.pt$")  # what a row may name: nothing outside the results folder
MAX_BYTES = 64 * 2 ** 30  # ImageNet's 5000 points at 224 are 3 GB in float32; more than this is no test set


class AdversarialError(ValueError):
    """Why a file of adversarial images cannot be used; one line naming the file."""


def save_images(results_dir: str, key: str, x_adv: torch.Tensor) -> dict:
    """Write the images atomically under results_dir; returns what the row records about them."""
    rel = f"{FOLDER}/{key}.pt"
    path = os.path.join(results_dir, rel)
    save_atomic(x_adv.detach().to("cpu", torch.float32).contiguous(), path)
    return {"path": rel, "sha256": sha256_file(path), "shape": list(x_adv.shape)}


def load_images(path: str, *, sha256: str | None = None, shape: tuple | None = None,
                max_bytes: int = MAX_BYTES) -> torch.Tensor:
    """The tensor in path, checked: size, checksum (when given), a plain float tensor, the shape (when given),
    finite values in [0,1]. Raises AdversarialError naming what is wrong."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise AdversarialError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size > max_bytes:
        raise AdversarialError(f"{path}: {size} bytes, more than any test set's images ({max_bytes})")
    if sha256 is not None and sha256_file(path) != sha256:
        raise AdversarialError(f"{path}: sha256 differs from the row's: the file was changed after the row")
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a pickle, a truncated zip, random bytes: all the same to us
        raise AdversarialError(f"{path}: not a tensor file torch can load safely "
                               f"({typed_line(e)})") from None
    if isinstance(x, dict) and "x" in x:  # {"x": tensor, "y": labels}: bench.data's layout
        x = x["x"]
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise AdversarialError(f"{path}: holds {type(x).__name__}"
                               f"{' of ' + str(x.dtype) if torch.is_tensor(x) else ''}, not a float tensor")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise AdversarialError(f"{path}: shape {tuple(x.shape)}, the test points are {tuple(shape)}")
    x = x.float()
    bad = ~torch.isfinite(x.flatten(1)).all(1) if x.dim() > 1 else ~torch.isfinite(x)
    if bad.any():
        raise AdversarialError(f"{path}: point {int(bad.nonzero()[0])} holds NaN or infinity")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        i = int(((x < 0) | (x > 1)).flatten(1).any(1).nonzero()[0])
        raise AdversarialError(f"{path}: point {i} has values outside [0,1]")
    return x
