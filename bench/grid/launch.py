"""Starting the study's workers with what labs already run: local processes, SLURM through submitit, or one
worker per rank of `torchrun` / `srun`. Every worker runs bench.grid.queue.work on one shared results folder.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

# what torchrun and srun put in a rank's environment; a study worker is independent (no process group), so
# these are read for the GPU and the name, then removed before training or the bench could join a group
RANK_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
             "MASTER_ADDR", "MASTER_PORT")


def launched_rank() -> tuple[int, int, int] | None:
    """(rank, world, local rank) when this process is one of several ranks of torchrun or srun, else None."""
    env = os.environ
    if "LOCAL_RANK" in env and "WORLD_SIZE" in env:
        return int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    if env.get("SLURM_STEP_ID") is not None and int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", "0"))
    return None


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (all of them when it is unset)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no CUDA build, no driver: no GPU
        return []


def become_rank_worker(local_rank: int, rank: int, world: int) -> None:
    """Under torchrun/srun: take this rank's GPU (the local rank-th visible one, shared round-robin when ranks
    outnumber GPUs) and leave the process group's variables behind."""
    gpus = visible_gpus()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[local_rank % len(gpus)]
    os.environ.setdefault("SHARPBENCH_WORKER", f"rank {rank}/{world}")
    for var in RANK_VARS:
        os.environ.pop(var, None)
    pin_threads()


