"""Rows carrying payloads (bidi controls, a formula as a field name, an over-long name, wrong types where the
writers read, an odd eps_str): the row check refuses each one it can name, the rest show as inert text, and the
site, leaderboard and report are built whole from the rows that remain."""
from __future__ import annotations

import json
import os
import re

import pytest

from bench.store.rows import read_rows

STUDY = os.path.join(os.path.dirname(__file__), "..", "results", "study", "results.jsonl")
RLO = "\u202e"  # right-to-left override: "‮evil-gnp.exe" displays as "exe.png-live"


def _good_rows():
    rows = [json.loads(line) for line in open(STUDY)]
    keep = {r["model_id"] for r in rows[:1]}  # one model, every row of it: small and fast
    return [r for r in rows if r["model_id"] in keep]


def _payloads(good):
    ok = next(r for r in good if r["attack"] == "pgd")
    spoof = {**ok, "model": f"{RLO}evil-gnp.exe", "model_id": "f" * 64, "key": "f" * 20}
    refused = {
        "field name": {**ok, '=HYPERLINK("http://evil","hdr")': 1},
        "model is 4000 characters long, over the limit of 200": {**ok, "model": "m" * 4000},
        "attack_config.steps": {**ok, "attack_config": {**ok["attack_config"], "steps": "x"}},
        "attack_config.alpha": {**ok, "attack_config": {**ok["attack_config"], "alpha": "x"}},
        "attack_config is not a mapping": {"status": "failed", "model": "m", "error": "e", "time": "t",
                                           "attack_config": "x"},
        "attack is not an attack name": {"status": "failed", "model": "m", "error": "e", "time": "t", "attack": 5},
        "eps_str": {**ok, "eps_str": "‹img src=x onerror=alert(1)>"},
    }
    return spoof, refused


def test_every_payload_is_refused_by_name_or_inert_and_the_site_and_report_are_whole(tmp_path, capsys):
    from bench.report.outputs import results_of, write_outputs
    from bench.report.study_report import write_report

    if not os.path.exists(STUDY):
        pytest.skip("the committed study's rows are not here")
    good = _good_rows()
    spoof, refused = _payloads(good)
    for why, row in refused.items():  # each refusal: one line naming the line and the field
        one = tmp_path / "one.jsonl"
        one.write_text("".join(json.dumps(r) + "\n" for r in good + [row]))
        assert len(read_rows(str(one))) == len(good)
        (warning,) = capsys.readouterr().err.strip().splitlines()
        assert re.search(rf"one\.jsonl:{len(good) + 1}: row skipped", warning) and why in warning, (why, warning)
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in good + [spoof] + list(refused.values())))
    rows = read_rows(str(results))
    assert len(rows) == len(good) + 1  # every payload row refused but the spoofed name, which shows inert

    paths = write_outputs(rows, str(tmp_path), site=True)
    write_report(rows, [], [], str(tmp_path), preset="smoke", preset_cfg={"seeds": [0], "eval_n": 16,
                 "pgd_steps": 5, "aa_n": 8}, command="x", device="cpu", seconds={"train": 1, "eval": 2},
                 results=results_of(rows))
    site = tmp_path / "site"
    pages = list((site / "models").glob("*.html"))
    assert len(pages) == 2  # the good model and the spoofed one: whole, no half-written site
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name or ".old-" in p.name]
    written = [*site.rglob("*.html"), *site.rglob("*.csv"), *site.rglob("*.json"), tmp_path / "leaderboard.md",
               tmp_path / "REPORT.md"]
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert RLO not in text, path  # the name shows in stored order: "evil-gnp.exe"
        assert "HYPERLINK" not in text and "onerror" not in text
    assert "evil-gnp.exe" in (site / "index.html").read_text(encoding="utf-8")
    assert "evil-gnp.exe" in open(paths["leaderboard"], encoding="utf-8").read()


def test_a_row_holding_a_formula_cell_or_header_is_neutralised_in_every_csv(tmp_path):
    import csv

    from bench.report.web import csv_text

    text = csv_text(["=cmd", "ok"], [{"=cmd": "=1+1", "ok": f"{RLO}=2+2"}])
    (head, line) = list(csv.reader(text.splitlines()))
    assert head == ["'=cmd", "ok"] and line == ["'=1+1", "'=2+2"]
