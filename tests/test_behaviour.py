"""Behaviour a user relies on, each checked against an independent construction (scripts/mutants.py proves these
tests fail when the code they cover breaks)."""
import copy
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.report.results import RobustColumn
from zoo.config import TrainConfig
from zoo.models import create_model
from zoo.optim import SGD
from zoo.pgd import pgd
from zoo.recipes import RECIPES


# ---------------------------------------------------------------- recipe semantics: what each step trains on

def _bn_model():
    torch.manual_seed(0)
    return create_model("sharp_tiny", 10, [0.5] * 3, [0.25] * 3).train()


def _batch(n=16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _params(model):
    """Weights and BatchNorm running statistics (num_batches_tracked is checked on its own: it counts only the
    forwards that moved the statistics, where the momentum-0 references below count every forward)."""
    return [t.detach().clone() for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked")]


def _opt(model):
    """The trainer's optimizer (zoo.optim.SGD: foreach ops a compiled step traces)."""
    return SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def _ref_opt(model):
    """torch's own SGD, for the references written out below."""
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def _reference_attack(model, x, y, cfg):
    """PGD with the recipe's settings, BatchNorm running statistics left alone, written out here."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    x_adv = pgd(model, x, y, norm=cfg.norm, eps=cfg.eps_value, alpha=cfg.alpha_value, steps=cfg.steps)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return x_adv


def _reference_sgd(model, opt, x, y):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x).float(), y).backward()
    opt.step()


def _reference_sam(model, opt, x, y, rho):
    params = [p for p in model.parameters() if p.requires_grad]
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x).float(), y).backward()
    with torch.no_grad():
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
        e = [rho * p.grad / (norm + 1e-12) for p in params]
        for p, ei in zip(params, e):
            p.add_(ei)
    opt.zero_grad(set_to_none=True)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    F.cross_entropy(model(x).float(), y).backward()
    for m, mom in zip(bns, saved):
        m.momentum = mom
    with torch.no_grad():
        for p, ei in zip(params, e):
            p.sub_(ei)
    opt.step()


def _close(a, b):
    return all(torch.allclose(u, v, atol=1e-6, rtol=1e-5) for u, v in zip(a, b))


@pytest.mark.parametrize("recipe", ["pgd_at", "sam_at"])
def test_adversarial_recipes_step_on_the_attacked_batch(recipe):
    cfg = TrainConfig(recipe=recipe, steps=3, rho=0.05).resolved()
    x, y = _batch()
    base = _bn_model()
    ours, ref, clean = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(7)
    RECIPES[recipe].step(ours, _opt(ours), x, y, cfg, nullcontext)
    torch.manual_seed(7)
    x_adv = _reference_attack(ref, x, y, cfg)
    assert (x_adv - x).abs().max() > cfg.eps_value / 2  # the attack moved the batch
    opt = _ref_opt(ref)
    if recipe == "pgd_at":
        _reference_sgd(ref, opt, x_adv, y)
    else:
        _reference_sam(ref, opt, x_adv, y, cfg.rho)
    assert _close(_params(ours), _params(ref))
    tracked = {k: int(v) for k, v in ours.state_dict().items() if k.endswith("num_batches_tracked")}
    assert tracked and set(tracked.values()) == {1}  # one forward trained; the attack's and SAM's second did not
    # the same update on the clean batch is a different model: the attacked batch is what was trained on
    copt = _ref_opt(clean)
    _reference_sgd(clean, copt, x, y) if recipe == "pgd_at" else _reference_sam(clean, copt, x, y, cfg.rho)
    assert not _close(_params(ours), _params(clean))


@pytest.mark.parametrize("recipe", sorted(r for r in RECIPES if RECIPES[r].adversarial))
def test_every_adversarial_recipe_trains_on_what_the_attack_returns(recipe, monkeypatch):
    """Whatever the recipe does with it, its update must change when the attack's output changes."""
    import zoo.recipes.adversarial as zr

    cfg = TrainConfig(recipe=recipe, steps=2).resolved()
    x, y = _batch(8)
    base = _bn_model()
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(3)
    RECIPES[recipe].step(a, _opt(a), x, y, cfg, nullcontext)
    real = zr.adversarial_batch
    monkeypatch.setattr(zr, "adversarial_batch", lambda m, xx, yy, c, ac, **kw: (real(m, xx, yy, c, ac, **kw) * 0 + xx))
    torch.manual_seed(3)
    RECIPES[recipe].step(b, _opt(b), x, y, cfg, nullcontext)
    assert not _close(_params(a), _params(b)), f"{recipe} ignores its adversarial examples"


# ---------------------------------------------------------------- study verdicts: pure functions of rows

SMALL, LARGE = RobustColumn("pgd", "Linf", "1/255"), RobustColumn("pgd", "Linf", "8/255")  # per_model's columns


def _frame(sam_small, std_small, at_large, sam_large, sam_clean, at_clean, std_clean=0.90):
    rows = []
    for seed, jitter in ((0, -0.01), (1, 0.01)):
        rows.append({"model": f"std{seed}", "group": "standard", "recipe": "standard", "seed": seed,
                     "clean": std_clean + jitter, SMALL: std_small + jitter,
                     LARGE: 0.02 + jitter / 10})
        rows.append({"model": f"sam{seed}", "group": "sam rho0.05", "recipe": "sam", "seed": seed,
                     "clean": sam_clean + jitter, SMALL: sam_small + jitter,
                     LARGE: sam_large + jitter / 10})
        rows.append({"model": f"at{seed}", "group": "pgd_at linf8_255", "recipe": "pgd_at", "seed": seed,
                     "clean": at_clean + jitter, SMALL: 0.6 + jitter,
                     LARGE: at_large + jitter / 10})
    return pd.DataFrame(rows)


def _verdicts(pm, measures=None):
    from bench.report.claims import decide
    from bench.report.study_report import summarize

    if measures:
        pm = pm.assign(**measures)
    out = {}
    for line in decide(pm, summarize(pm)):
        head, rest = line.split(":** ", 1)
        out[head.strip("*")] = rest
    return out


def test_verdicts_when_the_papers_claims_hold():
    v = _verdicts(_frame(sam_small=0.70, std_small=0.55, at_large=0.40, sam_large=0.05, sam_clean=0.895,
                         at_clean=0.80))
    assert v["SAM raises small-eps robustness (Linf 1/255, PGD)"] == \
        "held: sam rho0.05 vs standard: 70.0% vs 55.0%, +15.0 points (group means)."
    assert v["PGD-AT buys more robustness at large eps than SAM (Linf 8/255, PGD)"].startswith(
        "held: pgd_at linf8_255 vs sam rho0.05: 40.0% vs 5.0%, +35.0 points (group means).")
    assert v["SAM keeps clean accuracy (within 1 point)"].startswith("held: sam rho0.05 vs standard: 89.5% vs 90.0%")
    assert v["PGD-AT costs clean accuracy"].startswith("held: pgd_at linf8_255 vs standard: 80.0% vs 90.0%, -10.0")


def test_verdicts_when_the_papers_claims_fail():
    v = _verdicts(_frame(sam_small=0.50, std_small=0.55, at_large=0.04, sam_large=0.05, sam_clean=0.85,
                         at_clean=0.93))
    assert v["SAM raises small-eps robustness (Linf 1/255, PGD)"].startswith("did not hold: sam rho0.05 vs standard")
    assert v["PGD-AT buys more robustness at large eps than SAM (Linf 8/255, PGD)"].startswith(
        "did not hold: pgd_at linf8_255 vs sam rho0.05: 4.0% vs 5.0%")
    assert v["SAM keeps clean accuracy (within 1 point)"].startswith("did not hold: sam rho0.05 vs standard: 85.0%")
    assert v["PGD-AT costs clean accuracy"].startswith("did not hold: pgd_at linf8_255 vs standard: 93.0% vs 90.0%")


def test_a_claim_over_several_settings_is_mixed_when_they_disagree_and_orders_are_judged_on_family_means():
    pm = _frame(sam_small=0.70, std_small=0.55, at_large=0.40, sam_large=0.05, sam_clean=0.895, at_clean=0.80)
    weak = pm[pm.group == "sam rho0.05"].assign(group="sam rho0.2", model=lambda d: d.model + "b")
    weak[SMALL] = 0.50
    pm = pd.concat([pm, weak], ignore_index=True)
    shift = {"standard": 0.30, "sam rho0.05": 0.20, "sam rho0.2": 0.26, "pgd_at linf8_255": 0.24}
    v = _verdicts(pm, {"feature_shift_Linf": pm.group.map(shift)})
    line = v["SAM raises small-eps robustness (Linf 1/255, PGD)"]
    assert line.startswith("mixed: ") and "sam rho0.05 vs standard: 70.0% vs 55.0%, +15.0 points (group means), held" \
        in line and "sam rho0.2 vs standard: 50.0% vs 55.0%, -5.0 points (group means), did not hold" in line
    # SAM's settings average 0.23 < AT's 0.24: the ordering standard >= SAM >= AT does not hold, though one SAM
    # setting is above AT
    line = v["Feature perturbation ordering standard ≥ SAM ≥ AT under a Linf attack"]
    assert line.startswith("did not hold: ") and "(group means" in line
    shift["sam rho0.05"] = 0.25
    v = _verdicts(pm, {"feature_shift_Linf": pm.group.map(shift)})
    assert v["Feature perturbation ordering standard ≥ SAM ≥ AT under a Linf attack"].startswith("held")


def test_summary_is_mean_and_sample_std_over_seeds():
    from bench.report.study_report import summarize

    pm = _frame(sam_small=0.7, std_small=0.55, at_large=0.4, sam_large=0.05, sam_clean=0.89, at_clean=0.8)
    s = summarize(pm)
    for grp in ("standard", "sam rho0.05", "pgd_at linf8_255"):
        vals = pm.loc[pm.group == grp, SMALL].to_numpy()
        assert s.loc[grp, (SMALL, "mean")] == pytest.approx(np.mean(vals))
        assert s.loc[grp, (SMALL, "std")] == pytest.approx(np.std(vals, ddof=1))
        assert s.loc[grp, ("seeds", "n")] == 2
    assert list(s.index) == ["standard", "sam rho0.05", "pgd_at linf8_255"]  # no rank column: clean accuracy
    s = summarize(pm, SMALL)
    assert list(s.index) == ["sam rho0.05", "pgd_at linf8_255", "standard"]  # the leaderboard's rule, on means


def test_the_report_table_puts_the_seed_papers_four_pgd_columns_first():
    from bench.report.study_report import results_table, summarize

    evals = [("Linf", "8/255"), ("L2", "64/255"), ("Linf", "2/255"), ("L2", "16/255"), ("Linf", "4/255"),
             ("Linf", "1/255"), ("L2", "32/255")]
    pm = pd.DataFrame([{"model": f"m{seed}", "group": "standard", "recipe": "standard", "seed": seed, "clean": 0.9,
                        **{RobustColumn("pgd", norm, eps): 0.5 for norm, eps in evals}} for seed in (0, 1)])
    head = [h.strip() for h in results_table(pm, summarize(pm)).splitlines()[0].strip("|").split("|")]
    assert head == ["Group", "seeds", "Clean", "PGD Linf 1/255", "PGD Linf 2/255", "PGD L2 16/255", "PGD L2 32/255",
                    "PGD Linf 4/255", "PGD Linf 8/255", "PGD L2 64/255"]


# ---------------------------------------------------------------- cache keys: complete, and nothing more

def _bench_args(**over):
    from bench.run import parse_args

    return parse_args(["--models", "m.pt", *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in over.items()), [])])


