"""Turn a --models entry into (model, metadata): zoo checkpoints, plain state_dicts with --arch, rb:NAME."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field

import torch

from zoo.checkpoint import (MAX_BYTES, CheckpointError, check_forward, content_id, is_verified, load_checkpoint,
                            load_weights, model_from_checkpoint, sha256_file)
from bench.store.schema import short_name
from zoo.models import ArchError
from zoo.recipes import get_recipe


# every failure to read or rebuild a model raises one of these, with a one-line message; bench.run turns each
# into that model's failed row and goes on with the others
LOAD_ERRORS = (CheckpointError, ArchError, OSError, ValueError)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    meta: dict = field(default_factory=dict)  # name, model_id, arch, recipe, hparams, train_data, ...


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


def load_state_dict_model(path: str, arch: str, num_classes: int, max_bytes: int = MAX_BYTES,
                          model_id: str | None = None) -> LoadedModel:
    sd = load_checkpoint(path, max_bytes)
    if isinstance(sd, dict) and "state_dict" in sd:  # RobustBench's own checkpoint layout
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in sd.items()):
        raise CheckpointError(f"{path} is neither a sharpbench checkpoint nor a state_dict of tensors")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    model = _build_arch(arch, num_classes)
    if not any(k.startswith("net.") for k in sd) and hasattr(model, "net"):
        model = model.net  # a bare network: its inputs are taken to be [0,1] (RobustBench's convention)
    load_weights(model, sd, path, arch)
    check_forward(model, num_classes, path)
    name = short_name(os.path.basename(path).removesuffix(".pt"))
    return LoadedModel(model.eval(), {"name": name, "model_id": model_id or sha256_file(path), "path": path, "arch": arch,
                                      "recipe": "unknown", "hparams": "", "train_data": "unknown",
                                      "verified": False})


RB_DATASETS = ("cifar10", "cifar100")  # RobustBench's CIFAR leaderboards


def rb_dataset(data_name: str, num_classes: int) -> str:
    """Which RobustBench zoo an rb:NAME comes from: the evaluation data's, or by its class count (npz copies)."""
    if data_name in RB_DATASETS:
        return data_name
    return "cifar100" if num_classes == 100 else "cifar10"


def rb_path(name: str, norm: str, model_dir: str, dataset: str) -> str:
    """Where robustbench's loader keeps (and looks for) a zoo model's weights."""
    return os.path.join(model_dir, dataset, norm, f"{name}.pt")


def spec_content_id(spec: str, *, norm: str, rb_model_dir: str, dataset: str, max_bytes: int = MAX_BYTES) -> str:
    """What a --models entry's outcome depends on: its file's content (an rb:NAME's local file, if any)."""
    if spec.startswith("rb:"):
        path = rb_path(spec[3:], norm, rb_model_dir, dataset)
        return f"{spec}:{dataset}:{norm}:" + (content_id(path, max_bytes) if os.path.lexists(path) else "absent")
    return content_id(spec, max_bytes)


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
    return LoadedModel(model.eval(), {"name": f"rb:{name}", "model_id": model_id, "path": path, "arch": "robustbench",
                                      "recipe": "robustbench", "hparams": "", "train_data": dataset,
                                      "verified": False})


def load_model_spec(spec: str, *, arch: str | None = None, num_classes: int = 10, norm: str = "Linf",
                    rb_model_dir: str = "models", dataset: str = "cifar10", max_bytes: int = MAX_BYTES,
                    model_id: str | None = None) -> LoadedModel:
    """model_id: the file's sha256 when the caller has computed it already."""
    if spec.startswith("rb:"):
        return load_robustbench(spec[3:], norm, rb_model_dir, dataset)
    if arch:
        return load_state_dict_model(spec, arch, num_classes, max_bytes, model_id)
    ckpt = load_checkpoint(spec, max_bytes)
    if isinstance(ckpt, dict) and "arch" not in ckpt and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        raise CheckpointError(f"{spec} is a plain state_dict; pass --arch NAME (a timm/zoo name or module:factory)")
    model = model_from_checkpoint(ckpt, spec)
    ds = ckpt.get("dataset", {})
    meta = {"name": short_name(os.path.basename(spec).removesuffix(".pt")), "model_id": model_id or sha256_file(spec), "path": spec,
            "arch": ckpt["arch"], "recipe": ckpt.get("recipe", "unknown"), "hparams": _recipe_hparams(ckpt),
            "train_data": ds.get("spec", "unknown"), "n_train": ds.get("n_train"), "seed": ckpt.get("seed"),
            "num_classes": ckpt["num_classes"], "verified": is_verified(ckpt)}
    return LoadedModel(model, meta)
