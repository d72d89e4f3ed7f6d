import json
import os
import re
import shutil
import subprocess

from conftest import ROOT, seed_rows, smoke_command

import pytest

pytestmark = pytest.mark.slow  # the smoke study's report, exports and reruns



def test_smoke_study_runs_end_to_end_and_reuses_its_work(smoke_study, tmp_path):
    out, zoo, _ = smoke_study
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    report = (out / "REPORT.md").read_text()
    assert "What held on this run" in report and "sam rho0.05" in report and "pgd_at linf8_255" in report
    held_section = report.split("## What held on this run", 1)[1].split("\n## ", 1)[0]
    verdicts = [ln for ln in held_section.splitlines() if ln.startswith("- **")]
    words = (":** held:", ":** did not hold:", ":** inconclusive:", ":** mixed:")
    assert len(verdicts) >= 4 and all(any(w in v for w in words) for v in verdicts)
    assert "[" in verdicts[0] and "McNemar" in verdicts[0]  # decided from per-point flags, interval shown
    for png in ("robust_vs_eps.png", "tradeoff.png", "training_curves.png", "robustness_Linf.png"):
        assert (out / png).stat().st_size > 0, png
    assert len(list(zoo.glob("*.pt"))) == 3
    from zoo.checkpoint import load_checkpoint

    standard = load_checkpoint(str(next(zoo.glob("*-standard-*.pt"))))
    assert standard["metrics"]["clean_test_acc"] >= 0.95  # the demo's models are trained, not toys
    assert standard["dataset"]["augment"] == {"pad": 2, "flip": False}  # no mirrored digits
    # a digits model is no RobustBench claim: the export refuses it in one line, draft or not, whatever the rows
    import pytest

    from bench import export as bexport

    for ck in zoo.glob("*.pt"):
        for threat, draft in (("Linf", False), ("corruptions", True)):
            with pytest.raises(bexport.ExportRefused) as refused:
                bexport.export(str(ck), name="Smoke2026Study", out=str(tmp_path / "e"),
                               results=str(out / "results.jsonl"), threat=threat, draft=draft)
            (line,) = refused.value.problems
            assert "trained on digits, not a RobustBench dataset" in line and "--hf" in line, line
    assert not (tmp_path / "e").exists()
    rerun = tmp_path / "rerun"  # the same command on a copy of its folders (the session's study is read-only)
    shutil.copytree(out, rerun / "study")
    shutil.copytree(zoo, rerun / "zoo")
    rows = (out / "results.jsonl").read_text()
    hub = tmp_path / "hub"  # the rerun also writes one Hugging Face Hub folder per trained model
    again = subprocess.run([*smoke_command(rerun), "--export-hf", str(hub)], capture_output=True, text=True,
                           timeout=900, cwd=ROOT, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 of 3 cells already done" in again.stderr and (rerun / "study" / "results.jsonl").read_text() == rows
    assert sorted(os.listdir(hub)) == sorted(p.name.removesuffix(".pt") for p in zoo.glob("*.pt"))
    for folder in hub.iterdir():
        record = json.loads((folder / "sharpbench.json").read_text())
        assert record["rows"] and all(r["model"] == folder.name for r in record["rows"])


def test_a_cell_opens_one_run_for_its_evaluations_each_on_its_own_points(smoke_zoo, smoke_study, tmp_path,
                                                                        monkeypatch):
    """A cell's evaluations (clean, PGD per norm, AutoAttack, corruptions, the measures, each on its own n) go
    through one engine run: each rows file is read from the start once and the checkpoint hashed once. On a copy
    of the smoke study's rows every evaluation is found done, so the one run keys each on its own n as the study
    did."""
    import zoo.checkpoint
    from bench.eval import engine, loading
    from bench.grid.cells import bench_cell
    from bench.grid.presets import PRESETS
    from bench.store import rows
    from bench.store.schema import check_measure_row

    out = tmp_path / "out"
    assert seed_rows(smoke_study[0], out, lambda r: True) > 0
    ckpt = str(next(smoke_zoo.glob("*pgd_at*.pt")))
    opened, stores, hashed = [], [], []
    real_open, real_store, real_sha = engine.open_run, rows.RowStore.__init__, zoo.checkpoint.sha256_file
    monkeypatch.setattr(engine, "open_run", lambda *a: opened.append(a) or real_open(*a))
    monkeypatch.setattr(rows.RowStore, "__init__", lambda self, *a, **k: stores.append(a) or real_store(self, *a, **k))
    for module in (zoo.checkpoint, loading):
        monkeypatch.setattr(module, "sha256_file", lambda path, *a: hashed.append(path) or real_sha(path, *a))
    p = PRESETS["smoke"]
    outcomes = bench_cell(p, ckpt, p.data, "cpu", str(out), False)
    assert [o.status for o in outcomes] == ["cached"] * len(outcomes)
    assert {o.attack for o in outcomes} == {"clean", "pgd", "autoattack", "corruptions", "measures"}
    assert len(opened) == 1 and sorted(os.path.basename(a[0]) for a in stores) == ["measures.jsonl", "results.jsonl"]
    assert hashed == [ckpt]
    # each on its own points: AutoAttack on aa_n, the measures on measure_n, the others on eval_n, in the plan
    # and in the rows found
    (run_settings, specs), = opened
    each_n = {("clean", p.eval_n), ("pgd", p.eval_n), ("autoattack", p.aa_n), ("corruptions", p.eval_n),
              ("measures", p.measure_n)}
    assert {(s["attack"], s["n"]) for s in specs} == each_n
    found = {r["key"]: r for name, check in (("results.jsonl", None), ("measures.jsonl", check_measure_row))
             for r in rows.read_rows(str(out / name), check)}
    assert {(found[o.key]["attack"], found[o.key]["n"]) for o in outcomes} == each_n


def test_failed_evaluations_fail_their_cells_are_named_everywhere_and_a_rerun_completes_them(smoke_zoo, smoke_study,
                                                                                            tmp_path, monkeypatch,
                                                                                            capsys):
    """Every AutoAttack evaluation fails the way a CUDA out-of-memory does: no cell is done, the study exits
    non-zero, --status, REPORT.md, leaderboard.md and the site name what is missing; a rerun without the fault
    completes every evaluation."""
    import json

    import bench.attacks.autoattack as aa
    from bench import study

    out = tmp_path / "out"
    argv = ["--preset", "smoke", "--out", str(out), "--zoo-dir", str(smoke_zoo), "--no-progress"]
    batches = []

    def out_of_memory(model, x, y, **kw):
        batches.append(kw["batch_size"])
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(aa, "run_autoattack", out_of_memory)
    assert study.main(argv) == 1
    cells = [json.loads(line) for line in open(out / "cells.jsonl")]
    assert [c["status"] for c in cells if c["kind"] == "cell"] == ["failed"] * 3  # none is done
    for c in cells:
        if c["kind"] == "cell":
            assert [m["evaluation"] for m in c["missing"]] == ["autoattack Linf 8/255"]
            assert "out of memory" in c["missing"][0]["reason"]
    assert batches == [250, 125] * 3  # each retried once at half the batch before it failed
    assert "error: 3 cells failed" in capsys.readouterr().err
    assert study.main([*argv, "--status"]) == 0
    status = capsys.readouterr().out
    assert status.startswith("0 done, 0 running, 0 waiting, 3 failed of 3 cells")
    assert status.count("failed   autoattack Linf 8/255: CUDA out of memory") == 3  # each cell, what it misses
    report, board = (out / "REPORT.md").read_text(), (out / "leaderboard.md").read_text()
    for text in (report, board, (out / "site" / "index.html").read_text()):
        assert "Missing evaluations (3)" in text and text.count("CUDA out of memory") >= 3
    assert len(re.findall(r"\|\s*failed\s*\|", board)) >= 3  # in the AA column, where the numbers would be

    monkeypatch.undo()
    # the PGD-AT model's AutoAttack row (tens of seconds on CPU) is found in the session's smoke study, the same
    # checkpoint and settings; the standard and SAM models' rows are computed by this rerun
    assert seed_rows(smoke_study[0], out, lambda r: r["attack"] == "autoattack" and "pgd_at" in r["model"]) == 1
    assert study.main(argv) == 0
    cells = [json.loads(line) for line in open(out / "cells.jsonl")]
    assert sum(c["status"] == "done" for c in cells if c["kind"] == "cell") == 3
    rows = [json.loads(line) for line in open(out / "results.jsonl")]
    assert sum(r["attack"] == "autoattack" and r["status"] == "ok" for r in rows) == 3
    assert "Missing evaluations" not in (out / "REPORT.md").read_text()
    assert "Missing evaluations" not in (out / "leaderboard.md").read_text()
