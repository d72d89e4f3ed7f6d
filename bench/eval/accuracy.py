"""Compute code: accuracy under an attack or under corruptions. Returns values; writes nothing but attack state."""
from __future__ import annotations

import time

import numpy as np
import torch

from bench.attacks.predict import EvaluationError, predict
from bench.corruptions.generator import CORRUPTIONS, SEVERITIES, cached_set, official_set
from bench.store.points import encode_sets, encode_states
from bench.stats import wilson
from zoo.pgd import BALL_TOLERANCE, perturbation_size


def check_adversarial(x, x_adv, norm: str, eps: float, name: str) -> float:
    """Within eps (+ the norm's BALL_TOLERANCE) and inside [0,1], or the attack is broken; returns the largest
    perturbation."""
    if x_adv.shape != x.shape or not torch.isfinite(x_adv).all():
        raise EvaluationError(f"attack {name} returned a bad tensor (shape {tuple(x_adv.shape)} or NaN)")
    size = perturbation_size(x_adv - x, norm)
    worst = float(size.max()) if len(size) else 0.0
    if worst > eps + BALL_TOLERANCE[norm]:
        raise EvaluationError(f"attack {name} left the {norm} ball: {worst:.6g} > eps {eps:.6g}")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise EvaluationError(f"attack {name} left [0,1]: range {float(x_adv.min()):.4g}..{float(x_adv.max()):.4g}")
    return worst


def _acc_fields(prefix: str, correct: int, n: int) -> dict:
    lo, hi = wilson(correct, n)
    return {f"{prefix}_acc": correct / n, f"{prefix}_correct": correct, f"{prefix}_ci95": [lo, hi]}


def evaluate_attack(model, attack, x, y, *, norm: str, eps: float, batch_size: int = 250,
                    keep_adversarial: bool = False) -> dict:
    """Clean and robust accuracy. A point counts as robust only if it is classified right both clean and
    attacked: x itself lies in the ball, so robust <= clean by construction (RobustBench does the same). With
    keep_adversarial, the attack's output is returned too, as "adversarial_images" (not a row field: the caller
    stores it)."""
    model.eval()
    t0 = time.perf_counter()
    clean_ok = predict(model, x, batch_size) == y
    x_adv = None
    if attack.name == "clean":
        robust_ok, worst = clean_ok, 0.0
    else:
        x_adv = attack(model, x, y)  # attacks batch internally (PGD per-example seeded, AutoAttack on robust points)
        if model.training:
            raise EvaluationError(f"attack {attack.name} left the model in train mode")
        worst = check_adversarial(x, x_adv, norm, eps, attack.name)
        robust_ok = clean_ok & (predict(model, x_adv, batch_size) == y)
    n = len(y)
    row = {**_acc_fields("clean", int(clean_ok.sum()), n), **_acc_fields("robust", int(robust_ok.sum()), n),
           "n": n, "max_perturbation": worst, "seconds": time.perf_counter() - t0,
           "points": encode_states(clean_ok.cpu().numpy(), robust_ok.cpu().numpy())}
    if keep_adversarial and x_adv is not None:
        row["adversarial_images"] = x_adv.detach().float().cpu()
    if attack.info.get("stage_acc"):
        row["stage_acc"] = attack.info["stage_acc"]
        row["stage_seconds"] = attack.info.get("stage_seconds", {})
    if "aa_checks" in attack.info:
        row["aa_checks"] = attack.info["aa_checks"]  # None per check that passed, else its warning
        row["pyautoattack"] = attack.info.get("pyautoattack")  # the package version that ran (not in the key)
        # AutoAttack's targets (at most the model's classes - 1), whether the run is RobustBench's standard
        # protocol, whether two forwards of one batch agreed, and the rand version's draws per gradient
        # and how many processes computed its batches
        for k in ("n_target_classes", "rb_standard", "deterministic", "eot_iter", "workers"):
            if k in attack.info:
                row[k] = attack.info[k]
    return row


def evaluate_corruptions(model, x_u8: torch.Tensor, y: torch.Tensor, *, device, batch_size: int = 250,
                         corruptions_dir: str | None = None, cache_dir: str = ".cache/cifar10c", seed: int = 0,
                         names=None, progress=None, require_official: bool = False, official_set=official_set) -> dict:
    """Accuracy on each (corruption, severity): official files when present, else regenerated and cached
    (with require_official, a missing official file is an error instead). official_set(folder, name, severity,
    n) reads one official set (CIFAR-10-C's .npy files by default; bench.data.imagenet.corruption_set for
    ImageNet-C's folders)."""
    model.eval()
    t0 = time.perf_counter()
    names = list(names or CORRUPTIONS)
    x_hwc = x_u8.permute(0, 2, 3, 1).cpu().numpy()
    per, flags, sources = {}, {}, set()
    for name in names:
        for s in SEVERITIES:
            official = official_set(corruptions_dir, name, s, len(y)) if corruptions_dir else None
            if official is not None:
                imgs, labels = official
                yy = torch.from_numpy(labels.astype(np.int64)).to(device)
                sources.add("official")
            elif require_official:
                raise EvaluationError(f"official file {name}.npy or labels.npy is missing from {corruptions_dir}; "
                                      "fetch it with --corruptions-source official or use regenerated sets")
            else:
                imgs, yy = cached_set(x_hwc, name, s, cache_dir, seed), y
                sources.add("regenerated")
            xc = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255).to(device)
            ok = (predict(model, xc, batch_size) == yy).cpu().numpy()
            flags[f"{name}/{s}"] = ok
            per[f"{name}/{s}"] = int(ok.sum()) / len(ok)
            if progress:
                progress()
    by_corruption = {n: float(np.mean([per[f"{n}/{s}"] for s in SEVERITIES])) for n in names}
    mean = float(np.mean(list(per.values())))
    clean_ok = predict(model, x_u8.float().div(255).to(device), batch_size) == y
    n = len(y)
    # no interval for the mean: the 75 sets share their images, so they are not independent trials
    return {**_acc_fields("clean", int(clean_ok.sum()), n), "robust_acc": mean, "n": n,
            "corruption_acc": by_corruption, "corruption_severity_acc": per,
            "corruption_source": "+".join(sorted(sources)), "seconds": time.perf_counter() - t0,
            "points": encode_sets(clean_ok.cpu().numpy(), flags)}
