"""The study as a queue of cells that any number of workers share through one results folder.

Every worker loops: under the folder's lock, it reads what was finished (OUT/cells.jsonl, read incrementally)
and claims the most expensive unfinished cell nobody live holds (bench.store.claims, the claims the bench's
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

from bench.grid.cells import Cell, bench_cell, cells, measure_cell, train_cell
from bench.grid.presets import Preset
from bench.store.claims import try_claim
from bench.store.rows import RowStore, append_row, locked
from bench.store.schema import RowError

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

    @property
    def results(self) -> str:
        return os.path.join(self.out, "results.jsonl")

    @property
    def cells_path(self) -> str:
        return os.path.join(self.out, CELLS_FILE)

    def cells(self) -> list[Cell]:
        return cells(self.preset, self.device, self.zoo_dir, self.compile)


def check_cell_row(row) -> None:
    if not isinstance(row, dict) or row.get("kind") not in ("cell", "report"):
        raise RowError("not a cell or report row")
    for field in ("run", "worker", "time"):
        if not isinstance(row.get(field), str):
            raise RowError(f"{field} is not a string")
    if row["kind"] == "cell":
        if not isinstance(row.get("cell"), str) or row.get("status") not in ("done", "failed"):
            raise RowError("cell row without a cell key and a status")
        for field in ("train_seconds", "seconds"):
            v = row.get(field)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise RowError(f"{field} is not a number")


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


def run_cell(study: Study, cell: Cell) -> dict:
    """Train, evaluate and measure one cell; returns what its done row records."""
    p = study.preset
    t0 = time.perf_counter()
    path, resumed_from, train_seconds = train_cell(cell, study.progress)
    bench_cell(p, path, p.data, study.device, study.out, study.progress, study.compile)
    measure_cell(p, path, p.data, study.device, study.out)
    from zoo.checkpoint import sha256_file

    return {"checkpoint": path, "model_id": sha256_file(path), "resumed_from": resumed_from,
            "train_seconds": train_seconds, "seconds": time.perf_counter() - t0}


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
    while True:
        with locked(study.results):
            store.refresh()
            done, failed = finished(store), _failed_in(store, run)
            pending = [c for c in grid if c.key not in done and c.key not in failed]
            cell = claim = None
            for c in pending:  # most expensive first
                claim = try_claim(claim_dir, f"cell-{c.key}")
                if claim is not None:
                    cell = c
                    break
        if not pending:
            break
        if claim is None:  # every unfinished cell is in another live worker's hands
            time.sleep(POLL)
            continue
        try:
            print(f"cell {cell.name}: {len(grid) - len(pending) + 1}/{len(grid)}", file=sys.stderr)
            result = run_cell(study, cell)
        except Exception as e:  # noqa: BLE001 - a cell that fails is recorded; the other cells still run
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"error: cell {cell.name}: {msg}", file=sys.stderr)
            append_row(study.cells_path, _row(run, kind="cell", cell=cell.key, name=cell.name, status="failed",
                                              error=msg[:500]))
        else:
            append_row(study.cells_path, _row(run, kind="cell", cell=cell.key, name=cell.name, status="done",
                                              **result))
        finally:
            claim.release()
    write_report_once(study, run, grid, store, claim_dir)
    return len(_failed_in(store, run))


def write_report_once(study: Study, run: str, grid: list[Cell], store: RowStore, claim_dir: str) -> None:
    """One worker of this run writes the outputs; the others wait until it has (or take over if it died)."""
    while True:
        with locked(study.results):
            store.refresh()
            if any(r["kind"] == "report" and r["run"] == run for r in store.rows):
                return
            claim = try_claim(claim_dir, f"report-{hashlib.sha256(run.encode()).hexdigest()[:16]}")
        if claim is not None:
            break
        time.sleep(POLL)
    try:
        paths = write_outputs(study, grid, finished(store))
        append_row(study.cells_path, _row(run, kind="report", **paths))
    finally:
        claim.release()


def write_outputs(study: Study, grid: list[Cell], done: dict[str, dict]) -> dict:
    """leaderboard.md, REPORT.md and the site, from this grid's rows only (results.jsonl is append-only and may
    hold rows of checkpoints an earlier preset made)."""
    from bench.report.leaderboard import write_leaderboard
    from bench.report.site import build_site, load_metas
    from bench.report.study import write_report
    from bench.store.rows import read_rows
    from bench.store.schema import check_measure_row

    ids = {done[c.key]["model_id"] for c in grid if c.key in done}
    paths = [done[c.key]["checkpoint"] for c in grid if c.key in done]
    rows = [r for r in read_rows(study.results) if r.get("model_id") in ids]
    measures = [m for m in read_rows(os.path.join(study.out, "measures.jsonl"), check=check_measure_row)
                if m["model_id"] in ids]
    board = write_leaderboard(rows, study.out)
    cell_rows = [done[c.key] for c in grid if c.key in done]
    metas = load_metas(rows)
    # compute the artifacts record, whichever run made them: the checkpoints' epoch times and the rows' seconds
    seconds = {"train": sum(e.get("seconds") or 0 for m in metas.values() if m for e in m.get("history") or []),
               "eval": sum(r.get("seconds") or 0 for r in rows if r.get("status") == "ok")}
    report = write_report(rows, measures, paths, study.out, preset=study.preset_name,
                          preset_cfg=dataclasses.asdict(study.preset), command=study.command, device=study.device,
                          seconds=seconds)
    site = build_site(rows, os.path.join(study.out, "site"), metas=metas, measures=measures,
                      report_md=open(report, encoding="utf-8").read(), report_dir=study.out,
                      title=f"sharpbench study ({study.preset_name})")
    print(f"report: {report}\nleaderboard: {board}\nsite: {site} (REPORT.html beside it)", file=sys.stderr)
    return {"report": report, "leaderboard": board, "site": site,
            "cells": len(cell_rows), "missing": len(grid) - len(cell_rows)}
