"""A user's own images, in torchvision's ImageFolder layout, as a dataset: `--data folder:DIR`.

  DIR/train/<class>/<image>      the training split
  DIR/test/<class>/<image>       the test split (or DIR/val/<class>/<image>)

As ImageFolder does: the classes are train's sorted folder names, a class's files are found by a sorted walk
of its folder (sub-folders included), only image extensions count, and every image is read with Pillow and
converted to RGB. The label of a test image is its class's index among train's classes.

Each split is decoded once, by a pool of threads (Pillow releases the GIL while it decodes), into uint8 at one
size: the images' own when they all agree, else `image_size` (shorter side resized to it, bilinear with
antialiasing, then the centre square; torchvision's Resize and CenterCrop). A point in [0,1] is the uint8 image
/ 255: torchvision's ToTensor bit for bit.

The test split's points are ordered with the classes in turn (the first image of each class, then the second of
each, ...; ImageFolder's order within a class), so the first n points of an evaluation hold every class,
as CIFAR's test set does, instead of ImageFolder's class-by-class order.

A split's identity is a content fingerprint: the sha256 of its files' relative names, labels and bytes, and the
size setting. Rows key on it, so two folders never share cached rows and a changed folder is evaluated anew.
"""
from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

PREFIX = "folder:"
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
TEST_FOLDERS = ("test", "val")  # the first that exists is the test split
LAYOUT = "DIR/train/<class>/<image> and DIR/test/<class>/<image> (torchvision's ImageFolder layout)"


class FolderError(ValueError):
    """A folder that cannot be read as a dataset; the message is one line naming the problem and the fix (callers
    raise it on as their DataError)."""


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8 (N, 3, S, S)
    y: torch.Tensor  # int64 (N,)
    files: tuple[str, ...]  # relative to DIR, in the order of x
    fingerprint: str  # sha256 hex of the files' names, labels, bytes and the size setting


def _error(root: str, what: str) -> FolderError:
    return FolderError(f"{PREFIX}{root}: {what}")


def class_names(root: str) -> list[str]:
    """Train's class folders, sorted as ImageFolder sorts them; at least two."""
    if not os.path.isdir(root):
        raise _error(root, f"no such folder; lay your images out as {LAYOUT}")
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise _error(root, f"no train/ folder; lay your images out as {LAYOUT}")
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    if len(classes) < 2:
        found = f" ({classes[0]})" if classes else ""
        raise _error(root, f"train/ holds {len(classes)} class folder{'s' * (len(classes) != 1)}{found}; a "
                           "classifier needs at least 2")
    return classes


def test_folder(root: str) -> str:
    for name in TEST_FOLDERS:
        if os.path.isdir(os.path.join(root, name)):
            return name
    raise _error(root, f"no test/ (or val/) folder; lay your images out as {LAYOUT}")


def list_split(root: str, split: str, classes: list[str]) -> list[tuple[str, int]]:
    """(path relative to root, label) of every image of a split, in ImageFolder's order."""
    index = {c: i for i, c in enumerate(classes)}
    here = sorted(e.name for e in os.scandir(os.path.join(root, split)) if e.is_dir())
    stray = [c for c in here if c not in index]
    if stray:
        raise _error(root, f"{split}/{stray[0]} has no train/{stray[0]}; a test class must be one of train's "
                           f"{len(classes)} class folders")
    out = []
    for c in here:
        found = []
        for folder, _, names in sorted(os.walk(os.path.join(root, split, c), followlinks=True)):
            for name in sorted(names):
                if name.lower().endswith(EXTENSIONS):
                    found.append(os.path.relpath(os.path.join(folder, name), root))
        if not found:
            raise _error(root, f"{split}/{c} holds no images ({', '.join(EXTENSIONS)}); add images or remove the "
                               "folder")
        out += [(f, index[c]) for f in found]
    if not out:
        raise _error(root, f"{split}/ holds no class folders; put its images in {split}/<class>/, as train/'s")
    return out


def classes_in_turn(labels: list[int]) -> list[int]:
    """Positions of `labels` reordered so the classes take turns (order kept within each class)."""
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(c, []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    return [q[k] for k in range(max(map(len, queues), default=0)) for q in queues if k < len(q)]


def _decode(root: str, rel: str, image_size: int | None) -> tuple[np.ndarray, str]:
    """(uint8 H x W x 3, sha256 of the file's bytes): the image as ImageFolder's loader reads it."""
    from PIL import Image

    with open(os.path.join(root, rel), "rb") as f:
        data = f.read()
    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
        if image_size is not None:
            from torchvision import transforms

            img = transforms.CenterCrop(image_size)(transforms.Resize(image_size)(img))
        pixels = np.array(img, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - whatever Pillow makes of a truncated or non-image file
        raise _error(root, f"{rel} cannot be decoded ({type(e).__name__}); replace or remove it") from e
    return pixels, hashlib.sha256(data).hexdigest()


def load_split(root: str, split: str, classes: list[str], image_size: int | None = None, *, in_turn: bool = False,
               workers: int | None = None, progress=None) -> Split:
    """One split decoded: every image at one size (see the module's docstring)."""
    entries = list_split(root, split, classes)
    if in_turn:
        entries = [entries[i] for i in classes_in_turn([label for _, label in entries])]
    workers = workers or min(16, os.cpu_count() or 1)
    decoded: list = [None] * len(entries)

    def one(i: int) -> None:
        decoded[i] = _decode(root, entries[i][0], image_size)
        if progress is not None:
            progress(1)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(len(entries))))
    sizes = {}
    for (rel, _), (pixels, _) in zip(entries, decoded):
        sizes.setdefault(pixels.shape[:2], rel)
        if len(sizes) > 1:
            (a, fa), (b, fb) = list(sizes.items())[:2]
            raise _error(root, f"images differ in size ({fa} is {a[1]}x{a[0]}, {fb} is {b[1]}x{b[0]}); pass "
                               "--image-size S (shorter side resized to S, then the centre S x S)")
    digest = hashlib.sha256(f"sharpbench-folder/1 image_size={image_size}\n".encode())
    for (rel, label), (_, file_sha) in zip(entries, decoded):
        digest.update(f"{rel}\t{label}\t{file_sha}\n".encode())
    x = torch.from_numpy(np.stack([p for p, _ in decoded])).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([label for _, label in entries], dtype=torch.int64)
    return Split(x, y, tuple(rel for rel, _ in entries), digest.hexdigest())


def check_image_size(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 1024:
        raise FolderError(f"--image-size {value!r}: pass a side length in pixels, 8..1024")
    return value
