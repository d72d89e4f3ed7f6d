"""A checkpoint as a Hugging Face Hub folder that `huggingface_hub.upload_folder` pushes as it is:

  model.safetensors   the network's weights (the network behind zoo's normalization, named as timm names them)
  config.json         timm's format: architecture, num_classes, model_args, pretrained_cfg (mean, std, input size,
                      label names)
  README.md           the model card (bench.hub.card): its model-index is the rows
  sharpbench.json     the checkpoint's training record and the rows the card was built from

Refused, one line each (HubRefused): no ok row of these weights, rows computed on other weights of the same
file name, a folder holding another model (unless force), a repo id not shaped ORG/NAME.
"""
from __future__ import annotations

import json
import os
import time

from bench.eval.gallery import CIFAR10
from bench.eval.loading import source_kind
from bench.report.escape import public_record
from bench.store.rows import latest_ok
from bench.store.schema import HF_REPO_ID
from zoo.checkpoint import CHECKSUM, load_checkpoint, model_from_checkpoint, sha256_file, tensors_sha256
from zoo.files import write_text_atomic
from zoo.errors import typed_line

FORMAT = "sharpbench-hf/1"


class HubRefused(ValueError):
    """The folder is not written; the message is one line naming why and the fix."""


def check_repo_id(repo_id: str) -> str:
    if not HF_REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".", "-")):
        raise HubRefused(f"--repo-id {repo_id[:100]!r} is not shaped ORG/NAME (letters, digits, '-', '_', '.'; "
                         "at most 96 characters each)")
    return repo_id


def weights_sha256(ckpt: dict) -> str:
    """The weights' own hash (the checkpoint's seal; computed the same way when it has none): what a row of
    these weights carries however they were loaded (.pt, or hf-hub: read back)."""
    return ckpt.get(CHECKSUM) or tensors_sha256({"model": ckpt["model"]})


def rows_of_weights(rows: list[dict], ckpt_path: str, file_sha: str, weights: str) -> list[dict]:
    """The latest ok row of each evaluation of these weights; refused when there is none, naming rows of
    other weights under the same file name, or failed rows, when those are all there is."""
    mine = [r for r in rows if r.get("model_id") == file_sha or r.get("weights_sha256") == weights]
    ok = [r for r in mine if r.get("status") == "ok"]
    if not ok:
        name = os.path.basename(ckpt_path).removesuffix(".pt")
        other = [r for r in rows if r.get("status") == "ok" and r.get("model") == name and r not in mine]
        if other:
            raise HubRefused(f"the rows for {name} were computed on other weights (weights {str(other[0].get('model_id'))[:12]}, "
                             f"this file {file_sha[:12]}): the checkpoint changed since; rerun `python -m bench.run "
                             f"--models {ckpt_path}` before exporting")
        failed = [r for r in mine if r.get("status") == "failed"]
        if failed:
            raise HubRefused(f"every row of these weights failed ({failed[-1].get('error', 'no reason')[:120]}); a "
                             "failed row is no metric: fix it and rerun bench.run")
        raise HubRefused(f"no row of these weights: the card's metrics come from rows only; run `python -m bench.run "
                         f"--models {ckpt_path}` first (or pass --results)")
    return latest_ok(ok, per_model=False)


def label_names(ckpt: dict) -> list[str] | None:
    ds = ckpt.get("dataset") or {}
    if ds.get("classes"):
        return list(ds["classes"])
    if ds.get("spec") == "cifar10":
        return list(CIFAR10)
    if ds.get("spec") == "digits":
        return [str(i) for i in range(10)]
    return None


def hub_config(ckpt: dict) -> tuple[dict, str, bool]:
    """(config.json, architecture, needs zoo): timm's format for the network zoo built."""
    from zoo.models import hub_architecture

    architecture, model_args, needs_zoo = hub_architecture(ckpt["arch"], ckpt["num_classes"])
    size = int((ckpt.get("dataset") or {}).get("image_size") or 32)
    norm = ckpt["normalization"]
    pretrained = {"mean": list(norm["mean"]), "std": list(norm["std"]), "input_size": [len(norm["mean"]), size, size],
                  "interpolation": "bilinear", "crop_pct": 1.0, "num_classes": ckpt["num_classes"]}
    names = label_names(ckpt)
    if names:
        pretrained["label_names"] = names
    config = {"architecture": architecture, "num_classes": ckpt["num_classes"]}
    if model_args:
        config["model_args"] = model_args
    config["pretrained_cfg"] = pretrained
    return config, architecture, needs_zoo


