"""APGD's early exit (bench.attacks.apgd_exit): the same per-point flags as pyautoattack, with less work.

The smoke study's models on 64 of their own test points: APGD alone on the PGD-AT model (points fall at many
iterations while others run on through the step-size checkpoints), and the whole of AutoAttack standard on the
standard and SAM models, each against pyautoattack's own code on the same model, points and seed. The whole of
AutoAttack at L2 and L1, and on the PGD-AT model, takes minutes a case on two CPU cores: those cases run with
SHARPBENCH_HEAVY=1 (`SHARPBENCH_HEAVY=1 pytest tests/test_early_exit.py`); `scripts/speed.py --only-autoattack`
also counts the PGD-AT model's equal flags.
"""
import copy
import os

import pytest
import torch

from bench.attacks.apgd_exit import with_early_exit
from bench.attacks.autoattack import Float32Logits, attack_settings, apply_settings, run_autoattack, standard_attack
from bench.attacks.predict import predict

pytestmark = pytest.mark.slow  # AutoAttack on trained models
EPS = {"Linf": 8 / 255, "L2": 0.5, "L1": 12.0}
STAGES = ("apgd-ce", "apgd-t", "fab-t", "square")
SURVIVE = {("sam", "Linf"), ("pgd_at", "Linf")}  # (recipe, norm) where some of the 64 points survive AutoAttack
HEAVY = pytest.mark.skipif(not os.environ.get("SHARPBENCH_HEAVY"), reason="minutes on 2 cores: SHARPBENCH_HEAVY=1")


@pytest.fixture(scope="module")
def smoke(smoke_study):
    """(the smoke study's models by recipe, 64 of their own test points in [0,1], labels)."""
    from bench.data import load_points
    from bench.eval.loading import load_model_spec

    pts = load_points("digits", n=64)
    models = {ck.name.split("-")[1]: load_model_spec(str(ck)).model.eval() for ck in smoke_study[1].glob("*.pt")}
    return models, pts.x.float().div(255), pts.y


class Counted(torch.nn.Module):
    """The model, counting the images it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.images = Float32Logits(model), 0

    def forward(self, x):
        self.images += len(x)
        return self.model(x)


@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
@pytest.mark.parametrize("stage", ["apgd-ce", "apgd-t"])
def test_apgd_with_the_exit_fools_the_same_points_as_pyautoattack_on_fewer_images(smoke, norm, stage):
    """pyautoattack's APGD object, as AutoAttack standard configures it (to keep it short: APGD-T on 2 targets,
    L1's 5 restarts cut to 2), run as it is and with the exit on the PGD-AT model: the same points fooled, each
    image we keep in the ball, in [0,1] and misclassified, and fewer images through the model."""
    models, x, y = smoke
    model = models["pgd_at"]
    runs = {}
    for exit_ in (False, True):
        counted = Counted(model).eval()
        aa = standard_attack(counted, norm=norm, eps=EPS[norm])
        apply_settings(aa, attack_settings("standard", norm, 10))
        aa.apgd_targeted.n_target_classes = 2
        aa.apgd.n_restarts = min(aa.apgd.n_restarts, 2)
        if exit_:
            with_early_exit(aa)
        attack = aa.apgd if stage == "apgd-ce" else aa.apgd_targeted
        with torch.no_grad():
            adv = attack.perturb(x, y)
        runs[exit_] = (predict(model, adv, 250) != y) & (predict(model, x, 250) == y), adv, counted.images
    (theirs, _, their_images), (ours, adv, our_images) = runs[False], runs[True]
    assert torch.equal(ours, theirs)
    assert 0 < int(ours.sum()) < int((predict(model, x, 250) == y).sum())  # some fall, some survive
    delta = (adv - x).flatten(1)
    size = {"Linf": delta.abs().amax(1), "L2": delta.norm(dim=1), "L1": delta.abs().sum(1)}[norm]
    assert (size[ours] <= EPS[norm] * (1 + 1e-5) + 1e-6).all() and adv.min() >= 0 and adv.max() <= 1
    assert our_images < their_images


@pytest.mark.parametrize("recipe,norm", [("standard", "Linf"), ("sam", "Linf")] + [
    pytest.param(recipe, norm, marks=HEAVY) for recipe, norm in (("standard", "L2"), ("sam", "L2"), ("standard", "L1"),
                                                                ("sam", "L1"), ("pgd_at", "Linf"))])
def test_autoattack_with_the_exit_equals_pyautoattack_per_point(smoke, norm, recipe):
    """AutoAttack standard through the bench (stage by stage, APGD with the exit) against pyautoattack's
    run_standard_evaluation in one call: the same flags after every stage and at the end."""
    models, x, y = smoke
    model = models[recipe]
    adv, info = run_autoattack(model, x, y, norm=norm, eps=EPS[norm], stages=STAGES, batch_size=250)
    ours = (predict(model, x, 250) == y) & (predict(model, adv, 250) == y)
    seen = {}
    from pyautoattack import checks

    real = checks.check_square_sr
    checks.check_square_sr = lambda acc, **kw: seen.update(acc)  # pyautoattack hands it each stage's accuracy
    try:
        aa = standard_attack(Float32Logits(copy.deepcopy(model)).eval(), norm=norm, eps=EPS[norm])
        apply_settings(aa, attack_settings("standard", norm, 10))
        their_adv, _ = aa.run_standard_evaluation(x, y, batch_size=250)
    finally:
        checks.check_square_sr = real
    theirs = (predict(model, x, 250) == y) & (predict(model, their_adv, 250) == y)
    assert torch.equal(ours, theirs)
    assert {k: pytest.approx(v, abs=1e-12) for k, v in seen.items()} == info["stage_acc"]
    if (recipe, norm) in SURVIVE:  # the stages had work to do, and points survived all of them
        assert info["stage_acc"]["clean"] > info["stage_acc"]["square"] > 0
