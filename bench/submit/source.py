"""The two source pieces a RobustBench Model Zoo PR adds: an architecture module for
`robustbench/model_zoo/architectures/` (self-contained: torch, and timm for timm architectures; nothing of
sharpbench) and the entry for the threat model's dictionary in `robustbench/model_zoo/<dataset>.py`."""
from __future__ import annotations

import inspect

from zoo import classics, models

CLASSIC_SOURCE = {
    "preact_resnet18": ([classics.PreActBlock, classics.PreActResNet],
                        "PreActResNet((2, 2, 2, 2), num_classes=NUM_CLASSES)"),
    "wrn28_10": ([classics.PreActBlock, classics.WideResNet], "WideResNet(28, 10, num_classes=NUM_CLASSES)"),
    "wrn34_10": ([classics.PreActBlock, classics.WideResNet], "WideResNet(34, 10, num_classes=NUM_CLASSES)"),
    "sharp_tiny": ([classics.TinyNet], "TinyNet(num_classes=NUM_CLASSES)"),
    "sharp_small": ([classics.TinyNet, classics.SmallNet], "SmallNet(num_classes=NUM_CLASSES)"),
}
# robustbench.utils.load_model drops the first len('module.') / len('model.') characters of every key that holds
# either string anywhere, so weights whose names contain them would load mangled
MANGLED_BY_ROBUSTBENCH = ("module.", "model.")
ZOO_DICT = {"Linf": "linf", "L2": "l2", "corruptions": "common_corruptions"}


def module_name(name: str) -> str:
    return name.lower()


def class_name(name: str) -> str:
    return f"{name}Net"


def architecture_module(ckpt: dict, name: str) -> str:
    """Python source defining `<Name>Net` (no arguments, RobustBench's `'model'` constructor) for [0,1] inputs,
    and `load_model(path)` for use outside RobustBench."""
    arch = ckpt["arch"]
    norm = ckpt["normalization"]
    parts = [f'"""{name}: {arch} trained with the {ckpt.get("recipe")} recipe, for RobustBench\'s model zoo.',
             "", "Takes images in [0,1]; the normalization is inside the model (buffers `mean` and `std`).", '"""',
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
              f"class {class_name(name)}(Normalized):",
              "    def __init__(self):",
              f"        super().__init__({build}, MEAN, STD)", "", "",
              "def load_model(path):",
              "    ckpt = torch.load(path, map_location='cpu', weights_only=True)",
              f"    model = {class_name(name)}()",
              "    model.load_state_dict(ckpt.get('state_dict', ckpt))",
              "    return model.eval()", ""]
    return "\n".join(parts)


def zoo_entry(name: str, dataset: str, threat: str) -> str:
    """A valid Python file holding the import and the `ENTRY` tuple to paste into
    `robustbench/model_zoo/<dataset>.py`; `gdrive_id` is a placeholder the author fills in."""
    return "\n".join([
        f'"""Paste into robustbench/model_zoo/{dataset}.py: the import beside the others at the top, and the ENTRY',
        f"tuple (without `ENTRY = `) into the `{ZOO_DICT[threat]} = OrderedDict([...])` list, where the",
        'leaderboard order wants it. Replace the gdrive_id placeholder with the id of the uploaded weights."""',
        f"from robustbench.model_zoo.architectures.{module_name(name)} import {class_name(name)}", "",
        f"ENTRY = ('{name}', {{",
        f"    'model': {class_name(name)},",
        f"    'gdrive_id': 'FILL_IN_GDRIVE_ID',  # Google Drive id of models/{dataset}/{threat}/{name}.pt",
        "})", ""])
