"""Rebuild OUT/leaderboard.md and its plots from OUT/results.jsonl: python -m bench.leaderboard [--out results]"""
from __future__ import annotations

import sys

from bench.defaults import OUT, rows_path
from bench.report.outputs import write_outputs
from bench.store.rows import read_rows
from zoo.cli import parser


def main(argv=None) -> int:
    p = parser("python -m bench.leaderboard", "Rebuild OUT/leaderboard.md and its plots from OUT/results.jsonl.")
    p.add_argument("--out", default=OUT, help="folder holding results.jsonl (default: %(default)s)")
    args = p.parse_args(argv)
    rows = read_rows(rows_path(args.out))
    if not rows:
        print(f"error: no rows in {args.out}/results.jsonl; run `python -m bench.run` first", file=sys.stderr)
        return 2
    print(write_outputs(rows, args.out, site=False)["leaderboard"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
