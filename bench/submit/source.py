"""The two source pieces a RobustBench Model Zoo PR adds: an architecture module for
`robustbench/model_zoo/architectures/` (self-contained: torch, and timm for timm architectures; nothing of
sharpbench) and the entry for the threat model's dictionary in `robustbench/model_zoo/<dataset>.py`."""
from __future__ import annotations

import hashlib
import inspect
import re

from zoo import classics, models

CLASSIC_SOURCE = {
    "preact_resnet18": ([classics.PreActBlock, classics.PreActResNet],
                        "PreActResNet((2, 2, 2, 2), num_classes=NUM_CLASSES)"),
    "wrn28_10": ([classics.PreActBlock, classics.WideResNet], "WideResNet(28, 10, num_classes=NUM_CLASSES)"),
    "wrn34_10": ([classics.PreActBlock, classics.WideResNet], "WideResNet(34, 10, num_classes=NUM_CLASSES)"),
    "sharp_tiny": ([classics.TinyNet], "TinyNet(num_classes=NUM_CLASSES)"),
    "sharp_small": ([classics.TinyNet, classics.SmallNet], "SmallNet(num_classes=NUM_CLASSES)"),
}
# classics robustbench's architectures/ already has (resnet.py: PreActResNet; wide_resnet.py: WideResNet): the
# issue template's "I use an architecture that is included" box; timm architectures qualify too
ROBUSTBENCH_HAS = ("preact_resnet18", "wrn28_10", "wrn34_10")
# robustbench.utils.load_model drops the first len('module.') / len('model.') characters of every key that holds
# either string anywhere, so weights whose names contain them would load mangled
MANGLED_BY_ROBUSTBENCH = ("module.", "model.")
ZOO_DICT = {"Linf": "linf", "L2": "l2", "corruptions": "common_corruptions"}


def module_name(name: str) -> str:
    """The architecture module's name: a valid Python identifier (a hyphen cannot be in a module name), lower
    case like robustbench's own modules, never `__init__` or one of robustbench's modules, and distinct for
    names that differ only in case (which share a file on case-insensitive file systems): the lower-cased name
    followed by six hex digits of the exact name's sha256."""
    snake = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "model"
    return f"{snake}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def class_name(name: str) -> str:
    """`<Name>Net` with every character that cannot be in an identifier made '_' (Wang2023Better_WRN-70-16 ->
    Wang2023Better_WRN_70_16Net), as robustbench names its zoo classes."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name) + "Net"


IMAGENET_NET = '''class ImageNormalizer(nn.Module):
    """(x - mean) / std, as robustbench's utils_architectures.ImageNormalizer."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.as_tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std
