from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.config import TrainConfig
from zoo.data import DataError, DeviceLoader, load_dataset, random_crop_flip
from zoo.models import ArchError, create_model
from zoo.pgd import parse_eps
from zoo.optim import SGD
from zoo.recipes import adversarial_batch, sam_step


def test_parse_eps():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.5") == 0.5
    with pytest.raises(ValueError, match="8/255"):
        parse_eps("eight")


def _toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_matches_two_step_formula(adaptive):
    model, x, y = _toy(), torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))
    rho, lr = 0.3, 0.1
    w = [p.detach().clone() for p in model.parameters()]

    def grad_at(ws):
        ps = [wi.clone().requires_grad_(True) for wi in ws]
        loss = F.cross_entropy(F.linear(x.flatten(1), ps[0], ps[1]), y)
        return torch.autograd.grad(loss, ps)

    g = grad_at(w)
    if adaptive:  # Kwon et al.: T_w = |w| + 0.01 on the weight matrix, identity on the bias
        t = [w[0].abs() + 0.01, torch.ones_like(w[1])]
        tg = [ti * gi for ti, gi in zip(t, g)]
        n = torch.sqrt(sum((v ** 2).sum() for v in tg))
        e = [rho * ti * v / n for ti, v in zip(t, tg)]
        assert not torch.allclose(e[1], rho * w[1].abs() * tg[1] / n)  # the bias is not scaled by |b|
    else:
        n = torch.sqrt(sum((gi ** 2).sum() for gi in g))
        e = [rho * gi / n for gi in g]
    g2 = grad_at([wi + ei for wi, ei in zip(w, e)])
    expected = [wi - lr * gi for wi, gi in zip(w, g2)]

    opt = SGD(model.parameters(), lr=lr)
    cfg = TrainConfig(rho=rho, adaptive=adaptive)
    sam_step(model, opt, x, y, cfg, nullcontext)
    for p, ex in zip(model.parameters(), expected):
        assert torch.allclose(p, ex, atol=1e-6)


def test_sam_second_pass_leaves_bn_running_stats_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    x, y = torch.randn(16, 3, 6, 6), torch.randint(0, 3, (16,))
    model(x)  # materialise the lazy layer
    bn = model[1]
    bn.reset_running_stats()
    start = bn.running_mean.clone()
    with torch.no_grad():
        expected = 0.9 * start + 0.1 * model[0](x).mean(dim=(0, 2, 3))  # one update from the clean pass
    opt = SGD(model.parameters(), lr=0.1)
    sam_step(model, opt, x, y, TrainConfig(rho=0.5), nullcontext)
    assert torch.allclose(bn.running_mean, expected, atol=1e-6)
    assert bn.momentum == 0.1


@pytest.mark.parametrize("norm,eps", [("Linf", "8/255"), ("L2", "0.5")])
def test_pgd_at_perturbation_within_eps_and_range(norm, eps):
    torch.manual_seed(0)
    model = create_model("sharp_tiny", 10, [0.5] * 3, [0.25] * 3).train()
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    cfg = TrainConfig(recipe="pgd_at", norm=norm, eps=eps, steps=5).resolved()
    bn_before = model.net.bn1.running_mean.clone()
    x_adv = adversarial_batch(model, x, y, cfg, nullcontext)
    d = (x_adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "Linf" else d.norm(dim=1)
    assert (size <= cfg.eps_value + 1e-6).all() and (size > 0).any()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # input-only gradients
    assert torch.equal(model.net.bn1.running_mean, bn_before)  # attack forwards do not move BN statistics
    with torch.no_grad():
        loss_clean = F.cross_entropy(model(x), y)
        loss_adv = F.cross_entropy(model(x_adv), y)
    assert loss_adv > loss_clean


def test_random_crop_flip_is_a_crop():
    x = torch.rand(6, 3, 32, 32)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    for i in range(6):  # without padding a crop is the image itself, possibly mirrored
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_loader_order_depends_only_on_seed_and_epoch():
    x = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 32, 32).contiguous()
    y = torch.arange(40)
    a = DeviceLoader(x, y, 16, "cpu", train=True, seed=3)
    b = DeviceLoader(x, y, 16, "cpu", train=True, seed=3)
    a.set_epoch(1), b.set_epoch(1)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a, b))
    assert sorted(torch.cat([yb for _, yb in a]).tolist()) == list(range(40))
    a.set_epoch(2)
    assert not torch.equal(next(iter(a))[1], next(iter(b))[1])


