"""RobustBench's model-info JSON and unaggregated corruptions line, filled from a checkpoint and measured rows."""
from __future__ import annotations

import io
import re

from bench.corruptions.generator import SEVERITIES

CLASSIC_NAMES = {"preact_resnet18": "PreActResNet-18", "wrn28_10": "WideResNet-28-10",
                 "wrn34_10": "WideResNet-34-10", "sharp_tiny": "TinyNet (2 conv)", "sharp_small": "SmallNet (3 conv)"}
VIT_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}


def readable_arch(arch: str) -> str:
    """An architecture as RobustBench's JSONs write it (PreActResNet-18, WideResNet-28-10, ResNet-50, ViT-S/4)."""
    if arch in CLASSIC_NAMES:
        return CLASSIC_NAMES[arch]
    if m := re.fullmatch(r"wide_resnet(\d+)_(\d+)", arch):
        return f"WideResNet-{m[1]}-{m[2]}"
    if m := re.fullmatch(r"(pre)?(resnet|resnext)(\d+)([a-z]*)", arch):
        base = {"resnet": "ResNet", "resnext": "ResNeXt"}[m[2]]
        return f"{'PreAct' if m[1] else ''}{base}-{m[3]}{m[4]}"
    if m := re.fullmatch(r"(vit|deit)_(tiny|small|base|large|huge)_patch\d+_\d+", arch):
        return f"{'ViT' if m[1] == 'vit' else 'DeiT'}-{VIT_SIZES[m[2]]}/4"  # sharpbench uses patch 4 at 32x32
    if m := re.fullmatch(r"convnext_(\w+)", arch):
        return f"ConvNeXt-{m[1].capitalize()}"
    return f"{arch} (timm)"


def pct(acc: float) -> str:
    return f"{100 * acc:.2f}"


def model_info(*, dataset: str, threat: str, row: dict, arch: str, corruptions_eps: str | None, eps_str: str,
               additional_data: bool, title: str, authors: str, link: str, venue: str, reported: str | None,
               footnote: str | None) -> dict:
    """The fields of `model_info/<dataset>/<threat>/<Name>.json` in RobustBench's order and types: strings for
    accuracies and eps, booleans and ints as such. `reported` is the paper's own number (omitted when not given),
    `footnote` only what the author writes."""
    info = {"link": link, "name": title, "authors": authors, "additional_data": bool(additional_data),
            "number_forward_passes": 1, "dataset": dataset, "venue": venue, "architecture": readable_arch(arch),
            # corruptions: null for standard training, the training eps for adversarially trained models
            "eps": corruptions_eps if threat == "corruptions" else eps_str,
            "clean_acc": pct(row["clean_acc"])}
    if reported is not None:
        info["reported"] = reported
    info["footnote"] = footnote or None
    info["unreliable"] = False
    info["corruptions_acc" if threat == "corruptions" else "autoattack_acc"] = pct(row["robust_acc"])
    return info


def unaggregated_csv(name: str, row: dict, order) -> str:
    """The model's line of `model_info/<dataset>/corruptions/unaggregated_results.csv` with its two header rows,
    as robustbench's corruptions evaluation writes it: a pandas frame whose columns are (corruption, severity)
    in robustbench's corruption order, one row indexed by the model name, accuracies as fractions."""
    import pandas as pd

    per = row["corruption_severity_acc"]
    frame = pd.DataFrame({(c, s): per[f"{c}/{s}"] for c in order for s in SEVERITIES}, index=[name])
    buf = io.StringIO()
    frame.to_csv(buf)
    return buf.getvalue()
