"""A few adversarial examples of a row, as people would rather see them than read about them: the clean image,
the adversarial one, the perturbation amplified for view, and the model's labels before and after.

Built from what the row names (its stored images, checked against their sha256), the test points of its
dataset and the checkpoint its rows were computed on. Anything missing (the dataset is not on this machine, the
file was moved) means no gallery, never a failed site.
"""
from __future__ import annotations

import io
import os

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHOWN = 4  # points per attack row


def _png(chw) -> bytes:
    from PIL import Image

    arr = (chw.clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().numpy())
    img = Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0])
    img = img.resize((img.width * 3, img.height * 3), Image.NEAREST)  # 32 px is too small to see
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def class_name(data: str, label: int, classes=None) -> str:
    """A label's name: the row's own class names (an image folder's), CIFAR-10's, else the number."""
    if isinstance(classes, list) and 0 <= label < len(classes):
        return str(classes[label])
    return CIFAR10[label] if "cifar10" in data and "cifar100" not in data and 0 <= label < 10 else str(label)


def examples(row: dict, folder: str, model, pts) -> list[dict]:
    """Up to SHOWN points the row counts as fooled: index, true/clean/adversarial labels, the Linf or L2
    distance, and three PNGs (clean, adversarial, perturbation scaled to fill [0,1] around grey). pts: the row's
    points (bench.data.load_points), loaded once by the caller for all rows on them."""
    import torch

    from bench.attacks.predict import predict
    from bench.store.adversarial import load_images
    from bench.store.points import decode_states
    from zoo.pgd import perturbation_size

    ref = row.get("adversarial")
    if not ref or "points" not in row or model is None:
        return []
    x = pts.x[:row["n"]].float().div(255)
    y = pts.y[:row["n"]]
    x_adv = load_images(os.path.join(folder, ref["path"]), sha256=ref["sha256"], shape=tuple(x.shape))
    clean_ok, robust_ok = decode_states(row["points"])
    idx = [int(i) for i in (clean_ok & ~robust_ok).nonzero()[0][:SHOWN]]
    if not idx:
        return []
    pick = torch.tensor(idx)
    with torch.no_grad():
        model = model.float().eval()
        before, after = predict(model, x[pick], 64), predict(model, x_adv[pick], 64)
    out = []
    for k, i in enumerate(idx):
        delta = x_adv[i] - x[i]
        scale = float(delta.abs().max()) or 1.0
        dist = float(perturbation_size(delta[None], row.get("norm") or "Linf")[0])
        names = row.get("classes")
        out.append({"index": i, "label": class_name(row["data"], int(y[i]), names),
                    "before": class_name(row["data"], int(before[k]), names),
                    "after": class_name(row["data"], int(after[k]), names),
                    "distance": dist, "png": {"clean": _png(x[i]), "adversarial": _png(x_adv[i]),
                                              "perturbation": _png(0.5 + 0.5 * delta / scale)}})
    return out
