"""Build the leaderboard site from rows: python -m bench.site --results OUT/results.jsonl --out site/

Writes static pages that work from file://, a plain web server or GitHub Pages (see bench.report.site). The
study report (REPORT.md) and measures (measures.jsonl) beside the rows are included when present.
"""
from __future__ import annotations

import argparse
import os
import sys


def write_site(results: str, out: str | None = None, *, title: str | None = None, rows: list[dict] | None = None) -> str:
    """Read the rows (unless given: a caller that has just read them) and the measures, the study report and the
    checkpoints they name; build the site."""
    from bench.report.site import build_site, load_metas
    from bench.store.rows import read_rows
    from bench.store.schema import check_measure_row

    folder = os.path.dirname(os.path.abspath(results))
    out = out or os.path.join(folder, "site")
    rows = read_rows(results) if rows is None else rows
    measures_path = os.path.join(folder, "measures.jsonl")
    measures = read_rows(measures_path, check=check_measure_row) if os.path.exists(measures_path) else []
    report = os.path.join(folder, "REPORT.md")
    report_md = open(report, encoding="utf-8").read() if os.path.exists(report) else None
    return build_site(rows, out, metas=load_metas(rows), measures=measures, report_md=report_md,
                      report_dir=folder, title=title or "sharpbench leaderboard")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.site", description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/results.jsonl", help="the rows (results.jsonl)")
    p.add_argument("--out", default=None, help="the site's folder (default: site/ beside the rows)")
    p.add_argument("--title", default=None)
    a = p.parse_args(argv)
    if not os.path.isfile(a.results):
        print(f"error: {a.results} not found; run `python -m bench.run` first, or pass --results", file=sys.stderr)
        return 2
    try:
        index = write_site(a.results, a.out, title=a.title)
    except OSError as e:
        print(f"error: the site could not be written ({e.strerror or e}); pass an --out you can write to",
              file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
