"""The study as a queue of cells that any number of workers share through one results folder.

Every worker loops: under the folder's lock, it reads what was finished (OUT/cells.jsonl, read incrementally)
and claims the most expensive unfinished cell nobody live holds (bench.store.leases, the claims the bench's
evaluations use); it trains that cell's checkpoint (resuming after the last finished epoch when a dead worker
left a resume state), runs its evaluations and measures, records the cell done and releases it. A killed
worker's claim goes stale (its pid is gone, or on another host its heartbeat stops) and another worker, or a
rerun, takes the cell over and resumes its training. When no cell is left, one worker of this run writes the
leaderboard, REPORT.md and the site; a rerun (a new run id) writes them again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass

from bench.defaults import rows_path
from bench.grid.cells import Cell, bench_cell, cells, train_cell
from bench.grid.presets import Preset
from bench.store.leases import claim_first
from bench.store.rows import RowStore, append_row, locked
from bench.store.schema import check_cell_row
from zoo.errors import error_line

CELLS_FILE = "cells.jsonl"
POLL = 2.0  # seconds between looks while every unfinished cell is in other workers' hands


@dataclass(frozen=True)
class Study:
    """What every worker of one study needs, the same for all of them."""
    preset_name: str
    preset: Preset
    device: str
    out: str  # rows, cells.jsonl, claims, report, site
    zoo_dir: str  # checkpoints and resume states
    compile: bool
    progress: bool
    command: str  # the command the report names
    retry_failed: bool = False  # run failed evaluations again even past the retry bound (bench.defaults.MAX_FAILURES)

    @property
    def results(self) -> str:
        return rows_path(self.out)

    @property
    def cells_path(self) -> str:
        return os.path.join(self.out, CELLS_FILE)

    def cells(self) -> list[Cell]:
        return cells(self.preset, self.device, self.zoo_dir, self.compile)


def run_id() -> str:
    """What one launch of the study shares across its workers: set by our launchers, else read off torchrun's or
    SLURM's environment, else new (a plain single process)."""
    env = os.environ
    if env.get("SHARPBENCH_RUN_ID"):
        return env["SHARPBENCH_RUN_ID"]
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"slurm-{env['SLURM_ARRAY_JOB_ID']}"
    if env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID"):
        return f"slurm-{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    if env.get("TORCHELASTIC_RUN_ID") and env["TORCHELASTIC_RUN_ID"] != "none":
        return f"torchrun-{env['TORCHELASTIC_RUN_ID']}"
    if env.get("TORCHELASTIC_RUN_ID"):  # single-node torchrun: every rank is a child of the same agent
        return f"torchrun-{socket.gethostname()}-{os.getppid()}-{env.get('MASTER_PORT', '')}"
    return f"run-{uuid.uuid4().hex[:12]}"


def worker_name() -> str:
    tag = os.environ.get("SHARPBENCH_WORKER", "")
    return f"{socket.gethostname()}:{os.getpid()}" + (f" ({tag})" if tag else "")


