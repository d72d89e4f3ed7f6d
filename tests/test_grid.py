"""The study as a queue of cells: several workers (local processes, submitit's local executor, torchrun ranks)
share one results folder; every cell runs once; a killed worker's training is taken over and resumed."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import ROOT, copy_checkpoints, seed_rows

pytestmark = pytest.mark.slow  # the study's grid with several workers and launchers

# the smoke grid: three cells (standard, SAM, PGD-AT). The tests of the queue run it on a copy of the session's
# smoke checkpoints (the cells reuse them and run every evaluation); those that need training use SHORT
GRID = ["--preset", "smoke", "--no-progress"]
SHORT = GRID + ["--epochs", "2"]  # two epochs each
ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")  # one thread each: runs comparable bitwise


def copy_zoo(smoke_study, dest):
    return copy_checkpoints(smoke_study[1], dest)


def study(tmp, name, *extra, env=None, timeout=900, zoo=None):
    out, zoo = tmp / name / "out", zoo or tmp / name / "zoo"
    cmd = [sys.executable, "-m", "bench.study", *GRID, "--out", str(out), "--zoo-dir", str(zoo), *extra]
    res = subprocess.run(cmd, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, zoo, res


def cell_rows(out):
    return [json.loads(line) for line in open(out / "cells.jsonl")]


def essence(out):
    """Each row by what it measured (checkpoint files differ in their timestamps, so keys do too)."""
    from bench.store.rows import read_rows

    rows = [r for r in read_rows(str(out / "results.jsonl")) if r["status"] == "ok"]
    by = {}
    for r in rows:
        what = (r["model"], r["attack"], r["norm"], r["eps_str"], r["n"])
        assert what not in by, f"{what} evaluated twice"
        by[what] = (r.get("clean_correct"), r.get("robust_correct"), r.get("robust_acc"), json.dumps(r.get("points")))
    return by


def report_body(out):
    text = (out / "REPORT.md").read_text()
    return [ln for ln in text.splitlines() if not ln.startswith("Produced by")]


@pytest.fixture(scope="module")
def single(smoke_study):
    """One process that trained and evaluated the smoke checkpoints, on one thread (the session's smoke study):
    what every multi-worker run below, reusing those checkpoints, must equal."""
    return smoke_study


def test_three_local_workers_do_every_cell_once_and_match_one_process(single, smoke_study, tmp_path):
    out1, _, _ = single
    zoo = copy_zoo(smoke_study, tmp_path / "zoo")
    # the workers compute every evaluation but the PGD-AT model's AutoAttack (half a minute on one thread, and
    # the whole run's critical path), found in the one-process run: the SAM and standard models' AutoAttack rows
    # are computed in workers and must equal the one-process run's
    assert seed_rows(out1, tmp_path / "three" / "out",
                     lambda r: r["attack"] == "autoattack" and "pgd_at" in r["model"]) == 1
    out3, zoo3, res = study(tmp_path, "three", "--workers", "3", zoo=zoo)
    cells = cell_rows(out3)
    done = [r for r in cells if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3 and len({r["cell"] for r in done}) == 3  # every cell exactly once
    assert len({r["worker"] for r in done}) >= 2  # the cells were spread over the workers
    assert len([r for r in cells if r["kind"] == "report"]) == 1  # written once, by one worker
    assert len({r["run"] for r in cells}) == 1
    assert essence(out3) == essence(out1)  # the same rows, flags included
    assert report_body(out3) == report_body(out1)
    assert (out3 / "site" / "index.html").exists() and (out3 / "site" / "REPORT.html").exists()
    # a rerun does no cell again but writes the report again (in this process: nothing is left to run)
    from bench.study import main as study_main

    assert study_main([*GRID, "--out", str(out3), "--zoo-dir", str(zoo)]) == 0
    cells2 = cell_rows(out3)
    assert len([r for r in cells2 if r["kind"] == "cell"]) == 3
    assert len([r for r in cells2 if r["kind"] == "report"]) == 2


def seeded_autoattack(out1, out):
    """The one-process run's AutoAttack rows, found cached by the launcher tests' workers (the three-worker test
    above computes them in workers); every other evaluation the workers compute."""
    assert seed_rows(out1, out, lambda r: r["attack"] == "autoattack") == 3


def test_submitit_local_executor_runs_the_same_workers(single, smoke_study, tmp_path):
    pytest.importorskip("submitit")
    out1, _, _ = single
    seeded_autoattack(out1, tmp_path / "submitit" / "out")
    out, _, res = study(tmp_path, "submitit", "--launcher", "submitit-local", "--gpus", "2", "--wait",
                        zoo=copy_zoo(smoke_study, tmp_path / "zoo"))
    done = [r for r in cell_rows(out) if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3 and len({r["cell"] for r in done}) == 3
    assert all("array task" in r["worker"] for r in done)
    assert essence(out) == essence(out1) and report_body(out) == report_body(out1)
    assert "submitted 2 workers" in res.stderr


def test_torchrun_ranks_are_workers_with_no_flag(single, smoke_study, tmp_path):
    out1, _, _ = single
    out, zoo = tmp_path / "tr" / "out", copy_zoo(smoke_study, tmp_path / "tr" / "zoo")
    seeded_autoattack(out1, out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "bench.study",
           *GRID, "--out", str(out), "--zoo-dir", str(zoo)]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    done = [r for r in cell_rows(out) if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3 and {re.sub(r".*\((rank \d/2)\)", r"\1", r["worker"]) for r in done} <= {"rank 0/2", "rank 1/2"}
    assert len([r for r in cell_rows(out) if r["kind"] == "report"]) == 1
    assert essence(out) == essence(out1)


def test_a_killed_worker_is_taken_over_and_its_training_resumed(tmp_path):
    import dataclasses

    sys.path.insert(0, ROOT)
    from bench.grid.cells import resumed_epoch
    from bench.grid.presets import PRESETS
    from bench.grid.queue import Study

    out, zoo = tmp_path / "out", tmp_path / "zoo"
    grid = Study("smoke", dataclasses.replace(PRESETS["smoke"], epochs=4, arch="sharp_tiny"), "cpu", str(out),
                 str(zoo), False, False, "x").cells()
    costly = grid[0]  # PGD-AT, the most expensive cell: the first one claimed
    args = [sys.executable, "-m", "bench.study", "--preset", "smoke", "--epochs", "4", "--arch", "sharp_tiny",
            "--no-progress", "--out", str(out), "--zoo-dir", str(zoo), "--worker"]
    env = dict(ENV, SHARPBENCH_RUN_ID="kill-test")
    claim = out / ".claims" / f"cell-{costly.key}.claim"
    caught, logs = {}, {}

    def watch(p):
        """Read one worker's log as it is written: the line after epoch 3 of the claimed PGD-AT cell (its state
        after epoch 2 is saved, epoch 4 not begun) kills it at once; no poll that could miss the moment."""
        for line in p.stderr:
            logs[p.pid].append(line)
            if (not caught and line.startswith("epoch 3/4") and claim.exists()
                    and json.loads(claim.read_text())["pid"] == p.pid):
                caught[p.pid] = resumed_epoch(costly.path)
                p.send_signal(signal.SIGKILL)
                p.wait()  # reaped at once: a zombie's pid would still look alive to the survivor's claim check

    procs, watchers = {}, []
    for i in range(2):
        p = subprocess.Popen(args, cwd=ROOT, env=dict(env, SHARPBENCH_WORKER=f"w{i}"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        procs[p.pid], logs[p.pid] = p, []
        watchers.append(threading.Thread(target=watch, args=(p,), daemon=True))
        watchers[-1].start()
    for p in procs.values():
        p.wait(timeout=900)
    for w in watchers:
        w.join(timeout=60)
    assert caught, "no worker was caught training PGD-AT"
    ((pid, killed_at),) = caught.items()
    (survivor,) = [p for p in procs.values() if p.pid != pid]
    assert procs[pid].returncode == -signal.SIGKILL and survivor.returncode == 0, "".join(logs[survivor.pid])[-3000:]
    cells = cell_rows(out)
    done = [r for r in cells if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3 and len({r["cell"] for r in done}) == 3  # nothing lost, nothing doubled
    (row,) = [r for r in done if r["cell"] == costly.key]
    assert row["resumed_from"] >= killed_at >= 2  # resumed, not restarted
    assert len([r for r in cells if r["kind"] == "report"]) == 1
    essence(out)  # no evaluation twice


def test_status_of_a_half_done_grid(tmp_path):
    sys.path.insert(0, ROOT)
    from bench.grid.queue import Study, _row
    from bench.grid.presets import PRESETS
    from bench.grid.status import format_status, status
    from bench.store.leases import try_claim
    from bench.store.rows import append_row

    import dataclasses

    p = dataclasses.replace(PRESETS["smoke"], epochs=2)
    s = Study("smoke", p, "cpu", str(tmp_path / "out"), str(tmp_path / "zoo"), False, False, "x")
    grid = s.cells()
    append_row(s.cells_path, _row("r", kind="cell", cell=grid[2].key, name=grid[2].name, status="done",
                                  checkpoint="c", model_id="m", resumed_from=0, train_seconds=10.0, seconds=30.0))
    claim = try_claim(str(tmp_path / "out" / ".claims"), f"cell-{grid[0].key}")  # a live worker: this process
    try:
        st = status(s)
        assert (len(st["done"]), len(st["running"]), len(st["waiting"])) == (1, 1, 1)
        assert st["running"][0]["cell"] == grid[0].name and st["running"][0]["worker"].endswith(str(os.getpid()))
        text = format_status(st)
        assert text.startswith("1 done, 1 running, 1 waiting of 3 cells") and grid[1].name in text
    finally:
        claim.release()
    # the command prints the same
    res = subprocess.run([sys.executable, "-m", "bench.study", "--preset", "smoke", "--epochs", "2", "--out",
                          str(tmp_path / "out"), "--zoo-dir", str(tmp_path / "zoo"), "--status"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("1 done, 0 running, 2 waiting of 3 cells"), res.stdout + res.stderr


def slurm_answers() -> bool:
    """sbatch installed is not a cluster: the controller must answer too."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


