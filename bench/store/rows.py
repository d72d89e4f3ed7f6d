"""Result rows: flat dicts, one JSON line each, appended to results.jsonl; cache keys; 95% intervals.

Several processes may append to one results file (two shells, torchrun ranks, nodes on a shared filesystem):
every read-check-append happens under an OS lock on a file beside it, and an append first terminates a torn last
line (left by a process killed mid-write), so a torn line costs at most itself.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import sys
import threading
from contextlib import contextmanager


def row_key(model_id: str, attack_config: dict, data: str, n_examples: int) -> str:
    """What makes two evaluations the same: checkpoint hash (or model id), the full attack config, the data."""
    blob = json.dumps({"model": model_id, "attack": attack_config, "data": data, "n": n_examples}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for an accuracy; well-behaved at 0 and 1 and for small n."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


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


def scan_rows(path: str) -> tuple[list[dict], int]:
    """(complete rows, number of torn lines skipped). A torn line is what a kill mid-write leaves."""
    if not os.path.exists(path):
        return [], 0
    rows, torn = [], 0
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                torn += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                torn += 1
    return rows, torn


def read_rows(path: str) -> list[dict]:
    """All complete rows; torn lines are skipped and counted in one warning."""
    rows, torn = scan_rows(path)
    if torn:
        print(f"warning: {path}: skipped {torn} torn line{'s' * (torn > 1)} (a process was killed mid-write); "
              "the rows around them are intact", file=sys.stderr)
    return rows


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


def done_keys(rows: list[dict]) -> set[str]:
    return {r["key"] for r in rows if r.get("status") == "ok" and "key" in r}
