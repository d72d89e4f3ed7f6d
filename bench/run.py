"""Evaluate checkpoints: python -m bench.run --models zoo/*.pt --attacks clean,pgd,autoattack,corruptions

Every (model, attack, norm, eps) is one evaluation and one row in OUT/results.jsonl. Rows already computed for
the same checkpoint hash and attack config are skipped, so reruns only do new work. Several processes may share
one OUT (two shells, torchrun ranks, nodes on a shared filesystem): each evaluation is checked and claimed under
a file lock, so none is run twice and no row is lost; under torchrun the evaluations are sharded across ranks.
The work is bench.eval.engine's; this is its command line, and it writes the leaderboard and the site from the rows.
"""
from __future__ import annotations

import shlex
import sys

import torch

from bench.defaults import DEFAULT_EPS, rows_path
from bench.eval.engine import KNOWN, EvalSettings, evaluate, with_training_data
from bench.report.worst_case import attack_sanity_warnings
from bench.store.rows import RowStore, locked
from zoo import distributed as dist
from zoo.data import DataError
from zoo.errors import error_line
from zoo.pgd import THREAT_NORMS
from zoo.cli import add_progress, parser, progress_wanted


DEFAULTS = EvalSettings()


def parse_args(argv=None):
    p = parser("python -m bench.run",
               "Evaluate checkpoints under clean, PGD, AutoAttack and corruption attacks: one row per evaluation in "
               "OUT/results.jsonl, a leaderboard and a site.")
    p.add_argument("--models", nargs="+", required=True,
                   help="checkpoints, state_dicts (with --arch), rb:NAME, timm:NAME (timm's pretrained weights) or "
                        "timm:NAME@PATH (local weights: a state dict or .safetensors)")
    p.add_argument("--attacks", default=DEFAULTS.attacks,
                   help=f"comma list of {', '.join(a for a in KNOWN if a != 'imported')}, and imported:FILE: "
                        "another tool's adversarial images of the first n points (with --name, --norm, --eps)")
    p.add_argument("--name", dest="imported_name", default=DEFAULTS.imported_name, metavar="TOOL",
                   help="the attack (tool) that made imported:FILE's images, recorded in its row")
    p.add_argument("--norm", default=DEFAULTS.norm,
                   help=f"{' | '.join(THREAT_NORMS)}, or several as Linf,L2 (L1: AutoAttack only, APGD-L1; pgd "
                        "is Linf and L2) (default: %(default)s)")
    p.add_argument("--eps", default=DEFAULTS.eps,
                   help="comma list, fractions allowed (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_EPS.items())
                        + "; L2 and Linf are RobustBench's, L1 12 is Croce & Hein's 'Mind the box' on CIFAR-10)")
    p.add_argument("--data", default=DEFAULTS.data,
                   help="cifar10 | cifar100 | npz:PATH | digits | synthetic | folder:DIR (your images, "
                        "DIR/train/<class>/* and DIR/test/<class>/*, torchvision's ImageFolder layout) | "
                        "imagenet:DIR (RobustBench's 5000 ImageNet validation points, DIR/val/<wnid>/<file>.JPEG, "
                        "Res256Crop224) (default: the data the checkpoints were trained on, from their training "
                        "record)")
    p.add_argument("--image-size", type=int, default=DEFAULTS.image_size, metavar="S",
                   help="folder:DIR whose images differ in size: shorter side resized to S, then the centre S x S "
                        "(default: the checkpoints' own, else the images' size)")
    p.add_argument("--data-dir", default=DEFAULTS.data_dir, help="where cifar10/cifar100 are downloaded and read "
                                                                 "(default: %(default)s)")
    p.add_argument("--n-examples", type=int, default=DEFAULTS.n_examples,
                   help="first N test points, in order (default: %(default)s, RobustBench's; fewer when the data has "
                        "fewer; ImageNet: at most 5000, held as uint8: 5000 are 753 MB)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                   help="evaluation batch (default 1000 on CUDA, 250 on CPU); AutoAttack's batches too")
    p.add_argument("--compile", nargs="?", const="inductor", default=DEFAULTS.compile, metavar="BACKEND",
                   help="torch.compile the model, padding batches to a few fixed sizes (default backend inductor)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=DEFAULTS.precision,
                   help="AutoAttack's search: fp32 (RobustBench's protocol) or bf16 autocast, every robust flag still "
                        "decided in fp32; a bf16 row has its own key and is never RobustBench's number. The other "
                        "attacks run in fp32")
    p.add_argument("--device", default=DEFAULTS.device, help="auto: cuda when there is one, else cpu")
    p.add_argument("--out", default=DEFAULTS.out,
                   help="folder for results.jsonl, leaderboard.md and the site (default: %(default)s)")
    p.add_argument("--arch", default=DEFAULTS.arch, help="architecture for plain state_dicts (timm/zoo name or mod:fn)")
    p.add_argument("--rb-model-dir", default=DEFAULTS.rb_model_dir,
                   help="where rb:NAME models live (<dir>/<dataset>/<threat>/<NAME>.pt); an existing file needs "
                        "no network")
    p.add_argument("--rb-threat-model", default=DEFAULTS.rb_threat_model, choices=["Linf", "L2", "corruptions"],
                   help="the RobustBench leaderboard rb:NAME comes from (default: the first --norm)")
    p.add_argument("--pgd-steps", type=int, default=DEFAULTS.pgd_steps, help="PGD steps (default: %(default)s)")
    p.add_argument("--pgd-alpha", default=DEFAULTS.pgd_alpha, help="PGD step size (default 2.5*eps/steps)")
    p.add_argument("--restarts", type=int, default=DEFAULTS.restarts, help="PGD restarts (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="attack seed (random starts, AutoAttack)")
    p.add_argument("--corruptions-dir", default=DEFAULTS.corruptions_dir,
                   help="folder with the official CIFAR-10-C .npy files (default with --corruptions-source official: "
                        "DATA_DIR/CIFAR-10-C, or CIFAR-100-C for --data cifar100); for ImageNet the official "
                        "ImageNet-C folder, <corruption>/<severity>/<wnid>/<file> (default DIR/ImageNet-C)")
    p.add_argument("--corruptions-source", default=DEFAULTS.corruptions_source, choices=["auto", "official", "regenerated"],
                   help="official: the official files, fetched once into --corruptions-dir when missing (needs a "
                        "network once); regenerated: the generator, seeded; auto: official files when "
                        "--corruptions-dir holds them, else regenerated")
    p.add_argument("--corruptions", default=DEFAULTS.corruptions, help="comma list of corruptions (default: all 15)")
    p.add_argument("--cache-dir", default=DEFAULTS.cache_dir, help="where regenerated corruption sets are kept")
    p.add_argument("--max-checkpoint-gb", type=float, default=DEFAULTS.max_checkpoint_gb,
                   help="refuse model files larger than this without reading them (default %(default)g)")
    p.add_argument("--save-adversarial", action="store_true",
                   help="keep each attack row's adversarial images in OUT/adversarial/<key>.pt (RobustBench's "
                        "format: float32, n x C x H x W, in [0,1]; 10000 CIFAR images are about 123 MB); the row "
                        "names the file and its sha256, and `python -m bench.verify` replays them. A cached row "
                        "without images is run again (seeded) to store them")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again what failed before on the same file and settings (skipped otherwise)")
    p.add_argument("--no-leaderboard", action="store_true", help="write neither leaderboard.md nor the site")
    p.add_argument("--no-site", action="store_true", help="write leaderboard.md but not the site (OUT/site/)")
    add_progress(p)
    args = p.parse_args(argv)
    files = [a.strip()[len("imported:"):] for a in args.attacks.split(",") if a.strip().startswith("imported:")]
    if len(files) > 1:
        p.error("one imported:FILE per command (each file is its own attack's images)")
    args.imported = files[0] if files else None
    return args


def summary(outcomes) -> dict[str, int]:
    """Counts for the closing line: a model that failed to load counts once (not once per evaluation it
    misses); evaluations refused because they failed before count as skipped."""
    counts = {"ok": 0, "cached": 0, "failed": 0, "refused": 0}
    for o in outcomes:
        if not (o.model_failed and o.status == "failed"):
            counts[o.status] += 1
    return counts


def run(args) -> int:
    args.progress = progress_wanted(args.progress)  # bars on a terminal; one line per stage in a log
    settings = with_training_data(EvalSettings.from_namespace(args), args.models)  # --data's default
    outcomes = evaluate(args.models, settings)
    counts = summary(outcomes)
    failures = counts["failed"]
    rank = torch.distributed.get_rank() if dist.is_active() else 0
    dist.barrier()
    if rank == 0:
        main_path = rows_path(args.out)
        store = RowStore(main_path)
        with locked(main_path):
            store.refresh()
        rows = store.rows
        for w in attack_sanity_warnings(rows):
            print(f"warning: {w}", file=sys.stderr)
        if not args.no_leaderboard:
            try:
                from bench.report.outputs import write_outputs

                paths = write_outputs(rows, args.out, site=not args.no_site)
                print(f"leaderboard: {paths['leaderboard']}", file=sys.stderr)
                if "site" in paths:
                    print(f"site: {paths['site']}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - the rows are safe; say what failed and still summarise
                print(f"error: the leaderboard could not be written ({error_line(e)}); the rows are in {main_path}; "
                      "rebuild it with `python -m bench.leaderboard`", file=sys.stderr)
                failures += 1
        refused = counts["refused"]
        retry = (f", {refused} skipped (failed before on the same file and settings; --retry-failed runs them "
                 "again)") if refused else ""
        print(f"{counts['ok']} rows added, {counts['cached']} already computed, {failures} failed{retry} -> "
              f"{main_path}")
        if args.save_adversarial and counts["ok"] + counts["cached"]:
            print(f"next: replay the stored images, with no attack code:\n  python -m bench.verify --results "
                  f"{shlex.quote(main_path)}")
    # what failed before and was skipped is still missing: the command has not done what it was asked
    failed_all = dist.all_reduce_sum(torch.tensor([failures + counts["refused"]]))
    return 1 if int(failed_all.item()) else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