SLURM_UP = slurm_answers()  # asked once: sinfo may take its timeout where a controller is configured but down
NO_SLURM = "no SLURM controller answers here (sinfo); a one-node slurm-wlm cluster is enough to run these"


def study_here(argv, path, monkeypatch, capsys) -> tuple[int, str]:
    """`python -m bench.study ARGV` in this process, with PATH (fake SLURM tools first): (exit code, stderr)."""
    from bench.study import main

    monkeypatch.setenv("PATH", path)
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().err


def test_a_refused_slurm_submission_is_one_line_naming_the_check(tmp_path, monkeypatch, capsys):
    # an sbatch that cannot reach its controller, as on a machine with SLURM's tools but no cluster
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "sinfo"):  # sinfo too: the host may have a cluster that answers
        fake = bin_dir / tool
        fake.write_text(f"#!/bin/sh\necho '{tool}: error: Batch job submission failed: Unable to contact slurm "
                        "controller (connect failure)' >&2\nexit 1\n")
        fake.chmod(0o755)
    code, err = study_here([*SHORT, "--out", str(tmp_path / "out"), "--zoo-dir", str(tmp_path / "zoo"), "--launcher",
                            "slurm", "--gpus", "2"], f"{bin_dir}{os.pathsep}{ENV['PATH']}", monkeypatch, capsys)
    assert code == 2
    assert "Traceback" not in err
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "Unable to contact slurm controller" in line[0] and "sinfo" in line[0]
    # and with no SLURM tools at all, it says which are missing
    code, err = study_here([*SHORT, "--out", str(tmp_path / "out2"), "--zoo-dir", str(tmp_path / "zoo2"), "--launcher",
                            "slurm", "--gpus", "2"], os.path.dirname(sys.executable), monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err and "needs SLURM's sbatch and srun" in err


def test_status_shows_slurms_state_and_pending_reason_for_each_array_task(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    (out / "slurm").mkdir(parents=True)
    (out / "slurm" / "jobs.txt").write_text("4242\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text('#!/bin/sh\ncase "$*" in *4242*) printf "4242_0|PENDING|PartitionConfig\\n'
                                    '4242_1|RUNNING|None\\n";; esac\n')
    (bin_dir / "sacct").write_text('#!/bin/sh\nprintf "4242_0|PENDING|PartitionConfig\\n4242_2|TIMEOUT|None\\n"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    from bench.study import main

    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{ENV['PATH']}")
    capsys.readouterr()
    assert main([*SHORT, "--out", str(out), "--zoo-dir", str(tmp_path / "zoo"), "--status"]) == 0
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("slurm")]
    assert lines == [["slurm", "array", "task", "4242_0", "PENDING", "(PartitionConfig)"],
                     ["slurm", "array", "task", "4242_1", "RUNNING"], ["slurm", "array", "task", "4242_2", "TIMEOUT"]]


def test_a_request_no_node_of_the_partition_can_meet_is_refused_with_the_numbers(tmp_path, monkeypatch, capsys):
    """sinfo says what the partition's nodes have; a job asking more would stay pending forever."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a one-node partition `debug` with 2 CPUs, 7 GB and no GPU, as Debian's slurm-wlm sets up; sbatch would fail
    (bin_dir / "sinfo").write_text('#!/bin/sh\ncase "$*" in *"-p debug"*) echo "2 7000 (null)";; *"-p gpu"*) '
                                   'echo "64 512000 gpu:a100:4(S:0-1)";; esac\n')
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).write_text("#!/bin/sh\necho 'sbatch: error: should not be reached' >&2\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = dict(ENV, PATH=f"{bin_dir}{os.pathsep}{ENV['PATH']}")

    def launch(*flags):
        code, err = study_here([*SHORT, "--out", str(tmp_path / "out"), "--zoo-dir", str(tmp_path / "zoo"),
                                "--launcher", "slurm", *flags], env["PATH"], monkeypatch, capsys)
        assert code == 2 and "Traceback" not in err, err[-2000:]
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        return line

    line = launch("--partition", "debug", "--gpus-per-worker", "0", "--cpus-per-worker", "8")
    assert "partition debug: nodes have 2 CPUs, --cpus-per-worker asks 8" in line
    # a request that fits goes on to sbatch (which, here, refuses: its own words come back)
    assert "should not be reached" in launch("--partition", "debug", "--gpus-per-worker", "0", "--cpus-per-worker", "1")
    # the other refusals, through the same functions in this process (sinfo from the same fake PATH)
    from bench.grid.launch import check_request, partition_limits

    os.environ["PATH"], saved = env["PATH"], os.environ["PATH"]
    try:
        debug, gpu, nowhere = (partition_limits(p) for p in ("debug", "gpu", "nowhere"))
    finally:
        os.environ["PATH"] = saved
    assert debug == {"cpus": 2, "memory_mb": 7000, "gpus": 0} and gpu == {"cpus": 64, "memory_mb": 512000, "gpus": 4}
    assert "partition debug has no GPUs" in check_request("debug", debug, 1, 1)
    assert "nodes have 4 GPUs, --gpus-per-worker asks 8" in check_request("gpu", gpu, 8, 8)
    assert "partition nowhere is not listed by sinfo" in check_request("nowhere", nowhere, 1, 0)
    assert check_request("gpu", gpu, 8, 4) == "" and check_request("debug", None, 99, 9) == ""  # fits; sinfo silent


def test_a_task_is_requeued_while_the_study_advances_and_not_after_three_slots_without(tmp_path):
    """What submitit calls at a task's time limit: requeue while anything new was finished in the study's folders
    during the slot; logs and claims changing is not progress. MAX_STALLS slots in a row without: no requeue."""
    from bench.grid.launch import MAX_STALLS, SubmititWorker, leave_on_signal, progress_mark, signal_delay_s
    from bench.study import main

    out, zoo = tmp_path / "out", tmp_path / "zoo"
    (out / "slurm" / "7_0").mkdir(parents=True)
    (out / ".claims").mkdir()
    zoo.mkdir()
    worker = SubmititWorker(main, ["-m", "bench.study"], "run", str(tmp_path), (str(out), str(zoo)))

    def slot(w, change=None):
        w.mark = progress_mark(w.watch)  # as __call__ takes it at the slot's start
        (out / "slurm" / "7_0" / "log.err").write_text(f"{time.time()}")
        (out / ".claims" / "cell-x.claim").write_text(f"{time.time()}")
        if change:
            change()
        return w.checkpoint(0)

    nxt = slot(worker, lambda: (zoo / ".x.resume.pt").write_bytes(b"epoch 1"))
    assert nxt is not None and nxt.function.stalls == 0  # an epoch finished: requeued
    for stalls in range(1, MAX_STALLS):
        nxt = slot(nxt.function)
        assert nxt is not None and nxt.function.stalls == stalls
    nxt = slot(nxt.function, lambda: (out / "results.jsonl").write_text("{}\n"))
    assert nxt is not None and nxt.function.stalls == 0  # a row: the count starts again
    for _ in range(MAX_STALLS - 1):
        nxt = slot(nxt.function)
    assert slot(nxt.function) is None  # nothing finished for MAX_STALLS slots: not requeued
    # whatever submitit's handler raises (a `scontrol requeue` killed by the requeue's own SIGTERM) leaves the
    # task: it must not reach the worker's code as a failure of the cell or of an evaluation
    def killed_scontrol(signum, frame):
        raise subprocess.CalledProcessError(-15, ["scontrol", "requeue", "7_0"])

    with pytest.raises(SystemExit):
        leave_on_signal(killed_scontrol)(signal.SIGUSR2, None)
    # SLURM signals up to 30 s early: a 1-minute task must not be signalled at its start
    assert signal_delay_s(1) + 30 < 60 and signal_delay_s(24 * 60) == 90


def submitit_logs(out) -> str:
    """The array tasks' logs: submitit's warnings in *_log.err, its INFO lines (requeues) in *_log.out."""
    return "".join(p.read_text(errors="replace") for p in sorted((out / "slurm").glob("*/*_log.*")))


def carried_on(out, name) -> bool:
    """A task carried the cell on from where a stopped one left it, not from scratch: its training after a
    finished epoch, its finished checkpoint reused (the tasks' logs say so; the cell's row records only the last
    task's part), or its AutoAttack after a finished stage."""
    from bench.store.rows import read_rows

    logs = submitit_logs(out)
    aa = [r for r in read_rows(str(out / "results.jsonl")) if r["attack"] == "autoattack" and r["model"] == name]
    return (f"train {name} (resuming after epoch" in logs or re.search(rf"^reuse .*{re.escape(name)}\.pt$", logs, re.M)
            is not None or any(r.get("resumed_stages") for r in aa))


@pytest.mark.skipif(not SLURM_UP, reason=NO_SLURM)
def test_slurm_tasks_at_their_time_limit_are_requeued_and_finish_the_grid_unattended(single, tmp_path):
    """--time 1: the PGD-AT cell (training, then half a minute of AutoAttack on one thread) outlasts a task's
    minute. SLURM signals the task before the limit, submitit checkpoints and requeues it, and the requeued task
    carries on from the last finished epoch or AutoAttack stage. The rows equal the one-process run's."""
    out1, _, _ = single
    out, zoo = tmp_path / "out", tmp_path / "zoo"
    res = subprocess.run([sys.executable, "-m", "bench.study", *GRID, "--out", str(out), "--zoo-dir", str(zoo),
                          "--launcher", "slurm", "--partition", "debug", "--gpus", "2", "--gpus-per-worker", "0",
                          "--cpus-per-worker", "1", "--time", "1", "--wait"], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    logs = submitit_logs(out)
    assert "this job is timed-out" in logs and "Requeued job" in logs  # the limit was reached, and requeued
    done = [r for r in cell_rows(out) if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3 and len({r["cell"] for r in done}) == 3 and all("array task" in r["worker"] for r in done)
    assert carried_on(out, next(r["name"] for r in done if "pgd_at" in r["name"]))
    assert essence(out) == essence(out1) and report_body(out) == report_body(out1)


@pytest.mark.skipif(not SLURM_UP, reason=NO_SLURM)
def test_a_cancelled_array_task_s_cell_is_taken_over_and_nothing_is_lost_or_doubled(single, tmp_path):
    """scancel of the task training the PGD-AT cell: the other task, done with its own cells, takes the cell over
    once the cancelled one is gone (SIGTERM, then SIGKILL after SLURM's KillWait) and resumes it."""
    from bench.grid.cells import cells, resumed_epoch
    from bench.grid.presets import PRESETS
    from bench.store.leases import owner_of

    out1, _, _ = single
    out, zoo = tmp_path / "out", tmp_path / "zoo"
    res = subprocess.run([sys.executable, "-m", "bench.study", *GRID, "--out", str(out), "--zoo-dir", str(zoo),
                          "--launcher", "slurm", "--partition", "debug", "--gpus", "2", "--gpus-per-worker", "0",
                          "--cpus-per-worker", "1", "--time", "30"], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    job = (out / "slurm" / "jobs.txt").read_text().split()[0]
    (cell,) = [c for c in cells(PRESETS["smoke"], "cpu", str(zoo)) if c.cfg.recipe == "pgd_at"]
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until the cell's training has two finished epochs
        owner = owner_of(str(out / ".claims"), f"cell-{cell.key}")
        if owner is not None and resumed_epoch(cell.path) >= 2:
            break
        time.sleep(1)
    else:
        pytest.fail("the PGD-AT cell did not start training: " + submitit_logs(out)[-2000:])
    env = open(f"/proc/{owner['pid']}/environ", "rb").read().split(b"\0")
    task = next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"SLURM_ARRAY_TASK_ID="))
    subprocess.run(["scancel", f"{job}_{task}"], check=True, timeout=60)
    while time.time() < deadline + 600:  # the other task finishes the grid
        queue = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, timeout=60).stdout
        if not queue.strip():
            break
        time.sleep(2)
    done = [r for r in cell_rows(out) if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3 and len({r["cell"] for r in done}) == 3  # nothing lost, nothing doubled
    taken = next(r for r in done if r["cell"] == cell.key)
    assert f"array task {task}" not in taken["worker"] and carried_on(out, taken["name"])
    assert essence(out) == essence(out1) and report_body(out) == report_body(out1)


@pytest.mark.skipif(not SLURM_UP, reason=NO_SLURM)
def test_the_readmes_sbatch_script_runs_as_is(tmp_path):
    script = os.path.join(ROOT, "scripts", "study.sbatch")
    work = tmp_path / "clone"
    os.makedirs(work / "results" / "study" / "slurm")
    res = subprocess.run(["sbatch", "--wait", "--array=0-1", "--gpus=0", "--cpus-per-task=1", "--time=30",
                          f"--output={work}/results/study/slurm/%A_%a.log", script, *SHORT, "--out", str(tmp_path / "out"),
                          "--zoo-dir", str(tmp_path / "zoo")], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=1200)
    assert res.returncode == 0, res.stdout + res.stderr
    done = [r for r in cell_rows(tmp_path / "out") if r["kind"] == "cell" and r["status"] == "done"]
    assert len(done) == 3


def test_projection_counts_every_training_and_evaluation_of_the_paper_grid():
    import dataclasses

    sys.path.insert(0, ROOT)
    from bench.grid.estimate import project
    from bench.grid.presets import PRESETS

    p = dataclasses.replace(PRESETS["paper"], seeds=(0, 1, 2))
    speeds = {"standard": 1000.0, "sam": 500.0, "pgd_at": 100.0, "pgd_s_per_image_step": 1e-5,
              "aa_s_per_image_standard": 2e-4, "aa_s_per_image_pgd_at": 4e-3, "forward_s_per_image": 1e-6}
    res = project(p, speeds)
    assert len(res["cells"]) == 3 * (1 + 6 + 8 + 1)  # per seed: standard, 6 SAM radii, 8 PGD-AT radii, SAM+AT
    # training, written out: seconds per image of standard 1e-3, SAM 2e-3, an attack step (1e-2 - 1e-3) / 10
    step = (1e-2 - 1e-3) / 10
    per_seed = 1e-3 + 6 * 2e-3 + sum(1e-3 + s * step for s in (5, 5, 10, 10, 10, 10, 10, 10)) + (2e-3 + 5 * step)
    assert res["train_h"] == pytest.approx(3 * 100 * 50_000 * per_seed / 3600)
    pgd, corr = 8 * 10_000 * 10 * 1e-5, 76 * 10_000 * 1e-6
    std_cell, at_cell = pgd + 5 * 10_000 * 2e-4 + corr, pgd + 5 * 10_000 * 4e-3 + corr
    assert res["eval_h"] == pytest.approx(3 * (7 * std_cell + 9 * at_cell) / 3600)
    faster = project(p, speeds, {"standard": 2.0, "pgd_at": 1.6})  # K per GPU speeds training only
    assert faster["eval_h"] == pytest.approx(res["eval_h"]) and faster["train_h"] < res["train_h"] / 1.6 + 1e-9