@pytest.mark.parametrize("attack", ["pgd", "autoattack", "autoattack-fast", "corruptions"])
def test_every_setting_that_changes_a_result_changes_the_key(attack):
    from bench.store.rows import row_key
    from bench.eval.engine import attack_config

    spec = {"attack": attack, "norm": None if attack == "corruptions" else "Linf", "eps": 8 / 255}
    _, cfg = attack_config(spec, _bench_args())
    key = row_key("m", cfg, "cifar10", 100)
    seen = {key}
    for field_name, value in cfg.items():  # every field of the config, one at a time
        changed = dict(cfg)
        changed[field_name] = value + ["x"] if isinstance(value, list) else (
            value + 1 if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{value}-other")
        seen.add(row_key("m", changed, "cifar10", 100))
    assert len(seen) == len(cfg) + 1
    assert row_key("m2", cfg, "cifar10", 100) != key and row_key("m", cfg, "cifar100", 100) != key
    assert row_key("m", cfg, "cifar10", 99) != key
    # and the settings do reach the config: each CLI option changes the key through attack_config
    options = {"pgd": {"pgd_steps": 7, "pgd_alpha": "0.5/255", "restarts": 2, "seed": 3},
               "autoattack": {"seed": 3, "batch_size": 1000}, "autoattack-fast": {"seed": 3, "batch_size": 7},
               "corruptions": {"seed": 3, "corruptions": "fog", "corruptions_source": "official"}}[attack]
    for opt, value in options.items():
        _, other = attack_config(spec, _bench_args(**{opt: value}))
        assert row_key("m", other, "cifar10", 100) != key, opt
    if attack != "corruptions":
        _, other = attack_config({**spec, "eps": 4 / 255}, _bench_args())
        assert row_key("m", other, "cifar10", 100) != key
        _, other = attack_config({**spec, "norm": "L2", "eps": 0.5}, _bench_args())
        assert row_key("m", other, "cifar10", 100) != key


@pytest.mark.parametrize("attack", ["pgd", "autoattack", "corruptions"])
def test_batch_size_device_and_compile_do_not_change_the_key(attack):
    """Device and compile never change a key; the batch size only AutoAttack's, whose random starts are drawn
    per batch (its default batch, 250, keeps the key it always had)."""
    from bench.store.rows import row_key
    from bench.eval.engine import attack_config

    spec = {"attack": attack, "norm": None if attack == "corruptions" else "Linf", "eps": 8 / 255}
    keys = {row_key("m", attack_config(spec, _bench_args(**extra))[1], "cifar10", 100)
            for extra in ({}, {"batch_size": 250}, {"device": "cpu"}, {"compile": "aot_eager"})}
    assert len(keys) == 1
    batches = {row_key("m", attack_config(spec, _bench_args(batch_size=b))[1], "cifar10", 100) for b in (7, 1000)}
    assert (batches == keys) if attack != "autoattack" else len(batches | keys) == 3


def test_generator_version_only_keys_regenerated_corruptions(tmp_path):
    from bench.eval.engine import attack_config

    (tmp_path / "labels.npy").write_bytes(b"")
    spec = {"attack": "corruptions", "norm": None, "eps": 0.0}
    _, regen = attack_config(spec, _bench_args())
    _, official = attack_config(spec, _bench_args(corruptions_dir=str(tmp_path)))
    assert "generator_version" in regen and "generator_version" not in official
    assert official["source"] == "official" and regen["source"] == "regenerated"


# ---------------------------------------------------------------- PGD restarts where they matter

@pytest.fixture(scope="module")
def trained():
    from zoo.data import make_synthetic
    from zoo.train import train

    import tempfile

    from zoo.checkpoint import load_checkpoint, model_from_checkpoint

    with tempfile.TemporaryDirectory() as d:
        path = train(TrainConfig(arch="sharp_tiny", data="synthetic", epochs=3, batch_size=64, lr=0.05,
                                 device="cpu", out=d), progress=False)
        model = model_from_checkpoint(load_checkpoint(path)).eval()
    ds = make_synthetic()
    return model, ds.x_test.float() / 255, ds.y_test


def test_restarts_keep_every_example_any_restart_fooled(trained):
    """A large ball with two short steps: where the random start lands decides many outcomes, so restarts matter
    on this trained model (measured: 13 of 127 correct points fooled with one start, 21 with three)."""
    model, x, y = trained
    eps, kw = 32 / 255, dict(norm="Linf", steps=2, alpha=1 / 255, example_ids=range(len(y)), seed=0)
    with torch.no_grad():
        clean_ok = model(x).argmax(1) == y
    many = pgd(model, x, y, eps=eps, restarts=3, **kw)
    one = pgd(model, x, y, eps=eps, restarts=1, **kw)
    with torch.no_grad():
        fooled_many, fooled_one = model(many).argmax(1) != y, model(one).argmax(1) != y
    assert (fooled_many | ~fooled_one).all()  # restart 0 is the single run: nothing it fooled is lost
    assert (fooled_many & clean_ok).sum() >= (fooled_one & clean_ok).sum() + 3  # restarts matter here
    assert ((many - x).abs().amax(dim=(1, 2, 3)) <= eps + 1e-6).all()


# ---------------------------------------------------------------- augmentation, schedule, sharded data

def test_augmentation_draws_every_offset_and_both_flips():
    from zoo.data import random_crop_flip

    n, pad = 600, 4
    x = torch.zeros(n, 1, 32, 32)
    x[:, 0, 10, 5] = 1.0  # one marked pixel, left of centre: its position after the crop gives the offsets
    out = random_crop_flip(x, torch.Generator().manual_seed(0), pad=pad)
    rows, cols = [], []
    for img in out[:, 0]:
        (r, c), = img.nonzero().tolist() or [(None, None)]
        if r is None:  # shifted out of the image: can only happen at the extreme offsets
            continue
        rows.append(r - 10)
        cols.append(c)
    dy = set(-d for d in rows)
    flipped = [c for c in cols if c > 15]
    plain = [c - 5 for c in cols if c <= 15]
    assert dy == set(range(-pad, pad + 1))  # all 2*pad+1 vertical offsets
    assert set(-d for d in plain) == set(range(-pad, pad + 1))  # all horizontal offsets, unflipped
    assert 0.4 < len(flipped) / len(cols) < 0.6  # about half flipped
    assert set(31 - c - 5 for c in flipped) <= set(range(-pad, pad + 1))  # a mirror image of a shift


def test_piecewise_and_cosine_schedules_at_their_milestones():
    from zoo.train import lr_at

    cfg = TrainConfig(epochs=100, lr=0.1)
    assert [lr_at(cfg, e, 0, 10) for e in (0, 74, 75, 89, 90, 99)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = TrainConfig(epochs=10, lr=0.2, schedule="cosine")
    assert lr_at(cos, 0, 0, 10) == pytest.approx(0.2)
    assert lr_at(cos, 5, 0, 10) == pytest.approx(0.1)
    assert lr_at(cos, 9, 9, 10) == pytest.approx(0.2 * 0.5 * (1 + np.cos(np.pi * 0.99)))


def test_distributed_ranks_see_disjoint_data_covering_the_set():
    from zoo.data import DeviceLoader

    x = torch.zeros(103, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(103)
    seen = []
    for rank in range(2):
        loader = DeviceLoader(x, y, 10, "cpu", train=True, seed=4, rank=rank, world=2)
        loader.set_epoch(3)
        seen.append(torch.cat([yb for _, yb in loader]).tolist())
        assert len(seen[-1]) == len(loader) * 10 or len(seen[-1]) == 51
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) == len(seen[1]) == 51 and len(set(seen[0]) | set(seen[1])) == 102  # 103 - 103 % 2


# ---------------------------------------------------------------- measures restore what they perturb

def test_sharpness_probe_restores_weights_exactly_and_uses_its_radius(trained, monkeypatch):
    from bench.eval import measures

    model, x, y = trained
    before = _params(model)
    out = measures.sharpness(model, x[:32], y[:32], rho=0.05, steps=2, n_random=2)
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model)))
    assert out["sharpness_worst"] > out["sharpness_random"]  # the ascent finds a worse point than random ones
    radii = []
    real = measures._loss

    def spy(m, xx, yy, batch_size=500):
        radii.append(float(torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(m.parameters(), saved)))))
        return real(m, xx, yy, batch_size)
    saved = [p.detach().clone() for p in model.parameters()]
    monkeypatch.setattr(measures, "_loss", spy)
    measures.sharpness(model, x[:16], y[:16], rho=0.05, steps=2, n_random=3)
    assert radii[0] == 0.0 and radii[3] == pytest.approx(0.05, rel=1e-4)  # base, then the ascent's end on the ball
    assert radii[-3:] == pytest.approx([0.05] * 3, rel=1e-4)  # each random perturbation at radius rho