def test_digits_default_is_real_and_offline():
    ds = load_dataset("digits")
    assert ds.x_train.shape[1:] == (3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert len(ds.y_train) + len(ds.y_test) == 1797 and ds.num_classes == 10


def test_npz_validation(tmp_path):
    good = dict(x_train=np.zeros((4, 32, 32, 3), np.uint8), y_train=np.arange(4), x_test=np.zeros((2, 3, 32, 32), np.uint8),
                y_test=np.arange(2))
    np.savez(tmp_path / "nhwc.npz", **good)
    ds = load_dataset(f"npz:{tmp_path / 'nhwc.npz'}")
    assert ds.x_train.shape == (4, 3, 32, 32)
    cases = {
        "float": dict(good, x_train=np.zeros((4, 32, 32, 3), np.float32)),
        "shape": dict(good, x_test=np.zeros((2, 32, 32), np.uint8)),
        "labels": dict(good, y_train=np.arange(3)),
        "missing": {k: v for k, v in good.items() if k != "y_test"},
    }
    words = {"float": "uint8", "shape": "4-D", "labels": "3 labels", "missing": "y_test"}
    for name, arrays in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(DataError, match=words[name]):
            load_dataset(f"npz:{tmp_path / name}.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


@pytest.mark.parametrize("spec,cls,archive", [("cifar10", "CIFAR10", "cifar-10-python.tar.gz"),
                                               ("cifar100", "CIFAR100", "cifar-100-python.tar.gz")])
def test_cifar_offline_error_names_alternatives(tmp_path, monkeypatch, spec, cls, archive):
    import torchvision.datasets

    def offline(*a, **k):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, cls, offline)
    with pytest.raises(DataError, match="npz:PATH") as info:
        load_dataset(spec, str(tmp_path))
    assert archive in str(info.value) and "\n" not in str(info.value)


def test_cifar100_loads_with_100_classes_through_torchvision(tmp_path, monkeypatch):
    import numpy as np
    import torchvision.datasets

    class FakeCIFAR100:  # torchvision's attributes: data (N, 32, 32, 3) uint8, targets list
        def __init__(self, root, train, download):
            n = 300 if train else 120
            self.data = np.random.default_rng(int(train)).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 100 for i in range(n)]

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    ds = load_dataset("cifar100", str(tmp_path))
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.x_train.shape == (300, 3, 32, 32)
    assert ds.y_test[:3].tolist() == [0, 1, 2] and ds.augment == {"pad": 4, "flip": True}


def test_real_cifar_subset(subset_path):
    ds = load_dataset(f"npz:{subset_path}", n_train=512)
    assert ds.x_train.shape == (512, 3, 32, 32) and ds.x_test.shape == (1017, 3, 32, 32)
    assert ds.y_test[:16].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8]


@pytest.mark.parametrize("arch", ["preact_resnet18", "resnet18", "vit_tiny_patch16_224"])
def test_architectures_take_32px_inputs_in_unit_range(arch):
    model = create_model(arch, 10, [0.5] * 3, [0.25] * 3).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
        assert model.features(torch.rand(2, 3, 32, 32)).ndim == 2


def test_unknown_arch_names_closest():
    with pytest.raises(ArchError, match="wrn28_10"):
        create_model("wrn28_1O", 10, [0.5] * 3, [0.25] * 3)
