"""Turn a --models entry into (model, metadata): zoo checkpoints, plain state_dicts with --arch, rb:NAME, and
timm:NAME (timm's pretrained weights) or timm:NAME@PATH (local weights: a state dict or .safetensors)."""
from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import Callable

import torch

from zoo.checkpoint import (CHECKSUM, MAX_BYTES, CheckpointError, check_forward, content_id, is_verified, load_checkpoint,
                            load_weights, model_from_checkpoint, sha256_file, tensors_sha256)
from bench.defaults import RB_LEADERBOARDS
from bench.store.schema import short_name
from zoo.models import ArchError
from zoo.recipes import get_recipe
from zoo.errors import typed_line


# every failure to read or rebuild a model raises one of these, with a one-line message; bench.run turns each
# into that model's failed row and goes on with the others
LOAD_ERRORS = (CheckpointError, ArchError, OSError, ValueError)


@dataclass
class ModelRecord:
    """What the bench knows of a loaded model, whatever its source: every loader fills these fields, and a row
    holds row_fields()."""
    name: str  # how tables name it
    model_id: str  # what rows are keyed on: the file's sha256, else the weights' (a Hub entry), else an rb: id
    path: str  # the --models entry, or the file it read
    arch: str
    recipe: str
    hparams: str = ""  # the recipe's own settings, as one text
    train_data: str = "unknown"
    n_train: int | None = None
    train_seed: int | None = None
    num_classes: int | None = None
    verified: bool = False  # its weights matched the checksum the checkpoint seals them with
    weights_sha256: str | None = None  # the weights' own hash (a sealed checkpoint's, timm's, a Hub folder's)
    hf_repo: str | None = None
    hf_revision: str | None = None
    hf_weights_file_sha256: str | None = None
    mean: list | None = None  # the normalization in front of the network, where the export needs it
    std: list | None = None
    training_record: dict | None = None  # a Hub entry's sharpbench.json training record

    def row_fields(self) -> dict:
        """The model's fields of a row, in the rows' order."""
        out = {"model_id": self.model_id, "verified": self.verified, "path": self.path, "arch": self.arch,
               "recipe": self.recipe, "hparams": self.hparams, "train_data": self.train_data, "n_train": self.n_train}
        for k in ("weights_sha256", "hf_repo", "hf_revision", "hf_weights_file_sha256"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return {**out, "model": self.name, "train_seed": self.train_seed}


@dataclass
class LoadedModel:
    model: torch.nn.Module
    meta: ModelRecord


def _recipe_hparams(ckpt: dict) -> str:
    from zoo.config import TrainConfig

    try:
        cfg = TrainConfig.from_dict(ckpt.get("config", {}))
        return get_recipe(ckpt.get("recipe", "standard")).tag(cfg)
    except (ValueError, TypeError):
        return ""


def _build_arch(arch: str, num_classes: int) -> torch.nn.Module:
    """A timm/zoo architecture name, or `package.module:factory` returning an nn.Module."""
    if ":" in arch:
        mod, _, fn = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise CheckpointError(f"--arch {arch}: cannot import {fn} from {mod} ({e})") from e
        model = factory()
        if not isinstance(model, torch.nn.Module):
            raise CheckpointError(f"--arch {arch}: {fn}() returned {type(model).__name__}, not an nn.Module")
        return model
    from zoo.models import create_model

    return create_model(arch, num_classes, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


def tensors_of(sd, wrappers: tuple, refusal: str) -> dict:
    """The state dict inside a loaded file: unwrapped from the first of `wrappers` it is under, every value a
    tensor (else CheckpointError(refusal)), DDP's 'module.' prefixes removed."""
    for wrapper in wrappers:
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise CheckpointError(refusal)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_state_dict_model(path: str, arch: str, num_classes: int, max_bytes: int = MAX_BYTES,
                          model_id: str | None = None) -> LoadedModel:
    # RobustBench's own checkpoint layout wraps the weights in "state_dict"
    sd = tensors_of(load_checkpoint(path, max_bytes), ("state_dict",),
                    f"{path} is neither a sharpbench checkpoint nor a state_dict of tensors")
    model = _build_arch(arch, num_classes)
    if not any(k.startswith("net.") for k in sd) and hasattr(model, "net"):
        model = model.net  # a bare network: its inputs are taken to be [0,1] (RobustBench's convention)
    load_weights(model, sd, path, arch)
    check_forward(model, num_classes, path)
    name = short_name(os.path.basename(path).removesuffix(".pt"))
    return LoadedModel(model.eval(), ModelRecord(name, model_id or sha256_file(path), path, arch, "unknown"))




def check_classes(spec: str, has, data_has: int, fix: str) -> None:
    """A model for other classes than the data's is refused in one line with both numbers and the fix."""
    if has != data_has:
        raise CheckpointError(f"{spec} has {has} classes and the data has {data_has}; {fix}")


def rb_dataset(data_name: str, num_classes: int) -> str:
    """Which RobustBench zoo an rb:NAME comes from: the evaluation data's, or by its class count (npz copies)."""
    if data_name in RB_LEADERBOARDS:
        return data_name
    return "cifar100" if num_classes == 100 else "cifar10"


def rb_path(name: str, norm: str, model_dir: str, dataset: str) -> str:
    """Where robustbench's loader keeps (and looks for) a zoo model's weights."""
    return os.path.join(model_dir, dataset, norm, f"{name}.pt")


TIMM = "timm:"
TIMM_NAME = re.compile(r"^[a-z0-9_.]{1,100}$")  # timm's model names (an optional .tag names pretrained weights)


def parse_timm(spec: str) -> tuple[str, str | None]:
    """`timm:NAME[@PATH]` -> (NAME, PATH or None); a NAME timm does not know is a one-line error with the closest
    names, as timm's create_model refuses it."""
    import difflib

    import timm

    name, at, path = spec[len(TIMM):].partition("@")
    if not TIMM_NAME.match(name):
        raise ArchError(f"{spec[:120]!r}: a timm model name is lower-case letters, digits, '_' and '.'; see "
                        "timm.list_models()")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ArchError(f"unknown timm model {name!r}" + (f"; closest: {', '.join(close)}" if close else "") +
                        "; see timm.list_models()")
    if at and not path:
        raise CheckpointError(f"{spec}: nothing after '@'; pass timm:{name}@PATH to a state dict or .safetensors")
    return name, (path if at else None)


def _timm_content_id(spec: str, opts: "ModelOptions") -> str:
    name, _, path = spec[len(TIMM):].partition("@")
    if path:
        return f"timm:{name}:" + content_id(path, opts.max_bytes)
    import timm

    return f"timm:{name}:pretrained:timm-{timm.__version__}"


def _rb_content_id(spec: str, opts: "ModelOptions") -> str:
    path = rb_path(spec[3:], opts.norm, opts.rb_model_dir, opts.dataset)
    return f"{spec}:{opts.dataset}:{opts.norm}:" + (content_id(path, opts.max_bytes) if os.path.lexists(path)
                                                   else "absent")


def load_robustbench(name: str, norm: str, model_dir: str = "models", dataset: str = "cifar10") -> LoadedModel:
    """A RobustBench zoo model through robustbench's own loader, which takes an existing
    `<model_dir>/<dataset>/<threat>/<name>.pt` without a network and downloads it otherwise."""
    from bench.deps import import_robustbench

    import_robustbench()
    from robustbench.utils import load_model

    path = rb_path(name, norm, model_dir, dataset)
    try:
        model = load_model(name, model_dir=model_dir, dataset=dataset, threat_model=norm)
    except KeyError:
        raise CheckpointError(f"rb:{name} is not in RobustBench's {dataset}/{norm} model zoo; "
                              "see robustbench's model_zoo listing for names") from None
    except Exception as e:  # offline: the Google Drive download fails; a damaged file fails to load
        raise CheckpointError(f"rb:{name} could not be loaded ({type(e).__name__}: {str(e).strip()[:120]}); it "
                              f"needs a network, or an intact file at {path} (--rb-model-dir)") from e
    # the file's hash identifies the weights: a re-downloaded, different file makes new rows
    model_id = sha256_file(path) if os.path.isfile(path) else f"rb:{name}:{dataset}:{norm}"
    return LoadedModel(model.eval(), ModelRecord(f"rb:{name}", model_id, path, "robustbench", "robustbench",
                                                 train_data=dataset))


def _timm_weights(path: str, max_bytes: int) -> dict:
    """A local weights file read as data: .safetensors through safetensors, anything else by load_checkpoint
    (torch.load with weights_only=True); a state dict of tensors either way."""
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise CheckpointError(f"{path}: {e.strerror or type(e).__name__}; pass an existing weights file") from None
        if size > max_bytes:
            raise CheckpointError(f"{path} is {size / 2 ** 30:.1f} GiB, over --max-checkpoint-gb; raise it if the "
                                  "file is trusted")
        try:
            sd = load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable .safetensors file ({str(e).strip()[:100]}); "
                                  "re-download it") from None
    else:
        sd = load_checkpoint(path, max_bytes)
    return tensors_of(sd, ("state_dict", "model"),  # the common layouts of saved weights
                      f"{path} is not a state dict of tensors; save model.state_dict() (torch.save or safetensors)")


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached (one quick connection, 5 s at most), or None when it can."""
    import socket
    from urllib.parse import urlparse

    import huggingface_hub.constants as hub

    host = urlparse(hub.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as e:
        return f"{host} cannot be reached ({e.strerror or type(e).__name__})"
    return None


def _timm_pretrained(name: str, spec: str, instead: str | None = None):
    """timm's pretrained model (`name` may be hf-hub:ORG/NAME[@REV]), from the local Hugging Face cache or the
    Hub. Offline (HF_HUB_OFFLINE, or the Hub's host not answering) it reads the cache only, with no retries, and a
    miss is one line naming the network. instead: what the user can pass instead (default timm:NAME@PATH)."""
    import logging

    import huggingface_hub.constants as hub
    import timm

    offline, why = hub.HF_HUB_OFFLINE, "HF_HUB_OFFLINE is set"
    if not offline:
        why = hub_unreachable()
        if why:
            hub.HF_HUB_OFFLINE = True  # the cache only: no retries against a network that is not there
    quiet = logging.getLogger("huggingface_hub")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as e:  # noqa: BLE001 - huggingface_hub / urllib errors; no weights for the name
        instead = instead or f"timm:{name}@PATH with local weights"
        if hub.HF_HUB_OFFLINE:
            raise CheckpointError(f"{spec}: no network for timm's pretrained weights ({why}) and they are not in "
                                  f"the local Hugging Face cache; run once with a network, or pass {instead}") from None
        raise CheckpointError(f"{spec}: timm could not fetch its pretrained weights ("
                              f"{typed_line(e, 100)}); pass {instead}") from None
    finally:
        hub.HF_HUB_OFFLINE = offline
        quiet.setLevel(level)


def load_timm(spec: str, num_classes: int, max_bytes: int = MAX_BYTES, size: int = 224,
              model_id: str | None = None) -> LoadedModel:
    """Any timm model: timm's pretrained weights (downloaded by timm, or from its cache) or local weights for
    `num_classes` classes. The weights' own mean and std (timm's pretrained_cfg) sit inside the model, which
    takes images in [0,1] as every model of the bench does."""
    import timm

    from zoo.models import Normalized

    name, path = parse_timm(spec)
    if path is None:
        net = _timm_pretrained(name, spec)
    else:
        net = timm.create_model(name, pretrained=False, num_classes=num_classes)
        weights = _timm_weights(path, max_bytes)
        head = f"{(getattr(net, 'pretrained_cfg', None) or {}).get('classifier', '')}.weight"
        if head in weights and weights[head].ndim >= 1 and weights[head].shape[0] != num_classes:
            raise CheckpointError(f"{spec}: the weights have {weights[head].shape[0]} classes and the data has "
                                  f"{num_classes}; evaluate them on data with {weights[head].shape[0]} classes "
                                  "(ImageNet's 1000: --data imagenet:DIR)")
        load_weights(net, weights, path, name)
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = list(cfg.get("mean", (0.485, 0.456, 0.406))), list(cfg.get("std", (0.229, 0.224, 0.225)))
    model = Normalized(net, mean, std).eval()
    check_classes(spec, getattr(net, "num_classes", None), num_classes,
                  "evaluate it on data with its classes (timm's pretrained models: --data imagenet:DIR)")
    check_forward(model, num_classes, spec, size)
    weights = tensors_sha256(net.state_dict())
    tag = os.path.basename(path).rsplit(".", 1)[0] if path else "pretrained"
    return LoadedModel(model, ModelRecord(
        short_name(f"timm:{name}@{tag}"), model_id or (sha256_file(path) if path else weights), spec, name, "timm",
        weights_sha256=weights, num_classes=num_classes, mean=mean, std=std,
        # timm's pretrained tag names its training data; a local file's is unknown
        train_data=(cfg.get("tag") or "unknown") if path is None else "unknown"))


HF_HUB = "hf-hub:"


def parse_hf(spec: str) -> tuple[str, str | None]:
    """`hf-hub:ORG/NAME[@REV]` -> (ORG/NAME, REV or None); a malformed name is a one-line error."""
    from bench.store.schema import HF_REPO_ID

    repo, at, rev = spec[len(HF_HUB):].partition("@")
    if not HF_REPO_ID.match(repo) or (at and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,99}$", rev)):
        raise CheckpointError(f"{spec[:120]!r}: a Hub model is hf-hub:ORG/NAME or hf-hub:ORG/NAME@REVISION")
    return repo, (rev if at else None)


def _hub_file(repo: str, rev: str | None, filename: str) -> str | None:
    """A file of the repo as the local Hugging Face cache holds it (timm has just fetched it), or None."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo, filename, revision=rev)
    return path if isinstance(path, str) else None


def hub_record(spec: str) -> dict:
    """The training record the Hub repository's sharpbench.json holds (`hf-hub:ORG/NAME[@REV]`), from the local
    Hugging Face cache or, with a network, fetched alone; {} when there is none, it does not pass the checks of a
    checkpoint's metadata, or neither can be had."""
    repo, rev = parse_hf(spec)
    path = _hub_file(repo, rev, "sharpbench.json")
    if path is None:
        import huggingface_hub.constants as hub

        if hub.HF_HUB_OFFLINE or hub_unreachable():
            return {}
        try:
            from huggingface_hub import hf_hub_download

            path = hf_hub_download(repo, "sharpbench.json", revision=rev)
        except Exception:  # noqa: BLE001 - offline, no such file, no such repository: no record
            return {}
    return hub_folder_record(os.path.dirname(path))


def load_hf(spec: str, num_classes: int | None, size: int = 32) -> LoadedModel:
    """A Hub folder timm can load (`hf-hub:ORG/NAME[@REV]`, such as bench.export --hf writes), from the Hub or,
    offline, the local Hugging Face cache. The config's mean and std sit in front of the network, as for every
    model of the bench. Its rows carry the repo, the revision, the weights file's sha256 and weights_sha256, the
    hash of the same tensors a sharpbench checkpoint seals: the weights published from a .pt are recognised."""
    from zoo.models import Normalized

    repo, rev = parse_hf(spec)
    net = _timm_pretrained(spec, spec, instead="a checkpoint file")
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = list(cfg.get("mean", (0.485, 0.456, 0.406))), list(cfg.get("std", (0.229, 0.224, 0.225)))
    model = Normalized(net, mean, std).eval()
    num_classes = getattr(net, "num_classes", None) if num_classes is None else num_classes  # None: its own
    check_classes(spec, getattr(net, "num_classes", "?"), num_classes,
                  "evaluate it on the data it was trained on (--data)")
    check_forward(model, num_classes, spec, size)
    weights = tensors_sha256({"model": model.state_dict()})
    config = _hub_file(repo, rev, "config.json")
    revision = os.path.basename(os.path.dirname(config)) if config else (rev or "main")
    file = _hub_file(repo, rev, "model.safetensors")
    record = hub_record(spec)
    ds = record.get("dataset") or {}
    return LoadedModel(model, ModelRecord(
        short_name(f"hf-hub:{repo}"), weights, spec, str(record.get("arch") or cfg.get("architecture") or "unknown"),
        str(record.get("recipe") or "hub"), hparams=_recipe_hparams(record) if record.get("config") else "",
        train_data=ds.get("spec", "unknown"), n_train=ds.get("n_train"), train_seed=record.get("seed"),
        num_classes=num_classes, weights_sha256=weights, hf_repo=repo, hf_revision=revision,
        hf_weights_file_sha256=sha256_file(file) if file else None, mean=mean, std=std, training_record=record))


HF_DIR = "hf-dir:"
HUB_FILES = ("config.json", "model.safetensors")  # what a Hub folder (bench.export --hf) holds at least
ARCH_NAME = re.compile(r"^[a-z0-9_.]{1,100}$")
MODEL_ARGS = {"base": str, "img_size": int, "patch_size": int}  # what zoo's Hub configs pass (hub_architecture)


def is_hub_folder(path: str) -> bool:
    """A folder holding what bench.export --hf writes: `--models DIR` reads it as hf-dir:DIR."""
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in HUB_FILES)


