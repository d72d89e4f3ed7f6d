"""Why, measured: weight-space sharpness and input-attack feature perturbation of a trained model.

Both run in eval mode (BatchNorm uses running statistics) so that they are deterministic functions of the
weights, the data and the seed. Together they are one evaluation of the engine, `measures` (bench.run --attacks
measures, and every study cell): planned, claimed, cached and retried like an attack, its rows in
OUT/measures.jsonl (bench.defaults.MEASURES_FILE) beside the accuracy rows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bench.attacks.predict import EvaluationError
from zoo.pgd import pgd
from zoo.radius import parse_eps
from zoo.recipes import global_norm

MEASURES = "measures"  # the evaluation's name in plans, outcomes and rows
FEATURE_NORMS = ("Linf", "L2")  # the norms the feature perturbation's PGD attacks in
# the settings every measures row has used: sharpness's radius, ascent steps and random draws; the feature PGD's steps
RHO, STEPS, N_RANDOM, FEATURE_STEPS = 0.05, 5, 5, 10


def _loss(model, x, y, batch_size=500) -> torch.Tensor:
    total = 0.0
    for i in range(0, len(y), batch_size):
        total = total + F.cross_entropy(model(x[i:i + batch_size]).float(), y[i:i + batch_size], reduction="sum")
    return total / len(y)


def sharpness(model, x, y, *, rho: float = 0.05, steps: int = 5, n_random: int = 5, seed: int = 0) -> dict:
    """Loss increase at the worst weight perturbation of L2 radius rho (normalised gradient ascent, projected
    onto the ball), and the mean increase under random perturbations of the same radius."""
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        base = _loss(model, x, y).item()
    e = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        loss = _loss(model, x, y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            gn = global_norm(grads) + 1e-12
            e = [ei + (2.0 * rho / steps) * g / gn for ei, g in zip(e, grads)]
            en = global_norm(e)
            e = [ei * min(1.0, rho / float(en)) for ei in e]
            for p, s, ei in zip(params, saved, e):
                p.copy_(s + ei)
    with torch.no_grad():
        worst = _loss(model, x, y).item()
        g = torch.Generator().manual_seed(seed)
        rand = []
        for _ in range(n_random):
            d = [torch.randn(p.shape, generator=g).to(p) for p in params]
            dn = global_norm(d)
            for p, s, di in zip(params, saved, d):
                p.copy_(s + rho * di / dn)
            rand.append(_loss(model, x, y).item() - base)
        for p, s in zip(params, saved):
            p.copy_(s)
    return {"loss": base, "sharpness_worst": worst - base, "sharpness_random": sum(rand) / len(rand), "rho": rho}


def feature_perturbation(model, x, y, *, norm: str, eps: float, steps: int = 10, seed: int = 0) -> dict:
    """How far penultimate features move under a PGD attack of radius eps, relative to their size:
    mean ||f(x_adv) - f(x)|| / ||f(x)||."""
    if not hasattr(model, "features"):
        raise EvaluationError(f"the feature measure needs the model's penultimate features (model.features), which "
                              f"{type(model).__name__} does not have; measure a checkpoint of zoo.train")
    model.eval()
    torch.manual_seed(seed)
    x_adv = pgd(model, x, y, norm=norm, eps=eps, steps=steps)
    with torch.no_grad():
        f0, f1 = model.features(x), model.features(x_adv)
        rel = ((f1 - f0).norm(dim=1) / f0.norm(dim=1).clamp_min(1e-12)).mean().item()
    return {"feature_shift": rel, "norm": norm, "eps": eps}


def measures_spec(feature_eps: dict, n: int) -> dict:
    """The measures evaluation as the engine plans it: on the first n points, the features perturbed at each
    norm's radius as written ({"Linf": "2/255", "L2": "0.5"})."""
    bad = [norm for norm in feature_eps if norm not in FEATURE_NORMS]
    if bad:
        raise ValueError(f"measures at {bad[0]}: the feature perturbation attacks in {', '.join(FEATURE_NORMS)}; "
                         f"drop {bad[0]} from --norm")
    return {"attack": MEASURES, "norm": None, "eps": 0.0, "eps_str": "0", "n": n, "feature_eps": dict(feature_eps)}


def measures_config(spec: dict, seed: int) -> dict:
    """What a measures row's key holds: every setting its numbers depend on."""
    return {"attack": MEASURES, "rho": RHO, "steps": STEPS, "n_random": N_RANDOM, "seed": seed,
            "feature_eps": dict(spec["feature_eps"]), "feature_steps": FEATURE_STEPS}


def measure(model, x, y, cfg: dict) -> dict:
    """The measures row's numbers: sharpness, then each norm's feature shift (and its radius as written)."""
    out = {"measure_n": len(y), **sharpness(model, x, y, rho=cfg["rho"], steps=cfg["steps"], n_random=cfg["n_random"],
                                            seed=cfg["seed"])}
    for norm, eps in cfg["feature_eps"].items():
        fp = feature_perturbation(model, x, y, norm=norm, eps=parse_eps(eps), steps=cfg["feature_steps"],
                                  seed=cfg["seed"])
        out[f"feature_shift_{norm}"] = fp["feature_shift"]
        out[f"feature_eps_{norm}"] = eps
    bad = [k for k, v in out.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:  # a failed row naming it, never a row the readers would have to refuse
        raise EvaluationError(f"the measure {bad[0]} is {out[bad[0]]} (the model's loss is not finite on these points)")
    return out


def unkeyed_row(rows: list[dict], model_id: str, cfg: dict, n: int) -> dict | None:
    """A row written before measures were an evaluation (no key, no status) that these settings reproduce: the
    same model, points and radii, and the fixed settings every such row was measured with."""
    fixed = {"rho": RHO, "steps": STEPS, "n_random": N_RANDOM, "seed": 0, "feature_steps": FEATURE_STEPS}
    if any(cfg.get(k) != v for k, v in fixed.items()):
        return None
    radii = {f"feature_eps_{norm}": eps for norm, eps in cfg["feature_eps"].items()}
    for r in reversed(rows):
        if "key" in r or r.get("model_id") != model_id or r.get("measure_n") != n:
            continue
        if {k: v for k, v in r.items() if k.startswith("feature_eps_")} == radii:
            return r
    return None
