"""The whole training step compiled (zoo.train --compile-step): for every recipe it computes what eager computes.

On CPU the backend is aot_eager (the graphs torch.compile captures, run without generated kernels), so what is
tested is the capture: forward, backward, the recipe's extra passes and attack, the optimizer update, the
learning rate read from a device tensor across a schedule change, BatchNorm's running statistics (frozen on
SAM's second pass and on attack forwards). aot_eager decomposes a few operators differently from eager, so
weights agree within TOL rather than bitwise; correct counts and num_batches_tracked agree exactly.
"""
import copy
import os
import subprocess
import sys
from contextlib import nullcontext

import pytest
import torch

from zoo.config import TrainConfig
from zoo.models import create_model
from zoo.recipes import RECIPES, get_recipe
from zoo.train import compiled_step, make_optimizer, set_lr

TOL = 1e-4  # largest weight difference after three steps (TRADES' KL is the loosest, about 4e-5)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _steps(model, cfg, step, batches, lrs):
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    torch.manual_seed(1)  # attack random starts
    stats = torch.zeros(2, dtype=torch.float64)  # loss sum, correct: as the trainer accumulates them
    for (x, y), lr in zip(batches, lrs):
        set_lr(opt, lr)
        loss, logits = step(model, opt, x, y, cfg, nullcontext)
        stats += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()])
    return model.state_dict(), stats, opt


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_compiled_whole_step_equals_eager(recipe):
    torch._dynamo.config.recompile_limit += 8
    cfg = TrainConfig(arch="sharp_tiny", recipe=recipe, steps=2, compile="aot_eager",
                      compile_step="default").resolved()
    torch.manual_seed(0)
    model = create_model("sharp_tiny", 10, [0.5] * 3, [0.25] * 3).train()
    g = torch.Generator().manual_seed(2)
    batches = [(torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(3)]
    lrs = [0.1, 0.1, 0.01]  # a schedule change between the steps: the compiled step must read the new rate
    eager, eager_stats, eager_opt = _steps(copy.deepcopy(model), cfg, get_recipe(recipe).step, batches, lrs)
    comp, comp_stats, comp_opt = _steps(copy.deepcopy(model), cfg, compiled_step(get_recipe(recipe), cfg), batches,
                                        lrs)
    assert set(eager) == set(comp)
    for k in eager:
        if k.endswith("num_batches_tracked"):
            assert torch.equal(eager[k], comp[k]), k  # the same forwards moved the statistics
        else:
            assert (eager[k].float() - comp[k].float()).abs().max() <= TOL, k  # weights, running mean and var
    assert comp_stats[1] == eager_stats[1]  # correct counts
    assert comp_stats[0] == pytest.approx(eager_stats[0].item(), rel=1e-5)  # the loss summed over the epoch
    assert float(comp_opt.param_groups[0]["lr"]) == pytest.approx(0.01)
    # the schedule reached the update: with the last step at the first rate instead, the weights would differ
    wrong, _, _ = _steps(copy.deepcopy(model), cfg, get_recipe(recipe).step, batches, [0.1, 0.1, 0.1])
    assert any((wrong[k].float() - eager[k].float()).abs().max() > 10 * TOL for k in eager
               if not k.endswith("num_batches_tracked"))


def test_zoo_train_compile_step_is_recorded_and_tracks_eager(tmp_path):
    from zoo.checkpoint import load_checkpoint
    from zoo.train import train

    base = dict(arch="sharp_tiny", recipe="pgd_at", steps=2, data="synthetic", n_train=128, epochs=2, batch_size=32,
                device="cpu", schedule="cosine")  # cosine: a new learning rate at every step
    eager = load_checkpoint(train(TrainConfig(**base, out=str(tmp_path / "e")), progress=False))
    comp = load_checkpoint(train(TrainConfig(**base, out=str(tmp_path / "c"), compile="aot_eager",
                                             compile_step="default"), progress=False))
    assert comp["precision"]["compile_step"] == "default" and eager["precision"]["compile_step"] is None
    for e, c in zip(eager["history"], comp["history"]):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4)
        assert c["train_acc"] == pytest.approx(e["train_acc"], abs=1 / 128)
    for k, v in eager["model"].items():
        assert (v.float() - comp["model"][k].float()).abs().max() <= 10 * TOL, k


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
