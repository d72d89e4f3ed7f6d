"""Untrusted input stays data: hostile checkpoints, results folders and names, run through bench.run, the
leaderboard, the study report and the export. Nothing of a payload may run, render as structure, hang or flood
memory, and the good model listed after a bad one always gets its row."""
import os
import re
import resource
import shlex
import subprocess
import sys
import time

import pytest
import torch

from bench import export as bexport
from bench import run as bench_run
from bench.store.rows import append_row, read_rows, row_key
from conftest import ROOT

sys.path.insert(0, ROOT)
from scripts.fuzz_checkpoints import CSV, DOCSTRING_ESCAPE, HTML, MD, edited, zip_bomb  # noqa: E402


@pytest.fixture(scope="module")
def good(checkpoint):
    return checkpoint()


def _edited(good, path, **fields):
    return edited(good, str(path), **fields)


def _zip_bomb(good, path, pad_bytes):
    return zip_bomb(good, str(path), pad_bytes)


def _limited(gib=6):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
    return apply


def _bench(models, out, *extra, timeout=240):
    """bench.run in a child process under a memory limit and a timeout; returns (code, stdout + stderr, seconds)."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "bench.run", "--models", *models, "--attacks", "clean",
                          "--data", "synthetic", "--n-examples", "16", "--device", "cpu", "--out", str(out),
                          "--no-progress", *extra], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         preexec_fn=_limited())
    return res.returncode, res.stdout + res.stderr, time.perf_counter() - t0


def test_hostile_files_are_refused_in_one_line_each_and_the_good_model_still_runs(good, tmp_path):
    bad = {
        "docstring": _edited(good, tmp_path / "docstring.pt", recipe=DOCSTRING_ESCAPE),
        "devzero": str(tmp_path / "devzero.pt"),
        "fifo": str(tmp_path / "fifo.pt"),
        "bomb": _zip_bomb(good, tmp_path / "bomb.pt", 256 << 20),
        "dataset_str": _edited(good, tmp_path / "dataset_str.pt", dataset="cifar10"),
        "config_list": _edited(good, tmp_path / "config_list.pt", config=[1, 2]),
        "recipe_list": _edited(good, tmp_path / "recipe_list.pt", recipe=["standard"]),
        "spec_list": _edited(good, tmp_path / "spec_list.pt", dataset__spec=["cifar10"]),
        "nan_rho": _edited(good, tmp_path / "nan_rho.pt", config__rho=float("nan")),
        "zero_std": _edited(good, tmp_path / "zero_std.pt", normalization__std=[0.0, 0.2, 0.2]),
        "seed": _edited(good, tmp_path / "seed.pt", seed="0; rm -rf /"),
        "versions": _edited(good, tmp_path / "versions.pt", versions={"torch": HTML + "\n" * 3}),
        "history": _edited(good, tmp_path / "history.pt", history=[{"epoch": "<script>"}]),
        "metrics": _edited(good, tmp_path / "metrics.pt", metrics={"clean_test_acc": float("inf")}),
        "eps_html": _edited(good, tmp_path / "eps_html.pt", config__eps=HTML),
        "eps_pipe": _edited(good, tmp_path / "eps_pipe.pt", config__eps="8/255|x\ny"),
    }
    os.symlink("/dev/zero", bad["devzero"])
    os.mkfifo(bad["fifo"])
    out = tmp_path / "out"
    code, err, seconds = _bench([*bad.values(), good], out)  # a refusal that hung would hit _bench's timeout
    assert code == 1
    rows = read_rows(str(out / "results.jsonl"))
    failed = {r["model"]: r["error"] for r in rows if r["status"] == "failed"}
    assert set(failed) == set(bad.values())
    assert [r["model"] for r in rows if r["status"] == "ok"] == [os.path.basename(good).removesuffix(".pt")]
    for why, path in bad.items():
        assert "\n" not in failed[path] and len(failed[path]) < 400, why
    assert "FIFO" in failed[bad["fifo"]] and "character device" in failed[bad["devzero"]]
    assert "compressed" in failed[bad["bomb"]]
    for why, field in (("docstring", "recipe"), ("dataset_str", "dataset"), ("config_list", "config"),
                       ("recipe_list", "recipe"), ("spec_list", "dataset.spec"), ("nan_rho", "config.rho"),
                       ("zero_std", "normalization.std"), ("seed", "seed"), ("versions", "versions.torch"),
                       ("history", "history[0].epoch"), ("metrics", "metrics.clean_test_acc"),
                       ("eps_html", "config.eps"), ("eps_pipe", "config.eps")):
        assert field in failed[bad[why]], (why, failed[bad[why]])
    assert "Traceback" not in err and not os.path.exists(os.path.join(ROOT, "MARKER"))
    assert f"1 rows added, 0 already computed, {len(bad)} failed" in err
    # a rerun of the unchanged command adds nothing: each refusal is recorded once per file content
    n_lines = len(open(out / "results.jsonl").read().splitlines())
    code, err, _ = _bench([*bad.values(), good], out)
    assert code == 1 and len(open(out / "results.jsonl").read().splitlines()) == n_lines
    assert f"{len(bad)} skipped (failed before" in err


def test_refusals_of_devzero_fifo_and_zip_bomb_are_fast_and_small(good, tmp_path):
    """In a child process under a 4 GiB limit: the time of each refusal, and the peak memory after each (the
    process's peak so far, so each refusal stays under it) (the issue's worst cases). The peak is the child's own
    (VmHWM, which starts afresh at exec): getrusage's ru_maxrss would carry over the forking test process's."""
    fifo = tmp_path / "f.pt"
    os.mkfifo(fifo)
    link = tmp_path / "z.pt"
    os.symlink("/dev/zero", link)
    bomb = _zip_bomb(good, tmp_path / "bomb.pt", 1 << 30)
    assert os.path.getsize(bomb) < 5 << 20
    paths = [str(link), str(fifo), bomb]
    code = (
        "import re, sys, time; from zoo.checkpoint import load_checkpoint, CheckpointError\n"
        f"for path in {paths!r}:\n"
        "    t = time.perf_counter()\n"
        "    try:\n        load_checkpoint(path)\n    except CheckpointError as e:\n        print('refused', e)\n"
        "    print('seconds', time.perf_counter() - t)\n"
        "    print('maxrss_kb', re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         preexec_fn=_limited(gib=4))
    out = res.stdout
    assert len(re.findall(r"^refused ", out, re.M)) == 3, res.stderr[-500:]
    seconds = [float(v) for v in re.findall(r"seconds (\S+)", out)]
    rss_mb = [int(v) / 1024 for v in re.findall(r"maxrss_kb (\d+)", out)]
    assert len(seconds) == len(rss_mb) == 3
    # the seconds are printed for scripts/faults.py's kind of reading, not asserted: a loaded machine may take
    # longer; a refusal that read its input whole would hit the 60 s timeout or the 4 GiB limit
    for path, mb in zip(paths, rss_mb):
        assert mb < 1500, (path, mb)


def _row_for(good, tmp_path):
    from zoo.checkpoint import sha256_file

    key = row_key(sha256_file(good), {"attack": "clean"}, "synthetic", 16)
    return {"key": key, "status": "ok", "attack": "clean", "norm": None, "eps": 0.0, "eps_str": "0",
            "model": "good", "model_id": sha256_file(good), "data": "synthetic", "n": 16, "time": "2026-01-01T00:00:00",
            "attack_config": {"attack": "clean"}, "clean_correct": 3, "clean_acc": 3 / 16,
            "robust_correct": 6240, "robust_acc": 390.0}


def test_untrusted_rows_are_skipped_with_a_warning_and_recomputed(good, tmp_path):
    out = tmp_path / "out"
    path = str(out / "results.jsonl")
    os.makedirs(out)
    append_row(path, {"key": ["a"], "status": "ok"})
    append_row(path, {"key": "0" * 20, "status": "ok", "time": "t"})  # an ok row without attack
    append_row(path, {**_row_for(good, tmp_path), "eps": "8/255"})
    append_row(path, {**_row_for(good, tmp_path), "robust_correct": 3, "robust_acc": 3 / 16, "time": 5})
    append_row(path, _row_for(good, tmp_path))  # counts outside 0..n, under the real key of this evaluation
    append_row(path, {**_row_for(good, tmp_path), "robust_correct": -5, "robust_acc": -5 / 16})
    # within 0..n and agreeing with its accuracy, but robust above clean: no attack makes a wrong point right
    append_row(path, {**_row_for(good, tmp_path), "robust_correct": 4, "robust_acc": 4 / 16})
    with open(path, "a") as f:
        f.write("[1, 2]\n")
    code, err, _ = _bench([good], out)
    assert code == 0, err
    # five named, then a count of the rest
    assert len(re.findall(r"results\.jsonl:\d+: row skipped", err)) == 5 and "Traceback" not in err
    assert "2 more rows skipped" in err
    rows = read_rows(path)
    assert len(rows) == 1 and rows[0]["robust_correct"] <= rows[0]["clean_correct"] <= 16  # recomputed
    board = open(out / "leaderboard.md").read()
    assert "6240" not in board and "-31.25" not in board and "39000" not in board


def _table_rows(md_text):
    return [ln for ln in md_text.splitlines() if ln.startswith("|")]


def _cells(line):
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_hostile_file_names_stay_text_in_the_leaderboard_and_the_study_report(good, tmp_path):
    import shutil

    name = f"{HTML} {MD} {CSV}".replace("/", "_")
    hostile = tmp_path / f"{name}.pt"
    shutil.copy(good, hostile)
    out = tmp_path / "out"
    code, err, _ = _bench([str(hostile), good], out)
    assert code == 0, err
    board = open(out / "leaderboard.md").read()
    assert "<img" not in board and "\n# heading" not in board
    table = _table_rows(board)
    assert len({len(_cells(line)) for line in table}) == 1  # no row has more cells than the header
    from bench.report.outputs import results_of
    from bench.report.study_report import write_report

    rows = read_rows(str(out / "results.jsonl"))
    for r in rows:
        r["recipe"], r["hparams"] = "standard", HTML + " " + MD  # as if the metadata had got through
    report = write_report(rows, [], [good], str(tmp_path / "study"), preset="smoke",
                          preset_cfg={"seeds": [0], "eval_n": 16, "pgd_steps": 5, "aa_n": 8}, command=f"x {MD}",
                          device="cpu", seconds={"train": 1, "eval": 2}, results=results_of(rows))
    text = open(report).read()
    assert "<img" not in text and "\n# heading" not in text
    for table in re.split(r"\n\n", text):
        lines = _table_rows(table)
        if lines:
            assert len({len(_cells(line)) for line in lines}) == 1


def test_generated_python_gets_values_only_through_repr(good, tmp_path):
    from bench.submit import source

    ck = torch.load(good, weights_only=True)
    ck["recipe"] = DOCSTRING_ESCAPE.replace("MARKER", str(tmp_path / "MARKER"))  # as if it had passed the loader
    text = source.architecture_module(ck, "Smith2026Sharp")
    path = tmp_path / "arch.py"
    path.write_text(text)
    code = f"import runpy; g = runpy.run_path({str(path)!r}); print(repr(g['RECIPE']))"
    res = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-800:]
    assert not (tmp_path / "MARKER").exists() and eval(res.stdout.strip()) == ck["recipe"]


def test_export_quotes_paths_in_commands_and_escapes_answers(good, tmp_path):
    import shutil

    folder = tmp_path / "a;touch x"
    folder.mkdir()
    ckpt = str(folder / "m.pt")
    shutil.copy(good, ckpt)
    results = tmp_path / "results.jsonl"
    sys.path.insert(0, os.path.dirname(__file__))
    from test_export import PAPER, _write_row

    _write_row(results, ckpt, data="synthetic", n=16)
    with pytest.raises(bexport.ExportRefused) as refused:
        bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results), **PAPER)
    commands = [c for p in refused.value.problems for c in re.findall(r"`(python -m bench\.run [^`]*)`", p)]
    assert commands
    for cmd in commands:  # pasted into a shell, the path is one word and nothing else runs
        words = shlex.split(cmd)
        assert words[words.index("--models") + 1] == ckpt
    paper = {**PAPER, "title": f"Sharp\n# heading {HTML}", "authors": MD}
    paths = bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           draft=True, additional_data=False, **paper)
    issue = open(paths["issue"]).read()
    assert "\n# heading" not in issue and "<img" not in issue and "a\\|b" in issue
    steps = open(paths["pull_request"]).read()
    assert str(folder) in steps and "'" + str(folder) in steps  # quoted in the command it shows
    for key in ("architecture", "entry"):  # every generated .py imports (the entry given its architecture)
        assert compile(open(paths[key]).read(), paths[key], "exec")


@pytest.mark.parametrize("name", ["__init__", "../x", "a b", "Smith2026/Sharp"])
def test_export_refuses_names_that_cannot_name_files(good, tmp_path, name):
    with pytest.raises(bexport.ExportRefused, match="cannot name"):
        bexport.export(good, name=name, out=str(tmp_path / "e"), results=str(tmp_path / "r.jsonl"), draft=True)
    assert not (tmp_path / "e").exists()


def test_unwritable_out_is_refused_before_any_work(good, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        code = bench_run.main(["--models", good, "--attacks", "clean", "--data", "synthetic", "--n-examples", "8",
                               "--device", "cpu", "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "--out" in err and len(err.strip().splitlines()) == 1


def test_a_failed_leaderboard_write_still_prints_the_summary(good, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "leaderboard.md").mkdir(parents=True)  # the leaderboard cannot be written over a folder
    code = bench_run.main(["--models", good, "--attacks", "clean", "--data", "synthetic", "--n-examples", "8",
                           "--device", "cpu", "--out", str(out), "--no-progress"])
    io = capsys.readouterr()
    assert code == 1 and "leaderboard could not be written" in io.err
    assert "1 rows added, 0 already computed, 1 failed" in io.out
    assert len(read_rows(str(out / "results.jsonl"))) == 1


def test_failed_loads_are_recorded_once_per_content_and_retried_on_request(good, tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    args = ["--models", str(broken), good, "--attacks", "clean", "--data", "synthetic", "--n-examples", "8",
            "--device", "cpu", "--out", str(out), "--no-progress"]

    def failed_rows():
        return [r for r in read_rows(str(out / "results.jsonl")) if r["status"] == "failed"]

    assert bench_run.main(args) == 1 and len(failed_rows()) == 1
    capsys.readouterr()
    lines = open(out / "results.jsonl").read()
    assert bench_run.main(args) == 1  # nothing new failed, but the evaluation is still missing
    io = capsys.readouterr()
    assert open(out / "results.jsonl").read() == lines  # an unchanged command adds nothing
    assert "1 skipped (failed before on the same file and settings" in io.out and str(broken) in io.err
    assert bench_run.main(args + ["--retry-failed"]) == 1 and len(failed_rows()) == 2
    broken.write_bytes(b"still not a checkpoint, but other bytes")  # changed content: tried again
    assert bench_run.main(args) == 1 and len(failed_rows()) == 3
