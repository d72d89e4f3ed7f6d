"""Per-evaluation claims, so that processes sharing one results folder never run the same evaluation twice.

A claim is a small file OUT/.claims/<key>.claim naming the process (host, pid, its start time) that is evaluating
that key. Claims are taken and checked only under the results lock (bench.store.rows.locked), so the check and the
take are one step. A claim is stale, and taken over, when its process is gone: on the same host the pid is dead or
belongs to a process started at another time (a reused pid); on another host its heartbeat (the file's mtime,
touched every HEARTBEAT seconds while the evaluation runs) is older than STALE seconds.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time

HEARTBEAT = 30.0  # seconds between touches of a held claim
STALE = 300.0  # a claim from another host untouched this long belongs to a dead process


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the claimant."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid())}


def _alive(owner: dict, mtime: float) -> bool:
    if owner.get("host") != socket.gethostname():
        return time.time() - mtime < STALE
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user
    start = _start_time(pid)
    return start is None or owner.get("start") in (None, start)


class Lease:
    """A held claim on one piece of work (a work lease); release() removes it. A daemon thread keeps its heartbeat
    while held."""

    def __init__(self, path: str):
        self.path = path
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def owner_of(claim_dir: str, key: str) -> dict | None:
    """The live process holding key's claim, or None (no claim, or a stale one)."""
    path = os.path.join(claim_dir, f"{key}.claim")
    try:
        with open(path) as f:
            owner = json.load(f)
        mtime = os.path.getmtime(path)
    except (OSError, ValueError):
        return None  # absent, or torn by a kill while being written: nobody holds it
    if not isinstance(owner, dict):
        return None
    return owner if _alive(owner, mtime) else None


def try_claim(claim_dir: str, key: str) -> Lease | None:
    """Take key's claim unless a live process holds it. Call only under the results lock."""
    if owner_of(claim_dir, key) is not None:
        return None
    os.makedirs(claim_dir, exist_ok=True)
    path = os.path.join(claim_dir, f"{key}.claim")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_me(), f)
    os.replace(tmp, path)  # replaces a stale claim in one step
    return Lease(path)


def claim_first(lock_path: str, refresh, wanted, claim_dir: str, poll: float, idle=None):
    """(item, Lease): the first of wanted()'s (claim key, item) pairs that no live process holds, looked at and
    taken under the results lock after refresh(); None once wanted() is empty. While another live process holds
    every wanted item it calls idle(items) (outside the lock: it may help with one of them, and says whether it
    did) or else waits `poll` seconds, and looks again (a dead holder's claim is taken over)."""
    from bench.store.rows import locked

    while True:
        with locked(lock_path):
            refresh()
            items = wanted()
            for key, item in items:
                claim = try_claim(claim_dir, key)
                if claim is not None:
                    return item, claim
        if not items:
            return None
        if idle is None or not idle([item for _, item in items]):
            time.sleep(poll)
