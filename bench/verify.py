"""Replay stored adversarial images: a robust-accuracy row checked with no attack code.

  python -m bench.verify --results OUT/results.jsonl
  python -m bench.verify --models CK --adversarial FILE --data SPEC --norm Linf --eps 8/255

For every row naming images (bench.run --save-adversarial) it checks the file's sha256, its shape and dtype,
finite values in [0,1], each image's distance to its clean point (within eps under the row's norm, Linf, L2 or
L1, plus BALL_TOLERANCE for float rounding), and the model's prediction on each image, replayed in fp32: every
point the row counts as fooled must be fooled by its image. It prints, per row, "k of k fooled points replay; robust accuracy
<= X% (row says Y%)", then checks each worst case over attacks: every point it counts as not robust has a
stored image, from one of the attacks, that fools the model. The second form replays a file from elsewhere
(another lab's RobustBench external evaluation) against a checkpoint: the bound it supports.

Each row's outcome is appended to verify.jsonl beside the rows (the site shows "replayed: k of k" on the model's
page, for the file whose sha256 was checked). Exit status: 0 when everything holds; 1 naming the row and the first failing point otherwise (a hostile or
damaged file is one line too); 2 when there is nothing to check.
"""
from __future__ import annotations

import os
import sys

from bench.defaults import DEFAULT_EPS
from bench.eval.replay import verify_file, verify_results
from zoo.pgd import THREAT_NORMS
from zoo.cli import parser


def main(argv=None) -> int:
    p = parser("python -m bench.verify",
               "Replay stored adversarial images: a robust-accuracy row checked with no attack code.")
    p.add_argument("--results", default=None, help="results.jsonl whose rows name adversarial images")
    p.add_argument("--models", default=None, help="a checkpoint, for --adversarial")
    p.add_argument("--adversarial", default=None, help="a .pt tensor of adversarial images (n x C x H x W)")
    p.add_argument("--arch", default=None, help="architecture of a plain state_dict")
    p.add_argument("--data", default="cifar10", help="the data of --adversarial's points (its first n test points)")
    p.add_argument("--data-dir", default="data", help="where downloadable datasets are kept")
    p.add_argument("--norm", default="Linf", choices=THREAT_NORMS, help="the ball of --adversarial's images")
    p.add_argument("--eps", default=DEFAULT_EPS["Linf"], help="the radius of --adversarial's ball")
    p.add_argument("--device", default="cpu", help="replays run in fp32 on this device")
    p.add_argument("--batch-size", type=int, default=250, help="images per forward (memory only)")
    p.add_argument("--site", default=None, metavar="DIR",
                   help="the site to rebuild with the replays (default: OUT/site beside the rows, when it exists); "
                        "its title is kept")
    a = p.parse_args(argv)
    if a.results:
        if not os.path.isfile(a.results):
            print(f"error: {a.results} not found; pass the results.jsonl of a bench.run with --save-adversarial",
                  file=sys.stderr)
            return 2
        from bench.store.rows import append_row

        records: list = []
        code = verify_results(a.results, data_dir=a.data_dir, device=a.device, batch_size=a.batch_size,
                              records=records)
        log = os.path.join(os.path.dirname(os.path.abspath(a.results)), "verify.jsonl")
        for r in records:  # what the site shows beside each row: replayed, or failed with the reason
            append_row(log, r)
        folder = os.path.dirname(os.path.abspath(a.results))
        site = a.site or os.path.join(folder, "site")
        if records and os.path.isfile(os.path.join(site, "index.html")):
            from bench.report.outputs import write_site
            from bench.store.rows import read_rows

            print(f"site: {write_site(read_rows(a.results), folder, site)} (replays shown)")
        return code
    if a.models and a.adversarial:
        return verify_file(a.models, a.adversarial, data=a.data, norm=a.norm, eps=a.eps, arch=a.arch,
                           data_dir=a.data_dir, device=a.device, batch_size=a.batch_size)
    print("error: pass --results OUT/results.jsonl, or --models CK --adversarial FILE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
