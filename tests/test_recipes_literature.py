"""TRADES, AWP and FGSM-RS: each step against its paper's formula on a toy model, and a real-data epoch."""
import copy
import dataclasses
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.config import TrainConfig
from zoo.recipes import RECIPES, adversarial_batch, awp_perturbation, trades_loss
from zoo.models import create_model
from zoo.optim import SGD
from zoo.train import checkpoint_name, train



def _toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(10, 3, 4, 4, generator=g), torch.randint(0, 3, (10,), generator=g)


def test_trades_loss_and_step_follow_the_formula():
    model, (x, y) = _toy(), _data()
    cfg = TrainConfig(recipe="trades", steps=3).resolved()
    assert cfg.beta == 6.0 and cfg.eps == "8/255" and cfg.steps == 3
    x_adv = torch.clamp(x + 0.02 * torch.randn_like(x), 0, 1)
    ln, la = model(x), model(x_adv)
    p, q = F.softmax(ln, 1), F.softmax(la, 1)
    kl = (p * (p.log() - q.log())).sum(1).mean()
    torch.testing.assert_close(trades_loss(ln, la, y, 6.0), F.cross_entropy(ln, y) + 6.0 * kl)
    # the step: the inner maximisation (same seed), then SGD on CE + beta*KL at that x'
    ref = copy.deepcopy(model)
    torch.manual_seed(3)
    x_adv = adversarial_batch(ref, x, y, cfg, nullcontext, loss="kl", init_std=0.001)
    assert (x_adv - x).abs().max() <= cfg.eps_value + 1e-6 and not torch.equal(x_adv, x)
    loss_ref = trades_loss(ref(x), ref(x_adv), y, cfg.beta)
    grads = torch.autograd.grad(loss_ref, list(ref.parameters()))
    expected = [p.detach() - 0.1 * g for p, g in zip(ref.parameters(), grads)]
    opt = SGD(model.parameters(), lr=0.1)
    torch.manual_seed(3)
    loss, _ = RECIPES["trades"].step(model, opt, x, y, cfg, nullcontext)
    torch.testing.assert_close(loss, loss_ref.detach())
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)


def test_awp_perturbs_each_weight_by_gamma_times_its_norm_and_removes_it():
    model, (x, y) = _toy(), _data()
    params = list(model.parameters())
    F.cross_entropy(model(x), y).backward()
    v = awp_perturbation(params, [p.grad for p in params], 5e-3)
    for p, vi in zip(params, v):
        if p.ndim > 1:  # weight matrices: |v_l| = gamma * |w_l|, along the gradient
            torch.testing.assert_close(vi.norm(), 5e-3 * p.detach().norm())
            assert F.cosine_similarity(vi.flatten(), p.grad.flatten(), dim=0) > 0.999
        else:  # biases untouched
            assert torch.count_nonzero(vi) == 0
    # the step: gradient at w + v on the attacked batch, applied from w (the perturbation is removed)
    cfg = TrainConfig(recipe="awp", steps=2).resolved()
    ref = copy.deepcopy(model)
    for p in ref.parameters():
        p.grad = None
    torch.manual_seed(5)
    x_adv = adversarial_batch(ref, x, y, cfg, nullcontext)
    F.cross_entropy(ref(x_adv), y).backward()
    rp = list(ref.parameters())
    vv = awp_perturbation(rp, [p.grad for p in rp], cfg.gamma)
    w_pert = [p.detach() + vi for p, vi in zip(rp, vv)]
    moved = copy.deepcopy(ref)
    with torch.no_grad():
        for p, w in zip(moved.parameters(), w_pert):
            p.copy_(w)
    g2 = torch.autograd.grad(F.cross_entropy(moved(x_adv), y), list(moved.parameters()))
    expected = [p.detach() - 0.1 * g for p, g in zip(rp, g2)]
    opt = SGD(model.parameters(), lr=0.1)
    torch.manual_seed(5)
    RECIPES["awp"].step(model, opt, x, y, cfg, nullcontext)
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)