def hub_folder(spec: str) -> str:
    """The folder of hf-dir:DIR (or of DIR itself)."""
    return spec[len(HF_DIR):] if spec.startswith(HF_DIR) else spec


def _read_json(path: str, what: str, max_bytes: int = 1 << 20):
    import json

    try:
        if os.path.getsize(path) > max_bytes:
            raise CheckpointError(f"{path} is over {max_bytes >> 10} KiB; a {what} is a few")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable {what} ({typed_line(e, 80)}); re-export the folder") from None


def _hub_folder_config(folder: str) -> tuple[str, dict, dict]:
    """(architecture, model_args, pretrained_cfg) of a Hub folder's config.json, every value checked: an
    unknown architecture, an argument zoo never writes or a mean/std that is not 1-4 finite numbers is one line."""
    import math

    import timm

    path = os.path.join(folder, "config.json")
    cfg = _read_json(path, "timm config.json")
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    if not isinstance(arch, str) or not ARCH_NAME.match(arch) or not timm.is_model(arch):
        raise CheckpointError(f"{path}: architecture {str(arch)[:60]!r} is not a timm (or zoo) model name")
    args = cfg.get("model_args") or {}
    bad = [k for k, v in args.items() if k not in MODEL_ARGS or not isinstance(v, MODEL_ARGS[k])] \
        if isinstance(args, dict) else ["model_args"]
    if bad or (isinstance(args.get("base"), str) and not ARCH_NAME.match(args["base"])):
        raise CheckpointError(f"{path}: model_args {str(bad[:1] or ['base'])[:60]} is not one zoo writes")
    pre = cfg.get("pretrained_cfg") or {}
    for key in ("mean", "std"):
        v = pre.get(key) if isinstance(pre, dict) else None
        if not (isinstance(v, list) and 1 <= len(v) <= 4 and all(isinstance(x, (int, float)) and math.isfinite(x)
                                                                  for x in v)) or (key == "std" and min(v) <= 0):
            raise CheckpointError(f"{path}: pretrained_cfg.{key} is not 1-4 finite numbers")
    classes = cfg.get("num_classes")
    if not isinstance(classes, int) or not 1 <= classes <= 100_000:
        raise CheckpointError(f"{path}: num_classes {str(classes)[:20]!r} is not a class count")
    return arch, dict(args), {**pre, "num_classes": classes}


