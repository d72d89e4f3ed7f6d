"""Rewrite the README's generated blocks from the committed results: the study's headline table (from
results/study/results.jsonl, bench.report.study_report.headline_table) and the SAM variants' table (the one in
results/sam-variants/REPORT.md).

  python scripts/readme.py            rewrite README.md's blocks
  python scripts/readme.py --check    exit 1 when a block differs from what the results give (what a test runs)
"""
from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def headline() -> str:
    from bench.report.outputs import results_of
    from bench.report.study_report import headline_table
    from bench.store.rows import read_rows

    return headline_table(results_of(read_rows(os.path.join(ROOT, "results", "study", "results.jsonl"))))


def variants() -> str:
    """The variant table of results/sam-variants/REPORT.md, as it is there ('' while there is none)."""
    path = os.path.join(ROOT, "results", "sam-variants", "REPORT.md")
    if not os.path.exists(path):
        return ""
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^\| variant \| gain over standard \|.*?(?=\n\n)", text, re.M | re.S)
    return m.group(0) if m else ""


BLOCKS = {"headline": headline, "variants": variants}


def rewritten(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:[^\n]*-->\n)(.*?)(<!-- /{name} -->)", re.S)
        body = make()
        text = pattern.sub(lambda m: m.group(1) + (body + "\n" if body else "") + m.group(3), text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    a = ap.parse_args(argv)
    path = os.path.join(ROOT, "README.md")
    text = open(path, encoding="utf-8").read()
    new = rewritten(text)
    if a.check:
        if new != text:
            print("README.md's generated blocks differ from the results; run python scripts/readme.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