def test_fgsm_rs_is_one_step_of_1_25_eps_from_a_uniform_start():
    model, (x, y) = _toy(), _data()
    cfg = TrainConfig(recipe="fgsm_rs").resolved()
    assert cfg.steps == 1 and cfg.alpha_value == pytest.approx(1.25 * 8 / 255)
    eps = cfg.eps_value
    torch.manual_seed(11)
    delta0 = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1) - x  # Wong et al.'s start
    d = delta0.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(model(x + d), y, reduction="sum"), d)
    expected = x + ((x + (delta0 + cfg.alpha_value * g.sign()).clamp(-eps, eps)).clamp(0, 1) - x)
    torch.manual_seed(11)
    torch.testing.assert_close(adversarial_batch(model, x, y, cfg, nullcontext), expected)
    assert checkpoint_name(cfg).endswith("-fgsm_rs-linf8_255-s0.pt")


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["trades", "awp", "fgsm_rs"])
def test_new_recipes_train_an_epoch_on_real_cifar(tiny_cfg, subset_path, recipe):
    from zoo.checkpoint import load_checkpoint

    cfg = dataclasses.replace(tiny_cfg, recipe=recipe, data=f"npz:{subset_path}", n_train=512, steps=2)
    ckpt = load_checkpoint(train(cfg, progress=False))
    assert torch.isfinite(torch.tensor(ckpt["history"][0]["train_loss"]))
    torch.manual_seed(cfg.seed)  # the trainer's initialisation, rebuilt
    init = create_model("sharp_tiny", 10, [0.5] * 3, [0.25] * 3).state_dict()
    assert any(not torch.equal(v, init[k]) for k, v in ckpt["model"].items() if k.startswith("net."))  # it trained
    assert ckpt["metrics"]["n_test"] == 1017


def test_study_adds_recipe_groups_at_the_presets_main_eps():
    from bench.grid import presets as study

    assert study.parse_recipes("+trades,+awp,+fgsm_rs") == (("trades", "awp", "fgsm_rs"), ())
    assert study.parse_recipes("+trades,+looksam,+rwp") == (("trades",), ("looksam", "rwp"))
    with pytest.raises(ValueError, match=r"\+trades"):
        study.parse_recipes("+sgd")
    p = dataclasses.replace(study.PRESETS["small"], extra=("trades", "fgsm_rs"), seeds=(0,))
    grid = {c.recipe: c.resolved() for c in study.training_grid(p, "cpu", "zoo")}
    assert grid["trades"].eps == "8/255" and grid["trades"].steps == 10 and grid["trades"].alpha == "2/255"
    assert grid["fgsm_rs"].eps == "8/255" and grid["fgsm_rs"].steps == 1
    assert grid["fgsm_rs"].alpha_value == pytest.approx(1.25 * 8 / 255)


def test_cheapest_at_verdict_reads_equal_clean_accuracy():
    import pandas as pd

    from bench.report.claims import decide
    from bench.report.results import RobustColumn
    from bench.report.study_report import summarize

    def frame(sam_clean, fgsm_clean):
        rows = [("standard", 0.90, 0.30), ("sam rho0.05", sam_clean, 0.40), ("fgsm_rs linf8_255", fgsm_clean, 0.55)]
        return pd.DataFrame([{"model": g, "group": g, "recipe": g.split()[0], "seed": 0, "clean": c,
                              RobustColumn("pgd", "Linf", "1/255"): r,
                              RobustColumn("pgd", "Linf", "8/255"): r / 3} for g, c, r in rows])

    pm = frame(0.895, 0.89)
    (line,) = [c for c in decide(pm, summarize(pm)) if "cheapest AT" in c]
    assert "did not hold: sam rho0.05 vs fgsm_rs linf8_255: 40.0% vs 55.0%" in line
    pm = frame(0.90, 0.80)
    (line,) = [c for c in decide(pm, summarize(pm)) if "cheapest AT" in c]
    assert "not comparable at equal clean accuracy" in line and "10.0-point gap" in line