def _row(study_run: str, **fields) -> dict:
    return {"run": study_run, "worker": worker_name(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}


def finished(store: RowStore) -> dict[str, dict]:
    """cell key -> its latest done row."""
    return {r["cell"]: r for r in store.rows if r["kind"] == "cell" and r["status"] == "done"}


def _failed_in(store: RowStore, run: str) -> set[str]:
    return {r["cell"] for r in store.rows if r["kind"] == "cell" and r["status"] == "failed" and r["run"] == run}


class CellFailed(RuntimeError):
    """Some of a cell's evaluations did not give a row; `missing` lists them with their reasons."""

    def __init__(self, missing: list[dict], result: dict):
        self.missing, self.result = missing, result
        first = missing[0]
        super().__init__(f"{len(missing)} evaluation{'s' * (len(missing) > 1)} failed: {first['evaluation']}: "
                         f"{first['reason']}")


def run_cell(study: Study, cell: Cell) -> dict:
    """Train, evaluate and measure one cell; returns what its done row records. Raises CellFailed when any
    evaluation failed or was refused: a cell is done only when every evaluation has its row."""
    p = study.preset
    t0 = time.perf_counter()
    path, resumed_from, train_seconds = train_cell(cell, study.progress)
    outcomes = bench_cell(p, path, p.data, study.device, study.out, study.progress, study.compile,
                          study.retry_failed)
    from zoo.checkpoint import sha256_file

    model_id = sha256_file(path)  # its done row's (the engine keys rows on its own)
    result = {"checkpoint": path, "model_id": model_id, "resumed_from": resumed_from,
              "train_seconds": train_seconds, "seconds": time.perf_counter() - t0}
    missing = [{"evaluation": o.evaluation.label,
                "status": o.status, "reason": o.reason[:300]} for o in outcomes if o.status not in ("ok", "cached")]
    if missing:
        raise CellFailed(missing, result)
    return result


def work(study: Study, run: str | None = None) -> int:
    """One worker: take cells until none is left, then see that this run's report is written. Returns the
    number of cells that failed in this run."""
    run = run or run_id()
    grid = study.cells()
    claim_dir = os.path.join(study.out, ".claims")
    store = RowStore(study.cells_path, check=check_cell_row)
    os.makedirs(study.out, exist_ok=True)
    with locked(study.results):
        store.refresh()
    already = sum(c.key in finished(store) for c in grid)
    print(f"worker {worker_name()} on {study.device}, run {run}: {already} of {len(grid)} cells already done",
          file=sys.stderr)
    pending: list = []

    def unfinished():  # most expensive first
        done, failed = finished(store), _failed_in(store, run)
        pending[:] = [c for c in grid if c.key not in done and c.key not in failed]
        return [(f"cell-{c.key}", c) for c in pending]

    while (taken := claim_first(study.results, store.refresh, unfinished, claim_dir, POLL)) is not None:
        cell, claim = taken
        try:
            print(f"cell {cell.name}: {len(grid) - len(pending) + 1}/{len(grid)}", file=sys.stderr)
            result = run_cell(study, cell)
        except Exception as e:  # noqa: BLE001 - a cell that fails is recorded; the other cells still run
            msg = error_line(e)
            print(f"error: cell {cell.name}: {msg}", file=sys.stderr)
            extra = {"missing": e.missing, **e.result} if isinstance(e, CellFailed) else {}
            append_row(study.cells_path, _row(run, kind="cell", cell=cell.key, name=cell.name, status="failed",
                                              error=msg[:500], **extra))
        else:
            append_row(study.cells_path, _row(run, kind="cell", cell=cell.key, name=cell.name, status="done",
                                              **result))
        finally:
            claim.release()
    write_report_once(study, run, grid, store, claim_dir)
    return len(_failed_in(store, run))


def write_report_once(study: Study, run: str, grid: list[Cell], store: RowStore, claim_dir: str) -> None:
    """One worker of this run writes the outputs; the others wait until it has (or take over if it died)."""
    key = f"report-{hashlib.sha256(run.encode()).hexdigest()[:16]}"

    def unwritten():
        return [] if any(r["kind"] == "report" and r["run"] == run for r in store.rows) else [(key, None)]

    taken = claim_first(study.results, store.refresh, unwritten, claim_dir, POLL)
    if taken is None:
        return
    claim = taken[1]
    try:
        paths = write_study_outputs(study, grid, latest_cells(store))
        append_row(study.cells_path, _row(run, kind="report", **paths))
    finally:
        claim.release()


def latest_cells(store: RowStore) -> dict[str, dict]:
    """cell key -> its latest row (done or failed)."""
    return {r["cell"]: r for r in store.rows if r["kind"] == "cell"}


def write_study_outputs(study: Study, grid: list[Cell], cells_now: dict[str, dict]) -> dict:
    """leaderboard.md, REPORT.md and the site, from this grid's rows only (results.jsonl is append-only and may
    hold rows of checkpoints an earlier preset made). Cells that failed after training contribute what they
    have, and their failed evaluations are named as missing in every output."""
    from bench.report.outputs import read_measures, write_outputs
    from bench.report.web import load_metas
    from bench.store.rows import read_rows

    have = [cells_now[c.key] for c in grid if c.key in cells_now and cells_now[c.key].get("model_id")]
    ids = {r["model_id"] for r in have}
    paths = [r["checkpoint"] for r in have if r.get("checkpoint") and os.path.exists(r["checkpoint"])]
    rows = [r for r in read_rows(study.results) if r.get("model_id") in ids]
    measures = [m for m in read_measures(study.out) if m["model_id"] in ids]
    metas = load_metas(rows)
    # compute the artifacts record, whichever run made them: the checkpoints' epoch times and the rows' seconds
    seconds = {"train": sum(e.get("seconds") or 0 for m in metas.values() if m for e in m.get("history") or []),
               "eval": sum(r.get("seconds") or 0 for r in rows if r.get("status") == "ok")}
    written = write_outputs(rows, study.out, measures=measures, metas=metas,
                            title=f"sharpbench study ({study.preset_name})",
                            study={"ckpt_paths": paths, "preset": study.preset_name,
                                   "preset_cfg": dataclasses.asdict(study.preset), "command": study.command,
                                   "device": study.device, "seconds": seconds})
    done = sum(1 for c in grid if cells_now.get(c.key, {}).get("status") == "done")
    print(f"report: {written['report']}\nleaderboard: {written['leaderboard']}\nsite: {written['site']} (REPORT.html "
          "beside it)", file=sys.stderr)
    return {**written, "cells": done, "missing": len(grid) - done}
