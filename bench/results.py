"""Result rows: flat dicts, one JSON line each, appended to results.jsonl; cache keys; 95% intervals."""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys


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


def read_rows(path: str) -> list[dict]:
    """All complete rows; a torn last line (a kill mid-write) is skipped with a warning."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"warning: {path}:{i} is not a complete row; ignored", file=sys.stderr)
    return rows


def append_row(path: str, row: dict) -> None:
    """One write of one line, flushed and synced: a kill loses at most the row in flight."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = json.dumps(row, sort_keys=True) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def done_keys(rows: list[dict]) -> set[str]:
    return {r["key"] for r in rows if r.get("status") == "ok"}
