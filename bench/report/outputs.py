"""Every output written from rows, in one place: leaderboard.md and its plots, REPORT.md for a study, the site.

bench.run, bench.site, bench.leaderboard and the study's grid all call these; each output is a pure function of
the rows (plus, for the site, the checkpoints' metadata the rows name, and the measures, the report and the
galleries beside the rows: files, never a model).
"""
from __future__ import annotations

import os


def read_measures(folder: str) -> list[dict]:
    """The measures rows beside the results (their failed rows left out)."""
    from bench.defaults import measures_path
    from bench.store.rows import read_rows
    from bench.store.schema import check_measure_row

    path = measures_path(folder)
    rows = read_rows(path, check=check_measure_row) if os.path.exists(path) else []
    return [r for r in rows if r.get("status", "ok") == "ok"]


def read_verifications(folder: str) -> list[dict]:
    """What bench.verify recorded about the stored adversarial images (verify.jsonl beside the rows)."""
    from bench.store.rows import read_rows
    from bench.store.schema import check_verify_row

    path = os.path.join(folder, "verify.jsonl")
    return read_rows(path, check=check_verify_row) if os.path.exists(path) else []


def read_published(folder: str) -> list[dict]:
    """The Hub repositories models of these rows were exported to (published.jsonl beside the rows, written by
    bench.export --hf --repo-id)."""
    from bench.store.rows import read_rows
    from bench.store.schema import check_published_row

    path = os.path.join(folder, "published.jsonl")
    return read_rows(path, check=check_published_row) if os.path.exists(path) else []


def site_title(site: str) -> str | None:
    """The title of the site already in this folder (a rebuild keeps it), as text: at most 200 characters, no
    control characters; None when there is none."""
    import html
    import re

    try:
        with open(os.path.join(site, "index.html"), encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return None
    m = re.search(r"<title>([^<]{1,400})</title>", head)
    title = html.unescape(m.group(1)).strip() if m else ""
    from zoo.metadata import CONTROL

    return title[:200] if title and not CONTROL.search(title) else None


def results_of(rows: list[dict]):
    """The rows' boards, missing evaluations and worst cases (bench.report.results.Results), once for every output:
    from the rows with format characters removed, as the site shows them (the markdown writers remove them on
    output too)."""
    from bench.report.escape import neutral
    from bench.report.results import Results

    return Results.of(neutral(rows))


def write_site(rows: list[dict], folder: str, out: str | None = None, *, title: str | None = None,
               measures: list[dict] | None = None, metas: dict | None = None, results=None) -> str:
    """The site of these rows into out (default FOLDER/site), with the measures, REPORT.md and the galleries
    found in folder; returns the index's path. Without a title, a rebuild keeps the title of the site it
    replaces."""
    from bench.report.web import build_site, load_metas

    report = os.path.join(folder, "REPORT.md")
    report_md = open(report, encoding="utf-8").read() if os.path.exists(report) else None
    out = out or os.path.join(folder, "site")
    return build_site(rows, out, metas=load_metas(rows) if metas is None else metas,
                      measures=read_measures(folder) if measures is None else measures, report_md=report_md,
                      report_dir=folder, title=title or site_title(out) or "sharpbench leaderboard",
                      verifications=read_verifications(folder),
                      published=read_published(folder), results=results_of(rows) if results is None else results)


def write_outputs(rows: list[dict], folder: str, *, site: bool = True, study: dict | None = None,
                  measures: list[dict] | None = None, metas: dict | None = None, title: str | None = None) -> dict:
    """leaderboard.md (and plots) in folder; REPORT.md when `study` holds the report's settings (checkpoint
    paths, preset, command, device, seconds: bench.report.study_report.write_report's keywords); the site unless
    site=False (metas: the checkpoints' metadata when the caller has read it already). Returns the paths
    written."""
    from bench.report.tables import write_leaderboard

    measures = read_measures(folder) if measures is None else measures
    results = results_of(rows)
    paths = {"leaderboard": write_leaderboard(rows, folder, results)}
    if study is not None:
        from bench.report.study_report import write_report

        paths["report"] = write_report(rows, measures, out=folder, results=results, **study)
    if site:
        paths["site"] = write_site(rows, folder, title=title, measures=measures, metas=metas, results=results)
    return paths