def test_measures_of_a_nan_model_or_one_without_features_fail_naming_why(trained):
    """A NaN model's measures and a model without penultimate features fail as an evaluation (its failed row
    says why), never as a row the readers would have to refuse."""
    import copy

    from bench.attacks.predict import EvaluationError
    from bench.eval.measures import measure, measures_config, measures_spec

    model, x, y = trained
    cfg = measures_config(measures_spec({"Linf": "2/255"}, 8), 0)
    assert measure(model, x[:8], y[:8], cfg)["sharpness_worst"] >= 0
    broken = copy.deepcopy(model)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    with pytest.raises(EvaluationError, match="not finite"):
        measure(broken, x[:8], y[:8], cfg)
    with pytest.raises(EvaluationError, match="model.features"):
        measure(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 10)).eval(), x[:8], y[:8], cfg)


# ---------------------------------------------------------------- loading plain state_dicts

@pytest.mark.parametrize("prefix", ["", "module."])
def test_bare_network_state_dicts_load_with_or_without_ddp_prefix(tmp_path, prefix):
    from bench.eval.loading import load_state_dict_model

    model = create_model("sharp_tiny", 10, [0.0] * 3, [1.0] * 3).eval()  # inputs in [0,1]: no normalisation
    sd = {prefix + k: v for k, v in model.net.state_dict().items()}
    path = tmp_path / "bare.pt"
    torch.save(sd, path)
    lm = load_state_dict_model(str(path), "sharp_tiny", 10)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(lm.model(x), model(x))
    assert lm.meta.verified is False and lm.meta.model_id


