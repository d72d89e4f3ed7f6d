"""The first hour of a new user: the README's walk runs verbatim on what the main command made, the data comes
from the checkpoints, a missing path stays a failure, tables say what was run, AutoAttack shows where it is."""
import io
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import torch

from bench import run as bench_run
from bench.grid.presets import PRESETS, next_command
from bench.store.rows import read_rows
from conftest import ROOT

pytestmark = pytest.mark.slow  # the first hour on the smoke study's checkpoints (the smoke study runs beside the tests)


def first_hour_commands() -> list[str]:
    """The README's first-hour block: the commands the code prints, in order."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text.split("<!-- first-hour:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def repo_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True).stdout


def printed_next(stdout: str) -> str:
    """The command a run printed after its `next:` line."""
    return stdout.split("next:", 1)[1].splitlines()[1].strip()


def test_the_readmes_first_hour_runs_verbatim_on_the_main_commands_checkpoints(smoke_study, tmp_path):
    _, zoo, res = smoke_study
    commands = first_hour_commands()
    assert commands[0] == "python -m bench.study --preset smoke"
    # the main command printed the bench command with its checkpoints' real path; the README's is the same
    # command for the default path
    assert printed_next(res.stdout) == next_command(str(zoo), PRESETS["smoke"])
    assert commands[1] == next_command("runs/study-smoke/zoo", PRESETS["smoke"])
    assert re.search(r"seconds per model: sharp_small-\S+ [\d.]+ s \(training [\d.]+ s\)", res.stdout)
    user = tmp_path / "user"  # a user's folder after the main command: runs/study-smoke/zoo/*.pt
    shutil.copytree(zoo, user / "runs" / "study-smoke" / "zoo")
    before = repo_status()
    outputs = []
    for command in commands[1:]:
        line = command.replace("python", shlex.quote(sys.executable), 1)  # the environment's python, verbatim
        done = subprocess.run(["bash", "-c", line], cwd=user, capture_output=True, text=True, timeout=900,
                              env=dict(os.environ, PYTHONWARNINGS="ignore"))
        assert done.returncode == 0, (command, done.stderr[-2000:])
        outputs.append(done)
    assert printed_next(outputs[0].stdout) == commands[2]  # bench.run printed the README's next command
    rows = read_rows(str(user / "runs" / "bench" / "results.jsonl"))
    assert len(rows) == 9 and all(r["status"] == "ok" and r["data"] == "digits" and r["n"] == 32 for r in rows)
    assert all(r["robust_correct"] <= r["clean_correct"] for r in rows)
    assert {r["attack"] for r in rows} == {"clean", "pgd", "autoattack"}
    assert "replayed:" in "".join(p.read_text() for p in (user / "runs" / "bench" / "site" / "models").glob("*.html"))
    assert "0 of 0" not in outputs[1].stdout
    assert repo_status() == before  # nothing lands in the repository


def test_missing_paths_are_named_before_the_data_and_stay_failures(checkpoint, smoke_study, tmp_path, capsys,
                                                                   monkeypatch):
    good = checkpoint()  # trained on synthetic data
    capsys.readouterr()
    out = tmp_path / "out"
    args = ["--models", good, str(tmp_path / "nope.pt"), "--attacks", "clean", "--n-examples", "8",
            "--device", "cpu", "--out", str(out), "--no-progress", "--no-leaderboard"]
    assert bench_run.main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: --models {tmp_path / 'nope.pt'}: no such file; check the path"
    rows = read_rows(str(out / "results.jsonl"))
    assert [(r["status"], r["data"]) for r in rows] == [("ok", "synthetic")]  # the data is the checkpoint's
    assert bench_run.main(args) == 1  # a rerun is still missing the model
    # nothing but missing paths: one line, before any data is loaded
    import bench.eval.engine

    monkeypatch.setattr(bench.eval.engine, "load_points", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    capsys.readouterr()
    assert bench_run.main(["--models", str(tmp_path / "*.pt"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no such file (a shell pattern that matched nothing?)" in err
    # checkpoints trained on different data: one line asking for --data
    digits = str(next(smoke_study[1].glob("*.pt")))
    assert bench_run.main(["--models", good, digits, "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "trained on different data" in err and "digits" in err and "synthetic" in err


def test_the_corruptions_note_is_read_off_the_rows_and_sits_under_its_column(smoke_study):
    text = (smoke_study[0] / "leaderboard.md").read_text()
    sections = text.split("\n## ")[1:]
    noted = 0
    for section in sections:
        table = next((b for b in section.split("\n\n") if b.startswith("|")), "")
        has_column = bool(re.search(r"^\|.*\|\s*Corruptions\s*\|", table, re.M))
        note = re.search(r"^Corruptions = (.*)$", section, re.M)
        assert bool(note) == has_column, section[:300]
        if note:
            names = ", ".join(PRESETS["smoke"].corruptions)
            assert f"3 corruptions ({names}) x severities 1-5" in note.group(1) and "digits" in note.group(1)
            noted += 1
    assert noted == 2 and len(sections) > noted  # the two boards with the column (Linf, L2 at n=64), not the AA one
    assert "15 CIFAR-10-C" not in text


class _FarFromBoundary(torch.nn.Module):
    """Class c for images of mean intensity near c/10: robust at Linf 8/255 (the boundary is 0.05 away), with
    gradients, so AutoAttack's stages run their whole budget on every point."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))[:, None]
        return -100 * (m - torch.arange(10, dtype=x.dtype)[None] / 10).abs()


