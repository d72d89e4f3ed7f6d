"""Files written atomically: a temporary file beside the target, renamed into place, so that a kill never
leaves half a file and a reader never sees one."""
from __future__ import annotations

import os

import torch


def save_atomic(obj, path: str) -> None:
    """torch.save to a temporary file beside the target, fsync, rename."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """A file written beside the target and renamed into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_text_atomic(path: str, text: str) -> None:
    """A UTF-8 text file written beside the target and renamed into place."""
    write_bytes_atomic(path, text.encode("utf-8"))