def test_wilson_interval_matches_the_published_values():
    from bench.stats import wilson

    lo, hi = wilson(3, 10)  # the textbook example: 3 of 10, z = 1.96
    assert (lo, hi) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    lo, hi = wilson(95, 100)
    assert (lo, hi) == pytest.approx((0.8883, 0.9785), abs=1e-4)


# ---------------------------------------------------------------- what a robust point is, and a broken attack

class _FirstPixel(nn.Module):
    """Predicts class 1 when the first pixel is above 0.5, else class 0: its answers are easy to steer."""

    def forward(self, x):
        v = x[:, 0, 0, 0]
        return torch.stack([0.5 - v, v - 0.5], 1)


def test_a_point_counts_as_robust_only_if_right_clean_and_attacked():
    from bench.attacks.registry import Attack
    from bench.eval.accuracy import evaluate_attack

    x = torch.full((4, 3, 4, 4), 0.45)
    x[:2, 0, 0, 0] = 0.55  # points 0, 1 predicted 1; points 2, 3 predicted 0
    y = torch.tensor([1, 0, 1, 0])  # right clean: points 0 and 3

    def nudge(self, model, xx, yy):  # moves point 2 across to its label and leaves the others
        out = xx.clone()
        out[2, 0, 0, 0] = 0.47 + 0.08
        return out
    row = evaluate_attack(_FirstPixel(), Attack("nudge", {}, nudge), x, y, norm="Linf", eps=0.1)
    assert row["clean_correct"] == 2 and row["robust_correct"] == 2  # point 2 is right only when attacked


