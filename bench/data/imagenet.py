"""RobustBench's ImageNet evaluation points: the first n of its fixed 5000-image list of the validation set, in
the list's order, with the list's labels, through Res256Crop224 (Resize 256, CenterCrop 224) exactly as
robustbench's `load_imagenet` computes it.

The folder is ImageNet's own layout, `DIR/val/<wnid>/<file>.JPEG`. Only the first n images are read (RobustBench's
loader needs every class folder of the list to exist; this one does not), decoded by a pool of threads (Pillow
releases the GIL while it decodes and resizes) a bounded number at a time, and kept as uint8: 5000 points at
224x224 are 5000 x 3 x 224 x 224 bytes = 753 MB, and each batch of decoding holds at most `IN_FLIGHT` decoded
images besides. A point in [0,1] is the uint8 image / 255, which equals torchvision's ToTensor bit for bit.
"""
from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec

import numpy as np
import torch

from zoo.data import DataError

SIZE = 224  # Res256Crop224: the short side resized to 256, then the centre 224 x 224
RESIZE = 256
MAX_POINTS = 5000  # RobustBench's list
NUM_CLASSES = 1000
IN_FLIGHT = 256  # images decoded at once (about 39 MB of 224 x 224 RGB besides the result)
# a line of the list: `<wnid>/<file>`; nothing else may name a file to open
ENTRY = re.compile(r"^n[0-9]{8}/[A-Za-z0-9_.-]{1,100}\.(JPEG|jpeg|jpg|JPG|png|PNG)$")
WNID = re.compile(r"^n[0-9]{8}$")


def helper_file(name: str) -> str:
    """A file robustbench ships in its helper_files folder, found without importing robustbench."""
    spec = find_spec("robustbench")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("robustbench is not installed: it ships ImageNet's 5000-image list; "
                        "`pip install robustbench==1.1.1`")
    path = os.path.join(list(spec.submodule_search_locations)[0], "helper_files", name)
    if not os.path.isfile(path):
        raise DataError(f"robustbench's {name} is missing from {os.path.dirname(path)}; reinstall robustbench==1.1.1")
    return path


