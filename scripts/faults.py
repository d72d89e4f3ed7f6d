"""Kill and fault figures: SIGKILL bench.run and zoo.train at random moments, fuzz the loader, run benches side by side.

  python scripts/faults.py                         20 kills each, 1000 fuzzed files; writes results/faults.md
  python scripts/faults.py --kills 50 --fuzz-n 5000 --seed 1

What it measures (CPU, tiny models, seconds to minutes; not a CI test: it prints figures):
  bench kills   `python -m bench.run` (clean, PGD, AutoAttack standard, all 15 corruptions generated afresh) is
                killed with SIGKILL at random moments and rerun until it finishes; its rows are compared with an
                uninterrupted run's: rows lost, duplicated, changed.
  train kills   `python -m zoo.train --resume` (PGD-AT) is killed the same way and rerun until it finishes; its final
                weights are compared bitwise with an uninterrupted run's.
  fuzz          scripts/fuzz_checkpoints.py at --fuzz-n files: crashes (anything but a one-line error or a correct load).
  concurrent    two bench.run processes started together on one --out: rows duplicated, lost or changed against
                a single process's.
  hostile       each hostile input (checkpoint metadata, special files, a zip bomb, untrusted rows, names, paths,
                --out) run through bench.run or bench.export with a good model after it: what the bench does, its
                seconds and peak memory. `--only-hostile` runs this part alone and rewrites that section.
  queue soak    8 study workers of one run on one results folder, a worker SIGKILLed every few seconds (every 10th
                kill takes all of them) and started again, as SLURM requeues, until all are done: evaluations
                duplicated, lost or changed against one process, torn rows, REPORT.md equal. `--only-soak` runs
                this part alone and rewrites its section.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.store.rows import scan_rows  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
ESSENCE = ("clean_correct", "robust_correct", "robust_acc", "stage_acc", "corruption_severity_acc")


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(cmd: list[str]) -> None:
    p = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {p.stderr[-2000:]}")


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    _finish(cmd)
    return time.perf_counter() - t0


def kill_chains(make_cmd, kills: int, horizon: float, rng: random.Random, check) -> dict:
    """Run chains of (start, SIGKILL at a random moment in (0.5 s, horizon)) until `kills` kills have landed; a
    chain ends when a run finishes before its kill. check(chain_dir) -> problems dict, summed over chains."""
    landed, chains, totals, moments = 0, 0, {}, []
    while landed < kills:
        chain = tempfile.mkdtemp(prefix="chain", dir=make_cmd.workdir)
        chains += 1
        while True:
            cmd = make_cmd(chain)
            when = rng.uniform(0.5, horizon) if landed < kills else None
            p = _start(cmd)
            try:
                p.wait(timeout=when)
                if p.returncode != 0:
                    raise RuntimeError(f"run failed: {p.stderr.read()[-2000:]}")
                break  # finished before its kill: the chain is complete
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait()
                landed += 1
                moments.append(when)
        for k, v in check(chain).items():
            totals[k] = totals.get(k, 0) + v
        shutil.rmtree(chain, ignore_errors=True)
    return {"kills": landed, "chains": chains, "moments": moments, **totals}


def _rows_by_key(path: str) -> tuple[dict, int, int]:
    rows, torn = scan_rows(path)
    ok = [r for r in rows if r.get("status") == "ok"]
    by = {}
    for r in ok:
        by.setdefault(r["key"], []).append(r)
    return by, sum(len(v) - 1 for v in by.values()), torn


def compare_rows(ref_path: str, path: str) -> dict:
    ref, _, _ = _rows_by_key(ref_path)
    got, dup, torn = _rows_by_key(path)
    lost = sum(1 for k in ref if k not in got)
    changed = sum(1 for k, rs in got.items() if k in ref
                  and any({f: r.get(f) for f in ESSENCE} != {f: ref[k][0].get(f) for f in ESSENCE} for r in rs))
    extra = sum(1 for k in got if k not in ref)
    return {"rows": len(ref), "lost": lost, "duplicated": dup, "changed": changed, "unexpected": extra,
            "torn_lines": torn}


def bench_cmd(models: list[str], out: str, cache: str) -> list[str]:
    return [sys.executable, "-m", "bench.run", "--models", *models, "--attacks", "clean,pgd,autoattack,corruptions",
            "--eps", "8/255", "--data", "synthetic", "--n-examples", "16", "--device", "cpu", "--out", out,
            "--cache-dir", cache, "--no-progress", "--no-leaderboard"]


_MEASURED = """
import resource, sys, time
t0 = time.perf_counter()
code = 0
try:
    from {module} import main
    code = main({argv!r})