def hub_folder_record(folder: str) -> dict:
    """The training record the folder's sharpbench.json holds, checked as a checkpoint's metadata is; {} when
    there is none or it does not pass (a folder written by other tools loads without it)."""
    from zoo.metadata import MetadataError, check_metadata

    path = os.path.join(folder, "sharpbench.json")
    if not os.path.isfile(path):
        return {}
    try:
        record = _read_json(path, "sharpbench.json", 64 << 20).get("training")
        check_metadata(record)
        return record if isinstance(record, dict) else {}
    except (CheckpointError, AttributeError, TypeError, MetadataError):
        return {}


def _hub_folder_content_id(spec: str, opts: "ModelOptions") -> str:
    """What a folder's rows depend on: its config (architecture, mean, std) and its weights file."""
    folder = hub_folder(spec)
    return "hf-dir:" + "+".join(content_id(os.path.join(folder, f), opts.max_bytes) for f in HUB_FILES)


def load_hf_dir(spec: str, num_classes: int | None, size: int = 32, max_bytes: int = MAX_BYTES) -> LoadedModel:
    """A Hub folder on disk (`hf-dir:DIR`, or DIR), offline: what bench.export --hf writes, before (or without)
    its push. The network is built from config.json, its weights read from model.safetensors (no pickle), its
    mean and std put in front; the rows carry the weights' hash, which the .pt it came from carries too, and the
    training record of sharpbench.json."""
    import timm

    from zoo.models import Normalized

    folder = hub_folder(spec)
    if not is_hub_folder(folder):
        raise CheckpointError(f"{spec}: not a Hub folder (it needs {' and '.join(HUB_FILES)}); pass the folder "
                              "bench.export --hf wrote")
    arch, args, pre = _hub_folder_config(folder)
    classes = pre["num_classes"] if num_classes is None else num_classes
    check_classes(spec, pre["num_classes"], classes,
                  "evaluate it on the data it was trained on (its sharpbench.json names it; drop --data)")
    try:
        net = timm.create_model(arch, num_classes=classes, **args)
    except Exception as e:  # noqa: BLE001 - a factory refusing these arguments
        raise CheckpointError(f"{spec}: {arch} cannot be built from its config.json ({typed_line(e, 80)})") from None
    weights_file = os.path.join(folder, "model.safetensors")
    load_weights(net, _timm_weights(weights_file, max_bytes), weights_file, arch)
    model = Normalized(net, pre["mean"], pre["std"]).eval()
    check_forward(model, classes, spec, size)
    weights = tensors_sha256({"model": model.state_dict()})
    record = hub_folder_record(folder)
    ds = record.get("dataset") or {}
    name = os.path.basename(os.path.normpath(folder)) or "hub-folder"
    return LoadedModel(model, ModelRecord(
        short_name(f"hf-dir:{name}"), weights, spec, str(record.get("arch") or arch), str(record.get("recipe") or "hub"),
        hparams=_recipe_hparams(record) if record.get("config") else "", train_data=ds.get("spec", "unknown"),
        n_train=ds.get("n_train"), train_seed=record.get("seed"), num_classes=classes, weights_sha256=weights,
        mean=list(pre["mean"]), std=list(pre["std"]), training_record=record))