def local_workers(argv: list[str], n: int | None, per_gpu: int | None, out: str) -> int:
    """Start workers as local processes (K per visible GPU with per_gpu), wait for all; logs in OUT/logs/."""
    gpus = visible_gpus()
    per_gpu = per_gpu or 1
    if n is None:
        n = len(gpus) * per_gpu if gpus else 1
    run = f"local-{uuid.uuid4().hex[:12]}"
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    procs = []
    for i in range(n):
        env = dict(os.environ, SHARPBENCH_RUN_ID=run, SHARPBENCH_WORKER=f"local {i}/{n}")
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[(i // per_gpu) % len(gpus)]
        else:  # CPU workers share the cores instead of each taking all of them
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
        log = os.path.join(out, "logs", f"worker-{i}.log")
        with open(log, "a") as f:
            procs.append(subprocess.Popen([sys.executable, *argv, "--worker"], env=env, stdout=f,
                                          stderr=subprocess.STDOUT))
        print(f"worker {i}: pid {procs[-1].pid}" + (f", GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else "") +
              f", log {log}", file=sys.stderr)
    codes = [p.wait() for p in procs]
    for i, code in enumerate(codes):
        if code:
            print(f"worker {i} exited with {code}; see {out}/logs/worker-{i}.log", file=sys.stderr)
    return max(codes, default=0)


def pin_threads() -> None:
    """In a SLURM task, use the CPUs SLURM gave it (SLURM_CPUS_PER_TASK), not every core of the node: workers
    sharing a node would otherwise oversubscribe it, and on CPU the thread count changes float results."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit() and int(cpus) > 0:
        os.environ["OMP_NUM_THREADS"] = cpus
        import torch

        torch.set_num_threads(int(cpus))


# time slots in a row at whose end nothing new was in the study's folders (no epoch, AutoAttack stage, row or
# cell finished by any worker): the task is not requeued again, rather than forever
MAX_STALLS = 3


def progress_mark(folders: tuple[str, ...]) -> str:
    """A digest of what changes when the study advances: the rows and cells (results, cells, measures), the
    AutoAttack stage states and the checkpoints and resume states. Logs, claims and locks are left out: they
    change while nothing is finished."""
    import hashlib

    seen = []
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in ("slurm", "logs", ".claims"))
            for name in sorted(files):
                if name.endswith((".jsonl", ".pt")):
                    try:
                        st = os.stat(os.path.join(root, name))
                    except OSError:  # removed meanwhile (a finished stage state): the next look sees it
                        continue
                    seen.append(f"{os.path.join(root, name)} {st.st_size} {st.st_mtime_ns}")
    return hashlib.sha256("\n".join(seen).encode()).hexdigest()


def leave_on_signal(handler):
    """submitit's checkpoint-and-requeue handler, made to leave the task whatever it raises. It runs in the
    worker's main thread wherever the signal lands (in a training step, an evaluation), so an exception from it
    would be recorded as the cell's or an evaluation's failure: `scontrol requeue`, for one, is often killed by
    the SIGTERM the requeue itself sends to the job's processes, after the job was requeued."""

    def leave(signum, frame):
        try:
            handler(signum, frame)
        except Exception as e:  # noqa: BLE001 - SystemExit (after a requeue) passes as it is
            print(f"leaving the task after signal {signum} ({type(e).__name__}: {' '.join(str(e).split())[:300]})",
                  file=sys.stderr)
            raise SystemExit(-1) from None

    return leave


class SubmititWorker:
    """What each SLURM array task runs: one study worker. At the time limit (or on preemption) SLURM signals the
    task before killing it; submitit then calls checkpoint() and requeues the same task. The worker's state is
    all on the shared filesystem (claims, resume states after each epoch, AutoAttack stage states, rows), so the
    requeued task carries on where it stopped. A task is requeued while the study advances: after MAX_STALLS
    slots in a row with nothing finished, it stops and says why (a longer --time is the fix)."""

    def __init__(self, entry, argv: list[str], run: str, cwd: str, watch: tuple[str, ...] = (), stalls: int = 0):
        # entry: the study's main(argv) -> exit code, handed over by the entry point (pickled by reference)
        self.entry, self.argv, self.run, self.cwd, self.watch, self.stalls = entry, argv, run, cwd, watch, stalls
        self.mark = None

    def __call__(self, index: int) -> int:
        os.chdir(self.cwd)
        os.environ["SHARPBENCH_RUN_ID"] = self.run
        os.environ["SHARPBENCH_WORKER"] = f"array task {index}"
        if self.cwd not in sys.path:
            sys.path.insert(0, self.cwd)
        pin_threads()
        import signal

        handler = signal.getsignal(signal.SIGUSR2)  # submitit's (SLURM's --signal=USR2@...), set before this call
        if callable(handler):
            signal.signal(signal.SIGUSR2, leave_on_signal(handler))
        self.mark = progress_mark(self.watch)
        # ["-m", "bench.study", ARGS...]: what `python` is given. main() is called, not run as __main__, so that
        # the SystemExit submitit raises after requeueing leaves the task instead of being read as a result
        return self.entry([*self.argv[2:], "--worker"])

    def checkpoint(self, index: int):
        import submitit

        advanced = self.mark is None or progress_mark(self.watch) != self.mark
        stalls = 0 if advanced else self.stalls + 1
        if stalls >= MAX_STALLS:
            print(f"array task {index}: not requeued: {stalls} time slots in a row ended with nothing new finished "
                  f"in {', '.join(self.watch)} (no epoch, AutoAttack stage, row or cell); pass a longer --time, "
                  "then rerun the study", file=sys.stderr)
            return None
        return submitit.helpers.DelayedSubmission(
            SubmititWorker(self.entry, self.argv, self.run, self.cwd, self.watch, stalls), index)


def signal_delay_s(limit_min: int) -> int:
    """Seconds before its time limit at which SLURM is asked to signal a task (submitit's USR2: checkpoint and
    requeue). SLURM checks its timers every 30 s and may signal up to a minute early, so submitit's default 90 s
    would signal a 1-minute task at its start, before it did anything: short limits get short delays. On a
    one-node slurm-wlm, 1-minute tasks asking 5 s were signalled 55-59 s after they started (asking 30 s: 6 and
    29 s after); past the limit SLURM sends SIGTERM (which submitit ignores) and SIGKILL KillWait (30 s)
    later, time enough for the checkpoint."""
    return min(90, max(5, limit_min * 60 // 12))


# requeues per task that submitit allows at the time limit; the real bound is MAX_STALLS (no progress)
MAX_TIMEOUTS = 10_000


def minutes(text: str) -> int:
    """SLURM's time formats as minutes: 90, 1:30:00, 2-00:00:00."""
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:
        m = parts[0] * 60 if days else parts[0]  # D-HH, or minutes
    elif len(parts) == 2:
        m = parts[0] * 60 + parts[1] if days else parts[0] + parts[1] / 60
    else:
        m = parts[0] * 60 + parts[1] + parts[2] / 60
    return int(round((int(days) if days else 0) * 1440 + m))


JOBS_FILE = "jobs.txt"  # OUT/slurm/jobs.txt: the SLURM job ids of the study's arrays, one a line


def slurm_tasks(out: str) -> list[dict]:
    """SLURM's view of the study's array tasks (squeue, then sacct for finished ones): task id, state, reason."""
    path = os.path.join(out, "slurm", JOBS_FILE)
    if not os.path.exists(path):
        return []
    ids = [j for j in open(path).read().split() if j.isdigit()]
    if not ids:
        return []
    tasks = {}
    for cmd in (["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T|%r"],
                ["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobID,State,Reason"]):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in res.stdout.splitlines() if res.returncode == 0 else []:
            parts = line.strip().split("|")
            if len(parts) >= 3 and parts[0] and parts[0] not in tasks:
                tasks[parts[0]] = {"task": parts[0], "state": parts[1], "reason": parts[2]}
    return sorted(tasks.values(), key=lambda t: t["task"])


def partition_limits(partition: str | None) -> dict | None:
    """What `sinfo` reports for the partition's nodes: {"cpus", "memory_mb", "gpus"} (the largest of its nodes),
    {} when it lists no such partition, None when sinfo gives no answer (then sbatch has the last word)."""
    cmd = ["sinfo", "-h", "-o", "%c %m %G"] + (["-p", partition] if partition else [])
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    limits = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        cpus = int(parts[0].rstrip("+")) if parts[0].rstrip("+").isdigit() else 0
        mem = int(parts[1].rstrip("+")) if parts[1].rstrip("+").isdigit() else 0
        gpus = 0
        for gres in parts[2].split(","):  # gpu:8, gpu:a100:4, gpu:4(S:0-1), (null)
            fields = gres.split("(")[0].split(":")
            if fields[0] == "gpu" and fields[-1].isdigit():
                gpus = max(gpus, int(fields[-1]))
        limits = {"cpus": max(cpus, limits.get("cpus", 0)), "memory_mb": max(mem, limits.get("memory_mb", 0)),
                  "gpus": max(gpus, limits.get("gpus", 0))}
    return limits


def check_request(partition: str | None, limits: dict | None, cpus_per_worker: int, gpus_per_worker: int) -> str:
    """Why a job with this request could never start on this partition ("" when it could, or sinfo is silent)."""
    name = f"partition {partition}" if partition else "the default partition"
    if limits is None:
        return ""
    if not limits:
        return f"{name} is not listed by sinfo; pass an existing --partition (sinfo lists them)"
    if gpus_per_worker and not limits["gpus"]:
        return (f"{name} has no GPUs (sinfo lists no gpu resource on its nodes), --gpus-per-worker asks "
                f"{gpus_per_worker}; pass --gpus-per-worker 0 for CPU workers, or a partition with GPUs")
    if gpus_per_worker > limits["gpus"]:
        return f"{name}: nodes have {limits['gpus']} GPUs, --gpus-per-worker asks {gpus_per_worker}"
    if cpus_per_worker > limits["cpus"]:
        return (f"{name}: nodes have {limits['cpus']} CPUs, --cpus-per-worker asks {cpus_per_worker}; pass "
                f"--cpus-per-worker {limits['cpus']} or less")
    return ""


def submit(entry, argv: list[str], *, workers: int, out: str, launcher: str, partition: str | None,
           time_limit: str, gpus_per_worker: int, cpus_per_worker: int, wait: bool, watch: tuple[str, ...] = ()) -> int:
    """Submit an array of `workers` study workers through submitit (SLURM, or its local executor for testing)
    and return, or wait for them with wait=True. Each runs entry(argv[2:] + ["--worker"])."""
    import submitit

    folder = os.path.join(out, "slurm", "%j")
    if launcher == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=minutes(time_limit))
    else:
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            print(f"error: --launcher slurm needs SLURM's {' and '.join(missing)} on PATH; run on a cluster's login "
                  f"node, or use --workers N for local processes", file=sys.stderr)
            return 2
        # a request no node of the partition can meet stays pending forever (Reason=PartitionConfig): refuse it
        why = check_request(partition, partition_limits(partition), cpus_per_worker, gpus_per_worker)
        if why:
            print(f"error: a job that could never start: {why}", file=sys.stderr)
            return 2
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=MAX_TIMEOUTS)
        params = {"timeout_min": minutes(time_limit), "name": "sharpbench-study", "cpus_per_task": cpus_per_worker,
                  "slurm_array_parallelism": workers, "slurm_signal_delay_s": signal_delay_s(minutes(time_limit))}
        if partition:
            params["slurm_partition"] = partition
        if gpus_per_worker:
            params["gpus_per_node"] = gpus_per_worker
        executor.update_parameters(**params)
    run = f"submitit-{uuid.uuid4().hex[:12]}"
    worker = SubmititWorker(entry, argv, run, os.getcwd(), tuple(os.path.abspath(w) for w in watch))
    try:
        jobs = executor.map_array(worker, list(range(workers)))
    except submitit.core.utils.FailedJobError as e:  # sbatch refused: its own words, one line, and what to check
        reason = " ".join(str(e).split()) or "no reason given"
        print(f"error: the SLURM submission was refused ({reason}); check the cluster answers with `sinfo` "
              f"and the partition/time/GPU flags", file=sys.stderr)
        return 2
    job_id = jobs[0].job_id.split("_")[0]
    print(f"submitted {len(jobs)} workers: job {job_id}; logs in {os.path.dirname(folder)}", file=sys.stderr)
    if launcher == "slurm":  # --status asks SLURM about the study's jobs
        with open(os.path.join(out, "slurm", JOBS_FILE), "a") as f:
            f.write(job_id + "\n")
    print(f"follow: python {' '.join(argv)} --status", file=sys.stderr)
    if not wait:
        return 0
    codes = []
    for job in jobs:
        try:
            codes.append(job.result())
        except Exception as e:  # noqa: BLE001 - a failed task: say which and go on collecting the others
            print(f"task {job.job_id} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}",
                  file=sys.stderr)
            codes.append(1)
    return max(codes, default=0)
