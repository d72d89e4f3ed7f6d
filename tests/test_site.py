"""The leaderboard site, built from the rows of a real bench.run on tiny models and driven in headless Chromium."""
import functools
import http.server
import json
import os
import shutil
import threading

import pytest

from bench import run as bench_run
from bench.store.rows import append_row, read_rows

pytestmark = pytest.mark.slow  # the site in a real browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two trained models (standard and PGD-AT) under clean, PGD at two eps, AutoAttack-fast and two corruptions;
    then a forged model whose name and recipe are markup, as a results folder from someone else may hold."""
    from zoo.config import TrainConfig
    from zoo.train import train

    tmp = tmp_path_factory.mktemp("site")
    ckpts = [train(TrainConfig(arch="sharp_tiny", recipe=r, data="synthetic", n_train=128, epochs=1, batch_size=64,
                               device="cpu", steps=2, out=str(tmp / "zoo")), progress=False)
             for r in ("standard", "pgd_at")]
    out = tmp / "rows"
    common = ["--models", *ckpts, "--data", "synthetic", "--n-examples", "24", "--device", "cpu", "--out", str(out),
              "--no-progress", "--no-leaderboard"]
    assert bench_run.main(common + ["--attacks", "clean,pgd,autoattack-fast", "--eps", "2/255,8/255"]) == 0
    assert bench_run.main(common + ["--attacks", "corruptions", "--corruptions", "fog,contrast",
                                    "--cache-dir", str(tmp / "cache")]) == 0
    rows = read_rows(str(out / "results.jsonl"))
    forged = dict(next(r for r in rows if r["attack"] == "clean"))
    forged.update(model=HOSTILE, recipe=HOSTILE, model_id="f" * 64, key="f" * 20, path="missing.pt")
    append_row(str(out / "results.jsonl"), forged)
    from bench.report.outputs import write_site

    index = write_site(read_rows(str(out / "results.jsonl")), str(out), str(tmp / "site"))
    return {"index": index, "rows": read_rows(str(out / "results.jsonl")), "dir": str(tmp / "site")}


def test_site_is_self_contained_and_escapes_every_string(site):
    html = open(site["index"], encoding="utf-8").read()
    assert "<script>window.pwned" not in html and "&lt;script&gt;window.pwned" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://cdn" not in html
    pages = os.listdir(os.path.join(site["dir"], "models"))
    assert sum(p.endswith(".html") for p in pages) == 3
    assets = sorted(os.listdir(os.path.join(site["dir"], "assets")))
    assert assets == ["datatables.css", "datatables.js", "plotly.min.js", "site.css", "site.js"]  # once, shared
    for page in pages:
        if page.endswith(".html"):
            text = open(os.path.join(site["dir"], "models", page), encoding="utf-8").read()
            assert "<script>window.pwned" not in text and 'src="../assets/plotly.min.js"' in text
    with open(os.path.join(site["dir"], "models", [p for p in pages if p.endswith(".rows.json")][0])) as f:
        assert all("model_id" in r for r in json.load(f))


def _browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium at /usr/bin/chromium (Debian's `chromium` package); .ci/run installs it")
    return sync_api


def _serve(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _order(page, table_id, col):
    return page.evaluate(f"""() => Array.from(document.querySelectorAll('#{table_id} tbody tr'))
        .map(tr => tr.children[{col}].getAttribute('data-order'))""")


def test_site_in_a_real_browser(site):
    sync_api = _browser()
    server = _serve(site["dir"])
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync"])
            for base in (f"http://127.0.0.1:{server.server_port}/", "file://" + site["dir"] + "/"):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                problems = []
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("requestfailed", lambda r: problems.append(f"failed request {r.url}"))
                page.goto(base + "index.html")
                page.wait_for_selector(".dt-container")
                assert problems == [], problems
                assert page.evaluate("window.pwned") is None  # the markup in a name never ran
                assert HOSTILE in page.inner_text("body")  # it shows as text

                # the first section: Linf on 24 points; sorting by a robust column is numeric, missing last
                table = "s0-models"
                heads = page.eval_on_selector_all(f"#{table} thead th", "ths => ths.map(t => t.textContent.trim())")
                col = heads.index("PGD 8/255")
                header = f"#{table} thead th:nth-child({col + 1})"
                page.click(header)
                page.wait_for_selector(f"{header}.dt-ordering-asc")  # DataTables has sorted on it
                got = _order(page, table, col)
                values = [float(v) for v in got if v]
                assert values == sorted(values) and all(v for v in got[:len(values)])
                assert got[len(values):] == [""] * (len(got) - len(values))  # the forged model has no PGD row
                page.click(header)
                page.wait_for_selector(f"{header}.dt-ordering-desc")
                got = _order(page, table, col)
                values = [float(v) for v in got if v]
                assert values == sorted(values, reverse=True) and got[-1] == ""  # missing still last
                expected = sorted((r["robust_acc"] for r in site["rows"] if r["attack"] == "pgd"
                                   and r["eps_str"] == "8/255"), reverse=True)
                assert values == pytest.approx(expected)  # the numbers are the rows'

                # the search box filters by name
                name = next(r["model"] for r in site["rows"] if r.get("recipe") == "pgd_at")
                page.fill(f"#{table}_wrapper input[type=search]", "pgd_at")
                shown = page.eval_on_selector_all(f"#{table} tbody tr td:nth-child(2)", "tds => tds.map(t => t.textContent)")
                assert shown == [name]
                page.fill(f"#{table}_wrapper input[type=search]", "")

                # the compare selector adds and removes a model's line
                def lines():  # one legend entry per model (its dotted clean connector has none)
                    return page.eval_on_selector("#s0-eps", "g => g.data.filter(t => t.showlegend !== false).length")
                before = lines()
                assert before == 3
                box = page.locator(".plot-controls[data-section=s0] input[type=checkbox]").nth(0)
                box.uncheck()
                assert lines() == before - 1
                box.check()
                assert lines() == before

                # a model page: its plots and heatmap render
                page.click(f"#{table} tbody a:text('{name}')")
                page.wait_for_selector("#heatmap .heatmaplayer image, #heatmap .hm image")
                assert page.eval_on_selector_all("#curves .scatterlayer .trace", "ts => ts.length") == 3
                assert page.eval_on_selector_all("#heatmap .heatmaplayer image", "ims => ims.length") >= 1
                assert page.locator("#rows tbody tr").count() == sum(
                    1 for r in site["rows"] if r.get("model") == name)
                assert problems == [], problems
                page.close()
            browser.close()
    finally:
        server.shutdown()


STUDY = os.path.join(os.path.dirname(__file__), "..", "results", "study")


def test_the_committed_studys_site_holds_on_a_phone_and_a_wide_screen(tmp_path):
    """At 390 px: no sideways page scroll, the first leaderboard row on the first screen, the Model column still
    in view when the table is scrolled sideways. At 1440 px: the default columns fit without a scrollbar. On a
    model page no number has more than 6 significant figures; neither it nor the report scrolls sideways."""
    import re

    sync_api = _browser()
    from bench.report.outputs import write_site

    if not os.path.exists(os.path.join(STUDY, "results.jsonl")):
        pytest.skip("the committed study's rows are not here")
    index = write_site(read_rows(os.path.join(STUDY, "results.jsonl")), STUDY, str(tmp_path / "site"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        for width, height in ((390, 844), (1440, 1000)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto("file://" + index)
            page.wait_for_selector(".dt-container")
            got = page.evaluate("""() => {
                const t = document.querySelector('table.leaderboard');
                const box = t.closest('.dt-layout-cell');
                const first = t.querySelector('tbody tr').getBoundingClientRect();
                const fits = box.scrollWidth <= box.clientWidth;
                const ranked = t.closest('section').querySelector('p.how').textContent.match(/Ranked by (.*), then/)[1];
                const th = [...t.querySelectorAll('thead th')].find(h => h.textContent.trim() === ranked);
                const boxRight = box.getBoundingClientRect().right;
                const rankedInView = !!th && th.getBoundingClientRect().right <= boxRight + 1;
                box.scrollLeft = box.scrollWidth;
                const model = t.querySelector('tbody tr td:nth-child(2)').getBoundingClientRect();
                return {page: document.documentElement.scrollWidth, first: first.bottom, fits: fits,
                        scrolled: box.scrollLeft, model: model.left, box: box.getBoundingClientRect().left,
                        rankedInView: rankedInView}}""")
            assert got["page"] <= width, got  # no sideways scroll of the page
            assert got["model"] >= got["box"] - 1, got  # the Model column stays in view
            assert got["rankedInView"], got  # the column the board is ranked by, unscrolled, on a phone too
            if width == 390:
                assert got["first"] <= height, got
            else:
                assert got["fits"], got
            page.click("table.leaderboard tbody tr:first-child a")
            page.wait_for_selector("#rows")
            text = page.inner_text("main")
            assert not re.findall(r"\d\.\d*[0-9]{7,}|\d{7,}\.\d", text.replace(",", "")), "unformatted floats"
            assert "None" not in text.split() and "False" not in text.split()
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.goto("file://" + os.path.join(os.path.dirname(index), "REPORT.html"))
            assert page.evaluate("document.documentElement.scrollWidth") <= width  # wide tables scroll in place
            page.close()
        browser.close()
