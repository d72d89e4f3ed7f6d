"""The leaderboard site: static pages, a pure function of rows (and the checkpoints' metadata and measures).

    build_site(rows, out, metas=..., measures=..., report_md=...)

writes out/index.html (one sortable, searchable table per dataset, n and threat model, configurations with
mean ± std over seeds, robust-vs-eps and trade-off plots with a model selector), out/models/<model>.html (one
page per model, with its rows as JSON and CSV beside it), out/results.csv and out/results.json (every table's
numbers, as the results model holds them: bench.report.results), out/REPORT.html when a study report is given, and the
shared scripts once in out/assets/. Templates are Jinja2 with autoescaping on: every string from a checkpoint
or a row is text on the page. The files work from file://, from `python -m http.server` and from GitHub Pages.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time

from bench.attacks.evaluation import Evaluation
from bench.report.escape import csv_cell, neutral, public_record
from bench.report.numbers import human, percent
from bench.report.web import pages
from bench.report.web.assets import write_assets
from bench.report.results import Results
from zoo.files import write_text_atomic

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def environment():
    import jinja2
    import markupsafe

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    env.filters["pct"] = percent
    env.filters["num"] = lambda v, digits=1: f"{v:,.{digits}f}" if number(v) else ""
    env.filters["mib"] = lambda v: f"{v / 2 ** 20:,.0f}" if number(v) and v else ""
    env.filters["human"] = human
    # a long name may break after its "-" separators (a phone's narrow Model column), never inside a part
    env.filters["breakable"] = lambda v: markupsafe.Markup(
        str(markupsafe.escape(v)).replace("-", "-<wbr>"))
    return env


def csv_text(fields: list[str], records: list[dict]) -> str:
    """CSV with nested values as JSON text; every cell, header names included, neutralised for spreadsheets."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([csv_cell(f) for f in fields])
    for r in records:
        w.writerow([csv_cell(json.dumps(r[k], sort_keys=True) if isinstance(r.get(k), (dict, list)) else r.get(k))
                    for k in fields])
    return buf.getvalue()


def rows_csv(rows: list[dict]) -> str:
    """A model's rows as CSV: flat fields, nested ones as JSON text."""
    return csv_text(sorted({k for r in rows for k in r if k != "points"}), rows)


def results_downloads(all_boards) -> tuple[str, str]:
    """The results model's boards (bench.report.results.boards) as CSV and JSON: one line per board, model and column, in the
    boards' order and rank order, as every table on the site shows them."""
    from bench.report.results import LINE_FIELDS

    records = [r for b in all_boards for r in b.records()]
    return csv_text(LINE_FIELDS, records), json.dumps(records, indent=1, default=str) + "\n"


def build_site(rows: list[dict], out: str, *, metas: dict | None = None, measures: list[dict] | None = None,
               report_md: str | None = None, report_dir: str | None = None,
               title: str = "sharpbench leaderboard", verifications: list[dict] | None = None,
               published: list[dict] | None = None, results) -> str:
    """Write the site under out; returns the index's path. report_dir: where the report's images are. results:
    the Results of these rows with neutral() applied (bench.report.outputs.results_of, computed once).

    The site is built in a folder beside out and moved into place when whole, so a reader never sees half a site
    (an old one stays until the new one is complete). Every string from rows, checkpoints and measures goes
    through bench.report.escape.neutral first: no bidi control reaches a page, a download or a plot."""
    import shutil
    import tempfile

    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.building-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # a folder as os.makedirs would make it (mkdtemp's is private)
    try:
        _build(neutral(rows), tmp, metas=neutral(metas or {}), measures=neutral(measures or []),
               report_md=None if report_md is None else neutral(report_md), report_dir=report_dir, title=title,
               verifications=neutral(verifications or []), published=published or [],
               results=results)
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=parent)
            os.rename(out, os.path.join(old, "site"))
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return os.path.join(out, "index.html")


