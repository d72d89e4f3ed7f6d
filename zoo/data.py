"""Datasets as uint8 NCHW tensors, and device-resident batching with on-device augmentation.

Specs accepted by `load_dataset`:
  cifar10      torchvision's CIFAR-10, downloaded into --data-dir when a network exists
  cifar100     torchvision's CIFAR-100 (100 classes), likewise: RobustBench's second CIFAR leaderboard
  npz:PATH     uint8 arrays x_train, y_train, x_test, y_test (NCHW or NHWC)
  digits       scikit-learn's bundled handwritten digits, brought to 3x32x32 (offline default)
  synthetic    a seeded, learnable 10-class image task for tests
  folder:DIR   your own images in torchvision's ImageFolder layout, DIR/train/<class>/* and DIR/test/<class>/*
               (zoo.folder); any class count from 2, any one image size (or --image-size S)
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

DATA_SPECS = ("cifar10", "cifar100", "npz:PATH", "digits", "synthetic", "folder:DIR")


class DataError(ValueError):
    """Bad --data input; the message is one line naming the problem and the fix."""


@dataclass
class Dataset:
    name: str  # the spec it was loaded from
    x_train: torch.Tensor  # uint8 (N, 3, 32, 32)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    # training augmentation, a property of the data: CIFAR's random crop (pad 4) and horizontal flip; digits get
    # small shifts only, because a mirrored 2 or 5 is not the same digit
    augment: dict = field(default_factory=lambda: {"pad": 4, "flip": True})
    classes: list[str] | None = None  # the class names, when the data names them (folder:DIR)
    fingerprint: str | None = None  # sha256 of the data's content, when it is read from files we list (folder:DIR)
    test_fingerprint: str | None = None  # the same for the test split alone: the points rows are keyed on

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images in [0,1]: the model's built-in normalization."""
        x = self.x_train.double() / 255.0
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)  # a constant channel must not divide by zero
        return [round(v, 6) for v in mean.tolist()], [round(v, 6) for v in std.tolist()]


def _to_nchw(x: np.ndarray, what: str, path: str) -> np.ndarray:
    if x.ndim != 4:
        raise DataError(f"{path}: {what} has shape {x.shape}; expected 4-D images (N,3,H,W) or (N,H,W,3)")
    if x.shape[1] == 3:
        return x
    if x.shape[3] == 3:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise DataError(f"{path}: {what} has shape {x.shape}; expected 3 colour channels in axis 1 (NCHW) or 3 (NHWC)")


def _from_npz(path: str) -> Dataset:
    if not os.path.exists(path):
        raise DataError(f"npz file not found: {path}; pass --data npz:PATH with an existing file, or --data digits")
    try:
        arrays = np.load(path)
        found = {k: arrays[k] for k in arrays.files}
    except Exception as e:  # a truncated or non-npz file
        raise DataError(f"cannot read {path} as .npz ({type(e).__name__}: {e}); re-create it with numpy.savez") from e
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in found]
    if missing:
        raise DataError(f"{path}: missing arrays {missing}; an npz dataset needs x_train, y_train, x_test, y_test")
    out = {}
    for split in ("train", "test"):
        x, y = found[f"x_{split}"], found[f"y_{split}"]
        if x.dtype != np.uint8:
            raise DataError(f"{path}: x_{split} has dtype {x.dtype}; expected uint8 pixels in 0..255")
        x = _to_nchw(x, f"x_{split}", path)
        if x.shape[2:] != (32, 32):
            raise DataError(f"{path}: x_{split} images are {x.shape[2]}x{x.shape[3]}; expected 32x32")
        y = np.asarray(y).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{path}: y_{split} has {y.shape[0]} labels for {x.shape[0]} images")
        if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
            raise DataError(f"{path}: y_{split} must hold non-negative integer class labels")
        out[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))
    num_classes = int(max(out["train"][1].max(), out["test"][1].max())) + 1
    return Dataset(f"npz:{path}", *out["train"], *out["test"], num_classes=num_classes)


