"""Build the leaderboard site from rows: python -m bench.site --results OUT/results.jsonl --out site/

Writes static pages that work from file://, a plain web server or GitHub Pages (see bench.report.web). The
study report (REPORT.md) and measures (measures.jsonl) beside the rows are included when present.
"""
from __future__ import annotations

import os
import sys

from bench.defaults import OUT, rows_path
from zoo.cli import parser


def main(argv=None) -> int:
    p = parser("python -m bench.site", "Build the leaderboard site from the rows of a results.jsonl.")
    p.add_argument("--results", default=rows_path(OUT), help="the rows (default: %(default)s)")
    p.add_argument("--out", default=None, help="the site's folder (default: site/ beside the rows)")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    if not os.path.isfile(a.results):
        print(f"error: {a.results} not found; run `python -m bench.run` first, or pass --results", file=sys.stderr)
        return 2
    try:
        from bench.report.outputs import write_site
        from bench.store.rows import read_rows

        index = write_site(read_rows(a.results), os.path.dirname(os.path.abspath(a.results)), a.out, title=a.title)
    except OSError as e:
        print(f"error: the site could not be written ({e.strerror or e}); pass an --out you can write to",
              file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
