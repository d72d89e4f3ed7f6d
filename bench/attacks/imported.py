"""Adversarial images made by any tool, recorded as a row: `bench.run --models M --attacks imported:FILE --name
TOOL --norm N --eps E`.

FILE is a tensor of the first n points' adversarial images (n x C x H x W, float in [0,1]): a `.pt` (loaded with
weights_only=True: a bare tensor, or a dict holding one under "adversarial" or "x_adv") or a `.safetensors` file
(its tensor under "adversarial", or its only one). Before any row is written, the images are checked against the
points they claim to attack (check_images): their count and shape, finite values in [0,1], and each inside its
point's ball under the norm. The row is then what the model does on them, as for any attack; the images are kept
beside the rows as --save-adversarial keeps them, so bench.verify replays them, and the row joins the worst case
over attacks. Its key holds the file's sha256 and the tool's name.
"""
from __future__ import annotations

import os
import re

import torch

from bench.attacks.registry import Attack, register
from zoo.checkpoint import sha256_file

TOOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def read_tool_images(path: str, max_bytes: int = 8 << 30) -> torch.Tensor:
    """The images a file holds (see the module's docstring), as float32; one-line ValueError otherwise."""
    if not os.path.isfile(path):
        raise ValueError(f"--attacks imported:{path}: no such file; pass the tool's tensor of adversarial images")
    if os.path.getsize(path) > max_bytes:
        raise ValueError(f"{path} is over {max_bytes >> 30} GiB; pass the images of the first n points only")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            held = load_file(path)
            t = held.get("adversarial") if "adversarial" in held else (next(iter(held.values())) if len(held) == 1
                                                                       else None)
        else:
            held = torch.load(path, map_location="cpu", weights_only=True)
            t = held if torch.is_tensor(held) else next((held[k] for k in ("adversarial", "x_adv")
                                                         if isinstance(held, dict) and torch.is_tensor(held.get(k))),
                                                        None)
    except Exception as e:  # noqa: BLE001 - a damaged or hostile file is refused, whatever it raises
        raise ValueError(f"{path} is not a readable tensor file ({type(e).__name__}); save the images with "
                         "torch.save(x_adv, PATH) or safetensors") from None
    if t is None or not torch.is_tensor(t) or not t.is_floating_point():
        raise ValueError(f"{path} holds no float tensor of images (a bare tensor, or one under 'adversarial')")
    return t.detach().float()


def check_images(images: torch.Tensor, x: torch.Tensor, norm: str, eps: float, path: str) -> None:
    """One-line ValueError unless the images are the first n points' (same count and shape), finite, in [0,1] and
    each inside its point's ball."""
    from zoo.pgd import BALL_TOLERANCE, perturbation_size

    if tuple(images.shape) != tuple(x.shape):
        raise ValueError(f"{path} holds images of shape {tuple(images.shape)} and the first {len(x)} points are "
                         f"{tuple(x.shape)}; pass --n-examples {images.shape[0]} if it holds that many points' images"
                         if images.ndim == 4 and tuple(images.shape[1:]) == tuple(x.shape[1:]) else
                         f"{path} holds images of shape {tuple(images.shape)}, not the data's {tuple(x.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{path} holds NaN or infinite values; an adversarial image is finite")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"{path} holds values outside [0,1] ({float(images.min()):.4g} to {float(images.max()):.4g});"
                         " images are in [0,1], with any normalization inside the model")
    size = perturbation_size(images - x.to(images.device), norm)
    worst = int(size.argmax())
    if float(size[worst]) > eps + BALL_TOLERANCE[norm]:
        raise ValueError(f"{path}: image {worst} is {float(size[worst]):.6g} from its point under {norm}, outside the "
                         f"eps {eps:.6g} ball; pass the --norm and --eps it was made at")


@register("imported", label="Imported", keep_images=True)
def _imported(norm, eps, imported=None, imported_name="imported", **_):
    if not imported:
        raise ValueError("--attacks imported needs its file: --attacks imported:FILE")
    if not TOOL_NAME.match(str(imported_name)):
        raise ValueError(f"--name {str(imported_name)[:40]!r}: a tool's name is letters, digits and _.+- (at most "
                         "64)")
    digest = sha256_file(imported)

    def run(self, model, x, y):
        images = read_tool_images(imported)
        check_images(images, x.cpu(), norm, eps, imported)  # checked before the run too; the file may have changed
        if sha256_file(imported) != digest:
            raise ValueError(f"{imported} changed while it was being evaluated; run again")
        self.info = {"imported": os.path.basename(imported), "tool": imported_name}
        return images.to(x.device)

    cfg = {"attack": "imported", "norm": norm, "eps": round(eps, 10), "file_sha256": digest, "tool": imported_name}
    return Attack("imported", cfg, run)