def _from_torchvision(name: str, data_dir: str) -> Dataset:
    """CIFAR-10 or CIFAR-100 through torchvision (downloaded once into data_dir)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, title, archive, classes = {"cifar10": (CIFAR10, "CIFAR-10", "cifar-10-python.tar.gz", 10),
                                    "cifar100": (CIFAR100, "CIFAR-100", "cifar-100-python.tar.gz", 100)}[name]
    try:
        train = cls(data_dir, train=True, download=True)
        test = cls(data_dir, train=False, download=True)
    except Exception as e:  # offline: urllib raises URLError, torchvision a RuntimeError
        raise DataError(
            f"cannot load {title} into {data_dir} ({type(e).__name__}); offline, use --data digits, "
            f"--data npz:PATH or put {archive} into --data-dir"
        ) from e

    def pack(ds):
        return torch.from_numpy(ds.data.transpose(0, 3, 1, 2).copy()), torch.tensor(ds.targets, dtype=torch.int64)

    return Dataset(name, *pack(train), *pack(test), num_classes=classes)


def _from_digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()  # 1797 real 8x8 handwritten digits, values 0..16, shipped inside scikit-learn
    x = torch.from_numpy(d.images).float().div(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    y = torch.from_numpy(d.target).long()
    # a fixed shuffle so both splits hold every writer and class; 360 test images as in sklearn's examples
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return Dataset("digits", x[360:], y[360:], x[:360], y[:360], num_classes=10, augment={"pad": 2, "flip": False})


def make_synthetic(n_train: int = 512, n_test: int = 256, num_classes: int = 10, seed: int = 0) -> Dataset:
    """Each class is a fixed random low-frequency colour pattern; images add noise and a random shift."""
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(torch.rand(num_classes, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear")

    def sample(n):
        y = torch.randint(0, num_classes, (n,), generator=g)
        x = 0.6 * templates[y] + 0.2 + 0.15 * torch.randn(n, 3, 32, 32, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    return Dataset("synthetic", *sample(n_train), *sample(n_test), num_classes=num_classes)


def _from_folder(root: str, image_size: int | None) -> Dataset:
    from zoo.folder import check_image_size, class_names, load_split, test_folder

    image_size = check_image_size(image_size)
    classes = class_names(root)
    test = test_folder(root)
    train = load_split(root, "train", classes, image_size)
    tested = load_split(root, test, classes, image_size, in_turn=True)
    if train.x.shape[2:] != tested.x.shape[2:]:
        raise DataError(f"folder:{root}: train/ images are {train.x.shape[3]}x{train.x.shape[2]} and {test}/ images "
                        f"{tested.x.shape[3]}x{tested.x.shape[2]}; pass --image-size S to bring both to S x S")
    fingerprint = hashlib.sha256(f"{train.fingerprint}\n{tested.fingerprint}\n".encode()).hexdigest()
    side = int(train.x.shape[-1])
    # CIFAR's augmentation at the images' scale (pad 4 at 32 pixels): a folder's classes are not known to be
    # mirror-symmetric, but most photographs are
    return Dataset(f"folder:{root}", train.x, train.y, tested.x, tested.y, num_classes=len(classes),
                   augment={"pad": max(1, side // 8), "flip": True}, classes=classes, fingerprint=fingerprint,
                   test_fingerprint=tested.fingerprint)


def load_dataset(spec: str, data_dir: str = "data", n_train: int | None = None,
                 image_size: int | None = None) -> Dataset:
    if image_size is not None and not spec.startswith("folder:"):
        raise DataError(f"--image-size is for folder:DIR data; {spec} has its own size")
    if spec.startswith("folder:"):
        from zoo.folder import FolderError

        try:
            ds = _from_folder(spec[len("folder:"):], image_size)
        except FolderError as e:
            raise DataError(str(e)) from None
    elif spec in ("cifar10", "cifar100"):
        ds = _from_torchvision(spec, data_dir)
    elif spec.startswith("npz:"):
        ds = _from_npz(spec[4:])
    elif spec == "digits":
        ds = _from_digits()
    elif spec == "synthetic":
        ds = make_synthetic()
    else:
        raise DataError(f"unknown --data {spec!r}; choose one of {', '.join(DATA_SPECS)}")
    if n_train is not None:
        if n_train <= 0:
            raise DataError(f"--n-train must be positive, got {n_train}")
        ds.x_train, ds.y_train = ds.x_train[:n_train], ds.y_train[:n_train]
    return ds


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with reflect padding (a shift of up to `pad` pixels) plus, if flip, a horizontal flip,
    batched on x's device (float NCHW).

    The offsets are drawn by `gen`, a generator on x's device: no host-to-device copy and no sync in a step.
    CPU and CUDA generators draw different (equally distributed) offsets for the same seed."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)
    flipped = torch.rand(n, generator=gen, device=x.device) < 0.5
    flip = flipped if flip else torch.zeros_like(flipped)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, :]  # (n, 1, w)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


class DeviceLoader:
    """Batches from uint8 tensors held on the device; the order of epoch e depends only on (seed, e), and the
    augmentation of epoch e only on (seed, e) and the device type (its generator lives on the device)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device, *, train: bool,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world: int = 1, augment: dict | None = None):
        self.x, self.y = x.to(device), y.to(device)
        self.augment = augment or {"pad": 4, "flip": True}
        self.batch_size, self.train, self.seed, self.drop_last = batch_size, train, seed, drop_last
        self.rank, self.world = rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> torch.Tensor:
        n = len(self.y)
        if not self.train:
            return torch.arange(n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
        usable = n - n % self.world  # every rank sees the same number of batches under DDP
        return perm[:usable][self.rank::self.world]

    def __len__(self) -> int:  # called every step (the LR schedule): arithmetic only, no permutation
        n = len(self.y) if not self.train else (len(self.y) - len(self.y) % self.world) // self.world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        idx = self._indices()  # once per epoch, outside the steps
        if self.x.device.type == "cuda":  # a pageable copy would block the host: copy from pinned memory, async
            idx = idx.pin_memory().to(self.x.device, non_blocking=True)
        else:
            idx = idx.to(self.x.device)
        gen = torch.Generator(device=self.x.device).manual_seed(self.seed * 7919 + self.epoch + 1)
        for b in range(len(self)):
            j = idx[b * self.batch_size:(b + 1) * self.batch_size]
            xb = self.x[j].float().div_(255.0)
            if self.train:
                xb = random_crop_flip(xb, gen, pad=self.augment["pad"], flip=self.augment["flip"])
            yield xb, self.y[j]
