"""A few fooled points of an attack row, as people would rather see them than read about them: the clean image,
the adversarial one, the perturbation amplified around grey, and the model's labels before and after.

Drawn by whoever holds the model and the points already: the engine as it keeps a row's images
(--save-adversarial), bench.verify as it replays them. They lie beside the images, OUT/adversarial/<key>.gallery.json
naming its PNGs, so the site copies them and never loads a model or a dataset. The site reads the index as any
file from a results folder: checked, and skipped when it is not what this module writes.
"""
from __future__ import annotations

import io
import json
import os
import re

from bench.store.adversarial import FOLDER
from zoo.files import write_bytes_atomic, write_text_atomic

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHOWN = 4  # points per attack row
KINDS = ("clean", "adversarial", "perturbation")
PNG = re.compile(r"^[0-9a-f]{20}-[0-9]{1,7}-(clean|adversarial|perturbation)\.png$")
MAX_INDEX_BYTES = 64 << 10


def _png(chw) -> bytes:
    from PIL import Image

    arr = (chw.clamp(0, 1).permute(1, 2, 0).mul(255).round().byte().numpy())
    img = Image.fromarray(arr if arr.shape[2] == 3 else arr[:, :, 0])
    img = img.resize((img.width * 3, img.height * 3), Image.NEAREST)  # 32 px is too small to see
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def label_name(data: str, label: int, classes=None) -> str:
    """A label's name: the row's own class names (an image folder's), CIFAR-10's, else the number."""
    if isinstance(classes, list) and 0 <= label < len(classes):
        return str(classes[label])
    return CIFAR10[label] if "cifar10" in data and "cifar100" not in data and 0 <= label < 10 else str(label)


def index_path(results_dir: str, key: str) -> str:
    return os.path.join(results_dir, FOLDER, f"{key}.gallery.json")


def draw(row: dict, model, x, y, x_adv) -> list[dict]:
    """Up to SHOWN points the row counts as fooled: index, true/clean/adversarial labels, the distance in the
    row's norm, and three PNGs. x, y: the row's points ([0,1]); x_adv: its images."""
    import torch

    from bench.attacks.predict import predict
    from bench.store.points import decode_states
    from zoo.pgd import perturbation_size

    clean_ok, robust_ok = decode_states(row["points"])
    idx = [int(i) for i in (clean_ok & ~robust_ok).nonzero()[0][:SHOWN]]
    if not idx:
        return []
    pick = torch.tensor(idx)
    device = next((p.device for p in model.parameters()), x.device) if hasattr(model, "parameters") else x.device
    x, x_adv, y = x[pick.to(x.device)].to(device), x_adv[pick.to(x_adv.device)].to(device), y[pick.to(y.device)].cpu()
    with torch.no_grad():
        before, after = predict(model, x, len(idx)).cpu(), predict(model, x_adv, len(idx)).cpu()
    x, x_adv = x.float().cpu(), x_adv.float().cpu()
    out, names = [], row.get("classes")
    for k, i in enumerate(idx):
        delta = x_adv[k] - x[k]
        scale = float(delta.abs().max()) or 1.0
        out.append({"index": i, "label": label_name(row["data"], int(y[k]), names),
                    "before": label_name(row["data"], int(before[k]), names),
                    "after": label_name(row["data"], int(after[k]), names),
                    "distance": float(perturbation_size(delta[None], row.get("norm") or "Linf")[0]),
                    "png": {"clean": _png(x[k]), "adversarial": _png(x_adv[k]),
                            "perturbation": _png(0.5 + 0.5 * delta / scale)}})
    return out


def write_gallery(results_dir: str, row: dict, model, x, y, x_adv) -> str | None:
    """Draw the row's gallery beside its images; returns the index's path (None: no fooled point to show)."""
    items = draw(row, model, x, y, x_adv)
    if not items:
        return None
    for it in items:
        for kind, data in it.pop("png").items():
            it[kind] = f"{row['key']}-{it['index']}-{kind}.png"
            write_bytes_atomic(os.path.join(results_dir, FOLDER, it[kind]), data)
    path = index_path(results_dir, row["key"])
    write_text_atomic(path, json.dumps({"key": row["key"], "sha256": row["adversarial"]["sha256"],
                                        "items": items}, indent=1) + "\n")
    return path


def read_gallery(results_dir: str, row: dict) -> list[dict]:
    """The gallery drawn for this row's images: [] when there is none, or when its index is not what
    write_gallery writes for this row (another row's, other images', a type out of place, a file name of
    another form)."""
    path = index_path(results_dir, row["key"])
    try:
        if os.path.getsize(path) > MAX_INDEX_BYTES:
            return []
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return []
    if not isinstance(index, dict) or index.get("key") != row["key"] or \
            index.get("sha256") != (row.get("adversarial") or {}).get("sha256"):
        return []
    items = index.get("items")
    if not isinstance(items, list) or len(items) > SHOWN:
        return []
    out = []
    for it in items:
        if not (isinstance(it, dict) and isinstance(it.get("index"), int) and not isinstance(it["index"], bool)
                and 0 <= it["index"] < int(row.get("n") or 0)
                and all(isinstance(it.get(k), str) and len(it[k]) <= 200 for k in ("label", "before", "after"))
                and isinstance(it.get("distance"), (int, float)) and not isinstance(it["distance"], bool)
                and all(isinstance(it.get(k), str) and PNG.match(it[k]) and it[k].startswith(row["key"])
                        and os.path.isfile(os.path.join(results_dir, FOLDER, it[k])) for k in KINDS)):
            return []
        out.append({k: it[k] for k in ("index", "label", "before", "after", "distance", *KINDS)})
    return out