def test_autoattack_shows_its_stage_the_robust_points_and_a_budget_on_one_bar(tmp_path):
    from tqdm import tqdm

    from bench.attacks.autoattack import run_autoattack, stage_calls, standard_attack

    y = torch.tensor([1, 3, 5, 7])
    x = (y.float() / 10)[:, None, None, None].expand(4, 3, 8, 8).contiguous()
    stream = io.StringIO()
    stages = ("apgd-ce", "apgd-t")
    with tqdm(total=0, file=stream, mininterval=0, ascii=True) as bar:
        _, info = run_autoattack(_FarFromBoundary(), x, y, norm="Linf", eps=8 / 255, stages=stages, batch_size=250,
                                 bar=bar)
        calls, total = bar.n, bar.total
    shown = stream.getvalue()
    assert info["stage_acc"] == {"clean": 1.0, "apgd-ce": 1.0, "apgd-t": 1.0}
    assert "apgd-ce (1/2), 4 of 4 robust" in shown and "apgd-t (2/2), 4 of 4 robust" in shown
    assert "\n" not in shown.strip("\n")  # one line, redrawn
    # every point survived, so the last stage spent its budget; the bar's total is that stage's own (it is reset
    # when a stage starts, so the ETA tqdm shows comes from the stage's own rate)
    aa = standard_attack(torch.nn.Identity(), norm="Linf", eps=8 / 255)
    budget = sum(stage_calls(aa, "apgd-t")) + 1  # and the forward that checks its images
    assert 0.97 * budget <= calls <= total and total - calls < 0.03 * budget, (calls, total, budget)


def test_a_long_cpu_evaluation_is_announced_with_its_estimate(capsys, monkeypatch):
    import bench.attacks.budget as cost
    from bench.attacks.registry import make_attack
    from bench.eval.engine import warn_if_long
    from bench.eval.loading import LoadedModel

    pgd = make_attack("pgd", norm="Linf", eps=8 / 255, pgd_steps=10, restarts=2).config
    aa = make_attack("autoattack", norm="Linf", eps=8 / 255).config
    # 600 points at batch 250: 3 batches; PGD costs steps gradient calls and one forward per restart
    assert cost.seconds_if_all_survive(pgd, 600, 250, 0.01, 0.001) == pytest.approx(3 * 2 * (10 * 0.01 + 0.001))
    assert cost.seconds_if_all_survive(aa, 600, 250, 0.01, 0.001) > 10 * cost.seconds_if_all_survive(
        pgd, 600, 250, 0.01, 0.001)
    assert cost.seconds_if_all_survive({"attack": "clean"}, 600, 250, 0.01, 0.001) is None
    lm = LoadedModel(torch.nn.Flatten(), {"name": "m"})  # its first "logit" is the largest: right on label 0
    x = torch.rand(600, 3, 8, 8)
    x[:, 0, 0, 0] = 2.0
    y = torch.zeros(600, dtype=torch.long)
    monkeypatch.setattr(cost, "call_seconds", lambda *a: (0.02, 0.005))  # a slow model: announced
    warn_if_long("m autoattack Linf 8/255", aa, lm, x, y, 250, {})
    err = capsys.readouterr().err
    assert re.fullmatch(r"estimate: m autoattack Linf 8/255 on 600 points: about \d+ (min \d\d s|h \d\d min) on this "
                        r"CPU if every point survives, less for those that fall \(measured 20 ms per gradient call "
                        r"and 5 ms per forward at batch 250\)\n", err), err
    monkeypatch.setattr(cost, "call_seconds", lambda *a: (1e-5, 1e-6))  # a fast one: nothing to say
    warn_if_long("m autoattack Linf 8/255", aa, lm, x, y, 250, {})
    assert capsys.readouterr().err == ""


def test_help_states_the_defaults_and_a_class_count_mismatch_names_both_numbers(smoke_study, tmp_path, capsys):
    import numpy as np

    from bench.study import build_parser

    with pytest.raises(SystemExit):
        bench_run.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: runs/bench)" in text and "(default: 10000" in text and "the data the checkpoints were trained on" in text
    assert "smoke: digits" in " ".join(build_parser().format_help().split())
    five = tmp_path / "five.npz"
    rng = np.random.default_rng(0)
    np.savez(five, x_train=rng.integers(0, 255, (10, 3, 32, 32), dtype=np.uint8), y_train=np.arange(10) % 5,
             x_test=rng.integers(0, 255, (10, 3, 32, 32), dtype=np.uint8), y_test=np.arange(10) % 5)
    digits = str(next(smoke_study[1].glob("*.pt")))
    assert bench_run.main(["--models", digits, "--data", f"npz:{five}", "--attacks", "clean", "--out",
                           str(tmp_path / "out"), "--no-progress", "--no-leaderboard"]) == 1
    assert "has 10 classes and the data has 5" in capsys.readouterr().err
