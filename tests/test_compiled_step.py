"""The whole training step as ONE graph (zoo.train --compile-step), proven on CPU for every recipe:

- dynamo makes one graph of one step, with no break (torch._dynamo.explain), and compiling with fullgraph=True
  succeeds (a break would be an error);
- a 2-epoch training with a short last batch and a new learning rate at every step compiles once;
- the compiled step computes what the eager step computes: weights, BatchNorm running statistics and
  num_batches_tracked, the epochs' loss and accuracy (aot_eager for every recipe, inductor on the recipe that
  holds every code path: attack, tracked and untracked passes, SGD);
- the step reads nothing back to the host.
aot_eager decomposes a few operators differently from eager, so weights agree within TOL rather than bitwise.
"""
import copy
import dataclasses
import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch

from zoo.config import TrainConfig
from zoo.models import create_model
from zoo.recipes import RECIPES, get_recipe
from zoo.train import make_optimizer
from conftest import ROOT

pytestmark = pytest.mark.slow  # inductor and aot_eager compiles of every recipe's whole step

TOL = 1e-4  # largest weight difference after a few steps (TRADES' KL is the loosest)
VARIANTS = [(r, {}) for r in sorted(RECIPES)] + [("sam", {"adaptive": True})]  # ASAM: the adaptive perturbation
IDS = [r + ("-asam" if kw else "") for r, kw in VARIANTS]


def _steps(recipe, cfg):
    """The recipe's distinct step functions over its first steps (LookSAM alternates two; the others have one)."""
    return list(dict.fromkeys(get_recipe(recipe).step_of(cfg, i) for i in range(2 * cfg.looksam_k)))


def _model():
    torch.manual_seed(0)
    return create_model("sharp_tiny", 10, [0.5] * 3, [0.25] * 3).train()


@pytest.mark.parametrize("recipe,extra", VARIANTS, ids=IDS)
def test_every_recipe_step_is_one_graph_without_a_break(recipe, extra):
    cfg = TrainConfig(arch="sharp_tiny", recipe=recipe, steps=2, **extra).resolved()
    model = _model()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for step in _steps(recipe, cfg):
        explained = torch._dynamo.explain(step)(model, make_optimizer(model, cfg), x, y, cfg, nullcontext)
        assert explained.break_reasons == [] and explained.graph_break_count == 0
        assert explained.graph_count == 1


def test_a_graph_break_in_a_step_is_an_error_naming_its_reason():
    from zoo.recipes import Recipe
    from zoo.train import compiled_step

    def logging_step(model, opt, x, y, cfg, autocast):  # a step that reads its loss back to the host
        loss, logits = get_recipe("standard").step(model, opt, x, y, cfg, autocast)
        print(f"loss {loss.item():.3f}")
        return loss, logits

    cfg = TrainConfig(arch="sharp_tiny", compile="aot_eager", compile_step="default").resolved()
    model = _model()
    step = compiled_step(Recipe("logging", logging_step, lambda c: "", "a step with a break"), cfg)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="item|print|builtin"):
        step(model, make_optimizer(model, cfg), torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,)), cfg,
             nullcontext)


def _train(tmp, recipe, extra, **over):
    from zoo.checkpoint import load_checkpoint
    from zoo.train import train

    # 80 images at batch 32: two full steps and a short batch of 16 dropped per epoch; cosine: a new learning
    # rate at every step, which the compiled step must read without recompiling
    # LookSAM with k = 2: its full and its reusing step both run, each one graph
    cfg = TrainConfig(arch="sharp_tiny", recipe=recipe, steps=2, data="synthetic", n_train=80, epochs=2,
                      batch_size=32, device="cpu", schedule="cosine", out=str(tmp), looksam_k=2, **extra, **over)
    return load_checkpoint(train(cfg, progress=False))


