"""The study: does SAM alone improve adversarial robustness? Train the grid, benchmark it, write a report.

  python -m bench.study --preset smoke     whole pipeline on CPU in minutes (digits, small net)
  python -m bench.study --preset small     the paper's grid scaled down, real CIFAR-10 subset
  python -m bench.study --preset paper     the paper's protocol on full CIFAR-10 (a GPU job)

The grid is a queue of cells (one checkpoint, then its evaluations and measures) that any number of workers
share through one results folder (bench.grid):
  --workers N [--workers-per-gpu K]            local processes (K per visible GPU)
  --launcher slurm --partition P --gpus G --time T   an array of G workers through submitit, then returns
  torchrun --nproc_per_node G -m bench.study ...     one worker per rank (srun likewise), no flag needed
  --status                                     cells done / running / waiting, with workers and ETAs
Reruns reuse finished checkpoints and rows; a killed training resumes after its last finished epoch.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from bench.defaults import MAX_FAILURES
from bench.grid.presets import PRESETS, parse_recipes
from zoo.errors import error_line
from zoo.cli import add_progress, parser, progress_wanted


def build_parser() -> argparse.ArgumentParser:
    ap = parser("python -m bench.study",
                "Train a preset's grid of models, benchmark them and write the report, leaderboard and site.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="smoke",
                    help="smoke: digits (bundled, offline), sharp_small, 8 epochs, CPU minutes; small: the real "
                         "CIFAR-10 subset, PreActResNet-18 (a GPU job); paper: the seed paper's protocol on CIFAR-10 "
                         "(a GPU job) (default: %(default)s)")
    ap.add_argument("--data", default=None, help="override the preset's dataset (cifar10 | npz:PATH | digits | folder:DIR)")
    ap.add_argument("--arch", default=None, help="override the architecture (e.g. sharp_tiny on CPU)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seeds", default=None, help="comma list, e.g. 0,1,2")
    ap.add_argument("--recipes", default="",
                    help="add recipe groups to the preset, e.g. +trades,+awp,+fgsm_rs (each at the preset's main "
                         "PGD-AT eps) or +looksam,+esam,+gsam,+msam,+rwp (at the preset's variant radius), each "
                         "with its paper's defaults otherwise")
    ap.add_argument("--aa-n", type=int, default=None, help="override the AutoAttack test points (slow on CPU)")
    ap.add_argument("--device", default="auto", help="auto: cuda when there is one, else cpu")
    ap.add_argument("--out", default=None,
                    help="rows, report, plots and site (default: the preset's, runs/study-smoke for smoke, "
                         "results/sam-variants for sam-variants, results/study otherwise)")
    ap.add_argument("--zoo-dir", default=None,
                    help="checkpoints (default OUT/zoo: each study keeps its own; a folder another study's "
                         "checkpoints are in is refused)")
    ap.add_argument("--retrain", action="store_true",
                    help="train over checkpoints in the zoo folder that another study (or other settings) made")
    ap.add_argument("--export-hf", default=None, metavar="DIR",
                    help="after the study, one Hugging Face Hub folder per trained model under DIR (bench.export --hf)")
    ap.add_argument("--compile", action="store_true", help="torch.compile training and evaluation (GPU runs)")
    add_progress(ap)
    g = ap.add_argument_group("workers (one results folder, on a filesystem all of them see)")
    g.add_argument("--workers", type=int, default=None, help="start N local worker processes and wait for them")
    g.add_argument("--workers-per-gpu", type=int, default=None,
                   help="K workers on each visible GPU (with --workers: N in all, placed round-robin)")
    g.add_argument("--launcher", choices=["slurm", "submitit-local"], default=None,
                   help="submit an array of --gpus workers through submitit (submitit-local: its local executor, "
                        "the same code path without SLURM)")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument("--gpus", type=int, default=1, help="workers in the array, one GPU each")
    g.add_argument("--gpus-per-worker", type=int, default=1, help="GPUs each array task asks for (0: CPU only)")
    g.add_argument("--cpus-per-worker", type=int, default=8, help="CPUs each array task asks for")
    g.add_argument("--time", default="24:00:00", help="each array task's time limit (SLURM's formats)")
    g.add_argument("--wait", action="store_true", help="with --launcher: wait for the workers to finish")
    g.add_argument("--status", action="store_true", help="print where the study stands, then exit")
    ap.add_argument("--retry-failed", action="store_true",
                    help=f"run failed evaluations again even when they failed {MAX_FAILURES} times before (the retry bound)")
    g.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # set by the launchers
    return ap


def study_from(args, argv) -> "Study":  # noqa: F821
    from bench.grid.queue import Study
    from zoo.distributed import resolve_device

    p = PRESETS[args.preset]
    over = {k: v for k, v in {"data": args.data, "arch": args.arch, "epochs": args.epochs, "aa_n": args.aa_n}.items()
            if v is not None}
    if args.seeds:
        over["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    extra, variants = parse_recipes(args.recipes)
    over["extra"] = extra
    if variants:
        over["variants"] = tuple(dict.fromkeys(p.variants + variants))
    p = dataclasses.replace(p, **over)
    if p.data.startswith("npz:") and not os.path.exists(p.data[4:]):
        raise ValueError(f"{p.data[4:]} not found; pass --data digits or --data npz:PATH")
    out = args.out or p.out
    zoo_dir = args.zoo_dir or os.path.join(out, "zoo")
    shown = [a for a in argv if a not in ("--worker", "--wait", "--status")]
    return Study(preset_name=args.preset, preset=p, device=str(resolve_device(args.device)), out=out, zoo_dir=zoo_dir,
                 compile=args.compile, progress=progress_wanted(args.progress), retry_failed=args.retry_failed, command="python -m bench.study " + " ".join(shown))


def cell_seconds(study) -> str:
    """One line: each model's seconds in this study's latest done cells (training, then evaluations)."""
    from bench.grid.queue import check_cell_row, finished
    from bench.store.rows import RowStore

    store = RowStore(study.cells_path, check=check_cell_row)
    store.refresh()
    done = finished(store)
    parts = [f"{c.name} {done[c.key]['seconds']:.1f} s (training {done[c.key]['train_seconds']:.1f} s)"
             for c in study.cells() if c.key in done]
    return "seconds per model: " + ", ".join(parts)


LAUNCH_FLAGS = {"--workers": 1, "--workers-per-gpu": 1, "--launcher": 1, "--partition": 1, "--gpus": 1,
                "--gpus-per-worker": 1, "--cpus-per-worker": 1, "--time": 1, "--wait": 0}


def without_launch_flags(argv: list[str]) -> list[str]:
    """The study's own arguments: what every worker is started with."""
    out, skip = [], 0
    for a in argv:
        if skip:
            skip -= 1
            continue
        name = a.split("=", 1)[0]
        if name in LAUNCH_FLAGS:
            skip = LAUNCH_FLAGS[name] if "=" not in a else 0
            continue
        out.append(a)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from bench.grid import launch

    ranked = launch.launched_rank()
    if ranked is not None:  # torchrun / srun: this process is one worker, on its rank's GPU
        launch.become_rank_worker(ranked[2], ranked[0], ranked[1])
    try:
        study = study_from(args, argv)
        if not args.status:
            from bench.grid.owner import claim_zoo

            claim_zoo(study, args.retrain)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.status:
        from bench.grid.status import format_status, status

        print(format_status(status(study)))
        return 0
    script = ["-m", "bench.study"] + without_launch_flags(argv)
    if args.launcher and not args.worker:
        return launch.submit(main, script, workers=args.gpus, out=study.out, launcher=args.launcher,
                             partition=args.partition, time_limit=args.time,
                             gpus_per_worker=0 if args.launcher == "submitit-local" else args.gpus_per_worker,
                             cpus_per_worker=args.cpus_per_worker, wait=args.wait, watch=(study.out, study.zoo_dir))
    if (args.workers or args.workers_per_gpu) and not args.worker:
        return launch.local_workers(script, args.workers, args.workers_per_gpu, study.out)
    from bench.grid.queue import work

    failed = work(study)
    if not args.worker:
        board = os.path.join(study.out, "leaderboard.md")
        if os.path.exists(board):
            print(open(board, encoding="utf-8").read())
        print(cell_seconds(study))
        if not failed:
            from bench.grid.presets import next_command

            print(f"next: benchmark these checkpoints further (their data is read from them):\n  "
                  f"{next_command(study.zoo_dir, study.preset)}")
    if failed:
        print(f"error: {failed} cell{'s' * (failed > 1)} failed; `--status` lists what is missing and why, and a "
              "rerun retries them", file=sys.stderr)
    if args.export_hf and not args.worker and not failed:
        failed += export_hf(study, args.export_hf)
    return 1 if failed else 0


def export_hf(study, folder: str) -> int:
    """One Hub folder per trained model of the study, its card built from the study's rows; the number that
    were refused."""
    from bench.hub.folder import HubRefused, write_hf_folder

    refused = 0
    for cell in study.cells():
        try:
            paths = write_hf_folder(cell.path, os.path.join(folder, cell.name),
                                    results=study.results)
            print(f"hub folder: {paths['folder']} ({paths['rows']} rows)")
        except (HubRefused, ValueError, OSError) as e:
            refused += 1
            print(f"error: hub folder for {cell.name}: {error_line(e)}", file=sys.stderr)
    return refused


if __name__ == "__main__":
    sys.exit(main())