def test_an_attack_leaving_its_ball_or_the_unit_range_is_an_error():
    from bench.attacks.registry import Attack
    from bench.attacks.predict import EvaluationError
    from bench.eval.accuracy import evaluate_attack

    x, y = torch.full((2, 3, 4, 4), 0.5), torch.tensor([0, 0])
    outside = Attack("far", {}, lambda self, m, xx, yy: xx + 0.2)
    with pytest.raises(EvaluationError, match="left the Linf ball"):
        evaluate_attack(_FirstPixel(), outside, x, y, norm="Linf", eps=0.1)
    l2 = Attack("l2far", {}, lambda self, m, xx, yy: xx + 0.02)  # Linf 0.02 but L2 0.02 * sqrt(48) = 0.139
    with pytest.raises(EvaluationError, match="left the L2 ball"):
        evaluate_attack(_FirstPixel(), l2, x, y, norm="L2", eps=0.1)
    above = Attack("above", {}, lambda self, m, xx, yy: xx + 0.6)  # inside a ball of 1.0, outside [0,1]
    with pytest.raises(EvaluationError, match=r"left \[0,1\]"):
        evaluate_attack(_FirstPixel(), above, x, y, norm="Linf", eps=1.0)


def test_nan_logits_are_an_evaluation_error_not_predictions():
    """A model that loads fine but returns NaN on some inputs (the load-time forward uses two fixed images)."""
    from bench.attacks.registry import make_attack
    from bench.attacks.predict import EvaluationError
    from bench.eval.accuracy import evaluate_attack

    class NaNAbove(_FirstPixel):
        def forward(self, x):
            out = super().forward(x)
            return torch.where(x[:, :1, 0, 0] > 0.9, torch.full_like(out, float("nan")), out)

    x, y = torch.full((3, 3, 4, 4), 0.5), torch.tensor([0, 0, 0])
    x[2, 0, 0, 0] = 0.95
    with pytest.raises(EvaluationError, match="NaN"):
        evaluate_attack(NaNAbove(), make_attack("clean"), x, y, norm="Linf", eps=0.0)


