"""Per-point evidence stored inside a row: which of the n points were right clean and right under attack.

Attack and clean rows hold one state per point, 0 = wrong clean, 1 = right clean but fooled, 2 = right clean and
robust (robust implies right clean, so three states say everything), packed five to a byte (3^5 = 243 <= 256)
and base64-encoded: a 10000-point row grows by 2668 characters. Corruption rows hold one bit per point and
corruption set (right on the corrupted image), and one for the clean image, as packed bits in base64.

The encoding is named in the row (`points.encoding`), so a reader never guesses, and the counts kept beside
(`clean_correct`, `robust_correct`, per-set accuracies) must equal the flags' sums (bench.store.schema).
"""
from __future__ import annotations

import base64

import numpy as np

STATES = "tri5-base64"  # ternary states, 5 per byte, base64
BITS = "bits-base64"  # numpy.packbits (big-endian bit order), base64
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


class PointsError(ValueError):
    """Stored per-point flags that cannot be decoded, or disagree with the row."""


def encode_states(clean_ok, robust_ok) -> dict:
    clean = np.asarray(clean_ok, dtype=bool)
    robust = np.asarray(robust_ok, dtype=bool)
    if clean.shape != robust.shape or clean.ndim != 1:
        raise ValueError("clean and robust flags must be 1-D and of one length")
    if (robust & ~clean).any():
        raise ValueError("a point is robust but wrong clean: robust flags must imply clean ones")
    states = clean.astype(np.uint8) + robust.astype(np.uint8)
    padded = np.zeros(-(-len(states) // 5) * 5, dtype=np.uint8)
    padded[:len(states)] = states
    packed = (padded.reshape(-1, 5) * _POW3).sum(1).astype(np.uint8)
    return {"encoding": STATES, "n": int(len(states)), "data": base64.b64encode(packed.tobytes()).decode()}


def _b64(text, n_bytes: int) -> np.ndarray:
    if not isinstance(text, str):
        raise PointsError("packed flags are not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise PointsError("packed flags are not valid base64") from None
    if len(raw) != n_bytes:
        raise PointsError(f"packed flags hold {len(raw)} bytes, expected {n_bytes}")
    return np.frombuffer(raw, dtype=np.uint8)


def decode_states(points: dict) -> tuple[np.ndarray, np.ndarray]:
    """(clean_ok, robust_ok) as boolean arrays."""
    if not isinstance(points, dict) or points.get("encoding") != STATES:
        raise PointsError(f"unknown per-point encoding {str(points.get('encoding') if isinstance(points, dict) else points)[:30]!r}")
    n = points.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise PointsError("per-point flags have no valid n")
    packed = _b64(points.get("data"), -(-n // 5))
    if (packed > 242).any():
        raise PointsError("packed states out of range")
    digits = (packed[:, None] // _POW3[None, :]) % 3
    states = digits.reshape(-1)[:n]
    if (digits.reshape(-1)[n:] != 0).any():
        raise PointsError("packed states have non-zero padding")
    return states >= 1, states == 2


def encode_bits(flags) -> str:
    bits = np.asarray(flags, dtype=bool)
    return base64.b64encode(np.packbits(bits).tobytes()).decode()


def decode_bits(text, n: int) -> np.ndarray:
    packed = _b64(text, -(-n // 8))
    bits = np.unpackbits(packed)
    if bits[n:].any():
        raise PointsError("packed bits have non-zero padding")
    return bits[:n].astype(bool)


def encode_sets(clean_ok, per_set: dict) -> dict:
    """Corruption rows: the clean flags and, per 'corruption/severity', the flags on the corrupted images."""
    return {"encoding": BITS, "n": int(len(clean_ok)), "clean": encode_bits(clean_ok),
            "sets": {k: encode_bits(v) for k, v in per_set.items()}}


def decode_sets(points: dict) -> tuple[np.ndarray, dict]:
    if not isinstance(points, dict) or points.get("encoding") != BITS:
        raise PointsError("unknown per-point encoding for a corruption row")
    n = points.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise PointsError("per-point flags have no valid n")
    sets = points.get("sets")
    if not isinstance(sets, dict):
        raise PointsError("corruption flags have no sets")
    return decode_bits(points.get("clean"), n), {k: decode_bits(v, n) for k, v in sets.items()}