def _load_file(spec: str, opts: "ModelOptions") -> LoadedModel:
    """A sharpbench checkpoint, or with --arch a plain state dict."""
    if opts.arch:
        return load_state_dict_model(spec, opts.arch, opts.num_classes, opts.max_bytes, opts.model_id)
    ckpt = load_checkpoint(spec, opts.max_bytes)
    if isinstance(ckpt, dict) and "arch" not in ckpt and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        raise CheckpointError(f"{spec} is a plain state_dict; pass --arch NAME (a timm/zoo name or module:factory)")
    model = model_from_checkpoint(ckpt, spec)
    check_classes(spec, ckpt["num_classes"], opts.num_classes, "evaluate it on the data it was trained on "
                  f"({ckpt.get('dataset', {}).get('spec', 'its --data')})")
    ds = ckpt.get("dataset", {})
    # a sealed checkpoint's weights hash: the same weights read back from a Hub folder carry it too
    return LoadedModel(model, ModelRecord(
        short_name(os.path.basename(spec).removesuffix(".pt")), opts.model_id or sha256_file(spec), spec,
        ckpt["arch"], ckpt.get("recipe", "unknown"), hparams=_recipe_hparams(ckpt),
        train_data=ds.get("spec", "unknown"), n_train=ds.get("n_train"), train_seed=ckpt.get("seed"),
        num_classes=ckpt["num_classes"], verified=is_verified(ckpt),
        weights_sha256=ckpt[CHECKSUM] if is_verified(ckpt) else None))