# ---------------------------------------------------------------- a rank killed mid-run under a shared --out

def test_a_killed_processs_claim_is_taken_over_and_no_row_is_lost_or_doubled(tmp_path, checkpoint):
    """A torchrun rank (or a second shell) killed mid-evaluation leaves a finished row, a claim on the evaluation
    it was running and no shard file: a rerun takes over the stale claim and the rows equal an uninterrupted run."""
    import json
    import socket
    import subprocess
    import sys

    from bench import run as bench_run
    from bench.store.rows import read_rows

    ckpt = checkpoint()
    args = ["--models", ckpt, "--attacks", "clean,pgd", "--eps", "2/255,8/255", "--pgd-steps", "2", "--data",
            "synthetic", "--n-examples", "16", "--device", "cpu", "--no-progress", "--no-leaderboard"]
    assert bench_run.main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = read_rows(str(tmp_path / "whole" / "results.jsonl"))
    out = tmp_path / "killed"
    out.mkdir()
    with open(out / "results.jsonl", "w") as f:  # the killed process had finished the first evaluation
        f.write(json.dumps(whole[0]) + "\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".claims").mkdir()
    (out / ".claims" / f"{whole[1]['key']}.claim").write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start": "0"}))  # it died holding the second
    assert bench_run.main([*args, "--out", str(out)]) == 0
    rows = read_rows(str(out / "results.jsonl"))
    assert sorted(r["key"] for r in rows) == sorted(r["key"] for r in whole)  # none lost, none twice
    same = {r["key"]: (r["clean_correct"], r["robust_correct"]) for r in whole}
    assert all(same[r["key"]] == (r["clean_correct"], r["robust_correct"]) for r in rows)
    assert not list((out / ".claims").glob("*.claim"))
