"""One evaluation's batches shared by the processes working on it: each batch claimed, its result a file.

The process that claimed the evaluation (its holder) opens a board, a folder beside its resume state; any other
process on the same results folder (a second shell, a grid worker, a torchrun rank) that finds the evaluation held
and the board open may join it as a helper. Both walk the evaluation's stages in the same order and hand every
stage's batches, the ones one process would make, to `BatchBoard.run`: a batch is taken under the results lock
(bench.store.leases, so a dead worker's batch is taken over), computed, and its result saved atomically; the stage
returns, in every process alike, once each of its batches has a result. So the results merged after a stage, and
what the next stage starts from, are one process's whatever the number of workers. The holder closes the board
once its row is written; a helper then stops.
"""
from __future__ import annotations

import os
import shutil
import time
from typing import Callable

import torch

from bench.store.leases import try_claim
from zoo.distributed import worker_name
from zoo.files import save_atomic

POLL = 0.5  # seconds between looks while other workers hold every batch left


class BoardClosed(Exception):
    """The holder closed the board: its row is written, nothing is left to help with."""


class BatchBoard:
    """The batches of one evaluation at `folder`, claimed under the lock of `lock_path` (the results file's)."""

    def __init__(self, folder: str, lock_path: str, *, helper: bool = False, poll: float = POLL):
        self.folder, self.lock_path, self.helper, self.poll = folder, lock_path, helper, poll
        self.workers: set[str] = set()  # who computed the batches this process merged

    def open(self) -> "BatchBoard":
        """The holder's: make the folder (results a killed run left in it are reused)."""
        os.makedirs(self.folder, exist_ok=True)
        return self

    def is_open(self) -> bool:
        return os.path.isdir(self.folder)

    def close(self) -> None:
        """The holder's, once its row is written: the batches' results go, and helpers stop."""
        from bench.store.rows import locked

        with locked(self.lock_path):
            shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, stage: str, i: int) -> str:
        return os.path.join(self.folder, f"{stage}-{i}.pt")

    def _read(self, stage: str, i: int, idx: torch.Tensor) -> dict | None:
        """batch i's result, if it is there and is the result of these points (else it is computed again)."""
        try:
            r = torch.load(self._path(stage, i), map_location="cpu", weights_only=True)
        except Exception:  # absent, or torn by a kill
            return None
        ok = (isinstance(r, dict) and isinstance(r.get("worker"), str) and len(r["worker"]) <= 300
              and all(isinstance(r.get(k), torch.Tensor) for k in ("idx", "fooled", "adv"))
              and torch.equal(r["idx"], idx.cpu()) and r["fooled"].dtype == torch.bool
              and r["fooled"].shape == idx.shape and len(r["adv"]) == int(r["fooled"].sum()))
        return r if ok else None

    def run(self, stage: str, batches: list[torch.Tensor], compute: Callable[[torch.Tensor], dict]) -> list[dict]:
        """Each batch's result {idx, fooled (bool per point), adv (the fooled points' images), worker}, in batch
        order, computed here or by another worker; compute(idx) returns {fooled, adv} for the points idx."""
        from bench.store.rows import locked

        results: dict[int, dict] = {}
        while True:
            taken = None
            with locked(self.lock_path):
                if not self.is_open():
                    if self.helper:
                        raise BoardClosed(self.folder)
                    self.open()
                for i, idx in enumerate(batches):
                    if i not in results and (r := self._read(stage, i, idx)) is not None:
                        results[i] = r
                    elif i not in results and taken is None:
                        lease = try_claim(self.folder, f"{stage}-{i}")
                        taken = None if lease is None else (i, lease)
            if len(results) == len(batches):
                self.workers.update(r["worker"] for r in results.values())
                return [results[i] for i in range(len(batches))]
            if taken is None:  # the rest are being computed by live workers
                time.sleep(self.poll)
                continue
            i, lease = taken
            try:
                out = compute(batches[i])
                r = {"idx": batches[i].cpu(), "fooled": out["fooled"].cpu(), "adv": out["adv"].cpu(),
                     "worker": worker_name()}
                with locked(self.lock_path):
                    if not self.is_open():  # closed while computing (a helper's late batch): not needed
                        raise BoardClosed(self.folder)
                    save_atomic(r, self._path(stage, i))
                results[i] = r
            finally:
                lease.release()
