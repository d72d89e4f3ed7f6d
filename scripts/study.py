"""The study: does SAM alone improve adversarial robustness? Train the grid, benchmark it, write a report.

  python scripts/study.py --preset smoke     whole pipeline on CPU in minutes (digits, tiny net)
  python scripts/study.py --preset small     the paper's grid scaled down, real CIFAR-10 subset
  python scripts/study.py --preset paper     the paper's protocol on full CIFAR-10 (a GPU job)

Reruns reuse finished checkpoints (zoo dir) and rows (results.jsonl); an interrupted training resumes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

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


# recipes --recipes can add; each is trained once per seed at the preset's main adversarial-training setting
EXTRA_RECIPES = ("trades", "awp", "fgsm_rs")


def main_at(p: Preset) -> AT:
    """The preset's main adversarial-training setting: its largest Linf eps (the paper's and RobustBench's 8/255)."""
    from zoo.pgd import parse_eps

    linf = [a for a in p.at if a.norm == "Linf"] or list(p.at)
    return max(linf, key=lambda a: parse_eps(a.eps))


def parse_recipes(text: str) -> tuple:
    """'+trades,+awp' -> ('trades', 'awp'): groups added to the preset's grid."""
    names = tuple(t.strip().lstrip("+") for t in text.split(",") if t.strip())
    unknown = [n for n in names if n not in EXTRA_RECIPES]
    if unknown:
        raise ValueError(f"--recipes: cannot add {unknown[0]!r}; choose from {', '.join('+' + r for r in EXTRA_RECIPES)}")
    return names


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
    # the whole pipeline on CPU in minutes: the README's main command and CI
    "smoke": Preset(
        arch="sharp_small", data="digits", n_train=None, epochs=8, batch_size=64, lr=0.1, seeds=(0,),
        rhos=(0.05,), at=(AT("Linf", "8/255", 3, "2/255"),), sam_at=(),
        eval_n=64, eval_eps={"Linf": ("2/255", "8/255"), "L2": ("0.5",)}, pgd_steps=5,
        aa_n=8, aa_eps={"Linf": ("8/255",)}, corruptions=("gaussian_noise", "fog", "jpeg_compression"),
        measure_n=64, feature_eps={"Linf": "2/255", "L2": "0.5"}),
}


def training_grid(p: Preset, device: str, zoo_dir: str, compile_: bool = False):
    from zoo.config import TrainConfig

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


