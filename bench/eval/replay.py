"""Replaying stored adversarial images against their model, with no attack code: what `python -m bench.verify`
runs (its docstring says what each check is). Compute code: it prints one line per row and worst case, and
returns the exit status; the entry point writes verify.jsonl and rebuilds the site.
"""
from __future__ import annotations

import os
import sys

import torch

from bench.attacks.evaluation import Evaluation
from zoo.pgd import BALL_TOLERANCE
from zoo.errors import error_line


class Failed(Exception):
    """One check that does not hold: the row and the first point it fails on."""


def _data_errors() -> tuple:
    """What a damaged or hostile file, model or dataset raises: reported in one line, never a traceback."""
    from bench.attacks.predict import EvaluationError
    from bench.eval.loading import LOAD_ERRORS
    from bench.store.adversarial import AdversarialError

    return (AdversarialError, EvaluationError, *LOAD_ERRORS)


def replay(model, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
           batch_size: int = 250):
    """(clean right, fooled by its image) per point, after checking every image lies in the ball. fp32."""
    from bench.attacks.predict import predict
    from zoo.pgd import perturbation_size

    dist = perturbation_size(x_adv - x, norm)
    outside = (dist > eps + BALL_TOLERANCE[norm]).nonzero()
    if len(outside):
        i = int(outside[0])
        raise Failed(f"point {i} lies outside the {norm} ball: distance {float(dist[i]):.6g} > eps {eps:.6g} "
                     f"(+{BALL_TOLERANCE[norm]:g})")
    model = model.float().eval()
    with torch.no_grad():
        clean_right = (predict(model, x, batch_size) == y).cpu()
        fooled = (predict(model, x_adv, batch_size) != y).cpu()
    return clean_right, fooled


def _label(row: dict) -> str:
    return f"{row['model']} {Evaluation.of(row).label} (n={row['n']})"


def verify_row(row: dict, results_dir: str, model, x, y, batch_size: int = 250):
    """Check one row's images; returns (message, the fooled flags it replayed, the images). Raises Failed or
    AdversarialError."""
    from bench.store.adversarial import load_images
    from bench.store.points import decode_states

    ref = row["adversarial"]
    x_adv = load_images(os.path.join(results_dir, ref["path"]), sha256=ref["sha256"], shape=tuple(x.shape))
    clean_right, fooled = replay(model, x_adv, x.cpu(), y.cpu(), row["norm"], row["eps"], batch_size)
    n = len(y)
    bound = int((clean_right & ~fooled).sum())
    if "points" in row:
        clean_ok, robust_ok = decode_states(row["points"])
        counted = torch.from_numpy(clean_ok & ~robust_ok)
        missing = (counted & ~fooled).nonzero()
        if len(missing):
            i = int(missing[0])
            raise Failed(f"point {i} counts as fooled in the row, but its image is classified right "
                         f"(label {int(y[i])}); {len(missing)} such point{'s' * (len(missing) > 1)}")
        k = int(counted.sum())
        head = f"{k} of {k} fooled points replay" if k else "no point was fooled: nothing to replay"
    elif bound > row["robust_correct"]:
        raise Failed(f"the images leave {bound} of {n} points robust; the row says {row['robust_correct']}")
    else:
        head = "no per-point flags in the row: the bound alone"
    return (f"{head}; robust accuracy <= {100 * bound / n:.2f}% (row says {100 * row['robust_acc']:.2f}%)",
            fooled, x_adv)


