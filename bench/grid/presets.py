"""The study's grid: presets (the seed paper's protocol, a scaled-down CIFAR-10 subset, a CPU smoke test) and the
training configurations each one expands to."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from zoo.recipes.sam_variants import VARIANTS as SAM_VARIANTS  # the variants' optional block (--recipes)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# relative to the repository root, where the study is run from, so row keys do not depend on the machine
SUBSET = os.path.relpath(os.path.join(ROOT, "..", "shared", "data", "cifar10_subset.npz"))


@dataclass(frozen=True)
class AT:
    norm: str  # Linf | L2
    eps: str  # radius, e.g. "8/255"
    steps: int  # PGD steps during training
    alpha: str  # PGD step size


@dataclass(frozen=True)
class Preset:
    arch: str
    data: str
    n_train: int | None  # first N training images; None = all
    epochs: int
    batch_size: int
    lr: float
    seeds: tuple
    rhos: tuple  # SAM radii
    at: tuple  # PGD-AT settings (AT instances)
    sam_at: tuple  # (rho, AT) pairs for SAM on adversarial examples
    eval_n: int  # first N test points for PGD and corruptions
    eval_eps: dict  # norm -> eps strings for PGD
    pgd_steps: int  # PGD steps at evaluation (the paper: 10)
    aa_n: int  # first N test points for AutoAttack
    aa_eps: dict  # norm -> eps strings for AutoAttack
    corruptions: tuple | None  # None = all 15
    measure_n: int  # points used for sharpness and feature measures
    feature_eps: dict  # norm -> eps for the feature-perturbation measure
    extra: tuple = ()  # more recipes (trades, awp, fgsm_rs), each with its defaults at the preset's main AT eps
    next_n: int = 1000  # test points of the bench command the study prints at its end (AutoAttack included)
    # cheaper SAM variants (zoo.recipes.sam_variants), each trained once per seed at variant_rho where it takes a
    # radius, its paper's defaults otherwise
    variants: tuple = ()
    variant_rho: float = 0.2
    out: str = os.path.join("results", "study")  # rows, report, site and (under zoo/) checkpoints, by default


# recipes --recipes can add; each is trained once per seed at the preset's main adversarial-training setting
EXTRA_RECIPES = ("trades", "awp", "fgsm_rs")


def main_at(p: Preset) -> AT:
    """The preset's main adversarial-training setting: its largest Linf eps (the paper's and RobustBench's 8/255)."""
    from zoo.pgd import parse_eps

    linf = [a for a in p.at if a.norm == "Linf"] or list(p.at)
    return max(linf, key=lambda a: parse_eps(a.eps))


def parse_recipes(text: str) -> tuple[tuple, tuple]:
    """'+trades,+looksam' -> (('trades',), ('looksam',)): adversarial recipes and SAM variants added to the
    preset's grid."""
    names = tuple(t.strip().lstrip("+") for t in text.split(",") if t.strip())
    known = EXTRA_RECIPES + SAM_VARIANTS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--recipes: cannot add {unknown[0]!r}; choose from {', '.join('+' + r for r in known)}")
    return tuple(n for n in names if n in EXTRA_RECIPES), tuple(n for n in names if n in SAM_VARIANTS)