'''


def imagenet_module(ckpt: dict, name: str) -> str:
    """`<Name>Net`: the timm network behind its normalization, laid out as RobustBench's ImageNet entries
    (`normalize_model`: submodules `normalize` and `model`), so robustbench's loader, which prefixes the weights
    with `model.` for ImageNet, loads the network's own state dict into it."""
    norm = ckpt["normalization"]
    return "\n".join([
        '"""A RobustBench ImageNet model-zoo architecture exported by sharpbench (see MODEL_NAME and ARCH).', "",
        "Takes images in [0,1] (RobustBench's Res256Crop224 points); the normalization is the first module.", '"""',
        "from collections import OrderedDict", "", "import timm", "import torch", "import torch.nn as nn", "", "",
        IMAGENET_NET, "", f"MODEL_NAME = {name!r}", f"ARCH = {ckpt['arch']!r}",
        f"NUM_CLASSES = {int(ckpt['num_classes'])!r}",
        f"MEAN = {[float(v) for v in norm['mean']]!r}", f"STD = {[float(v) for v in norm['std']]!r}", "", "",
        f"class {class_name(name)}(nn.Sequential):",
        "    def __init__(self):",
        "        super().__init__(OrderedDict([('normalize', ImageNormalizer(MEAN, STD)),",
        "                                      ('model', timm.create_model(ARCH, num_classes=NUM_CLASSES))]))", "", "",
        "def load_model(path):",
        "    ckpt = torch.load(path, map_location='cpu', weights_only=True)",
        f"    model = {class_name(name)}()",
        "    model.model.load_state_dict(ckpt.get('state_dict', ckpt))",
        "    return model.eval()", ""])


def architecture_module(ckpt: dict, name: str, dataset: str = "cifar10") -> str:
    """Python source defining `<Name>Net` (no arguments, RobustBench's `'model'` constructor) for [0,1] inputs,
    and `load_model(path)` for use outside RobustBench. Values from the checkpoint reach the source only through
    repr(), as constants: its docstring and comments are fixed text, so no metadata can end them."""
    if dataset == "imagenet":
        return imagenet_module(ckpt, name)
    arch = ckpt["arch"]
    norm = ckpt["normalization"]
    parts = ['"""A RobustBench model-zoo architecture exported by sharpbench (see MODEL_NAME, ARCH and RECIPE).',
             "", "Takes images in [0,1]; the normalization is inside the model (buffers `mean` and `std`).", '"""',
             "import torch", "import torch.nn as nn", "import torch.nn.functional as F", ""]
    if arch in CLASSIC_SOURCE:
        classes, build = CLASSIC_SOURCE[arch]
        parts += [inspect.getsource(c) for c in classes]
    else:  # any other timm architecture: timm builds it, with the same 32x32 adaptation sharpbench applies
        parts += ["import timm", "", inspect.getsource(models.has_imagenet_stem), "",
                  inspect.getsource(models.adapt_to_32)]
        if arch.startswith(("vit_", "deit_")):
            build = "timm.create_model(ARCH, num_classes=NUM_CLASSES, img_size=32, patch_size=4)"
        else:
            build = "adapt_to_32(timm.create_model(ARCH, num_classes=NUM_CLASSES))"
    parts += [inspect.getsource(models.Normalized),
              f"MODEL_NAME = {name!r}", f"ARCH = {arch!r}", f"RECIPE = {str(ckpt.get('recipe'))!r}",
              f"NUM_CLASSES = {int(ckpt['num_classes'])!r}",
              f"MEAN = {[float(v) for v in norm['mean']]!r}", f"STD = {[float(v) for v in norm['std']]!r}", "", "",
              f"class {class_name(name)}(Normalized):",
              "    def __init__(self):",
              f"        super().__init__({build}, MEAN, STD)", "", "",
              "def load_model(path):",
              "    ckpt = torch.load(path, map_location='cpu', weights_only=True)",
              f"    model = {class_name(name)}()",
              "    model.load_state_dict(ckpt.get('state_dict', ckpt))",
              "    return model.eval()", ""]
    return "\n".join(parts)


# how each dictionary of robustbench/model_zoo/<dataset>.py opens, indents its entries and closes (read off its
# files: CIFAR-10's linf alone opens on two lines and indents its entries by eight spaces)
ENTRY_LAYOUT = {("cifar10", "Linf"): ("linf = OrderedDict(\n    [", 8, "    ])"),
                ("imagenet", "Linf"): ("linf = OrderedDict(\n    [", 8, "    ])"),
                ("imagenet", "corruptions"): ("common_corruptions = OrderedDict(\n    [", 8, "    ])")}
# RobustBench's ImageNet entries name their preprocessing; every point of ours is Res256Crop224 (bench.data)
PREPROCESSING = {"imagenet": "Res256Crop224"}


def zoo_entry(name: str, dataset: str, threat: str) -> str:
    """A valid Python file holding the import and the entry for `robustbench/model_zoo/<dataset>.py`, written as
    that file writes its entries (its opening of the threat model's OrderedDict, its indentation, `}),` closing
    each entry), so the lines between the opening and the closing paste in as they are; `gdrive_id` is a
    placeholder the author fills in."""
    var = ZOO_DICT[threat]
    opening, indent, closing = ENTRY_LAYOUT.get((dataset, threat), (f"{var} = OrderedDict([", 4, "])"))
    pad = " " * indent
    return "\n".join([
        f"# The model-zoo entry for robustbench/model_zoo/{dataset}.py, exported by sharpbench.",
        "# 1. Put the import beside the others at the top of that file.",
        f"# 2. Put the entry (the lines between `{var} = OrderedDict(...[` and its closing `])` below) into that",
        f"#    file's `{var}` OrderedDict, where the leaderboard order wants it, and replace FILL_IN_GDRIVE_ID with",
        "#    the Google Drive id of the uploaded weights. If the entry just above yours ends in `})` with no comma",
        "#    (the last entry of some of these dictionaries does), add the comma, or Python reads the two as a call.",
        "from collections import OrderedDict",
        "",
        f"from robustbench.model_zoo.architectures.{module_name(name)} import {class_name(name)}",
        "",
        opening,
        f"{pad}({name!r}, {{",
        f"{pad}    'model': {class_name(name)},",
        f"{pad}    'gdrive_id': 'FILL_IN_GDRIVE_ID',",
        *([f"{pad}    'preprocessing': {PREPROCESSING[dataset]!r},"] if dataset in PREPROCESSING else []),
        f"{pad}}}),",
        closing, ""])
