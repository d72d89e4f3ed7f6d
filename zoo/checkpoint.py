"""Self-describing checkpoints: atomic writes, safe loads (weights_only=True), verified weights, rebuild from metadata.

Every file a model is rebuilt from is untrusted input. Whatever is wrong with it (missing, truncated, random bytes,
pickled code, wrong structure, weights that do not fit the architecture, damaged tensor bytes, NaN weights) turns
into one `CheckpointError` whose message is one line naming the file and the fix; nothing in it is executed.
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
import stat
import warnings
import zipfile

import torch

from zoo.errors import typed_line

REQUIRED = ("model", "arch", "num_classes", "normalization")
CHECKSUM = "weights_sha256"  # sha256 over the tensors of `model` (and `optimizer` in resume states)
CHECKSUMMED = ("model", "optimizer")
DAMAGED = "weights do not match their checksum: the file is damaged; re-train or re-download it"
MAX_BYTES = 4 << 30  # the largest checkpoint opened unless raised (--max-checkpoint-gb): WRN-70-16 is 1.1 GB
MAX_ENTRIES = 100_000  # zip records in one checkpoint (torch.save writes one per tensor storage, plus a few)


class CheckpointError(ValueError):
    """A missing, unreadable or inconsistent checkpoint; the message is one line naming the file and the fix."""


def tensors_sha256(tree) -> str:
    """sha256 over every tensor in nested dicts/lists, in a defined order (dict keys sorted as strings): for each
    tensor its path, dtype, shape and raw bytes. Non-tensor leaves (numbers, strings) are not covered."""
    h = hashlib.sha256()

    def walk(prefix, obj):
        if torch.is_tensor(obj):
            t = obj.detach().cpu().contiguous()
            h.update(f"{prefix}|{t.dtype}|{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                walk(f"{prefix}/{k}", obj[k])
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)

    walk("", tree)
    return h.hexdigest()


def _checksummed_part(ckpt: dict) -> dict:
    return {k: ckpt[k] for k in CHECKSUMMED if k in ckpt}


def seal(ckpt: dict) -> dict:
    """The checkpoint with the checksum of its weights (and optimizer state) added."""
    return {**ckpt, CHECKSUM: tensors_sha256(_checksummed_part(ckpt))}


def is_verified(ckpt) -> bool:
    """True when the checkpoint carries a checksum (load_checkpoint has already refused a wrong one)."""
    return isinstance(ckpt, dict) and CHECKSUM in ckpt


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_file_hash(cid: str) -> bool:
    """content_id's answer is the file's sha256 (not an 'unreadable:...' description)."""
    return len(cid) == 64 and all(c in "0123456789abcdef" for c in cid)


def content_id(path: str, max_bytes: int = MAX_BYTES) -> str:
    """What identifies a model file's content without trusting it: the sha256 of a regular file under the size
    limit; otherwise what it is and where ('unreadable:...'), so a refusal can be recorded and recognised."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"unreadable:{e.strerror or type(e).__name__}:{os.path.abspath(path)}"
    if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
        return f"unreadable:mode{st.st_mode:o}:size{st.st_size}:{os.path.abspath(path)}"
    try:
        return sha256_file(path)
    except OSError as e:
        return f"unreadable:{e.strerror or type(e).__name__}:{os.path.abspath(path)}"


def versions() -> dict:
    import timm

    import zoo

    return {"sharpbench": zoo.__version__, "torch": str(torch.__version__), "timm": str(timm.__version__),
            "python": platform.python_version()}