@dataclass(frozen=True)
class ModelOptions:
    """What loading a --models entry depends on besides the entry itself."""
    arch: str | None = None  # the architecture of a plain state dict (--arch)
    num_classes: int = 10  # the data's
    norm: str = "Linf"  # an rb:NAME's threat model
    rb_model_dir: str = "models"
    dataset: str = "cifar10"  # an rb:NAME's RobustBench zoo
    max_bytes: int = MAX_BYTES  # larger files are refused unread
    model_id: str | None = None  # the file's sha256 when the caller has computed it already
    size: int = 32  # the data's image size, pixels a side


@dataclass(frozen=True)
class Source:
    """One kind of --models entry, known by its prefix: how it loads, and what its outcome depends on."""
    kind: str  # file | timm | hf-hub | hf-dir | rb: what callers ask of an entry instead of testing its prefix
    load: Callable[[str, ModelOptions], LoadedModel]
    # what the entry's outcome depends on: its file's content (an rb:NAME's local file, if any; timm's version for
    # its pretrained weights; a Hub entry's name, whose weights are hashed as they load)
    content_id: Callable[[str, ModelOptions], str]
    file: Callable[[str], str | None]  # the local file it reads, if any


SOURCES: dict[str, Source] = {  # "" = a file: a sharpbench checkpoint, or a plain state dict with --arch
    TIMM: Source("timm", lambda spec, o: load_timm(spec, o.num_classes, o.max_bytes, o.size, o.model_id),
                 _timm_content_id, lambda spec: spec.partition("@")[2] or None),
    HF_HUB: Source("hf-hub", lambda spec, o: load_hf(spec, o.num_classes, o.size), lambda spec, o: spec,
                   lambda spec: None),
    HF_DIR: Source("hf-dir", lambda spec, o: load_hf_dir(spec, o.num_classes, o.size, o.max_bytes),
                   _hub_folder_content_id, lambda spec: None),
    "rb:": Source("rb", lambda spec, o: load_robustbench(spec[3:], o.norm, o.rb_model_dir, o.dataset),
                  _rb_content_id, lambda spec: None),
    "": Source("file", _load_file, lambda spec, o: content_id(spec, o.max_bytes), lambda spec: spec),
}