def _check_folder(out: str, weights: str, force: bool) -> None:
    if not os.path.isdir(out) or not os.listdir(out) or force:
        return
    record = os.path.join(out, "sharpbench.json")
    try:
        with open(record, encoding="utf-8") as f:
            held = json.load(f).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        raise HubRefused(f"{out} already holds files that are not a sharpbench export; pass an empty folder, or "
                         "--force to write over them") from None
    if held != weights:
        raise HubRefused(f"{out} already holds another model (weights {str(held)[:12]}, these {weights[:12]}); pass "
                         "another folder, or --force to replace it")


def _images(rows: list[dict]) -> list[dict]:
    from bench.hub.card import evaluation_name

    out = []
    for r in rows:
        ref = r.get("adversarial")
        if isinstance(ref, dict):
            out.append({"evaluation": evaluation_name(r), "file": str(ref.get("path", "")),
                        "shape": "x".join(map(str, ref.get("shape", []))), "sha256": str(ref.get("sha256", ""))})
    return out


def write_hf_folder(ckpt_path: str, out: str, *, results: str, repo_id: str | None = None, license_: str = "mit",
                    force: bool = False) -> dict:
    """Write the folder; returns {what: path}. Nothing is written when it is refused."""
    import torch
    from safetensors.torch import save_file

    from bench.hub.card import body, card_text, front_matter
    from bench.store.rows import read_rows

    if source_kind(ckpt_path) == "hf-hub":
        raise HubRefused(f"{ckpt_path} is on the Hub already; export the sharpbench checkpoint (.pt) it came from")
    name = os.path.basename(ckpt_path).removesuffix(".pt")
    if repo_id is not None:
        check_repo_id(repo_id)
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, ckpt_path)
    file_sha, weights = sha256_file(ckpt_path), weights_sha256(ckpt)
    rows = rows_of_weights(read_rows(results) if os.path.exists(results) else [], ckpt_path, file_sha, weights)
    _check_folder(out, weights, force)
    config, architecture, needs_zoo = hub_config(ckpt)
    shown_id = repo_id or f"YOUR_ORG/{name}"
    meta = front_matter(name=name, ckpt=ckpt, rows=rows, license_=license_,
                        library=None if needs_zoo else "timm")
    text = body(name=name, ckpt=ckpt, rows=rows, repo_id=shown_id, architecture=architecture, needs_zoo=needs_zoo,
                images=_images(rows), folder=os.path.basename(os.path.normpath(out)))
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    tmp = os.path.join(out, f".model.safetensors.{os.getpid()}")
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(out, "model.safetensors"))
    write_text_atomic(os.path.join(out, "config.json"), json.dumps(config, indent=2) + "\n")
    # published: no path of this machine (public_record), the rows as the card shows them
    record = {"format": FORMAT, "weights_sha256": weights, "checkpoint_sha256": file_sha, "repo_id": repo_id,
              "training": public_record({k: v for k, v in ckpt.items()
                                         if k not in ("model", "optimizer") and not torch.is_tensor(v)}),
              "rows": public_record(rows)}
    write_text_atomic(os.path.join(out, "sharpbench.json"), json.dumps(record, indent=1, default=str) + "\n")
    write_text_atomic(os.path.join(out, "README.md"), card_text(meta, text))
    if repo_id is not None and os.path.exists(results):  # the site beside the rows links the model's card
        from bench.store.rows import append_row

        append_row(os.path.join(os.path.dirname(os.path.abspath(results)), "published.jsonl"),
                   {"model_id": file_sha, "weights_sha256": weights, "repo_id": repo_id,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return {"folder": out, "card": os.path.join(out, "README.md"), "weights": os.path.join(out, "model.safetensors"),
            "rows": str(len(rows))}


def push(out: str, repo_id: str | None) -> str:
    """Upload the folder with huggingface_hub; one-line HubRefused when it cannot (no repo id, no token,
    no network). Returns the model's URL."""
    if repo_id is None:
        raise HubRefused("--push needs --repo-id ORG/NAME")
    from huggingface_hub import HfApi, get_token

    if not get_token():
        raise HubRefused(f"no Hugging Face token (run `hf auth login`, or set HF_TOKEN); the folder is written at "
                         f"{out}: push it later with huggingface_hub's upload_folder")
    try:
        api = HfApi()
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=out, repo_id=repo_id, repo_type="model",
                          commit_message="sharpbench export")
    except Exception as e:  # noqa: BLE001 - offline, refused by the Hub, a bad token
        raise HubRefused(f"the upload to {repo_id} failed ({typed_line(e, 160)}); the folder is written at "
                         f"{out}") from None
    return f"https://huggingface.co/{repo_id}"