def _assert_same_training(eager, comp, tol, tracked_per_step=1):
    for e, c in zip(eager["history"], comp["history"]):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4)
        assert c["train_acc"] == e["train_acc"]
        assert c["lr"] == e["lr"]
    for k, v in eager["model"].items():
        if k.endswith("num_batches_tracked"):  # the forwards that train (TRADES: x and x'), 2 steps x 2 epochs
            assert int(v) == int(comp["model"][k]) == 4 * tracked_per_step, k
        else:  # weights, running mean and variance
            assert (v.float() - comp["model"][k].float()).abs().max() <= tol, k


@pytest.mark.parametrize("recipe,extra", VARIANTS, ids=IDS)
def test_two_epochs_compile_once_and_match_eager(recipe, extra, tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    eager = _train(tmp_path / "eager", recipe, extra)
    before = counters["stats"]["unique_graphs"]
    comp = _train(tmp_path / "compiled", recipe, extra, compile="aot_eager", compile_step="default")
    # short last batch dropped, lr a tensor: no recompile; a recipe with two step functions compiles each once
    phases = len(_steps(recipe, TrainConfig(recipe=recipe, looksam_k=2).resolved()))
    assert counters["stats"]["unique_graphs"] - before == phases <= 2
    assert comp["precision"]["compile_step"] == "default" and eager["precision"]["compile_step"] is None
    assert comp["config"]["drop_last"] is True
    _assert_same_training(eager, comp, 10 * TOL, tracked_per_step=2 if recipe == "trades" else 1)


def test_inductor_whole_step_matches_eager(tmp_path):
    """sam_at holds every code path of a step: the PGD loop on the untracked forward, the tracked pass, SAM's
    untracked second pass and the SGD update. fallback_random: inductor then draws the attack's random start
    from the same generator as eager (its own RNG is as random, but other numbers)."""
    import torch._inductor.config as inductor_config

    eager = _train(tmp_path / "eager", "sam_at", {})
    with inductor_config.patch(fallback_random=True):
        comp = _train(tmp_path / "inductor", "sam_at", {}, compile="inductor", compile_step="default")
    assert comp["precision"]["compile"] == "inductor"
    _assert_same_training(eager, comp, 10 * TOL)


@pytest.mark.parametrize("recipe,extra", VARIANTS, ids=IDS)
def test_a_step_reads_nothing_back_to_the_host(recipe, extra, monkeypatch):
    """On CUDA each of these waits for the device; a step must not make one (gpu_check runs the CUDA check)."""
    cfg = TrainConfig(arch="sharp_tiny", recipe=recipe, steps=2, **extra).resolved()
    model = _model()
    opt = make_optimizer(model, cfg)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))

    def sync(name):
        def refuse(*a, **k):
            raise AssertionError(f"the {recipe} step called Tensor.{name}")
        return refuse

    steps = _steps(recipe, cfg)
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, sync(name))
    for step in steps:
        loss, logits = step(model, opt, x, y, cfg, nullcontext)
    monkeypatch.undo()
    assert torch.isfinite(loss) and logits.shape == (8, 10)


def test_compile_step_under_torchrun_is_refused_in_one_line(tiny_cfg, monkeypatch):
    import zoo.distributed as zd
    from zoo.train import train

    monkeypatch.setattr(zd, "setup", lambda device: (0, 2))
    with pytest.raises(ValueError, match="--compile-step under torchrun is not supported"):
        train(dataclasses.replace(tiny_cfg, compile_step="default", compile="aot_eager"), progress=False)


def test_a_batch_larger_than_the_training_set_is_refused(tiny_cfg):
    from zoo.train import train

    with pytest.raises(ValueError, match="--batch-size 128 is larger than the 64 training images"):
        train(dataclasses.replace(tiny_cfg, n_train=64, batch_size=128), progress=False)