PRESETS = {
    # the seed paper's protocol (its public code): PreActResNet-18, 100 epochs, lr 0.1 piecewise
    "paper": Preset(
        arch="preact_resnet18", data="cifar10", n_train=None, epochs=100, batch_size=128, lr=0.1, seeds=(0, 1, 2),
        rhos=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5),
        at=(AT("Linf", "1/255", 5, "0.5/255"), AT("Linf", "2/255", 5, "1/255"), AT("Linf", "4/255", 10, "1/255"),
            AT("Linf", "8/255", 10, "2/255"), AT("L2", "16/255", 10, "4/255"), AT("L2", "32/255", 10, "8/255"),
            AT("L2", "64/255", 10, "16/255"), AT("L2", "128/255", 10, "32/255")),
        sam_at=((0.1, AT("Linf", "2/255", 5, "1/255")),),
        eval_n=10000, eval_eps={"Linf": ("1/255", "2/255", "4/255", "8/255"), "L2": ("16/255", "32/255", "64/255", "128/255")},
        pgd_steps=10, aa_n=10000, aa_eps={"Linf": ("1/255", "2/255", "8/255"), "L2": ("32/255", "128/255")},
        corruptions=None, measure_n=1000, feature_eps={"Linf": "2/255", "L2": "32/255"}),
    # the same grid scaled down: real CIFAR-10 subset, fewer radii; under an hour on a GPU
    "small": Preset(
        arch="preact_resnet18", data=f"npz:{SUBSET}", n_train=None, epochs=30, batch_size=128, lr=0.1, seeds=(0, 1),
        rhos=(0.05, 0.2),
        at=(AT("Linf", "2/255", 5, "1/255"), AT("Linf", "8/255", 10, "2/255"), AT("L2", "128/255", 10, "32/255")),
        sam_at=((0.05, AT("Linf", "2/255", 5, "1/255")),),
        eval_n=1017, eval_eps={"Linf": ("1/255", "2/255", "4/255", "8/255"), "L2": ("16/255", "32/255", "64/255", "128/255")},
        pgd_steps=10, aa_n=200, aa_eps={"Linf": ("2/255", "8/255")},
        corruptions=None, measure_n=512, feature_eps={"Linf": "2/255", "L2": "32/255"}),
    # does a cheaper SAM keep SAM's robustness? Standard, SAM and the five variants at the committed small study's
    # CPU scale (sharp_tiny, 15 epochs, the CIFAR-10 subset) and at its SAM radius whose small-eps claim held (0.2);
    # evaluated as that study evaluates SAM: clean, PGD and AutoAttack at the small radii, L2, corruptions
    "sam-variants": Preset(
        arch="sharp_tiny", data=f"npz:{SUBSET}", n_train=None, epochs=15, batch_size=128, lr=0.1, seeds=(0, 1, 2),
        rhos=(0.2,), at=(), sam_at=(), variants=SAM_VARIANTS, variant_rho=0.2,
        eval_n=1017, eval_eps={"Linf": ("1/255", "2/255"), "L2": ("16/255", "32/255")}, pgd_steps=10,
        aa_n=64, aa_eps={"Linf": ("1/255", "2/255")}, corruptions=None, measure_n=512,
        feature_eps={"Linf": "2/255", "L2": "32/255"}, next_n=200, out=os.path.join("results", "sam-variants")),
    # the whole pipeline on CPU in minutes: the README's main command and CI
    "smoke": Preset(
        arch="sharp_small", data="digits", n_train=None, epochs=8, batch_size=64, lr=0.1, seeds=(0,),
        rhos=(0.05,), at=(AT("Linf", "8/255", 3, "2/255"),), sam_at=(),
        eval_n=64, eval_eps={"Linf": ("2/255", "8/255"), "L2": ("0.5",)}, pgd_steps=5,
        aa_n=8, aa_eps={"Linf": ("8/255",)}, corruptions=("gaussian_noise", "fog", "jpeg_compression"),
        measure_n=64, feature_eps={"Linf": "2/255", "L2": "0.5"}, next_n=32, out=os.path.join("runs", "study-smoke")),
}


def next_command(zoo_dir: str, p: Preset) -> str:
    """The bench command a study prints at its end: AutoAttack, PGD and clean accuracy on the checkpoints it
    made, their data read from their training record, with the images kept for `python -m bench.verify`."""
    import shlex

    return (f"python -m bench.run --models {shlex.quote(zoo_dir)}/*.pt --attacks clean,pgd,autoattack "
            f"--n-examples {p.next_n} --save-adversarial")


def training_grid(p: Preset, device: str, zoo_dir: str, compile_: bool = False):
    from zoo.config import TrainConfig
    from zoo.recipes import get_recipe

    base = TrainConfig(arch=p.arch, data=p.data, n_train=p.n_train, epochs=p.epochs, batch_size=p.batch_size,
                       lr=p.lr, device=device, out=zoo_dir, compile="inductor" if compile_ else "")
    for seed in p.seeds:
        yield dataclasses.replace(base, recipe="standard", seed=seed)
        for rho in p.rhos:
            yield dataclasses.replace(base, recipe="sam", rho=rho, seed=seed)
        for at in p.at:
            yield dataclasses.replace(base, recipe="pgd_at", norm=at.norm, eps=at.eps, steps=at.steps,
                                      alpha=at.alpha, seed=seed)
        for recipe in p.extra:
            at = main_at(p)
            steps_alpha = {} if recipe == "fgsm_rs" else {"steps": at.steps, "alpha": at.alpha}  # FGSM-RS: its own
            yield dataclasses.replace(base, recipe=recipe, norm=at.norm, eps=at.eps, seed=seed, **steps_alpha)
        for rho, at in p.sam_at:
            yield dataclasses.replace(base, recipe="sam_at", rho=rho, norm=at.norm, eps=at.eps, steps=at.steps,
                                      alpha=at.alpha, seed=seed)
        for recipe in p.variants:
            rho = p.variant_rho if get_recipe(recipe).rho is not None else None  # m-RWP has no radius
            yield dataclasses.replace(base, recipe=recipe, rho=rho, seed=seed)
