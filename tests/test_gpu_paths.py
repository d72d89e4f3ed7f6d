"""The CUDA-default paths (bf16 autocast, channels_last, torch.compile, on-device augmentation) run on CPU too."""
import copy
import dataclasses
from contextlib import nullcontext

import pytest
import torch
from torch.overrides import TorchFunctionMode

from zoo.checkpoint import load_checkpoint, model_from_checkpoint
from zoo.config import TrainConfig
from zoo.data import DeviceLoader, load_dataset
from zoo.models import create_model
from zoo.optim import SGD
from zoo.recipes import RECIPES, adversarial_batch, sam_step
from zoo.train import accuracy, train

pytestmark = pytest.mark.slow  # every recipe under bf16 and compile, and scripts/gpu_check.py --tiny


def _fast(tiny_cfg, **kw):
    return dataclasses.replace(tiny_cfg, n_train=128, batch_size=32, steps=2, amp="bf16", channels_last=True, **kw)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_trains_under_bf16_channels_last_and_compile(tiny_cfg, recipe):
    ckpt = load_checkpoint(train(_fast(tiny_cfg, recipe=recipe, compile="aot_eager"), progress=False))
    h = ckpt["history"][0]
    assert torch.isfinite(torch.tensor([h["train_loss"], h["train_acc"]])).all()
    assert ckpt["precision"] == {"train": "bf16 autocast", "device": "cpu", "channels_last": True,
                                 "compile": "aot_eager", "compile_step": None, "final_metric": "fp32"}
    assert ckpt["config"]["amp"] == "bf16" and ckpt["config"]["channels_last"] is True
    ds = load_dataset("synthetic")
    model = model_from_checkpoint(ckpt)  # fp32, contiguous, eager
    assert accuracy(model, ds.x_test, ds.y_test) == ckpt["metrics"]["clean_test_acc"]


def test_cpu_defaults_are_fp32_and_contiguous(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, device="cpu").resolved()
    assert cfg.amp == "off" and cfg.channels_last is False
    assert TrainConfig(device="cuda").resolved().amp == "bf16"  # resolving does not need a GPU
    with pytest.raises(ValueError, match="bf16 or off"):
        TrainConfig(amp="fp8").resolved()


def _bn_net():
    torch.manual_seed(0)
    return create_model("sharp_tiny", 10, [0.5] * 3, [0.25] * 3).train()


def test_sam_batchnorm_switch_and_input_gradients_hold_under_compile():
    eager = _bn_net()
    compiled_base = copy.deepcopy(eager)
    compiled = torch.compile(compiled_base, backend="aot_eager")
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    cfg = TrainConfig(recipe="sam", rho=0.5).resolved()
    for net, params in ((eager, eager), (compiled, compiled_base)):
        opt = SGD(params.parameters(), lr=0.1)
        sam_step(net, opt, x, y, cfg, nullcontext)
    for (name, a), b in zip(eager.state_dict().items(), compiled_base.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)  # running stats moved once, as eager
    at = TrainConfig(recipe="pgd_at", steps=3).resolved()
    for p in compiled_base.parameters():
        p.grad = None
    x_adv = adversarial_batch(compiled, x, y, at, nullcontext)
    assert all(p.grad is None for p in compiled_base.parameters())  # the attack took input gradients only
    assert (x_adv - x).abs().max() <= at.eps_value + 1e-6