def test_eager_step_equals_the_recipe_written_with_torch_optim():
    """zoo.optim.SGD is torch.optim.SGD (momentum, weight decay) written as foreach ops on a tensor rate."""
    model = _model()
    ref = copy.deepcopy(model)
    cfg = TrainConfig(arch="sharp_tiny", recipe="standard", lr=0.05).resolved()
    opt = make_optimizer(model, cfg)
    torch_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(2)
    for lr in (0.05, 0.05, 0.01):
        x, y = torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.set_lr(lr)
        get_recipe("standard").step(model, opt, x, y, cfg, nullcontext)
        for group in torch_opt.param_groups:
            group["lr"] = lr
        torch_opt.zero_grad()
        torch.nn.functional.cross_entropy(ref(x), y).backward()
        torch_opt.step()
    for (k, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    # and its state loads into torch's optimizer and back
    torch_opt.load_state_dict(opt.state_dict())
    again = make_optimizer(model, cfg)
    again.load_state_dict(torch_opt.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.momentum_buffers, opt.momentum_buffers))


def test_two_trainings_on_one_device_match_each_alone(tmp_path):
    """Several zoo.train processes may share a device (K per GPU): each ends with the weights it gets alone."""
    cmd = [sys.executable, "-m", "zoo.train", "--arch", "sharp_tiny", "--recipe", "sam", "--data", "synthetic",
           "--n-train", "256", "--epochs", "2", "--device", "cpu", "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    alone = subprocess.run(cmd + ["--out", str(tmp_path / "alone")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr[-2000:]
    both = [subprocess.Popen(cmd + ["--out", str(tmp_path / f"shared{i}")], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in both]
    assert all(p.returncode == 0 for p in both), [e[-2000:] for _, e in outs]
    from zoo.checkpoint import load_checkpoint

    ref = load_checkpoint(alone.stdout.strip().splitlines()[-1])["model"]
    for out, _ in outs:
        got = load_checkpoint(out.strip().splitlines()[-1])["model"]
        assert all(torch.equal(got[k], ref[k]) for k in ref)


# ------------------------------------------------------------ inductor (this module is the one that compiles with it)


def test_inductor_training_run(tiny_cfg):
    """A model compiled by inductor (zoo.train --compile) under bf16 and channels_last trains, and its stored
    metric is what the stored weights score in fp32."""
    from zoo.checkpoint import load_checkpoint, model_from_checkpoint
    from zoo.data import load_dataset
    from zoo.train import accuracy, train

    cfg = dataclasses.replace(tiny_cfg, n_train=128, batch_size=32, amp="bf16", channels_last=True,
                              compile="inductor")
    ckpt = load_checkpoint(train(cfg, progress=False))
    assert ckpt["precision"]["compile"] == "inductor"
    ds = load_dataset("synthetic")
    assert accuracy(model_from_checkpoint(ckpt), ds.x_test, ds.y_test) == ckpt["metrics"]["clean_test_acc"]


def test_inductor_bench_gives_the_same_rows_as_eager(checkpoint, tmp_path):
    """bench.run --compile inductor: the bucketed forward compiled into real kernels gives the eager rows' keys and
    counts (clean and PGD; AutoAttack's compiled path is checked with aot_eager in tests/test_bench.py)."""
    from bench.run import main
    from bench.store.rows import read_rows

    ck = checkpoint()
    args = ["--models", ck, "--attacks", "clean,pgd", "--eps", "4/255", "--n-examples", "12", "--batch-size", "8",
            "--data", "synthetic", "--pgd-steps", "3", "--no-progress", "--no-leaderboard"]
    assert main([*args, "--out", str(tmp_path / "eager")]) == 0
    torch._dynamo.reset()
    assert main([*args, "--out", str(tmp_path / "compiled"), "--compile", "inductor"]) == 0
    eager, compiled = (sorted(read_rows(str(tmp_path / d / "results.jsonl")), key=lambda r: r["key"])
                       for d in ("eager", "compiled"))
    assert [r["key"] for r in eager] == [r["key"] for r in compiled]
    for a, b in zip(eager, compiled):
        assert b["compile"] == "inductor" and a["compile"] is None
        assert (a["clean_correct"], a["robust_correct"]) == (b["clean_correct"], b["robust_correct"]), a["attack"]