def _read_error(path: str, e: Exception) -> CheckpointError:
    """One line for whatever torch.load raised; a refused global (pickled code or objects) is named."""
    refused = re.search(r"GLOBAL ([\w.]+)", str(e))
    if refused:
        return CheckpointError(f"refused {path}: it holds pickled code or objects ({refused.group(1)}); only tensors "
                               "and plain containers are loaded and nothing in it was executed; save the weights as "
                               "a dict of tensors")
    return CheckpointError(f"cannot read checkpoint {path} ({typed_line(e)}); the file is damaged or not a PyTorch "
                           "checkpoint; re-train or re-download it")


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_openable(path: str, max_bytes: int) -> int:
    """Before a byte is read: the path (links resolved) must be a regular, non-empty file under max_bytes. A FIFO
    would block forever and /dev/zero never ends; neither is opened. Returns the file's size."""
    try:
        st = os.stat(path)  # follows links: a link to /dev/zero is judged as /dev/zero
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}; train one with `python -m zoo.train`") from None
    except OSError as e:  # a symlink loop, a name too long, no permission
        raise CheckpointError(f"cannot open checkpoint {path} ({e.strerror or type(e).__name__}); pass an "
                              "existing file") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((what for test, what in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise CheckpointError(f"refused {path}: it is {kind}, not a checkpoint file; pass a regular .pt file")
    if st.st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path} (the file is empty); re-train or re-download it")
    if st.st_size > max_bytes:
        raise CheckpointError(f"refused {path}: {st.st_size / 2**30:.2f} GiB is over the {max_bytes / 2**30:g} GiB "
                              "limit for one checkpoint; raise it with --max-checkpoint-gb if the file is trusted")
    return st.st_size


def _zip_damage(path: str, size: int, max_bytes: int) -> str | None:
    """What is wrong with a zip-format checkpoint's records, or None. Every record's declared size is checked
    against the file before anything is decompressed or read, and compressed records are refused: torch.save
    stores records uncompressed, so a deflated record is a decompression bomb, not a checkpoint. Then the CRC-32
    of every record is checked, which torch.load does not do: a damaged byte anywhere (pickle, names, tensor
    data) is caught, also in files that carry no checksum of ours."""
    try:
        if not zipfile.is_zipfile(path):
            return None  # the legacy format, or not a zip at all: torch.load decides
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > MAX_ENTRIES:
                return f"{len(infos)} zip records, more than a checkpoint has ({MAX_ENTRIES})"
            total = 0
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED:
                    return (f"record {info.filename[:60]!r} is compressed; torch.save stores records uncompressed "
                            "(refused as a possible decompression bomb)")
                if info.file_size > size or info.compress_size > size:
                    return f"record {info.filename[:60]!r} declares {info.file_size} bytes, more than the file holds"
                total += info.file_size
            if total > max(size, max_bytes):
                return f"its records declare {total} bytes, more than the file holds"
            for info in infos:
                if info.CRC == 0 and info.file_size:
                    continue  # saved with torch.serialization.set_crc32_options(False): no CRC to check
                with z.open(info) as f:
                    while f.read(1 << 20):
                        pass
    except Exception as e:  # noqa: BLE001 - zipfile raises BadZipFile, EOFError, ValueError, ... on damage
        return typed_line(e)
    return None


def load_checkpoint(path: str, max_bytes: int = MAX_BYTES) -> dict:
    """torch.load(weights_only=True), every failure as one CheckpointError. Only a regular file under max_bytes
    is opened; zip records are checked (declared sizes, no compression, CRC-32) before torch reads them; a stored
    checksum of the weights is verified."""
    size = _check_openable(path, max_bytes)
    damage = _zip_damage(path, size, max_bytes)
    if damage:
        raise CheckpointError(f"cannot read checkpoint {path} ({damage}): the file is damaged or hostile; "
                              "re-train or re-download it")
    try:
        with warnings.catch_warnings():  # a hostile file must not make torch print paragraphs
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - untrusted bytes make torch.load raise almost anything
        raise _read_error(path, e) from e
    if is_verified(ckpt):
        try:
            ok = ckpt[CHECKSUM] == tensors_sha256(_checksummed_part(ckpt))
        except Exception:  # noqa: BLE001 - a tree too odd to hash (e.g. nested beyond the recursion limit)
            ok = False
        if not ok:
            raise CheckpointError(f"{path}: {DAMAGED}")
    return ckpt


def check_checkpoint(ckpt, path: str) -> None:
    """A checkpoint dict as sharpbench writes it: its required keys, a class count, a state_dict of tensors and
    metadata zoo.metadata accepts; else CheckpointError naming the file."""
    from zoo.metadata import MetadataError, check_metadata

    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        missing = [k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt]
        raise CheckpointError(f"{path} is not a sharpbench checkpoint (missing {missing}); for a plain "
                              "state_dict pass --arch")
    n = ckpt["num_classes"]
    problems = []
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        problems.append(f"num_classes {str(n)[:20]!r} is not a class count")
    sd = ckpt["model"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        problems.append("model is not a state_dict of tensors")
    try:
        check_metadata(ckpt)
    except MetadataError as e:
        problems.append(str(e))
    if problems:
        raise CheckpointError(f"{path} has malformed metadata ({'; '.join(problems)}); re-train or re-download it")


def load_weights(model: torch.nn.Module, sd: dict, path: str, arch: str) -> None:
    """load_state_dict (strict), any failure as one line. Floating tensors may come in another float precision
    (cast on load); a tensor of another kind (integer, bool or complex for a float weight) is refused, as
    load_state_dict would silently cast it."""
    def kind(t):
        return ("complex" if t.is_complex() else "float" if t.is_floating_point()
                else "bool" if t.dtype == torch.bool else "integer")

    expected = model.state_dict()
    for name, t in sd.items():
        if name in expected and torch.is_tensor(t) and kind(t) != kind(expected[name]):
            raise CheckpointError(f"{path}: weight {name} is {t.dtype}, expected {expected[name].dtype}; the file "
                                  f"does not hold arch {arch!r} weights")
    try:
        model.load_state_dict(sd)
    except Exception as e:  # noqa: BLE001 - wrong keys, shapes or dtypes raise RuntimeError, TypeError, ...
        raise CheckpointError(f"{path}: weights do not fit arch {arch!r} ({typed_line(e)}); pass the "
                              "architecture they were trained with") from e


@torch.no_grad()
def check_forward(model: torch.nn.Module, num_classes: int | None, path: str, size: int = 32) -> None:
    """A first forward on two fixed size x size images: the model must run and return finite logits of the
    right shape."""
    was = model.training
    model.eval()
    x = torch.stack([torch.full((3, size, size), 0.5), torch.linspace(0, 1, 3 * size * size).view(3, size, size)])
    p = next(iter(model.parameters()), None)
    if p is not None:
        x = x.to(p.device)
    try:
        out = model(x)
    except Exception as e:  # noqa: BLE001 - weights of a wrong dtype, a user factory's module, ...
        raise CheckpointError(f"{path}: the rebuilt model fails on a first forward ({typed_line(e)}); check "
                              "the architecture and the weights") from e
    finally:
        model.train(was)
    if not torch.is_tensor(out) or out.ndim != 2 or (num_classes is not None and out.shape[1] != num_classes):
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise CheckpointError(f"{path}: the rebuilt model returns {shape} for 2 images; expected (2, {num_classes})")
    if not torch.isfinite(out).all():
        raise CheckpointError(f"{path}: the model returns NaN/inf logits on a test image: its weights are damaged "
                              "or training diverged; re-train it")


def model_from_checkpoint(ckpt: dict, path: str = "<checkpoint>"):
    """Rebuild the architecture named in the checkpoint, load its weights, run a first forward (eval mode, CPU)."""
    from zoo.models import create_model

    check_checkpoint(ckpt, path)
    norm = ckpt["normalization"]
    model = create_model(ckpt["arch"], ckpt["num_classes"], list(norm["mean"]), list(norm["std"]))
    load_weights(model, ckpt["model"], path, ckpt["arch"])
    check_forward(model, ckpt["num_classes"], path)
    return model.eval()