def image_list() -> list[tuple[str, int]]:
    """RobustBench's 5000 (relative path, label) pairs in its order; the label is the class's index in ImageNet's
    class map (the index robustbench's loader gives when every class folder exists)."""
    with open(helper_file("imagenet_class_to_id_map.json"), encoding="utf-8") as f:
        class_ids = json.load(f)
    if (not isinstance(class_ids, dict) or len(class_ids) != NUM_CLASSES
            or sorted(class_ids.values()) != list(range(NUM_CLASSES)) or not all(WNID.match(k) for k in class_ids)):
        raise DataError("robustbench's imagenet_class_to_id_map.json is not a map of 1000 wnids to 0..999; "
                        "reinstall robustbench==1.1.1")
    out = []
    with open(helper_file("imagenet_test_image_ids.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            entry = line.strip()
            if not ENTRY.match(entry) or entry.split("/")[0] not in class_ids:
                raise DataError(f"robustbench's imagenet_test_image_ids.txt line {i + 1} is not <wnid>/<file>; "
                                "reinstall robustbench==1.1.1")
            out.append((entry, class_ids[entry.split("/")[0]]))
    return out


def val_folder(root: str) -> str:
    val = os.path.join(root, "val")
    if not os.path.isdir(val):
        raise DataError(f"imagenet:{root} has no val/ folder; pass the folder that holds ImageNet's val/<wnid>/"
                        "<file>.JPEG")
    return val


def missing_images(root: str, n: int = MAX_POINTS) -> list[str]:
    """The images of the first n points that are not in DIR/val (relative paths, in list order)."""
    val = val_folder(root)
    return [e for e, _ in image_list()[:n] if not os.path.isfile(os.path.join(val, e))]


def _preprocess(img, preprocessing: str):
    from torchvision import transforms

    if preprocessing == "Res256Crop224":  # the clean points
        return transforms.CenterCrop(SIZE)(transforms.Resize(RESIZE)(img))
    if preprocessing == "Res224":  # ImageNet-C: robustbench resizes its 224 x 224 files to 224 x 224 only
        return transforms.Resize([SIZE, SIZE])(img)
    raise ValueError(f"unknown preprocessing {preprocessing!r}")


def decode(path: str, preprocessing: str = "Res256Crop224") -> np.ndarray:
    """One image as robustbench reads it (PIL, RGB) through its preprocessing (Res256Crop224: Resize(256) and
    CenterCrop(224); Res224: Resize([224, 224])): uint8 H x W x 3."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    return np.array(_preprocess(img, preprocessing), dtype=np.uint8)  # a writable copy: torch.from_numpy shares it


def load_points(root: str, n: int, workers: int | None = None, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x uint8 n x 3 x 224 x 224, y int64 n): the first n points of the list from DIR/val. A missing or
    unreadable image is a one-line DataError naming it."""
    return load_folder(val_folder(root), n, f"imagenet:{root}",
                       f"`python -m bench.data imagenet:{root} --check --n-examples {n}` lists them", workers, progress)


def load_folder(folder: str, n: int, what: str, hint: str, workers: int | None = None, progress=None,
                preprocessing: str = "Res256Crop224") -> tuple[torch.Tensor, torch.Tensor]:
    """The first n points of the list from a folder of <wnid>/<file> images (DIR/val, or one ImageNet-C
    corruption and severity: robustbench's `load_imagenetc` reads those through the same list, Res224)."""
    if not 1 <= n <= MAX_POINTS:
        raise DataError(f"--n-examples {n}: RobustBench's ImageNet list has {MAX_POINTS} points; pass 1..{MAX_POINTS}")
    entries = image_list()[:n]
    gone = [e for e, _ in entries if not os.path.isfile(os.path.join(folder, e))]
    if gone:
        more = f" and {len(gone) - 1} more" if len(gone) > 1 else ""
        raise DataError(f"{what}: {os.path.basename(folder)}/{gone[0]} is missing{more} (RobustBench's list, first "
                        f"{n} points); {hint}")
    x = torch.empty(n, 3, SIZE, SIZE, dtype=torch.uint8)
    y = torch.tensor([label for _, label in entries], dtype=torch.int64)
    workers = workers or min(16, os.cpu_count() or 1)

    def one(i: int) -> int:
        path = os.path.join(folder, entries[i][0])
        try:
            x[i] = torch.from_numpy(decode(path, preprocessing)).permute(2, 0, 1)
        except Exception as e:  # noqa: BLE001 - a truncated or non-image file
            raise DataError(f"{what}: {os.path.basename(folder)}/{entries[i][0]} cannot be decoded ({type(e).__name__}: "
                            f"{str(e).strip()[:100]}); replace it with ImageNet's file") from e
        return i

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, n, IN_FLIGHT):
            for _ in pool.map(one, range(start, min(n, start + IN_FLIGHT))):
                if progress is not None:
                    progress(1)
    return x, y


def corruption_set(folder: str, name: str, severity: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n points of one ImageNet-C set, FOLDER/<corruption>/<severity>/<wnid>/<file> as the official
    ImageNet-C ships, Res224 as robustbench's corruptions evaluation reads them: (uint8 n x H x W x 3, labels),
    the layout of bench.corruptions' sets."""
    x, y = load_folder(os.path.join(folder, name, str(severity)), n, f"ImageNet-C {folder}",
                       f"ImageNet-C's {name}/{severity} folder must hold RobustBench's first {n} images", None, None,
                       "Res224")
    return x.permute(0, 2, 3, 1).numpy(), y.numpy()


def write_synthetic_folder(root: str, n: int, seed: int = 0, folder: str = "val", class_folders: bool = True,
                           size: tuple[int, int] | None = None) -> str:
    """An ImageNet-shaped folder for tests and speed checks: every class folder of ImageNet's class map (as
    robustbench's own loader needs them) and, as JPEGs of assorted sizes (or `size`, as ImageNet-C's 224 x 224),
    the first n images of the list, under ROOT/FOLDER."""
    from PIL import Image

    with open(helper_file("imagenet_class_to_id_map.json"), encoding="utf-8") as f:
        wnids = list(json.load(f))
    val = os.path.join(root, folder)
    entries = image_list()[:n]
    for wnid in wnids if class_folders else sorted({e.split("/")[0] for e, _ in entries}):
        os.makedirs(os.path.join(val, wnid), exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (entry, _) in enumerate(entries):
        h, w = size or (int(rng.integers(180, 400)), int(rng.integers(180, 400)))
        # smooth colour fields plus noise: JPEG-like content, not flat colour
        base = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        pixels = np.asarray(img, dtype=np.int16) + rng.integers(-20, 21, size=(h, w, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(os.path.join(val, entry), "JPEG", quality=90)
    return root
