"""LookSAM, ESAM, GSAM, MSAM and m-RWP: each recipe's step against its paper's update, computed by hand.

Each reference is written here with plain autograd on a two-layer toy (no torch.func, no recipe code), and the
recipe's weights after the step must equal it within float tolerance; a changed update rule fails its test
(scripts/mutants.py holds one mutant per recipe).
"""
import copy
import dataclasses
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.config import TrainConfig
from zoo.optim import SGD
from zoo.recipes import RECIPES
from zoo.train import checkpoint_name, make_optimizer


LR = 0.1


def _toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))


def _batch(seed, n=10):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def _logits(ws, x):
    w1, b1, w2, b2 = ws
    return F.linear(F.relu(F.linear(x.flatten(1), w1, b1)), w2, b2)


def _grad(ws, x, y):
    ws = [w.detach().clone().requires_grad_(True) for w in ws]
    return [g.detach() for g in torch.autograd.grad(F.cross_entropy(_logits(ws, x), y), ws)]


def _norm(vs):
    return torch.sqrt(sum((v ** 2).sum() for v in vs))


def _dot(a, b):
    return sum((u * v).sum() for u, v in zip(a, b))


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _step(model, recipe, cfg, x, y, opt=None, index=0):
    opt = opt or SGD(model.parameters(), lr=LR, state=RECIPES[recipe].state)
    RECIPES[recipe].step_of(cfg, index)(model, opt, x, y, cfg, nullcontext)
    return opt


def _assert_weights(model, expected):
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)


def test_looksam_is_sam_every_k_steps_and_reuses_the_orthogonal_direction_between():
    """Liu et al. 2022, Algorithm 1, over k + 1 steps (k = 2): full, reuse, full."""
    cfg = TrainConfig(recipe="looksam", rho=0.3, looksam_k=2, looksam_alpha=0.7).resolved()
    model, w, direction = _toy(), _weights(_toy()), None
    opt = None
    for i in range(cfg.looksam_k + 1):
        x, y = _batch(i)
        g = _grad(w, x, y)
        if i % cfg.looksam_k == 0:
            n = _norm(g)
            g_s = _grad([wi + cfg.rho * gi / n for wi, gi in zip(w, g)], x, y)
            g_v = [a - _dot(g_s, g) / _dot(g, g) * b for a, b in zip(g_s, g)]
            direction = [v / _norm(g_v) for v in g_v]
            update = g_s
        else:
            update = [gi + cfg.looksam_alpha * _norm(g) * vi for gi, vi in zip(g, direction)]
        w = [wi - LR * u for wi, u in zip(w, update)]
        opt = _step(model, "looksam", cfg, x, y, opt, index=i)
        _assert_weights(model, w)
    assert RECIPES["looksam"].step_of(cfg, 1) is not RECIPES["looksam"].step_of(cfg, 2)


def test_esam_perturbs_a_random_subset_and_takes_the_second_gradient_on_the_sharpest_part_of_the_batch():
    """Du et al. 2022: e = (rho/beta) m * g/||g||, m ~ Bernoulli(beta); second gradient on the top gamma|B|."""
    cfg = TrainConfig(recipe="esam", rho=0.5, esam_beta=0.6, esam_gamma=0.5).resolved()
    model = _toy()
    w, (x, y) = _weights(model), _batch(1)
    g = _grad(w, x, y)
    torch.manual_seed(7)
    masks = [(torch.rand_like(gi) < cfg.esam_beta).float() for gi in g]
    assert 0 < sum(m.sum() for m in masks) < sum(m.numel() for m in masks)  # a real subset
    n = _norm(g)
    moved = [wi + cfg.rho / cfg.esam_beta * m * gi / n for wi, m, gi in zip(w, masks, g)]
    with torch.no_grad():
        rise = (F.cross_entropy(_logits(moved, x), y, reduction="none")
                - F.cross_entropy(_logits(w, x), y, reduction="none"))
    chosen = torch.argsort(rise, descending=True)[:5]
    g_plus = _grad(moved, x[chosen], y[chosen])
    assert not all(torch.allclose(a, b) for a, b in zip(g_plus, _grad(moved, x, y)))  # the selection matters
    torch.manual_seed(7)
    _step(model, "esam", cfg, x, y)
    _assert_weights(model, [wi - LR * gi for wi, gi in zip(w, g_plus)])


