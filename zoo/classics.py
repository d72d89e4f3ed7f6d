"""The CIFAR classics, registered into timm's registry so `timm.create_model('preact_resnet18')` works.

PreActResNet-18 follows He et al. 2016 as used by the adversarial-training literature (Wong et al., Rice et al.);
WideResNet-28-10 / 34-10 follow Zagoruyko & Komodakis as used by Madry et al. and TRADES.
`sharp_tiny` is a small BatchNorm CNN for fast CPU tests; `sharp_small` adds a third stage for the CPU demo.
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from timm.models import register_model


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice with an identity (or 1x1 conv) shortcut; WideResNets add dropout between the convs."""

    def __init__(self, in_planes, planes, stride=1, drop_rate=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.drop_rate = drop_rate
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = F.relu(self.bn2(self.conv1(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return self.conv2(out) + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes=10, in_chans=3):
        super().__init__()
        self.in_planes = 64
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, 64, 3, 1, 1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(512)
        self.num_features = 512
        self.linear = nn.Linear(512, num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward_features(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        return F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)

    def forward_head(self, x):
        return self.linear(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class WideResNet(nn.Module):
    def __init__(self, depth=28, widen=10, num_classes=10, in_chans=3, drop_rate=0.0):
        super().__init__()
        assert (depth - 4) % 6 == 0, "WideResNet depth must be 6n+4"
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        blocks, in_planes = [], widths[0]
        for i, stride in enumerate((1, 2, 2)):
            for j in range(n):
                blocks.append(PreActBlock(in_planes, widths[i + 1], stride if j == 0 else 1, drop_rate))
                in_planes = widths[i + 1]
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(widths[3])
        self.num_features = widths[3]
        self.fc = nn.Linear(widths[3], num_classes)

    def forward_features(self, x):
        out = F.relu(self.bn(self.blocks(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward_head(self, x):
        return self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class TinyNet(nn.Module):
    """Two conv-BN-ReLU stages and a linear head: trains in seconds on CPU."""

    def __init__(self, num_classes=10, in_chans=3, width=16):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.num_features = 2 * width
        self.fc = nn.Linear(2 * width, num_classes)

    def forward_features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward_head(self, x):
        return self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class SmallNet(TinyNet):
    """Three conv-BN-ReLU stages (16, 32, 64 channels, two max-pools) and TinyNet's linear head: small enough
    for the CPU demo, capable enough to read digits (above 95% on scikit-learn's digits in a few epochs)."""

    def __init__(self, num_classes=10, in_chans=3, width=16):
        nn.Module.__init__(self)  # its own layers: TinyNet contributes the head and forward
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.num_features = 4 * width
        self.fc = nn.Linear(4 * width, num_classes)

    def forward_features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def _timm_kwargs(kwargs) -> tuple[dict, dict | None]:
    """(the net's own arguments, timm's pretrained config). timm.create_model passes its pretrained-config
    plumbing to every factory; from a Hub config (`hf-hub:ORG/NAME`) the class count comes with it. An overlay
    (timm's `pretrained_cfg_overlay=dict(file=...)`, how timm loads weights from a local file) is laid over it,
    as timm does for its own models."""
    cfg = kwargs.pop("pretrained_cfg", None)
    overlay = kwargs.pop("pretrained_cfg_overlay", None)
    kwargs.pop("cache_dir", None)
    if isinstance(overlay, dict) and overlay:
        cfg = {**(cfg if isinstance(cfg, dict) else {}), **overlay}
    if isinstance(cfg, dict) and "num_classes" in cfg:
        kwargs.setdefault("num_classes", cfg["num_classes"])
    return kwargs, cfg


def built(cls, pretrained, kwargs, *args):
    """The net; with pretrained (timm.create_model("hf-hub:ORG/NAME", pretrained=True) after `import zoo`), the
    weights its config names, loaded by timm as for its own models."""
    kwargs, cfg = _timm_kwargs(kwargs)
    net = cls(*args, **kwargs)
    if isinstance(cfg, dict):  # as timm's own models carry theirs: mean, std, input size, label names
        net.pretrained_cfg = cfg
    if pretrained:
        from timm.models._builder import load_pretrained

        if not cfg:
            raise RuntimeError(f"{cls.__name__} has no pretrained weights of its own; load them from a Hub folder "
                               "with timm.create_model('hf-hub:ORG/NAME', pretrained=True), or from a local file with "
                               "pretrained_cfg_overlay=dict(file=PATH)")
        load_pretrained(net, pretrained_cfg=cfg, num_classes=kwargs.get("num_classes", 10))
    return net


@register_model
def preact_resnet18(pretrained=False, **kwargs):
    return built(PreActResNet, pretrained, kwargs, (2, 2, 2, 2))


@register_model
def wrn28_10(pretrained=False, **kwargs):
    return built(WideResNet, pretrained, kwargs, 28, 10)


@register_model
def wrn34_10(pretrained=False, **kwargs):
    return built(WideResNet, pretrained, kwargs, 34, 10)


@register_model
def sharp_tiny(pretrained=False, **kwargs):
    return built(TinyNet, pretrained, kwargs)


@register_model
def sharp_small(pretrained=False, **kwargs):
    return built(SmallNet, pretrained, kwargs)


CLASSICS = ("preact_resnet18", "wrn28_10", "wrn34_10", "sharp_tiny", "sharp_small")
