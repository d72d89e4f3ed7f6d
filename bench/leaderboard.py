"""Rebuild OUT/leaderboard.md and its plots from OUT/results.jsonl: python -m bench.leaderboard [--out results]"""
from __future__ import annotations

import os
import sys

from bench.report.tables import write_leaderboard
from bench.store.rows import read_rows
from zoo.cli import parser


def main(argv=None) -> int:
    p = parser("python -m bench.leaderboard", "Rebuild OUT/leaderboard.md and its plots from OUT/results.jsonl.")
    p.add_argument("--out", default="runs/bench", help="folder holding results.jsonl (default: %(default)s)")
    args = p.parse_args(argv)
    rows = read_rows(os.path.join(args.out, "results.jsonl"))
    if not rows:
        print(f"error: no rows in {args.out}/results.jsonl; run `python -m bench.run` first", file=sys.stderr)
        return 2
    print(write_leaderboard(rows, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