def verify_results(path: str, *, data_dir: str = "data", device: str = "cpu", batch_size: int = 250,
                   records: list | None = None) -> int:
    """Check every row of path that names images, then every worst case; prints a line each. records, when
    given, receives one outcome per row (what OUT/verify.jsonl holds: the site shows "replayed: k of k")."""
    from bench.attacks.registry import in_worst_case
    from bench.attacks.evaluation import eps_key
    from bench.report.worst_case import worst_cases
    from bench.store.points import decode_states
    from bench.data import points_of_row
    from bench.store.rows import read_rows

    DATA_ERRORS = _data_errors()
    rows = [r for r in read_rows(path) if r.get("status") == "ok"]
    with_images = [r for r in rows if "adversarial" in r]
    if not with_images:
        print(f"nothing to check: no row in {path} names adversarial images; run bench.run with "
              "--save-adversarial", file=sys.stderr)
        return 2
    results_dir = os.path.dirname(os.path.abspath(path))
    failures, data, models = 0, {}, {}  # data: points_of_row's cache
    replayed: dict = {}  # (model_id, data, norm, eps) -> [(n, fooled flags)]
    for row in with_images:
        label = _label(row)
        try:
            ds = points_of_row(row, data_dir, data)
            x, y = ds.x.float().div(255), ds.y
            model = _model_of(row, models, device, ds.num_classes, x.shape[-1])
            message, fooled, x_adv = verify_row(row, results_dir, model, x, y, batch_size)
        except (Failed, *DATA_ERRORS) as e:
            failures += 1
            reason = error_line(e)
            print(f"FAILED {label}: {reason}")
            if records is not None:
                records.append(_record(row, "failed", reason=reason[:500]))
            continue
        if records is not None:
            counted = int(row["clean_correct"] - row["robust_correct"]) if "points" in row else None
            records.append(_record(row, "ok", replayed=counted, fooled=counted))
        draw_missing_gallery(row, results_dir, model, x, y, x_adv)
        replayed.setdefault((row["model_id"], row["data"], row["norm"], eps_key(row["eps"])), []).append(
            (row["n"], fooled))
        print(f"ok {label}: {message}")
    worst = worst_cases(rows)
    for (mid, data_spec, n, norm, eps), wc in sorted(worst.items(), key=lambda kv: str(kv[0])):
        if len(wc.attacks) < 2:
            continue
        runs = replayed.get((mid, data_spec, norm, eps), [])
        covering = [f[:n] for m, f in runs if m >= n]
        contributors = [r for r in rows if r["model_id"] == mid and r["data"] == data_spec and r.get("norm") == norm
                        and eps_key(r["eps"]) == eps and in_worst_case(r["attack"]) and "points" in r and r["n"] >= n]
        name = f"{contributors[0]['model']} worst case {norm} {contributors[0]['eps_str']} (n={n})"
        if len(covering) < len({r['key'] for r in contributors}):
            print(f"note {name}: not every attack behind it kept its images; not checked")
            continue
        clean_ok = decode_states(contributors[0]["points"])[0][:n]
        not_robust = torch.from_numpy(clean_ok & ~wc.robust)
        some_image = torch.stack(covering).any(0)
        missing = (not_robust & ~some_image).nonzero()
        if len(missing):
            failures += 1
            print(f"FAILED {name}: point {int(missing[0])} counts as not robust, but no stored image fools the "
                  "model on it")
        else:
            k = int(not_robust.sum())
            what = (f"{k} of {k} points counted as not robust have an image that fools the model" if k else
                    "no point counted as not robust: nothing to replay")
            print(f"ok {name}: {what}; robust accuracy <= {100 * wc.acc:.2f}%")
    if failures:
        print(f"error: {failures} check{'s' * (failures > 1)} failed", file=sys.stderr)
        return 1
    return 0


def draw_missing_gallery(row: dict, results_dir: str, model, x, y, x_adv) -> None:
    """The row's gallery, drawn from its replayed images (x_adv) when the run that kept them drew none (a row
    from before galleries were drawn beside the images, or one whose drawing failed)."""
    from bench.eval.gallery import index_path, write_gallery

    if "points" not in row or os.path.exists(index_path(results_dir, row["key"])):
        return
    try:
        write_gallery(results_dir, row, model, x, y, x_adv)
    except Exception as e:  # noqa: BLE001 - a replay that passed stays passed
        print(f"note {_label(row)}: its gallery could not be drawn ({error_line(e)})")


def _record(row: dict, status: str, **fields) -> dict:
    import time

    return {"key": row["key"], "sha256": row["adversarial"]["sha256"], "status": status, **fields,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _model_of(row: dict, cache: dict, device: str, num_classes: int, size: int):
    """The row's model (bench.eval.loading.model_of_row: the one the row was computed on), once per model."""
    from bench.eval.loading import model_of_row

    mid = row["model_id"]
    if mid not in cache:
        cache[mid] = model_of_row(row, num_classes=num_classes, size=size).model.to(device)
    return cache[mid]


def verify_file(models: str, adversarial: str, *, data: str, norm: str, eps: str, arch: str | None,
                data_dir: str = "data", device: str = "cpu", batch_size: int = 250) -> int:
    from bench.data import load_points
    from bench.eval.loading import load_model_spec, rb_dataset
    from bench.store.adversarial import load_images
    from zoo.pgd import parse_eps

    DATA_ERRORS = _data_errors()
    try:
        x_adv = load_images(adversarial)
        n = len(x_adv)
        ds = load_points(data, data_dir, n)
        if n > len(ds.y):
            raise Failed(f"{n} images, the test set has {len(ds.y)} points")
        x, y = ds.x.float().div(255), ds.y
        if x_adv.shape != x.shape:
            raise Failed(f"images shaped {tuple(x_adv.shape)}, the first {n} test points are {tuple(x.shape)}")
        model = load_model_spec(models, arch=arch, num_classes=ds.num_classes, norm=norm,
                                dataset=rb_dataset(ds.name, ds.num_classes), size=x.shape[-1]).model.to(device)
        clean_right, fooled = replay(model, x_adv, x, y, norm, parse_eps(eps), batch_size)
    except (Failed, *DATA_ERRORS) as e:
        print(f"FAILED {adversarial}: {error_line(e)}")
        return 1
    bound = int((clean_right & ~fooled).sum())
    print(f"ok {adversarial}: {n} images within {norm} {eps}; {int((clean_right & fooled).sum())} of "
          f"{int(clean_right.sum())} points right clean are fooled; robust accuracy <= {100 * bound / n:.2f}%")
    return 0
