"""Per-evaluation overhead of the row store at grid scale: must stay flat as results.jsonl grows.

  python scripts/row_store_overhead.py                 100, 1,000 and 10,000 rows; 10000-point flags per row
  python scripts/row_store_overhead.py --sizes 100,1000 --points 1017 --evals 200

What bench.run does around every evaluation, timed in one process: take the folder's lock, read what other
processes appended since the last look, check the key and take its claim, later append the row and release the
claim. It is measured on a file that already holds N rows written by "other processes" (rows with per-point
flags, the size the bench writes for --points points), with new rows arriving from another writer between
evaluations, against the previous design (re-reading and parsing the whole file under the lock each time).
Prints milliseconds per evaluation and the lock's hold time; writes nothing else.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from bench.store.leases import try_claim  # noqa: E402
from bench.store.points import encode_states  # noqa: E402
from bench.store.rows import RowStore, append_row, locked, row_key, scan_rows  # noqa: E402


def a_row(i: int, points: int, rng) -> dict:
    clean = rng.random(points) < 0.9
    robust = clean & (rng.random(points) < 0.5)
    key = row_key(f"model{i % 50}", {"attack": "pgd", "eps": i}, "cifar10", points)
    return {"key": key, "status": "ok", "attack": "pgd", "norm": "Linf", "eps": 8 / 255, "eps_str": "8/255",
            "model": f"m{i % 50}", "model_id": f"{i % 50:064d}", "data": "cifar10", "n": points,
            "time": "2026-12-01T00:00:00", "attack_config": {"attack": "pgd", "steps": 10, "i": i},
            "clean_correct": int(clean.sum()), "clean_acc": float(clean.sum()) / points,
            "robust_correct": int(robust.sum()), "robust_acc": float(robust.sum()) / points,
            "points": encode_states(clean, robust)}


def measure(n_rows: int, points: int, evals: int, incremental: bool, rng) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.jsonl")
        with open(path, "w") as f:  # what other workers wrote before this one started
            import json
            for i in range(n_rows):
                f.write(json.dumps(a_row(i, points, rng), sort_keys=True) + "\n")
        claims = os.path.join(tmp, ".claims")
        store = RowStore(path)
        with locked(path):
            store.refresh()  # the one full read at start
        fresh = [a_row(n_rows + 10 * evals + i, points, rng) for i in range(2 * evals)]
        mine = [a_row(n_rows + i, points, rng) for i in range(evals)]
        per_eval, held = [], []
        for j in range(evals):
            append_row(path, fresh[2 * j])  # another process's row lands between our evaluations
            t0 = time.perf_counter()
            with locked(path):
                t1 = time.perf_counter()
                if incremental:
                    store.refresh()
                    done = mine[j]["key"] in store.done
                else:
                    done = mine[j]["key"] in {r["key"] for r in scan_rows(path)[0] if r["status"] == "ok"}
                claim = None if done else try_claim(claims, mine[j]["key"])
                held.append(time.perf_counter() - t1)
            # ... the evaluation itself would run here ...
            append_row(path, mine[j])
            claim.release()
            per_eval.append(time.perf_counter() - t0)
        return {"ms": 1000 * float(np.median(per_eval)), "hold_ms": 1000 * float(np.median(held)),
                "mb": os.path.getsize(path) / 2 ** 20}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100,1000,10000")
    p.add_argument("--points", type=int, default=10000, help="test points per row (flags' size)")
    p.add_argument("--evals", type=int, default=100, help="evaluations timed per size")
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"per-evaluation overhead, rows with {a.points}-point flags, median of {a.evals} evaluations")
    print(f"{'rows':>7} {'file MB':>8} {'incremental ms':>15} {'lock held ms':>13} {'full re-read ms':>16} "
          f"{'lock held ms':>13}")
    for n in (int(s) for s in a.sizes.split(",")):
        inc = measure(n, a.points, a.evals, True, rng)
        full = measure(n, a.points, max(a.evals // 10, 5), False, rng)
        print(f"{n:7d} {inc['mb']:8.1f} {inc['ms']:15.2f} {inc['hold_ms']:13.2f} {full['ms']:16.1f} "
              f"{full['hold_ms']:13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
