"""Values as people read them, for every writer (markdown, site, report): one helper.

    human(0.01717977039515972)          -> "0.01718"     (4 significant figures)
    human(0.0078431373, "alpha")        -> "2/255"       (radii and step sizes as multiples of 1/255)
    human(None), human(float("nan"))    -> "—"
    human(True)                         -> "yes"
    percent(0.4421)                     -> "44.21"   (accuracies in tables)
"""
from __future__ import annotations

import math

MISSING = "—"
RADII = ("eps", "alpha", "rho_eps")  # settings in input units that are written as k/255 where they are


def _over_255(v: float) -> str | None:
    """v as 'k/255' when k = 255·v is a whole number (8/255, 128/255) or, below 16, a multiple of 1/4 (0.25/255:
    the seed paper's step sizes), else None (0.5 stays 0.5)."""
    k = v * 255
    if v <= 0 or k > 1024:
        return None
    for r in (round(k), round(4 * k) / 4 if k < 16 else None):
        if r and abs(k - r) < 1e-6 * max(1.0, k):
            return f"{r:g}/255"
    return None


def percent(value, digits: int = 2, missing: str = "") -> str:
    """An accuracy in [0,1] as a percentage with a fixed number of decimals (tables: the leaderboard's 2, the
    report's 1); missing as `missing` (a table cell left empty by default)."""
    if value is None or isinstance(value, (bool, str)):
        return missing
    try:
        v = float(value)  # numpy's scalars too
    except (TypeError, ValueError):
        return missing
    return missing if math.isnan(v) else f"{100 * v:.{digits}f}"


def human(value, key: str = "") -> str:
    """The value as text: missing as —, booleans as words, floats to 4 significant figures (radii named by key as
    k/255), lists and mappings item by item."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if key.split(".")[-1] in RADII or key.endswith(("_eps", "_alpha")):
            frac = _over_255(value)
            if frac:
                return frac
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(human(v) for v in value) if value else MISSING
    if isinstance(value, dict):
        return ", ".join(f"{k}={human(v, str(k))}" for k, v in value.items()) if value else MISSING
    return str(value)
