"""The points an evaluation runs on: the first n test images of a --data spec, in order.

  points = load_points("imagenet:/data/imagenet", n=5000)   # RobustBench's ImageNet protocol
  points = load_points("cifar10", data_dir="data", n=10000)

Specs: those of zoo.data (cifar10, cifar100, npz:PATH, digits, synthetic, folder:DIR) and `imagenet:DIR` (or `imagenet` with
--data-dir DIR), RobustBench's 5000-image list of ImageNet's validation set through Res256Crop224
(bench.data.imagenet). `python -m bench.data SPEC --n-examples N --save FILE` writes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from zoo.data import DATA_SPECS as TRAIN_SPECS
from zoo.data import DataError, load_dataset

DATA_SPECS = (*TRAIN_SPECS, "imagenet:DIR")
IMAGENET = "imagenet"  # the name rows carry: the points are RobustBench's, whichever folder holds them


@dataclass
class Points:
    name: str  # the data's name in rows (the spec; `imagenet` for any ImageNet folder)
    x: torch.Tensor  # uint8 (n, 3, H, W)
    y: torch.Tensor  # int64 (n,)
    num_classes: int
    root: str | None = None  # where ImageNet's folder is (its ImageNet-C files are found beside it)
    classes: list[str] | None = None  # the class names, when the data names them (folder:DIR)
    fingerprint: str | None = None  # sha256 of the test split's files (folder:DIR): what rows are keyed on

    @property
    def identity(self) -> str:
        """What a row's cache key holds for the data: its content where we fingerprint it, else its name."""
        return f"folder-sha256:{self.fingerprint}" if self.fingerprint else self.name


def imagenet_root(spec: str, data_dir: str) -> str | None:
    """The folder of an ImageNet spec (`imagenet:DIR`, or `imagenet` with --data-dir), or None for other data."""
    if spec.startswith(IMAGENET + ":"):
        return spec[len(IMAGENET) + 1:]
    return data_dir if spec == IMAGENET else None


def load_points(spec: str, data_dir: str = "data", n: int = 10000, progress: bool = False,
                image_size: int | None = None) -> Points:
    """The first n test points of `spec` (fewer when the data has fewer)."""
    if n <= 0:
        raise DataError(f"--n-examples must be positive, got {n}")
    if spec.startswith("folder:"):
        from zoo.folder import FolderError

        try:
            return _folder_points(spec[len("folder:"):], n, progress, image_size)
        except FolderError as e:
            raise DataError(str(e)) from None
    root = imagenet_root(spec, data_dir)
    if root is not None:
        from tqdm import tqdm

        from bench.data.imagenet import MAX_POINTS, NUM_CLASSES
        from bench.data.imagenet import load_points as load_imagenet

        n = min(n, MAX_POINTS)
        with tqdm(total=n, desc="decoding ImageNet", disable=not progress, leave=False) as bar:
            x, y = load_imagenet(root, n, progress=bar.update)
        return Points(IMAGENET, x, y, NUM_CLASSES, root)
    if spec.startswith(IMAGENET):
        raise DataError(f"unknown --data {spec!r}; ImageNet is imagenet:DIR (DIR holds val/<wnid>/<file>.JPEG)")
    try:
        ds = load_dataset(spec, data_dir)
    except DataError as e:
        if str(e).startswith("unknown --data"):
            raise DataError(f"unknown --data {spec!r}; choose one of {', '.join(DATA_SPECS)}") from None
        raise
    n = min(n, len(ds.y_test))
    return Points(ds.name, ds.x_test[:n], ds.y_test[:n], ds.num_classes)


def _folder_points(root: str, n: int, progress: bool, image_size: int | None) -> Points:
    """The first n test points of an image folder (classes in turn); only the test split is decoded."""
    from tqdm import tqdm

    from zoo.folder import check_image_size, class_names, list_split, load_split, test_folder

    classes, split = class_names(root), test_folder(root)
    total = len(list_split(root, split, classes))
    with tqdm(total=total, desc=f"decoding {split}/", disable=not progress, leave=False) as bar:
        points = load_split(root, split, classes, check_image_size(image_size), in_turn=True, progress=bar.update)
    n = min(n, len(points.y))
    return Points(f"folder:{root}", points.x[:n], points.y[:n], len(classes), classes=classes,
                  fingerprint=points.fingerprint)


def points_of_row(row: dict, data_dir: str = "data", cache: dict | None = None) -> Points:
    """The points a row was computed on: its data, n and image size, and (for a folder) the same content, or a
    DataError naming what changed. With a cache (a dict the caller keeps), rows on the same points read them once."""
    at = (row["data"], row["n"], row.get("image_size"), row.get("data_fingerprint"))
    if cache is not None and at in cache:
        return cache[at]
    pts = load_points(row["data"], data_dir, row["n"], image_size=row.get("image_size"))
    want = row.get("data_fingerprint")
    if want is not None and pts.fingerprint != want:
        raise DataError(f"{row['data']} changed since the row was computed (its test images' fingerprint "
                        f"{str(pts.fingerprint)[:12]} is not the row's {str(want)[:12]}); rerun bench.run on it")
    if cache is not None:
        cache[at] = pts
    return pts
