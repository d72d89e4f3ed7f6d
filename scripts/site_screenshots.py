"""Screenshots of the leaderboard site in headless Chromium, for the README: the index and one model page.

  python scripts/site_screenshots.py [--results results/study/results.jsonl] [--out results]

Builds the site beside the rows (python -m bench.site), opens it from file:// in Debian's Chromium through
Playwright, and writes OUT/site_index.png (1440 px wide), OUT/site_phone.png (390 px, the first screen) and
OUT/site_model.png (the best-ranked model's page).
"""
from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=os.path.join("results", "study", "results.jsonl"))
    p.add_argument("--out", default="results")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    a = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from bench.report.outputs import write_site
    from bench.store.rows import read_rows

    index = write_site(read_rows(a.results), os.path.dirname(os.path.abspath(a.results)))
    errors = []

    def index_page(browser, **view):
        page = browser.new_page(**view)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("file://" + os.path.abspath(index))
        page.wait_for_selector(".dt-container")
        page.wait_for_timeout(800)
        return page

    def shoot(page, name, full_page=False):
        shot = os.path.join(a.out, name)
        page.screenshot(path=shot, full_page=full_page)
        print(shot)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=a.chromium, args=CHROMIUM_ARGS)
        page = index_page(browser, viewport={"width": 1440, "height": 1000})
        shoot(page, "site_index.png")
        shoot(index_page(browser, viewport={"width": 390, "height": 844}, device_scale_factor=2), "site_phone.png")
        page.click("table.leaderboard tbody tr:first-child a")
        page.wait_for_selector("#rows")
        page.wait_for_timeout(800)
        shoot(page, "site_model.png", full_page=True)
        browser.close()
    if errors:
        print("page errors: " + "; ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