except SystemExit as e:
    code = e.code
print("MEASURED", code, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _measured(module: str, argv: list[str]) -> dict:
    """Run `module.main(argv)` in a child; its exit code, seconds, peak RSS (MB) and what it printed."""
    p = subprocess.run([sys.executable, "-c", _MEASURED.format(module=module, argv=argv)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=600)
    code, seconds, rss = p.stderr.rsplit("MEASURED", 1)[1].split()
    return {"code": int(code) if code.lstrip("-").isdigit() else code, "seconds": float(seconds),
            "rss_mb": int(rss) / 1024, "stdout": p.stdout, "stderr": p.stderr.rsplit("MEASURED", 1)[0]}


def _cell(text: str, limit: int = 150) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def hostile_inputs(work: str) -> list[str]:
    """The hostile-input table: each input of the untrusted-input issue, what the bench does with it now."""
    from bench.store.rows import append_row, read_rows, row_key
    from scripts.fuzz_checkpoints import HOSTILE, HTML, MD, zip_bomb
    from zoo.checkpoint import sha256_file

    folder = os.path.join(work, "hostile")
    os.makedirs(folder)
    _finish([sys.executable, "-m", "zoo.train", "--arch", "sharp_tiny", "--data", "synthetic", "--epochs", "1",
             "--n-train", "64", "--device", "cpu", "--out", os.path.join(folder, "zoo"), "--no-progress"])
    good = os.path.join(folder, "zoo", "sharp_tiny-standard-s0.pt")
    good_name = os.path.basename(good).removesuffix(".pt")
    cases = dict(HOSTILE)
    cases["deflated data.pkl padded with 1 GiB of zeros"] = lambda g, p: zip_bomb(g, p, 1 << 30)
    lines = ["## Hostile inputs", "",
             "Each input below, then a good checkpoint, through `python -m bench.run --models BAD GOOD --attacks clean` "
             "(bench.export where named), in a child process: what happened, the run's seconds and peak memory "
             "(the whole process: Python, torch and the good model's evaluation included; the good model alone is "
             "the first line).", "",
             "| input | what the bench does | good model's row | s | peak MB |", "|---|---|---|---|---|"]

    def bench(models, out, *extra):
        return _measured("bench.run", ["--models", *models, "--attacks", "clean", "--data", "synthetic",
                                       "--n-examples", "16", "--device", "cpu", "--out", out, "--no-progress", *extra])

    base = bench([good], os.path.join(folder, "base"))
    lines.append(f"| (none: the good model alone) | exit {base['code']} | yes | {base['seconds']:.1f} | "
                 f"{base['rss_mb']:.0f} |")
    for i, (what, make) in enumerate(cases.items()):
        bad = make(good, os.path.join(folder, f"bad{i}.pt"))
        out = os.path.join(folder, f"out{i}")
        r = bench([bad, good], out)
        rows = read_rows(os.path.join(out, "results.jsonl"))
        error = next((x["error"] for x in rows if x["status"] == "failed"), "no failed row: " + r["stderr"][-200:])
        ok = any(x["status"] == "ok" and x["model"] == good_name for x in rows)
        lines.append(f"| {_cell(what)} | refused: {_cell(error.replace(bad, 'BAD'))} | {'yes' if ok else 'NO'} | "
                     f"{r['seconds']:.1f} | {r['rss_mb']:.0f} |")

    # the worst three alone: the refusal's own time and memory, against a process that only imports the loader
    probe = ("import resource, sys, time\nfrom zoo.checkpoint import CheckpointError, load_checkpoint\n"
             "t0 = time.perf_counter()\nbase = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError:\n    pass\n"
             "print(time.perf_counter() - t0, base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    alone = []
    for what, make in (("symlink to /dev/zero", HOSTILE["symlink to /dev/zero"]),
                       ("FIFO named *.pt", HOSTILE["FIFO named *.pt"]),
                       ("deflated data.pkl padded with 1 GiB of zeros", cases["deflated data.pkl padded with 1 GiB of zeros"])):
        bad = make(good, os.path.join(folder, f"alone{len(alone)}.pt"))
        res = subprocess.run([sys.executable, "-c", probe, bad], cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=120)
        seconds, before, after = res.stdout.split()
        alone.append(f"| {what} ({os.path.getsize(bad) if os.path.isfile(bad) else 0} bytes on disk) | "
                     f"{1000 * float(seconds):.1f} ms | {(int(after) - int(before)) / 1024:.1f} MB above the "
                     f"{int(before) / 1024:.0f} MB of Python and torch |")

    # rows other people wrote
    out = os.path.join(folder, "rows")
    os.makedirs(out)
    path = os.path.join(out, "results.jsonl")
    model_id = sha256_file(good)
    real = {"key": row_key(model_id, {"attack": "clean"}, "synthetic", 16), "status": "ok", "attack": "clean",
            "norm": None, "eps": 0.0, "eps_str": "0", "model": good_name, "model_id": model_id, "data": "synthetic",
            "n": 16, "time": "2026-01-01T00:00:00", "attack_config": {"attack": "clean"}, "clean_correct": 3,
            "clean_acc": 3 / 16, "robust_correct": 3, "robust_acc": 3 / 16}
    for what, row in (("`key` a list", {**real, "key": ["a"]}), ("an ok row without `attack`", {
            k: v for k, v in real.items() if k != "attack"}), ("`eps` a string", {**real, "eps": "8/255"}),
            ("`time` an int", {**real, "time": 5}), ("`robust_correct` 6240 of n = 16", {
                **real, "robust_correct": 6240, "robust_acc": 390.0}),
            ("`robust_correct` negative", {**real, "robust_correct": -5, "robust_acc": -5 / 16})):
        append_row(path, row)
        r = bench([good], out)
        rows = read_rows(path)
        fresh = [x for x in rows if x["key"] == real["key"]]
        warned = "row skipped, not trusted" in r["stderr"]
        lines.append(f"| results.jsonl row: {what} | {'skipped with a warning naming its line' if warned else 'NOT warned'}"
                     f"; the evaluation is {'recomputed' if fresh else 'NOT recomputed'} "
                     f"(exit {r['code']}) | {'yes' if fresh else 'NO'} | {r['seconds']:.1f} | {r['rss_mb']:.0f} |")
        os.remove(path)

    # names, paths and --out
    import shutil

    named = os.path.join(folder, f"{HTML} {MD}.pt".replace("/", "_"))
    shutil.copy(good, named)
    r = bench([named, good], os.path.join(folder, "names"))
    board = open(os.path.join(folder, "names", "leaderboard.md")).read()
    lines.append(f"| a file name holding `<img onerror=...>`, `\\|`, a newline and `# heading` | loaded and "
                 f"benchmarked; leaderboard.md shows it as text: raw `<img` {'absent' if '<img' not in board else 'PRESENT'}, "
                 f"`# heading` line {'absent' if chr(10) + '# heading' not in board else 'PRESENT'} | yes | "
                 f"{r['seconds']:.1f} | {r['rss_mb']:.0f} |")
    for what, out in (("`--out` a file", good), ("`--out` under a file", os.path.join(good, "sub"))):
        r = bench([good], out)
        lines.append(f"| {what} | exit {r['code']}: {_cell(r['stderr'].strip().splitlines()[-1])} | n/a (nothing "
                     f"run) | {r['seconds']:.1f} | {r['rss_mb']:.0f} |")
    odd = os.path.join(folder, "a;touch x")
    os.makedirs(odd)
    shutil.copy(good, os.path.join(odd, "m.pt"))
    bench([os.path.join(odd, "m.pt")], os.path.join(folder, "odd"))
    for what, argv in (("`bench.export` of a path holding `;touch x`",
                        [os.path.join(odd, "m.pt"), "--name", "Smith2026Sharp", "--out", os.path.join(folder, "e"),
                         "--results", os.path.join(folder, "odd", "results.jsonl")]),
                       ("`bench.export --name __init__`", [good, "--name", "__init__", "--draft", "--out",
                                                           os.path.join(folder, "e2"), "--results", path])):
        r = _measured("bench.export", argv)
        first = next((ln for ln in r["stderr"].splitlines() if "python -m bench.run" in ln or "cannot name" in ln),
                     r["stderr"].strip().splitlines()[-1])
        lines.append(f"| {what} | exit {r['code']}: {_cell(first.replace(folder, 'DIR'), 220)} | n/a | "
                     f"{r['seconds']:.1f} | {r['rss_mb']:.0f} |")
    lines += ["", "The refusal alone (`zoo.checkpoint.load_checkpoint` in a fresh process):", "",
              "| input | time to refuse | peak memory added |", "|---|---|---|", *alone, "",
              "Payloads in each format (Python through a docstring, markdown, HTML, CSV, shell) through the "
              "leaderboard, the study report and the export are checked by `tests/test_hostile.py`.", ""]
    return lines


def _study_essence(out: str) -> tuple[dict, int, int]:
    """Evaluations by what they measured, (model, attack, norm, eps, n) -> values; duplicates; torn lines."""
    rows, torn = scan_rows(os.path.join(out, "results.jsonl"))
    by, dup = {}, 0
    for r in rows:
        if r.get("status") != "ok":
            continue
        what = (r["model"], r["attack"], r.get("norm"), r.get("eps_str"), r["n"])
        dup += what in by
        by[what] = tuple(r.get(f) for f in ESSENCE)
    return by, dup, torn


def _report_body(out: str) -> list[str]:
    with open(os.path.join(out, "REPORT.md"), encoding="utf-8") as f:
        return [ln for ln in f.read().splitlines() if not ln.startswith("Produced by")]


def queue_soak(work: str, workers: int, seeds: int, every: tuple[float, float], all_every: int,
               rng: random.Random) -> tuple[list[str], int]:
    """`workers` study workers of one run share one results folder; a random one is SIGKILLed every few seconds
    (every `all_every`-th kill takes all of them, as a lost node does) and each killed worker is started again,
    as SLURM requeues a task, until every worker has exited 0 (the grid done and its report written). Compared
    with one process on the same grid: every evaluation once, no torn row, the same REPORT.md."""
    import uuid

    grid = ["-m", "bench.study", "--preset", "smoke", "--arch", "sharp_tiny", "--epochs", "1", "--seeds",
            ",".join(str(s) for s in range(seeds)), "--no-progress"]

    def where(name):
        return ["--out", os.path.join(work, name, "out"), "--zoo-dir", os.path.join(work, name, "zoo")]

    t0 = time.perf_counter()
    _finish([sys.executable, *grid, *where("one")])
    t_one = time.perf_counter() - t0
    run = f"soak-{uuid.uuid4().hex[:12]}"
    logs = os.path.join(work, "soak", "logs")
    os.makedirs(logs, exist_ok=True)

    def start(i):
        env = dict(ENV, SHARPBENCH_RUN_ID=run, SHARPBENCH_WORKER=f"soak {i}/{workers}")
        with open(os.path.join(logs, f"worker-{i}.log"), "a") as log:
            return subprocess.Popen([sys.executable, *grid, *where("soak"), "--worker"], cwd=ROOT, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)

    procs = {i: start(i) for i in range(workers)}
    kills = node_losses = restarts = 0
    t0 = time.perf_counter()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(rng.uniform(*every))
        live = [i for i, p in procs.items() if p.poll() is None]
        if live:
            victims = live if (kills + 1) % all_every == 0 else [rng.choice(live)]
            node_losses += len(victims) > 1
            for i in victims:
                procs[i].send_signal(signal.SIGKILL)
                procs[i].wait()
            kills += 1
        for i, p in procs.items():  # killed workers come back; those that exited by themselves stay as they are
            if p.poll() == -signal.SIGKILL:
                procs[i] = start(i)
                restarts += 1
    t_soak = time.perf_counter() - t0
    exits = [p.returncode for p in procs.values()]
    ref, ref_dup, _ = _study_essence(os.path.join(work, "one", "out"))
    got, dup, torn = _study_essence(os.path.join(work, "soak", "out"))
    from bench.store.schema import check_cell_row

    cells, cells_torn = scan_rows(os.path.join(work, "soak", "out", "cells.jsonl"), check=check_cell_row)
    done = [r for r in cells if r.get("kind") == "cell" and r.get("status") == "done"]
    failed = [r for r in cells if r.get("kind") == "cell" and r.get("status") == "failed"]
    cell_dup = len(done) - len({r["cell"] for r in done})
    n_cells = 3 * seeds
    lost = sum(1 for k in ref if k not in got)
    changed = sum(1 for k in ref if k in got and got[k] != ref[k])
    same_report = _report_body(os.path.join(work, "soak", "out")) == _report_body(os.path.join(work, "one", "out"))
    lines = ["## Queue soak", "",
             f"`python scripts/faults.py --only-soak` on {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}: the "
             f"smoke grid with sharp_tiny, 1 epoch and seeds 0-{seeds - 1} ({n_cells} cells; each trains a checkpoint "
             "and runs its 6 evaluations and its measures), worked by "
             f"{workers} `python -m bench.study ... --worker` processes of one run on one results folder, one thread "
             f"each. Every {every[0]:g}-{every[1]:g} s a random worker is SIGKILLed (every {all_every}th kill takes "
             "all of them at once, as a lost node), and each killed worker is started again, as SLURM requeues a "
             "task, until every worker has exited 0. Then the folder is compared with one process's on the same "
             "grid, evaluation by evaluation (model, attack, norm, eps, n: clean and robust counts, AutoAttack "
             "stage accuracies, corruption accuracies), and REPORT.md line by line (all but its \"Produced by\" "
             "line, which names the command and summed times).", "",
             "| workers | kills (all at once) | restarts | cells done | cells failed | evaluations | duplicated | "
             "lost | changed | torn rows | REPORT.md equal | wall s (one process s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             f"| {workers} | {kills} ({node_losses}) | {restarts} | {len(done)} of {n_cells} ({cell_dup} twice) | "
             f"{len(failed)} | {len(got)} of {len(ref)} | {dup} | {lost} | {changed} | {torn + cells_torn} | "
             f"{'yes' if same_report else 'NO'} | {t_soak:.0f} ({t_one:.0f}) |", ""]
    bad = dup + lost + changed + torn + cells_torn + cell_dup + ref_dup + (not same_report) + (len(done) != n_cells)
    if any(exits):
        lines.insert(-1, f"Workers exited with {exits}; their logs were in {logs}.")
    return lines, bad + len(failed) + sum(1 for c in exits if c)


def replace_section(path: str, title: str, section: list[str]) -> str:
    """The file's text with its `title` section (up to the next `## ` heading) replaced by section, or section
    added at the end."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    head, found, rest = text.partition(title + "\n")
    tail = ""
    if found:
        after = rest.find("\n## ")
        tail = rest[after + 1:] if after >= 0 else ""
    else:
        head = text.rstrip() + "\n\n" if text else ""
    return head + "\n".join(section).rstrip() + "\n" + ("\n" + tail if tail else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="SIGKILLs each for bench.run and zoo.train")
    ap.add_argument("--fuzz-n", type=int, default=1000, help="fuzzed checkpoint files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join("results", "faults.md"))
    ap.add_argument("--only-hostile", action="store_true",
                    help="run the hostile-input table alone and rewrite that section of --out")
    ap.add_argument("--only-soak", action="store_true", help="run the queue soak alone and rewrite that section")
    ap.add_argument("--soak-workers", type=int, default=8, help="local study workers in the queue soak")
    ap.add_argument("--soak-seeds", type=int, default=12, help="seeds of the soak's grid (3 cells each)")
    ap.add_argument("--soak-every", default="4,12", help="seconds between kills in the soak: low,high")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="faults")

    def soak():
        low, high = (float(v) for v in a.soak_every.split(","))
        return queue_soak(os.path.join(work, "soak"), a.soak_workers, a.soak_seeds, (low, high), 10, rng)

    if a.only_hostile or a.only_soak:
        section, bad = (hostile_inputs(work), 0) if a.only_hostile else soak()
        text = replace_section(a.out, section[0], section)
        print("\n".join(section))
        with open(a.out, "w") as f:
            f.write(text)
        shutil.rmtree(work, ignore_errors=True)
        return 1 if bad else 0
    lines = []
    t_start = time.perf_counter()

    # the models under test: two tiny checkpoints, one adversarially trained so AutoAttack has robust points
    zoo = os.path.join(work, "zoo")
    for recipe in ("standard", "pgd_at"):
        _finish([sys.executable, "-m", "zoo.train", "--arch", "sharp_tiny", "--recipe", recipe, "--data", "synthetic",
                 "--epochs", "2", "--n-train", "256", "--steps", "3", "--device", "cpu", "--out", zoo,
                 "--no-progress"])
    models = sorted(os.path.join(zoo, f) for f in os.listdir(zoo) if f.endswith(".pt"))

    # bench: reference run, then kill chains
    ref_out = os.path.join(work, "bench-ref")
    t_bench = _timed(bench_cmd(models, ref_out, os.path.join(work, "cache-ref")))
    ref_rows = os.path.join(ref_out, "results.jsonl")

    def make_bench(chain):
        return bench_cmd(models, os.path.join(chain, "out"), os.path.join(chain, "cache"))
    make_bench.workdir = work
    bench = kill_chains(make_bench, a.kills, t_bench, rng,
                        lambda chain: compare_rows(ref_rows, os.path.join(chain, "out", "results.jsonl")))
    print(f"bench kills: {bench}", file=sys.stderr)

    # train: reference run, then kill chains with --resume
    def train_cmd(out):
        return [sys.executable, "-m", "zoo.train", "--arch", "sharp_tiny", "--recipe", "pgd_at", "--data", "digits",
                "--epochs", "8", "--steps", "3", "--device", "cpu", "--out", out, "--no-progress", "--resume"]

    ref_train = os.path.join(work, "train-ref")
    t_train = _timed(train_cmd(ref_train))
    import torch

    from zoo.checkpoint import load_checkpoint

    ref_ckpt = load_checkpoint(os.path.join(ref_train, os.listdir(ref_train)[0]))["model"]

    def check_train(chain):
        out = os.path.join(chain, "out")
        (name,) = [f for f in os.listdir(out) if f.endswith(".pt") and not f.startswith(".")]
        got = load_checkpoint(os.path.join(out, name))["model"]
        equal = set(got) == set(ref_ckpt) and all(torch.equal(got[k], ref_ckpt[k]) for k in got)
        return {"runs": 1, "weights_differ": 0 if equal else 1}

    def make_train(chain):
        return train_cmd(os.path.join(chain, "out"))
    make_train.workdir = work
    trained = kill_chains(make_train, a.kills, t_train, rng, check_train)
    print(f"train kills: {trained}", file=sys.stderr)

    # fuzz
    from scripts.fuzz_checkpoints import run_fuzz

    t0 = time.perf_counter()
    fuzz = run_fuzz(a.fuzz_n, a.seed)
    t_fuzz = time.perf_counter() - t0

    # two concurrent bench processes against a single one
    conc_out = os.path.join(work, "concurrent")
    cmd = bench_cmd(models, conc_out, os.path.join(work, "cache-conc"))
    procs = [_start(cmd) for _ in range(2)]
    codes = [p.wait() for p in procs]
    conc = compare_rows(ref_rows, os.path.join(conc_out, "results.jsonl"))

    lines += ["# Fault figures", "",
              f"`python scripts/faults.py --kills {a.kills} --fuzz-n {a.fuzz_n} --seed {a.seed}` on "
              f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}, {time.perf_counter() - t_start:.0f} s in all.",
              "",
              "| test | runs | result | lost | duplicated | changed |", "|---|---|---|---|---|---|",
              f"| bench.run killed (SIGKILL) at random moments in (0.5 s, {t_bench:.0f} s), rerun until done "
              f"| {bench['kills']} kills, {bench['chains']} chains | {bench['rows']} rows compared, "
              f"{bench['unexpected']} unexpected, {bench['torn_lines']} torn lines | {bench['lost']} | "
              f"{bench['duplicated']} | {bench['changed']} |",
              f"| zoo.train --resume killed at random moments in (0.5 s, {t_train:.0f} s) | {trained['kills']} kills, "
              f"{trained['chains']} chains | final weights bitwise equal to an uninterrupted run in "
              f"{trained['runs'] - trained['weights_differ']}/{trained['runs']} chains | | | {trained['weights_differ']} |",
              f"| fuzzed checkpoints through bench's loader | {a.fuzz_n} files | {len(fuzz['crashes'])} crashes, "
              f"pickled code executed: {'yes' if fuzz['code_ran'] else 'no'} ({t_fuzz:.0f} s) | | | |",
              f"| two bench.run processes on one --out | exit codes {codes} | {conc['rows']} rows expected, "
              f"{conc['unexpected']} unexpected | {conc['lost']} | {conc['duplicated']} | {conc['changed']} |", "",
              "Bench runs: two sharp_tiny checkpoints (standard, PGD-AT), 16 synthetic test images, clean, PGD Linf "
              "8/255, AutoAttack standard Linf 8/255 and all 15 corruptions x 5 severities regenerated into a fresh "
              "cache per chain, so kills land in loading, attacks, AutoAttack stages and corruption generation. "
              "Rows are compared by key on clean/robust counts, per-stage AutoAttack accuracies and per-set "
              "corruption accuracies. Train runs: sharp_tiny PGD-AT on digits, 8 epochs.", "",
              "Kill moments (s): bench " + ", ".join(f"{m:.1f}" for m in bench["moments"]) + "; train " +
              ", ".join(f"{m:.1f}" for m in trained["moments"]) + ".", "",
              "Fuzzed files by kind (error / loaded / crash):", ""]
    for kind in sorted({k for k, _ in fuzz["counts"]}):
        lines.append(f"- {kind}: " + " / ".join(str(fuzz["counts"][(kind, o)]) for o in ("error", "loaded", "crash")))
    for path, kind, detail in fuzz["crashes"][:20]:
        lines.append(f"- CRASH {kind}: {detail}")
    soak_lines, soak_bad = soak()
    lines += [""] + soak_lines + hostile_inputs(work)
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    shutil.rmtree(work, ignore_errors=True)
    bad = bench["lost"] + bench["duplicated"] + bench["changed"] + trained["weights_differ"] + len(fuzz["crashes"]) \
        + conc["lost"] + conc["duplicated"] + conc["changed"] + int(fuzz["code_ran"]) + sum(codes) + soak_bad
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
