"""Is a difference between two training recipes real? Paired statistics over the same test points and seeds.

Every model of a study is scored on the same test points, so the difference between two groups (recipes with
their settings) is estimated point by point: d = mean over points of (a_i - b_i), where a_i is the fraction of
group A's seeds that got point i right (robust, or right clean). Its 95% interval comes from a hierarchical
bootstrap: each replicate resamples the seeds (with replacement, so training randomness counts; when both
groups ran the same seeds, which share initial weights and data order, the same seeds for both) and the test
points (with replacement, the same points for both groups, so the pairing counts), and the interval is the
2.5th..97.5th percentile of the replicates' differences. With one seed per group it is the plain paired
bootstrap over points.

A claim says the difference lies on one side of a threshold (SAM raises robustness: d > 0; SAM keeps clean
accuracy within one point: d > -0.01). Its verdict is **held** when the whole interval is on the claimed side,
**did not hold** when the whole interval is on the other side, and **inconclusive** otherwise: the data cannot
decide. McNemar's counts (points only A got right, points only B got right, over seeds paired by seed number)
and their exact two-sided p-value are shown beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"


@dataclass(frozen=True)
class Paired:
    diff: float  # mean over points of A minus B, seeds averaged
    lo: float  # 95% interval (percentile bootstrap)
    hi: float
    only_a: int  # McNemar: points A got right and B did not, summed over seed pairs
    only_b: int
    p_mcnemar: float  # exact two-sided binomial test of only_a against only_b
    n: int  # test points
    seeds: tuple  # (seeds of A, seeds of B)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, *, replicates: int = 4000, seed: int = 0,
                   level: float = 0.95, block: int = 500, paired_seeds: bool = False) -> tuple[float, float, float]:
    """a: (seeds_A, n) and b: (seeds_B, n) boolean flags on the same n points; with paired_seeds, row k of a and
    of b come from the same training seed and are resampled together. Returns (diff, lo, hi)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"flags on {a.shape[1]} and {b.shape[1]} points: a paired comparison needs the same points")
    n = a.shape[1]
    diff = float(a.mean() - b.mean())
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, replicates, block):
        m = min(block, replicates - start)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64) / n  # (m, n) point weights
        pa = a @ w.T  # (seeds_A, m): each seed's accuracy on the resampled points
        pb = b @ w.T
        sa = rng.multinomial(len(a), np.full(len(a), 1.0 / len(a)), size=m) / len(a)  # (m, seeds_A) seed weights
        sb = sa if paired_seeds else rng.multinomial(len(b), np.full(len(b), 1.0 / len(b)), size=m) / len(b)
        out.append((sa * pa.T).sum(1) - (sb * pb.T).sum(1))
    reps = np.concatenate(out)
    tail = (1 - level) / 2
    return diff, float(np.quantile(reps, tail)), float(np.quantile(reps, 1 - tail))


def mcnemar(a: dict, b: dict) -> tuple[int, int, float]:
    """a, b: {seed: flags}. Points only A / only B got right, over the seeds both have (all pairs if none)."""
    from scipy.stats import binomtest

    pairs = [(a[s], b[s]) for s in sorted(set(a) & set(b))] or [(x, y) for x in a.values() for y in b.values()]
    only_a = sum(int((x & ~y).sum()) for x, y in pairs)
    only_b = sum(int((~x & y).sum()) for x, y in pairs)
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return only_a, only_b, float(p)


def compare(a: dict, b: dict, **kw) -> Paired:
    """a, b: {seed: boolean flags on the same points}."""
    fa = np.stack([a[s] for s in sorted(a)])
    fb = np.stack([b[s] for s in sorted(b)])
    diff, lo, hi = bootstrap_diff(fa, fb, paired_seeds=sorted(a) == sorted(b), **kw)
    only_a, only_b, p = mcnemar(a, b)
    return Paired(diff, lo, hi, only_a, only_b, p, fa.shape[1], (tuple(sorted(a)), tuple(sorted(b))))


def verdict(p: Paired, threshold: float = 0.0, side: str = ">") -> str:
    """The claim 'A - B {side} threshold' judged on the interval."""
    lo, hi = p.lo - threshold, p.hi - threshold
    if side == "<":
        lo, hi = -hi, -lo
    if lo > 0:
        return HELD
    if hi < 0:
        return NOT_HELD
    return INCONCLUSIVE


def describe(p: Paired, names: tuple[str, str]) -> str:
    """'+1.4 points [0.3, 2.5] (McNemar: 40 only sam, 26 only standard, p = 0.11)'."""
    return (f"{100 * p.diff:+.1f} points [{100 * p.lo:+.1f}, {100 * p.hi:+.1f}] (McNemar: {p.only_a} only "
            f"{names[0]}, {p.only_b} only {names[1]}, p = {p.p_mcnemar:.2g})")
