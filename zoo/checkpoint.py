"""Self-describing checkpoints: atomic writes, safe loads (weights_only=True), rebuild the model from metadata."""
from __future__ import annotations

import hashlib
import os
import pickle
import platform
import zipfile

import torch

REQUIRED = ("model", "arch", "num_classes", "normalization")


class CheckpointError(ValueError):
    """A missing, unreadable or inconsistent checkpoint; the message is one line naming the file and the fix."""


def save_atomic(obj, path: str) -> None:
    """Write to a temporary file beside the target and rename: a kill never leaves a half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    import timm

    import zoo

    return {"sharpbench": zoo.__version__, "torch": str(torch.__version__), "timm": str(timm.__version__),
            "python": platform.python_version()}


def load_checkpoint(path: str) -> dict:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}; train one with `python -m zoo.train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        first = next((ln for ln in lines if "Unsupported global" in ln), lines[0])  # the informative line
        raise CheckpointError(f"cannot read checkpoint {path} ({first[:160]}); re-train or re-download it") from e
    return ckpt


def model_from_checkpoint(ckpt: dict, path: str = "<checkpoint>"):
    """Rebuild the architecture named in the checkpoint and load its weights (eval mode, CPU)."""
    from zoo.models import create_model

    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a sharpbench checkpoint (missing {missing}); for a plain "
                              "state_dict pass --arch")
    norm = ckpt["normalization"]
    model = create_model(ckpt["arch"], ckpt["num_classes"], norm["mean"], norm["std"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit arch {ckpt['arch']!r} "
                              f"({str(e).splitlines()[0][:160]})") from e
    return model.eval()