class _Watch(TorchFunctionMode):
    """Records every torch function called, with its kwargs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls.append((getattr(func, "__name__", str(func)), kwargs))
        return func(*args, **kwargs)


def test_loader_draws_on_its_device_and_copies_nothing_per_batch(monkeypatch):
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (64,))
    loader = DeviceLoader(x, y, 16, "cpu", train=True, seed=1)
    made = []
    real = torch.Generator

    def generator(*a, **k):  # every generator the loader makes, and the device it lives on
        g = real(*a, **k)
        made.append(g)
        return g

    monkeypatch.setattr(torch, "Generator", generator)
    it = iter(loader)
    next(it)  # the epoch's set-up (permutation, generator) happens here
    assert made and all(g.device == loader.x.device for g in made[-1:])
    with _Watch() as w:
        next(it)
    names = [n for n, _ in w.calls]
    assert not {"to", "cuda", "tensor", "as_tensor", "from_numpy", "copy_", "pin_memory"} & set(names), names
    draws = [k for n, k in w.calls if n in ("randint", "rand", "randn", "randperm")]
    assert draws and all(k.get("generator") is not None and k["generator"].device == loader.x.device
                         and torch.device(k.get("device", "cpu")) == loader.x.device for k in draws)


def test_augmentation_is_deterministic_per_seed_and_epoch():
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(40)
    a, b = (DeviceLoader(x, y, 16, "cpu", train=True, seed=3) for _ in range(2))
    for ld in (a, b):
        ld.set_epoch(2)
    for (xa, _), (xb, _) in zip(a, b):
        assert torch.equal(xa, xb)
    b.set_epoch(3)
    assert not torch.equal(next(iter(a))[0], next(iter(b))[0])


def test_gpu_check_runs_tiny_on_cpu(tmp_path, capsys):
    from conftest import script

    mod = script("gpu_check")
    out = tmp_path / "gpu.md"
    assert mod.main(["--tiny", "--out", str(out)]) == 0
    text = out.read_text()
    for section in ("(a) Training speed", "(c) AutoAttack standard", "(d) Compiled bf16 training",
                    "(f) K trainings sharing one GPU", "(g) The paper grid on this GPU", "(h) ImageNet at 224",
                    "(i) SAM variants: step time", "With the SAM variants' block", "(e) Targets"):
        assert section in text, section
    # eager = compiled (AutoAttack, standard model); every recipe benches; each of the seven sections ran
    assert text.count("| PASS |") == 9 and text.count("section ran | PASS") == 7 and "FAIL" not in text
    for recipe in ("looksam", "esam", "gsam", "msam", "rwp"):  # (i): each variant's step, eager and compiled
        assert text.count(f"| {recipe} | ") >= 2, recipe
    assert "| decoding (bench.data) |" in text and "| APGD-CE, 100 iterations (test_efficientnet) |" in text
    assert "AutoAttack eager and compiled agree (standard) | PASS" in text
    for k in (1, 2, 4):  # K processes timed, and the paper grid projected for each K
        assert f"| pgd_at | {k} |" in text and text.count(f"\n| {k} | ") == 1
    for recipe in ("standard", "sam", "pgd_at", "sam_at"):
        assert f"| {recipe} |" in text


def test_augmentation_is_a_property_of_the_data():
    digits, cifar_like = load_dataset("digits"), load_dataset("synthetic")
    assert digits.augment == {"pad": 2, "flip": False} and cifar_like.augment == {"pad": 4, "flip": True}
    # a horizontally asymmetric image: with flips off, every output is an unflipped shift of at most 2 pixels
    x = torch.zeros(64, 3, 32, 32)
    x[:, :, 10:20, 4:8] = 1.0
    loader = DeviceLoader((x * 255).to(torch.uint8), torch.zeros(64, dtype=torch.long), 64, "cpu", train=True,
                          augment=digits.augment)
    (xb, _), = list(loader)
    cols = xb[:, 0, 15].nonzero()[:, 1].view(64, -1)  # the bar's columns in row 15 of each image
    assert cols.min() >= 2 and cols.max() <= 9 and (cols[:, 0] != 4).any()  # shifted, never mirrored to 24..27
    loader.augment = cifar_like.augment
    (xb, _), = list(loader)
    assert (xb[:, 0, 15, 20:].sum(1) > 0).any()  # with flips on, some bars land on the right half


def test_bench_channels_last_compiled_forward_matches_eager_on_cpu():
    """The evaluation layout CUDA uses (channels_last, bucketed compiled forward), run on CPU."""
    from bench.eval.forward import BucketedForward

    model = _bn_net().eval()
    fast = BucketedForward(model.to(memory_format=torch.channels_last), 16, backend="aot_eager",
                           channels_last=True).eval()
    x = torch.rand(11, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)