def _build(rows, out, *, metas, measures, report_md, report_dir, title, verifications, published,
           results) -> None:
    import markdown

    env = environment()
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    assets = write_assets(out)
    drawn = rows  # the galleries read the rows as computed (their key and images' checksum name the gallery)
    rows, metas = public_record(rows), public_record(metas)  # published: no path of this machine
    info = pages.models(rows, metas)
    if rows != drawn:  # a path the site does not publish named a model: its boards from the published rows
        results = Results.of(rows)
    all_boards = results.boards
    sections = pages.sections(results, info)
    results_csv, results_json = results_downloads(all_boards)
    write_text_atomic(os.path.join(out, "results.csv"), results_csv)
    write_text_atomic(os.path.join(out, "results.json"), results_json)
    built = time.strftime("%Y-%m-%d %H:%M")
    common = {"title": title, "built": built, "has_report": report_md is not None}
    write_text_atomic(os.path.join(out, "index.html"), env.get_template("index.html").render(
        root="", assets=assets, sections=sections, datasets=sorted({s["dataset"] for s in sections}),
        missing=results.missing,
        n_models=len(info), n_rows=sum(r.get("status") == "ok" for r in rows), **common))
    for mid, m in info.items():
        mine = [r for r in rows if r.get("model_id") == mid]
        page = pages.model_page(m, rows, measures, verifications, published)
        page["gallery"] = _gallery(m, [r for r in drawn if r.get("model_id") == mid], report_dir, out)
        write_text_atomic(os.path.join(out, m["page"]), env.get_template("model.html").render(
            root="../", assets=assets, page=page, **common))
        base = os.path.join(out, "models", m["slug"])
        write_text_atomic(base + ".rows.json", json.dumps(mine, indent=1, sort_keys=True) + "\n")
        write_text_atomic(base + ".rows.csv", rows_csv(mine))
    if report_md is not None:
        report_md = _copy_report_images(report_md, report_dir, out)
        # the report's markdown escapes every value it took from rows (bench.report.escape.md), so the HTML
        # markdown makes of it holds no element that came from data
        body = markdown.markdown(report_md, extensions=["tables", "fenced_code"])
        write_text_atomic(os.path.join(out, "REPORT.html"), env.get_template("report.html").render(
            root="", assets=assets, body=body, sections=sections, **common))


def _gallery(info: dict, mine: list[dict], folder: str | None, out: str) -> list[dict]:
    """Per attack row with stored images: the gallery drawn beside them (bench.eval.gallery, by the engine or
    bench.verify, which held the model), its PNGs copied under out/models/<slug>-adv/. No model and no dataset is
    loaded here; a row whose gallery is not there shows none."""
    import shutil

    from bench.eval.gallery import KINDS, read_gallery
    from bench.store.adversarial import FOLDER

    shown = []
    for r in (r for r in mine if r.get("status") == "ok" and r.get("adversarial") and "points" in r):
        items = read_gallery(folder, r) if folder is not None else []
        if not items:
            continue
        os.makedirs(os.path.join(out, "models", f"{info['slug']}-adv"), exist_ok=True)
        for it in items:
            for kind in KINDS:
                rel = f"{info['slug']}-adv/{it[kind]}"
                shutil.copyfile(os.path.join(folder, FOLDER, it[kind]), os.path.join(out, "models", rel))
                it[kind] = rel
        shown.append({"attack": Evaluation.of(r).label, "norm": r.get("norm"), "points": items})
    return shown


def _copy_report_images(text: str, report_dir: str | None, out: str) -> str:
    """The PNGs a report references, copied under out/report/, and the references pointed at the copies."""
    import re
    import shutil

    def move(m):
        name = os.path.basename(m.group(2))
        src = os.path.join(report_dir or ".", m.group(2))
        if not os.path.isfile(src):
            return m.group(0)
        os.makedirs(os.path.join(out, "report"), exist_ok=True)
        shutil.copyfile(src, os.path.join(out, "report", name))
        return f"![{m.group(1)}](report/{name})"

    return re.sub(r"!\[([^\]]*)\]\(([A-Za-z0-9_.-]+\.png)\)", move, text)


def load_metas(rows: list[dict]) -> dict:
    """Each model's checkpoint metadata, read from the path its rows name when the file is there and loads
    (the same checks bench.run applies); a model whose file is gone shows its rows only."""
    from bench.eval.loading import source_kind
    from zoo.checkpoint import CheckpointError, check_checkpoint, load_checkpoint, sha256_file

    metas = {}
    for r in rows:
        mid, path = r.get("model_id"), r.get("path")
        if r.get("status") != "ok" or mid in metas or not path or source_kind(path) in ("rb", "timm"):
            continue
        try:
            if sha256_file(path) != mid:  # the file was replaced since the rows were computed
                raise CheckpointError(path)
            ck = load_checkpoint(path)
            check_checkpoint(ck, path)
        except (CheckpointError, OSError):
            metas[mid] = None
            continue
        metas[mid] = {k: v for k, v in ck.items() if k not in ("model", "optimizer")}
    return metas
