import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_study_runs_end_to_end_and_reuses_its_work(tmp_path):
    out, zoo = tmp_path / "study", tmp_path / "zoo"
    cmd = [sys.executable, "scripts/study.py", "--preset", "smoke", "--out", str(out), "--zoo-dir", str(zoo),
           "--no-progress"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
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
    # the smoke study's rows are no RobustBench claim: the export refuses each with its reasons
    import pytest

    from bench import export as bexport

    for ck in zoo.glob("*.pt"):
        for threat in ("Linf", "corruptions"):
            with pytest.raises(bexport.ExportRefused) as refused:
                bexport.export(str(ck), name="Smoke2026Study", out=str(tmp_path / "e"),
                               results=str(out / "results.jsonl"), threat=threat)
            text = " | ".join(refused.value.problems)
            assert "first 8 test points of digits" in text or "first 64 test points of digits" in text, text
            assert "--additional-data" in text  # digits are not CIFAR-10's training set
            if threat == "corruptions":
                assert "regenerated sets" in text and "missing: brightness" in text, text
            else:
                assert "AutoAttack standard" not in text  # the smoke's AutoAttack is standard at 8/255
    assert not (tmp_path / "e").exists()
    rows = (out / "results.jsonl").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "3 of 3 cells already done" in again.stderr and (out / "results.jsonl").read_text() == rows