def test_gsam_subtracts_alpha_times_the_plain_gradients_part_orthogonal_to_sams():
    """Zhuang et al. 2022: w <- w - lr (g_f - alpha (g - <g, g_f>/||g_f||^2 g_f))."""
    cfg = TrainConfig(recipe="gsam", rho=0.3, gsam_alpha=0.4).resolved()
    model = _toy()
    w, (x, y) = _weights(model), _batch(2)
    g = _grad(w, x, y)
    n = _norm(g)
    g_f = _grad([wi + cfg.rho * gi / n for wi, gi in zip(w, g)], x, y)
    perp = [b - _dot(g, g_f) / _dot(g_f, g_f) * a for a, b in zip(g_f, g)]
    assert abs(float(_dot(perp, g_f))) < 1e-6 * float(_norm(perp) * _norm(g_f))  # orthogonal indeed
    _step(model, "gsam", cfg, x, y)
    _assert_weights(model, [wi - LR * (a - cfg.gsam_alpha * p) for wi, a, p in zip(w, g_f, perp)])


def test_msam_takes_its_one_gradient_against_the_normalized_momentum():
    """Becker et al. 2024: w~ = w - rho v/||v||; v <- mu v + grad L(w~) + wd w; w <- w - lr v. Two steps, so the
    second starts from a momentum the first made (the first, from v = 0, is plain SGD)."""
    cfg = TrainConfig(recipe="msam", rho=0.5).resolved()
    model = _toy()
    opt = SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    w, v = _weights(model), [torch.zeros_like(p) for p in model.parameters()]
    for i in range(2):
        x, y = _batch(10 + i)
        nv = _norm(v)
        at = [wi - cfg.rho * vi / (nv + 1e-12) for wi, vi in zip(w, v)]
        g = _grad(at, x, y)
        v = [0.9 * vi + gi + 5e-4 * wi for vi, gi, wi in zip(v, g, w)]
        w = [wi - LR * vi for wi, vi in zip(w, v)]
        _step(model, "msam", cfg, x, y, opt)
        _assert_weights(model, w)
    assert cfg.rho == 0.5 and TrainConfig(recipe="msam").resolved().rho == 3.0  # the authors' CIFAR radius


def test_rwp_mixes_the_gradient_at_filterwise_gaussian_noise_with_the_plain_one():
    """Li et al. 2024 (m-RWP): g = lambda grad L(w + e) + (1 - lambda) grad L(w), e_j ~ N(0, (sigma ||w_j||)^2)
    per output filter j of a weight matrix, per tensor for a bias."""
    cfg = TrainConfig(recipe="rwp", rwp_sigma=0.05, rwp_lambda=0.3).resolved()
    model = _toy()
    w, (x, y) = _weights(model), _batch(3)
    g = _grad(w, x, y)
    torch.manual_seed(11)
    noise = []
    for wi in w:
        std = (wi.norm(dim=1, keepdim=True) if wi.ndim == 2 else wi.norm()) * cfg.rwp_sigma
        noise.append(torch.randn_like(wi) * std)
    g_e = _grad([wi + e for wi, e in zip(w, noise)], x, y)
    torch.manual_seed(11)
    _step(model, "rwp", cfg, x, y)
    _assert_weights(model, [wi - LR * (0.3 * a + 0.7 * b) for wi, a, b in zip(w, g_e, g)])