def train_all(p: Preset, device: str, zoo_dir: str, progress: bool, compile_: bool = False) -> list[str]:
    from zoo.checkpoint import load_checkpoint
    from zoo.train import checkpoint_name, config_mismatch, train

    paths = []
    grid = list(training_grid(p, device, zoo_dir, compile_))
    for i, cfg in enumerate(grid, 1):
        path = os.path.join(zoo_dir, checkpoint_name(cfg.resolved()))
        stale = os.path.exists(path) and config_mismatch(load_checkpoint(path)["config"], cfg.resolved())
        if os.path.exists(path) and not stale:
            print(f"[{i}/{len(grid)}] reuse {path}", file=sys.stderr)
        else:
            if stale:  # same name, other settings (the preset changed): retrain rather than report stale numbers
                print(f"[{i}/{len(grid)}] {path} was trained with other {', '.join(stale)}; retraining", file=sys.stderr)
                os.remove(path)
            t0 = time.perf_counter()
            print(f"[{i}/{len(grid)}] train {os.path.basename(path)}", file=sys.stderr)
            path = train(cfg, resume=True, progress=progress)
            print(f"[{i}/{len(grid)}] done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        paths.append(path)
    return paths


def bench_all(p: Preset, paths: list[str], data: str, device: str, out: str, progress: bool,
              compile_: bool = False) -> None:
    from bench import run as bench_run

    common = ["--models", *paths, "--data", data, "--device", device, "--out", out, "--no-leaderboard"]
    if compile_:
        common.append("--compile")
    if not progress:
        common.append("--no-progress")
    calls = [["--attacks", "clean", "--n-examples", str(p.eval_n)]]
    for norm, eps in p.eval_eps.items():
        calls.append(["--attacks", "pgd", "--norm", norm, "--eps", ",".join(eps), "--n-examples", str(p.eval_n),
                      "--pgd-steps", str(p.pgd_steps)])
    for norm, eps in p.aa_eps.items():
        calls.append(["--attacks", "autoattack", "--norm", norm, "--eps", ",".join(eps), "--n-examples", str(p.aa_n)])
    corr = ["--corruptions", ",".join(p.corruptions)] if p.corruptions else []
    calls.append(["--attacks", "corruptions", "--n-examples", str(p.eval_n), *corr])
    for extra in calls:
        print(f"bench: {' '.join(extra)}", file=sys.stderr)
        bench_run.main(common + extra)


def measure_all(p: Preset, paths: list[str], data: str, device: str, out: str) -> list[dict]:
    """Sharpness and feature-perturbation measures per checkpoint, cached in OUT/measures.jsonl."""
    from bench.loading import load_model_spec
    from bench.measures import feature_perturbation, sharpness
    from bench.store.rows import append_row, read_rows
    from zoo.data import load_dataset
    from zoo.pgd import parse_eps

    path = os.path.join(out, "measures.jsonl")
    rows = read_rows(path)
    have = {(r["model_id"], r["measure_n"]) for r in rows}
    ds = load_dataset(data)
    x = ds.x_test[:p.measure_n].float().div(255).to(device)
    y = ds.y_test[:p.measure_n].to(device)
    for ckpt in paths:
        lm = load_model_spec(ckpt)
        if (lm.meta["model_id"], p.measure_n) in have:
            continue
        model = lm.model.to(device)
        row = {"model_id": lm.meta["model_id"], "model": lm.meta["name"], "measure_n": p.measure_n,
               **sharpness(model, x, y, rho=0.05, seed=0)}
        for norm, eps in p.feature_eps.items():
            fp = feature_perturbation(model, x, y, norm=norm, eps=parse_eps(eps))
            row[f"feature_shift_{norm}"] = fp["feature_shift"]
            row[f"feature_eps_{norm}"] = eps
        append_row(path, row)
        rows.append(row)
        print(f"measured {lm.meta['name']}: sharpness {row['sharpness_worst']:.4f}", file=sys.stderr)
        del model
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    ap.add_argument("--data", default=None, help="override the preset's dataset (cifar10 | npz:PATH | digits)")
    ap.add_argument("--arch", default=None, help="override the architecture (e.g. sharp_tiny on CPU)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seeds", default=None, help="comma list, e.g. 0,1,2")
    ap.add_argument("--recipes", default="", help="add recipe groups to the preset, e.g. +trades,+awp,+fgsm_rs "
                                                  "(each at the preset's main PGD-AT eps, with its paper's defaults)")
    ap.add_argument("--aa-n", type=int, default=None, help="override the AutoAttack test points (slow on CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="rows, report and plots (default results/study, runs/ for smoke)")
    ap.add_argument("--zoo-dir", default=None, help="checkpoints (default runs/study-<preset>/zoo)")
    ap.add_argument("--compile", action="store_true", help="torch.compile training and evaluation (GPU runs)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)

    p = PRESETS[args.preset]
    over = {k: v for k, v in {"data": args.data, "arch": args.arch, "epochs": args.epochs, "aa_n": args.aa_n}.items()
            if v is not None}
    if args.seeds:
        over["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    try:
        over["extra"] = parse_recipes(args.recipes)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    p = dataclasses.replace(p, **over)
    if p.data.startswith("npz:") and not os.path.exists(p.data[4:]):
        print(f"error: {p.data[4:]} not found; pass --data digits or --data npz:PATH", file=sys.stderr)
        return 2
    out = args.out or (os.path.join("runs", "study-smoke") if args.preset == "smoke" else os.path.join("results", "study"))
    zoo_dir = args.zoo_dir or os.path.join("runs", f"study-{args.preset}", "zoo")
    from zoo.train import resolve_device

    device = str(resolve_device(args.device))
    t0 = time.perf_counter()
    paths = train_all(p, device, zoo_dir, args.progress, args.compile)
    t_train = time.perf_counter() - t0
    bench_all(p, paths, p.data, device, out, args.progress, args.compile)
    measures = measure_all(p, paths, p.data, device, out)
    t_all = time.perf_counter() - t0

    from bench.report.leaderboard import write_leaderboard
    from bench.store.rows import read_rows
    from bench.report.study import write_report

    from zoo.checkpoint import sha256_file

    # results.jsonl is append-only: keep only the rows and measures of this grid's current checkpoints
    ids = {sha256_file(p) for p in paths}
    rows = [r for r in read_rows(os.path.join(out, "results.jsonl")) if r.get("model_id") in ids]
    measures = [m for m in measures if m["model_id"] in ids]
    board = write_leaderboard(rows, out)
    command = "python scripts/study.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = write_report(rows, measures, paths, out, preset=args.preset, preset_cfg=dataclasses.asdict(p),
                          command=command, device=device, seconds={"train": t_train, "total": t_all})
    from bench.report.site import build_site, load_metas

    site = build_site(rows, os.path.join(out, "site"), metas=load_metas(rows), measures=measures,
                      report_md=open(report, encoding="utf-8").read(), report_dir=out,
                      title=f"sharpbench study ({args.preset})")
    print(open(board).read())
    print(f"report: {report}\nleaderboard: {board}\nsite: {site} (REPORT.html beside it)\nplots: {out}/*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