def source_of(spec: str) -> Source:
    if is_hub_folder(spec):  # a Hub folder named by its path: hf-dir:DIR
        return SOURCES[HF_DIR]
    return SOURCES[next((prefix for prefix in SOURCES if prefix and spec.startswith(prefix)), "")]


def source_kind(spec: str) -> str:
    """file | timm | hf-hub | hf-dir | rb: the kind of --models entry spec is."""
    return source_of(spec).kind


HUB_KINDS = ("hf-hub", "hf-dir")  # entries read from a Hub repository or a folder written for one
WEIGHTS_KINDS = ("timm", *HUB_KINDS)  # entries whose weights are hashed as they load (weights_sha256)


def load_model_spec(spec: str, **options) -> LoadedModel:
    """The entry's model and metadata. options: ModelOptions' fields (model_id: the file's sha256 when the
    caller has computed it already; size: the data's image size)."""
    return source_of(spec).load(spec, ModelOptions(**options))


def model_of_row(row: dict, *, num_classes: int, size: int) -> LoadedModel:
    """The model a row was computed on, rebuilt from what the row names, or a CheckpointError when what is there
    now is not it: a file whose sha256 is not the row's model_id, timm's or a Hub repository's weights whose
    weights_sha256 is not the row's. What bench.verify replays and the site's galleries show."""
    spec, mid = row.get("path") or "", row["model_id"]
    path = model_file(spec)
    if path is not None and (not os.path.isfile(path) or sha256_file(path) != mid):
        raise CheckpointError(f"the model file {path!r} is missing or is not the one the row was computed on")
    lm = load_model_spec(spec, model_id=mid if path else None, norm=row.get("norm") or "Linf",
                         num_classes=num_classes, dataset=rb_dataset(row["data"], num_classes), size=size)
    if source_kind(spec) in WEIGHTS_KINDS and lm.meta.weights_sha256 != row.get("weights_sha256"):
        raise CheckpointError(f"{spec}: the weights there now are not the ones the row was computed on (updated "
                              "since?)")
    return lm