@pytest.mark.parametrize("recipe", ["looksam", "esam", "gsam", "msam", "rwp"])
def test_each_variant_leaves_batchnorm_statistics_to_the_first_forward_as_sam_does(recipe):
    """One forward a step moves the running statistics (MSAM's only forward, at its perturbed weights)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3))
    cfg = TrainConfig(recipe=recipe, looksam_k=2).resolved()
    opt = make_optimizer(model, cfg)
    for i in range(3):
        x, y = _batch(20 + i, n=16)
        x = torch.rand(16, 3, 6, 6, generator=torch.Generator().manual_seed(i))
        RECIPES[recipe].step_of(cfg, i)(model, opt, x, y, cfg, nullcontext)
    assert int(model[1].num_batches_tracked) == 3


@pytest.mark.parametrize("recipe", ["looksam", "esam", "gsam", "msam", "rwp"])
def test_each_variant_names_its_settings_and_cost(recipe):
    cfg = TrainConfig(recipe=recipe).resolved()
    r = RECIPES[recipe]
    name = checkpoint_name(cfg)
    assert name.startswith(f"preact_resnet18-{recipe}-") and name.endswith("-s0.pt")
    assert not r.adversarial and 1 <= r.passes(cfg) <= 2
    assert set(r.settings) <= set(dataclasses.asdict(cfg))
    cheaper = {"looksam": 1.2, "msam": 1.0}
    if recipe in cheaper:
        assert r.passes(cfg) == pytest.approx(cheaper[recipe])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["looksam", "esam", "gsam", "msam", "rwp"])
def test_each_variant_trains_an_epoch_on_real_cifar_and_on_digits(tiny_cfg, subset_path, recipe):
    from zoo.checkpoint import load_checkpoint
    from zoo.train import train

    for data, n in ((f"npz:{subset_path}", 512), ("digits", None)):
        cfg = dataclasses.replace(tiny_cfg, recipe=recipe, data=data, n_train=n)
        ckpt = load_checkpoint(train(cfg, progress=False))
        assert torch.isfinite(torch.tensor(ckpt["history"][0]["train_loss"]))
        assert ckpt["recipe"] == recipe and ckpt["config"]["recipe"] == recipe


def test_an_unknown_setting_value_is_refused_in_one_line():
    with pytest.raises(ValueError, match="--looksam-k must be at least 1"):
        TrainConfig(recipe="looksam", looksam_k=0).resolved()
    with pytest.raises(ValueError, match="--esam-beta"):
        TrainConfig(recipe="esam", esam_beta=0.0).resolved()


def test_looksam_state_survives_the_optimizer_state_dict():
    model = _toy()
    cfg = TrainConfig(recipe="looksam", looksam_k=2).resolved()
    opt = make_optimizer(model, cfg)
    _step(model, "looksam", cfg, *_batch(0), opt=opt)
    again = make_optimizer(copy.deepcopy(model), cfg)
    again.load_state_dict(opt.state_dict())
    kept = opt.recipe_state["looksam_direction"]
    assert any(t.abs().sum() > 0 for t in kept)
    assert all(torch.equal(a, b) for a, b in zip(again.recipe_state["looksam_direction"], kept))


def test_the_variant_report_answers_with_paired_intervals_and_a_cost_ratio():
    """bench.report.variants on made-up flags: a variant that gets every point standard misses keeps the gain
    (held), is told apart from SAM where it differs on many points, and its cost ratio is the geometric mean of
    its epoch times over SAM's, paired by seed and epoch."""
    import numpy as np
    import pandas as pd

    from bench.report.results import RobustColumn
    from bench.report.variants import HIGHER, SAME, answers, cost_ratio, variant_section

    col = RobustColumn("pgd", "Linf", "1/255")
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.3
    better = base | (rng.random(400) < 0.4)
    flags = {"standard": {col: {0: base, 1: base}}, "sam rho0.2": {col: {0: better, 1: better}},
             "looksam rho0.2-k5-a0.7": {col: {0: better, 1: better}},
             "msam rho0.2": {col: {0: better | (rng.random(400) < 0.5), 1: better | (rng.random(400) < 0.5)}}}
    pm = pd.DataFrame([{"model": f"{g}-{s}", "group": g, "recipe": g.split()[0], "seed": s, "clean": 0.5, col: 0.4}
                       for g in flags for s in (0, 1)])
    costs = {"sam rho0.2": {0: [2.0, 2.0], 1: [2.2, 2.0]}, "looksam rho0.2-k5-a0.7": {0: [1.2, 1.2], 1: [1.32, 1.2]},
             "msam rho0.2": {0: [1.0, 1.0], 1: [1.1, 1.0]}}
    found = {a["group"]: a for a in answers(flags, pm, costs)}
    assert set(found) == {"looksam rho0.2-k5-a0.7", "msam rho0.2"} and found["msam rho0.2"]["sam"] == "sam rho0.2"
    look = found["looksam rho0.2-k5-a0.7"]
    assert look["gain"].lo > 0 and look["vs_sam"].diff == 0 and look["cost"][0] == pytest.approx(0.6)
    assert found["msam rho0.2"]["vs_sam"].lo > 0
    ratio, lo, hi = cost_ratio(costs["msam rho0.2"], costs["sam rho0.2"])
    assert ratio == pytest.approx(0.5) and lo <= ratio <= hi
    text = "\n".join(variant_section(flags, pm, costs, scale="Scale: tiny."))
    assert "| looksam rho0.2-k5-a0.7 | held: " in text and f"| {SAME}: +0.0" in text
    assert f"{HIGHER}: +" in text and "cheaper: 0.60x" in text and "Scale: tiny." in text
    assert variant_section({}, pm[pm["group"] == "standard"], {}) == []  # no variant, no section
