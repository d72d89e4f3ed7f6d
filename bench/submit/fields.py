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


def model_info(*, dataset: str, threat: str, row: dict, arch: str, eps_str: str, additional_data: bool,
               title: str, authors: str, link: str, venue: str, reported: str | None,
               footnote: str | None) -> dict:
    """The fields of `model_info/<dataset>/<threat>/<Name>.json` as RobustBench's own files have them, in their
    order and types (strings for accuracies and eps). Read off its files (tests/data/robustbench/):
    - `reported` is always there (the paper's own number, "" when none is given);
    - `footnote` only when the author writes one (most entries without one leave it out);
    - Linf/L2 entries carry `unreliable: false`; corruptions entries carry no `unreliable` at all;
    - corruptions entries leave `eps` null, adversarially trained models included (27 of its 36 CIFAR-10/100
      corruptions entries, Addepalli2021Towards_WRN34 among the adversarially trained ones)."""
    info = {"link": link, "name": title, "authors": authors, "additional_data": bool(additional_data),
            "number_forward_passes": 1, "dataset": dataset, "venue": venue, "architecture": readable_arch(arch),
            "eps": None if threat == "corruptions" else eps_str,
            "clean_acc": pct(row["clean_acc"]), "reported": "" if reported is None else str(reported)}
    info["corruptions_acc" if threat == "corruptions" else "autoattack_acc"] = pct(row["robust_acc"])
    if footnote:
        info["footnote"] = footnote
    if threat != "corruptions":
        info["unreliable"] = False
    return info


# the column order of each dataset's `model_info/<dataset>/corruptions/unaggregated_results.csv` header, as
# RobustBench's files have it (they differ: CIFAR-100's is alphabetical); tests check these against copies
UNAGGREGATED_ORDER = {
    "cifar10": ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness", "fog",
                "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression",
                "elastic_transform"),
    "cifar100": ("brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost", "gaussian_noise",
                 "glass_blur", "impulse_noise", "jpeg_compression", "motion_blur", "pixelate", "shot_noise", "snow",
                 "zoom_blur"),
    # no copy of RobustBench's ImageNet file is at hand: the order its corruptions evaluation writes a new one
    # in (robustbench.data.CORRUPTIONS)
    "imagenet": ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness",
                 "fog", "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression",
                 "elastic_transform"),
}


def unaggregated_csv(name: str, row: dict, dataset: str) -> str:
    """The model's line of `model_info/<dataset>/corruptions/unaggregated_results.csv` under that file's two
    header rows: columns (corruption, severity) in the order of that dataset's file, one row indexed by the model
    name, accuracies as fractions (pandas' to_csv, as robustbench's corruptions evaluation writes it)."""
    import pandas as pd

    from bench.report.escape import csv_cell

    per = row["corruption_severity_acc"]
    order = UNAGGREGATED_ORDER[dataset]
    frame = pd.DataFrame({(c, s): per[f"{c}/{s}"] for c in order for s in SEVERITIES}, index=[csv_cell(name)])
    buf = io.StringIO()
    frame.to_csv(buf)
    return buf.getvalue()