def model_file(spec: str) -> str | None:
    """The local file a --models entry reads (None for rb:NAME, a Hub entry and timm's own pretrained weights)."""
    return source_of(spec).file(spec)


def missing_model(spec: str) -> str | None:
    """A one-line reason when the entry names a file that is not there (checked before any data is loaded)."""
    if spec.startswith(HF_DIR) and not is_hub_folder(hub_folder(spec)):
        return (f"--models {spec}: {hub_folder(spec)} is not a Hub folder ({' and '.join(HUB_FILES)}); pass the "
                "folder bench.export --hf wrote")
    path = model_file(spec)
    if path is None or os.path.lexists(path):
        return None
    hint = " (a shell pattern that matched nothing?)" if any(c in path for c in "*?[") else ""
    return f"--models {path}: no such file{hint}; check the path"


def training_data(spec: str, max_bytes: int = MAX_BYTES) -> tuple[str, int | None] | None:
    """(the --data a sharpbench checkpoint was trained on, its --image-size) from its record (dataset.spec and
    config.image_size, checked as metadata is), or None when the entry has no such record (rb:, timm:, a plain
    state dict) or cannot be read: its own load then fails with its own reason."""
    from zoo.metadata import MetadataError, check_config, check_dataset

    if source_of(spec) in (SOURCES[HF_DIR], SOURCES[HF_HUB]):  # the record its sharpbench.json ships
        record = hub_folder_record(hub_folder(spec)) if source_of(spec) is SOURCES[HF_DIR] else hub_record(spec)
        ds, cfg = record.get("dataset") or {}, record.get("config") or {}
        return (ds["spec"], cfg.get("image_size")) if ds.get("spec") else None
    if model_file(spec) != spec:
        return None
    try:
        ckpt = load_checkpoint(spec, max_bytes)
        ds = ckpt.get("dataset") if isinstance(ckpt, dict) and "arch" in ckpt else None
        if not isinstance(ds, dict) or "spec" not in ds:
            return None
        check_dataset(ds)
        cfg = ckpt.get("config")
        size = None
        if isinstance(cfg, dict):
            check_config(cfg)
            size = cfg.get("image_size")
        return ds["spec"], size
    except (CheckpointError, MetadataError, OSError):
        return None


