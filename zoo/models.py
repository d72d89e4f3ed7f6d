"""Build any timm architecture (or a registered CIFAR classic) for 32x32 inputs, with normalization inside.

Every model returned here takes images in [0,1] (RobustBench's convention), so attack eps is one scalar.
"""
from __future__ import annotations

import difflib

import timm
import torch
import torch.nn as nn
from timm.models import register_model

from zoo import classics  # noqa: F401  (registers the classics into timm's registry)
from zoo.errors import typed_line


class ArchError(ValueError):
    """Unknown or unusable --arch; the message is one line naming the problem and the fix."""


class Normalized(nn.Module):
    """(x - mean) / std in front of the network: inputs are [0,1] images, state_dict carries the statistics."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)

    def features(self, x):
        """Penultimate-layer features (pooled, before the classifier)."""
        z = self.net.forward_features((x - self.mean) / self.std)
        if z.ndim > 2:  # timm models return unpooled maps; their head pools them
            z = self.net.forward_head(z, pre_logits=True)
        return z


def has_imagenet_stem(net: nn.Module) -> bool:
    """A ResNet-style 7x7 stem convolution followed by a max-pool: what adapt_to_32 replaces."""
    conv1 = getattr(net, "conv1", None)
    return isinstance(conv1, nn.Conv2d) and conv1.kernel_size == (7, 7) and hasattr(net, "maxpool")


def adapt_to_32(net: nn.Module) -> nn.Module:
    """ResNet-style stems: 3x3 stride-1 conv and no max-pool, so 32x32 inputs keep their resolution."""
    if has_imagenet_stem(net):
        conv1 = net.conv1
        net.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, 1, 1, bias=conv1.bias is not None)
        net.maxpool = nn.Identity()
    return net


@register_model
def cifar_stem(pretrained=False, base="resnet18", **kwargs):
    """Any timm network whose ImageNet stem (7x7 stride-2 convolution, max-pool) zoo replaces for 32x32 inputs
    (zoo.models.adapt_to_32), by name: what a Hub config of such a model names (architecture cifar_stem,
    model_args {base: NAME})."""
    def build(**kw):
        return adapt_to_32(timm.create_model(base, **kw))

    build.__name__ = base
    return classics.built(build, pretrained, kwargs)


def known_archs() -> list[str]:
    return sorted(timm.list_models())


VIT_32 = {"img_size": 32, "patch_size": 4}  # patch 4 at 32x32: 8x8 tokens, as the CIFAR ViT literature does


def hub_architecture(arch: str, num_classes: int) -> tuple[str, dict, bool]:
    """(architecture, model_args, needs zoo) such that timm.create_model(architecture, num_classes=num_classes,
    **model_args) builds the network zoo builds for `arch`, with the same weight names: what a Hub config.json
    names. needs zoo: the architecture is registered into timm by `import zoo` (a CIFAR classic, or a timm
    network with zoo's 32x32 stem, `cifar_stem`), not timm's own."""
    if arch in (*classics.CLASSICS, "cifar_stem"):
        return arch, {}, True
    if arch.startswith(("vit_", "deit_")):
        return arch, dict(VIT_32), False
    if has_imagenet_stem(timm.create_model(arch, num_classes=num_classes)):
        return "cifar_stem", {"base": arch}, True
    return arch, {}, False


def _create_timm(arch: str, num_classes: int) -> nn.Module:
    if arch in classics.CLASSICS:
        return timm.create_model(arch, num_classes=num_classes)
    if arch.startswith(("vit_", "deit_")):
        return timm.create_model(arch, num_classes=num_classes, **VIT_32)
    return adapt_to_32(timm.create_model(arch, num_classes=num_classes))


def create_model(arch: str, num_classes: int, mean, std) -> Normalized:
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, known_archs(), n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "see `python -m zoo.train --list`"
        raise ArchError(f"unknown architecture {arch!r}; {hint}")
    try:
        net = _create_timm(arch, num_classes)
    except Exception as e:  # noqa: BLE001 - a timm factory refusing these arguments
        raise ArchError(f"architecture {arch!r} cannot be built with {num_classes} classes ("
                        f"{typed_line(e)})") from e
    model = Normalized(net, mean, std)
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            out = model(torch.rand(1, len(mean), 32, 32))
            model.train(was)
    except Exception as e:
        raise ArchError(f"architecture {arch!r} does not run on 3x32x32 inputs ({type(e).__name__}: {e})") from e
    if out.shape != (1, num_classes):
        raise ArchError(f"architecture {arch!r} returns shape {tuple(out.shape)}; expected (1, {num_classes})")
    return model
