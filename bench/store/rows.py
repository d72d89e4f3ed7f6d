"""Result rows: flat dicts, one JSON line each, appended to results.jsonl; cache keys; 95% intervals.

Several processes may append to one results file (two shells, torchrun ranks, nodes on a shared filesystem):
every read-check-append happens under an OS lock on a file beside it, and an append first terminates a torn last
line (left by a process killed mid-write), so a torn line costs at most itself.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
import threading
from contextlib import contextmanager


def row_key(model_id: str, attack_config: dict, data: str, n_examples: int) -> str:
    """What makes two evaluations the same: checkpoint hash (or model id), the full attack config, the data."""
    blob = json.dumps({"model": model_id, "attack": attack_config, "data": data, "n": n_examples}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


_held: dict[str, list] = {}  # lock path -> [fd, depth]: the lock is re-entrant within one process
_held_guard = threading.Lock()


def lock_path(results_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(results_path)), ".results.lock")


@contextmanager
def locked(results_path: str):
    """Exclusive OS lock (flock) for the folder holding results_path; re-entrant within this process."""
    path = lock_path(results_path)
    with _held_guard:
        entry = _held.get(path)
        if entry is not None:
            entry[1] += 1
    if entry is None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with _held_guard:
            _held[path] = entry = [fd, 1]
    try:
        yield
    finally:
        with _held_guard:
            entry[1] -= 1
            release = entry[1] == 0
            if release:
                del _held[path]
        if release:
            fcntl.flock(entry[0], fcntl.LOCK_UN)
            os.close(entry[0])


class RowStore:
    """The rows of one results file, read incrementally: each refresh parses only the lines appended since the
    last one, so a process's cost per evaluation does not grow with the file. Rows that fail `check` are kept
    out (with their line number and why) and their keys never count as done; torn lines (a kill mid-write) are
    counted. An unterminated last line waits for the next refresh: the next append terminates it."""

    def __init__(self, path: str, check=None):
        from bench.store.schema import check_result_row

        self.path = path
        self.check = check_result_row if check is None else check
        self._reset(None)

    def _reset(self, ident) -> None:
        self.rows: list[dict] = []
        self.torn = 0
        self.invalid: list[tuple[int, str]] = []  # (line number, why)
        self.done: set[str] = set()  # keys of ok rows
        self.ok: dict[str, dict] = {}  # key -> its latest ok row
        self.failed: dict[str, dict] = {}  # key -> the latest failed row
        self.failures: dict[str, int] = {}  # key -> how many failed rows it has (retries are bounded by it)
        self._offset = self._lines = 0
        self._ident = ident

    def refresh(self, final: bool = False) -> list[dict]:
        """Read what was appended since the last call; returns the new trusted rows. With final, an
        unterminated last line is read too (a file edited by hand may lack the last newline)."""
        from bench.store.schema import RowError

        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != self._ident or st.st_size < self._offset:  # replaced or truncated
                self._reset((st.st_dev, st.st_ino))
            f.seek(self._offset)
            data = f.read(max(st.st_size - self._offset, 0))
        end = len(data) if final else data.rfind(b"\n") + 1
        new = []
        for raw in data[:end].split(b"\n")[: None if final else -1]:
            self._lines += 1
            raw = raw.strip()
            if not raw:
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.torn += 1
                continue
            if not isinstance(row, dict):
                self.torn += 1
                continue
            try:
                self.check(row)
            except RowError as e:
                self.invalid.append((self._lines, str(e)))
                continue
            new.append(row)
            key = row.get("key")
            if isinstance(key, str):
                if row["status"] == "ok":
                    self.done.add(key)
                    self.ok[key] = row
                else:
                    self.failed[key] = row
                    self.failures[key] = self.failures.get(key, 0) + 1
        self._offset += end
        self.rows.extend(new)
        return new

    def warn(self, start: int = 0) -> None:
        """One warning for torn lines, one per untrusted row (from the start-th on), on stderr."""
        if self.torn:
            print(f"warning: {self.path}: skipped {self.torn} torn line{'s' * (self.torn > 1)} (a process was "
                  "killed mid-write); the rows around them are intact", file=sys.stderr)
        for line, why in self.invalid[start:start + 5]:
            print(f"warning: {self.path}:{line}: row skipped, not trusted ({why}); it is recomputed when asked "
                  "for", file=sys.stderr)
        if len(self.invalid) - start > 5:
            print(f"warning: {self.path}: {len(self.invalid) - start - 5} more rows skipped", file=sys.stderr)


def scan_rows(path: str, check=None) -> tuple[list[dict], int]:
    """(trusted complete rows, number of torn lines skipped). A torn line is what a kill mid-write leaves."""
    store = RowStore(path, check)
    store.refresh(final=True)
    return store.rows, store.torn


def read_rows(path: str, check=None) -> list[dict]:
    """All trusted rows; torn lines and untrusted rows are skipped, with warnings."""
    store = RowStore(path, check)
    store.refresh(final=True)
    store.warn()
    return store.rows


def append_row(path: str, row: dict) -> None:
    """Under the folder's lock: terminate a torn last line, then one write of one line, flushed and synced."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = (json.dumps(row, sort_keys=True) + "\n").encode()
    with locked(path), open(path, "ab+") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                line = b"\n" + line  # the torn fragment becomes a line of its own, skipped by readers
        f.write(line)  # append mode: always at the end, whatever was read
        f.flush()
        os.fsync(f.fileno())


def bf16_search(row: dict) -> bool:
    """Whether the row's attack searched in bf16 (bench.run --precision bf16): never the protocol's number."""
    cfg = row.get("attack_config")
    return isinstance(cfg, dict) and cfg.get("search_precision", "fp32") != "fp32"


def latest_ok(rows: list[dict], *, per_model: bool = True) -> list[dict]:
    """The latest ok row of each evaluation (attack, norm, eps, data, n) of each model (model_id), in time order
    (bf16 searches' first);
    per_model=False: one per evaluation whatever the model_id (one model's weights read several ways: a .pt and
    its Hub folder). A row whose search ran in bf16 (--precision bf16) stands in only where no fp32 row of its
    evaluation is: the protocol's number is fp32's, whichever was computed last."""
    from bench.attacks.evaluation import eps_key

    ok = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: (not bf16_search(r), r.get("time", "")))
    latest = {}
    for r in ok:
        evaluation = (r["attack"], r.get("norm") or "", eps_key(r["eps"]), r["data"], r["n"])
        latest[(r["model_id"], *evaluation) if per_model else evaluation] = id(r)
    kept = set(latest.values())
    return [r for r in ok if id(r) in kept]