def data_of_models(specs: list[str], max_bytes: int = MAX_BYTES) -> tuple[str, int | None]:
    """(the data, its --image-size) every entry was trained on, when --data is not given: all records alike, or
    one line asking for --data."""
    found = {s: training_data(s, max_bytes) for s in specs}
    known = {d for d in found.values() if d is not None}
    unknown = [s for s, d in found.items() if d is None]
    if len(known) == 1 and not (unknown and any(model_file(s) != s and not is_hub_folder(hub_folder(s))
                                                for s in unknown)):
        return known.pop()
    if not known:
        from zoo.data import DATA_SPECS

        raise ValueError(f"--data not given and {unknown[0]} records no training data; pass --data "
                         f"({' | '.join(DATA_SPECS)} | imagenet:DIR)")
    if len(known) > 1:
        by = sorted({d: s for s, d in found.items() if d is not None}.items())
        raise ValueError("--data not given and the checkpoints were trained on different data ("
                         + "; ".join(f"{_data_text(d)}: {s}" for d, s in by[:3]) + "); pass --data for the one to "
                         "test on")
    raise ValueError(f"--data not given: {unknown[0]} records no training data while the others were trained on "
                     f"{_data_text(next(iter(known)))}; pass --data")


def _data_text(data: tuple[str, int | None]) -> str:
    spec, size = data
    return spec if size is None else f"{spec} --image-size {size}"
