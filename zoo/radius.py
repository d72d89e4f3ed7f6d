"""Radii and step sizes as people write them ('8/255', '0.5'), read exactly; no torch, so rows and reports use it."""
from __future__ import annotations

import math
from fractions import Fraction


def parse_eps(value) -> float:
    """A radius or step size: '8/255' -> 0.03137..., '0.5/255' -> 0.00196..., '0.5' -> 0.5, 0.5 -> 0.5.

    Fractions may have decimal numerators and denominators (the seed paper's steps are written 0.5/255 and
    0.25/255); they are computed exactly, then rounded once to float. Negative or non-finite values are refused.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        text = str(value).strip()
        try:
            parts = [Fraction(p.strip()) for p in text.split("/")]
            if len(parts) > 2:
                raise ValueError("more than one '/'")
            out = float(parts[0] / parts[1] if len(parts) == 2 else parts[0])
        except (ValueError, ZeroDivisionError) as e:
            raise ValueError(f"cannot read eps {value!r}; write a number or a fraction such as 8/255 or "
                             "0.5/255") from e
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"eps {value!r} must be a finite number >= 0, e.g. 8/255")
    return out
