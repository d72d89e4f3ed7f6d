"""Export a checkpoint for submission to RobustBench: python -m bench.export CKPT --name NAME --out DIR

Writes, following RobustBench's layout and loading conventions:
  DIR/model_info/cifar10/<threat>/<NAME>.json   model-info fields, filled from measured rows
  DIR/models/cifar10/<threat>/<NAME>.pt         {'state_dict': ...} for a model taking [0,1] inputs
  DIR/<NAME>.py                                 a self-contained definition: build_model(), load_model(path)
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys


from bench.results import read_rows
from zoo import classics, models
from zoo.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_atomic, sha256_file

PRETTY = {"preact_resnet18": "PreActResNet-18", "wrn28_10": "WideResNet-28-10", "wrn34_10": "WideResNet-34-10",
          "sharp_tiny": "TinyNet", "sharp_small": "SmallNet"}
CLASSIC_SOURCE = {
    "preact_resnet18": ([classics.PreActBlock, classics.PreActResNet], "PreActResNet((2, 2, 2, 2), num_classes=NUM_CLASSES)"),
    "wrn28_10": ([classics.PreActBlock, classics.WideResNet], "WideResNet(28, 10, num_classes=NUM_CLASSES)"),
    "wrn34_10": ([classics.PreActBlock, classics.WideResNet], "WideResNet(34, 10, num_classes=NUM_CLASSES)"),
    "sharp_tiny": ([classics.TinyNet], "TinyNet(num_classes=NUM_CLASSES)"),
    "sharp_small": ([classics.TinyNet, classics.SmallNet], "SmallNet(num_classes=NUM_CLASSES)"),
}


def model_source(ckpt: dict, name: str) -> str:
    """Python source that rebuilds the checkpoint's model with no sharpbench import."""
    arch = ckpt["arch"]
    norm = ckpt["normalization"]
    parts = [f'"""RobustBench model {name}: {arch} trained with {ckpt.get("recipe")} (exported by sharpbench).',
             "", "Takes images in [0,1]; normalization is inside the model.", '"""',
             "import torch", "import torch.nn as nn", "import torch.nn.functional as F", ""]
    if arch in CLASSIC_SOURCE:
        classes, build = CLASSIC_SOURCE[arch]
        parts += [inspect.getsource(c) for c in classes]
    else:  # any other timm architecture: timm builds it, with the same 32x32 adaptation sharpbench applies
        parts += ["import timm", "", inspect.getsource(models.adapt_to_32)]
        if arch.startswith(("vit_", "deit_")):
            build = "timm.create_model(ARCH, num_classes=NUM_CLASSES, img_size=32, patch_size=4)"
        else:
            build = "adapt_to_32(timm.create_model(ARCH, num_classes=NUM_CLASSES))"
    parts += [inspect.getsource(models.Normalized),
              f"ARCH = {arch!r}", f"NUM_CLASSES = {int(ckpt['num_classes'])}",
              f"MEAN = {list(norm['mean'])!r}", f"STD = {list(norm['std'])!r}", "", "",
              "def build_model():", f"    return Normalized({build}, MEAN, STD)", "", "",
              "def load_model(path):",
              "    ckpt = torch.load(path, map_location='cpu', weights_only=True)",
              "    model = build_model()",
              "    model.load_state_dict(ckpt.get('state_dict', ckpt))",
              "    return model.eval()", ""]
    return "\n".join(parts)


def measured(rows: list[dict], model_id: str, threat: str, eps: float | None) -> dict:
    """Clean, AutoAttack (or corruption) accuracy rows for this checkpoint, newest first."""
    mine = sorted((r for r in rows if r.get("status") == "ok" and r.get("model_id") == model_id),
                  key=lambda r: r["time"], reverse=True)
    if threat == "corruptions":
        hit = next((r for r in mine if r["attack"] == "corruptions"), None)
    else:
        hit = next((r for r in mine if r["attack"] == "autoattack" and r["norm"] == threat
                    and abs(r["eps"] - eps) < 1e-9), None)
    return hit


def model_info(ckpt: dict, row: dict, *, name: str, threat: str, eps_str: str, title: str, authors: str,
               link: str, venue: str) -> dict:
    n = row["n"]
    foot = f"Evaluated by sharpbench on the first {n} test points of {row['data']}."
    if n < 10000:
        foot += " RobustBench requires the full 10000-point test set: rerun with --n-examples 10000 before submitting."
    info = {"link": link, "name": title, "authors": authors, "additional_data": False, "number_forward_passes": 1,
            "dataset": "cifar10", "venue": venue, "architecture": PRETTY.get(ckpt["arch"], ckpt["arch"]),
            "eps": eps_str if threat != "corruptions" else "0.5", "clean_acc": f"{100 * row['clean_acc']:.2f}",
            "footnote": foot}
    acc = f"{100 * row['robust_acc']:.2f}"
    if threat == "corruptions":
        info["corruptions_acc"] = acc
    else:
        info["reported"] = acc
        info["autoattack_acc"] = acc
    return info


def export(ckpt_path: str, *, name: str, out: str, results: str, threat: str = "Linf", eps: str | None = None,
           title: str = "", authors: str = "", link: str = "", venue: str = "") -> dict:
    ckpt = load_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, ckpt_path)
    from zoo.pgd import parse_eps

    eps_str = eps or {"Linf": "8/255", "L2": "0.5", "corruptions": "0"}[threat]
    row = measured(read_rows(results), sha256_file(ckpt_path), threat, parse_eps(eps_str))
    if row is None:
        what = "corruptions" if threat == "corruptions" else f"autoattack at {threat} eps {eps_str}"
        raise CheckpointError(f"no {what} row for {ckpt_path} in {results}; run `python -m bench.run --models "
                              f"{ckpt_path} --attacks {'corruptions' if threat == 'corruptions' else 'autoattack'}` first")
    info = model_info(ckpt, row, name=name, threat=threat, eps_str=eps_str, title=title or f"sharpbench {name}",
                      authors=authors, link=link, venue=venue)
    paths = {
        "info": os.path.join(out, "model_info", "cifar10", threat, f"{name}.json"),
        "weights": os.path.join(out, "models", "cifar10", threat, f"{name}.pt"),
        "source": os.path.join(out, f"{name}.py"),
    }
    os.makedirs(os.path.dirname(paths["info"]), exist_ok=True)
    with open(paths["info"], "w") as f:
        json.dump(info, f, indent=2)
    save_atomic({"state_dict": {k: v.clone() for k, v in model.state_dict().items()}}, paths["weights"])
    with open(paths["source"], "w") as f:
        f.write(model_source(ckpt, name))
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--name", required=True, help="RobustBench model name, e.g. Smith2026Sharpness")
    p.add_argument("--out", default="export")
    p.add_argument("--results", default="results/results.jsonl")
    p.add_argument("--threat-model", default="Linf", choices=["Linf", "L2", "corruptions"])
    p.add_argument("--eps", default=None, help="default 8/255 (Linf), 0.5 (L2)")
    p.add_argument("--title", default="")
    p.add_argument("--authors", default="")
    p.add_argument("--link", default="")
    p.add_argument("--venue", default="")
    a = p.parse_args(argv)
    try:
        paths = export(a.checkpoint, name=a.name, out=a.out, results=a.results, threat=a.threat_model, eps=a.eps,
                       title=a.title, authors=a.authors, link=a.link, venue=a.venue)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
