"""What a row in results.jsonl (or measures.jsonl) may hold: types, and counts inside 0..n that agree.

Results folders travel between people, so a row is untrusted input like a checkpoint. A row that breaks these
rules is never trusted: readers skip it with one warning naming its line, its key does not count as done, and
the evaluation is computed again when asked for. Nothing here raises past the reader.
"""
from __future__ import annotations

import math
import re

from bench.store.points import PointsError, decode_sets, decode_states

KEY = re.compile(r"^[0-9a-f]{20}$")  # bench.store.rows.row_key
ATTACK = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_TEXT = 4096  # characters: paths and error messages are the longest strings a row holds
TOLERANCE = 1e-9  # accuracies are stored as count / n


class RowError(ValueError):
    """Why a row cannot be trusted."""


def _text(row, field, optional=False, max_len=MAX_TEXT):
    v = row.get(field)
    if v is None and optional:
        return
    if not isinstance(v, str) or len(v) > max_len:
        raise RowError(f"{field} is not a string")


def _int(row, field, lo, hi):
    v = row.get(field)
    if isinstance(v, bool) or not isinstance(v, int):
        raise RowError(f"{field} is not an integer")
    if not lo <= v <= hi:
        raise RowError(f"{field} {v} is outside {lo}..{hi}")
    return v


def _fraction(v, field):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
        raise RowError(f"{field} is not an accuracy in 0..1")
    return v


def _fractions(row, field) -> dict:
    """An optional mapping of names to accuracies (per-stage, per corruption set); {} when absent."""
    values = row.get(field)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RowError(f"{field} is not a mapping")
    for k, v in values.items():
        _fraction(v, f"{field}.{k}")
    return values


def _agrees(row, field, correct, n):
    if abs(_fraction(row.get(field), field) - correct / n) > TOLERANCE:
        raise RowError(f"{field} {row.get(field)} disagrees with its count {correct}/{n}")


def _check_ok(row: dict) -> None:
    if not isinstance(row.get("key"), str) or not KEY.match(row["key"]):
        raise RowError("key is not a row key")
    attack = row.get("attack")
    if not isinstance(attack, str) or not ATTACK.match(attack):
        raise RowError("attack is not an attack name")
    norm = row.get("norm")
    if attack in ("clean", "corruptions"):
        if norm is not None:
            raise RowError(f"norm of a {attack} row is not null")
    elif norm not in ("Linf", "L2"):
        raise RowError("norm is not Linf or L2")
    eps = row.get("eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise RowError("eps is not a non-negative number")
    _text(row, "eps_str", max_len=64)
    for field in ("model", "model_id", "data", "time"):
        _text(row, field)
    for field in ("arch", "recipe", "hparams", "train_data", "path"):
        _text(row, field, optional=True)
    if not isinstance(row.get("attack_config"), dict):
        raise RowError("attack_config is not a mapping")
    n = _int(row, "n", 1, 10 ** 9)
    clean = _int(row, "clean_correct", 0, n)
    _agrees(row, "clean_acc", clean, n)
    for field in ("clean_ci95", "robust_ci95"):
        ci = row.get(field)
        if ci is not None and (not isinstance(ci, list) or len(ci) != 2 or not all(
                not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v <= 1 for v in ci)):
            raise RowError(f"{field} is not an interval in 0..1")
    checks = row.get("aa_checks")
    if checks is not None and (not isinstance(checks, dict) or
                               not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in checks.items())):
        raise RowError("aa_checks is not a mapping of check to warning")
    _fractions(row, "stage_acc")
    if attack == "corruptions":
        _fraction(row.get("robust_acc"), "robust_acc")
        per = _fractions(row, "corruption_severity_acc")
        if "points" in row:
            _check_set_points(row, n, clean, per)
        return
    robust = _int(row, "robust_correct", 0, clean)
    _agrees(row, "robust_acc", robust, n)
    if "points" in row:
        try:
            clean_ok, robust_ok = decode_states(row["points"])
        except PointsError as e:
            raise RowError(f"points: {e}") from None
        if len(clean_ok) != n:
            raise RowError(f"points hold {len(clean_ok)} points, the row says n = {n}")
        if int(clean_ok.sum()) != clean or int(robust_ok.sum()) != robust:
            raise RowError(f"counts {clean}/{robust} disagree with the points' sums "
                           f"{int(clean_ok.sum())}/{int(robust_ok.sum())}")


def _check_set_points(row, n, clean, per) -> None:
    try:
        clean_ok, sets = decode_sets(row["points"])
    except PointsError as e:
        raise RowError(f"points: {e}") from None
    if len(clean_ok) != n or int(clean_ok.sum()) != clean:
        raise RowError("clean count disagrees with the points")
    if set(sets) != set(per):
        raise RowError("points' corruption sets differ from corruption_severity_acc")
    for k, bits in sets.items():
        if abs(bits.sum() / n - per[k]) > TOLERANCE:
            raise RowError(f"corruption_severity_acc.{k} disagrees with its points")


def check_result_row(row) -> None:
    """Raise RowError when the row cannot be trusted."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object")
    status = row.get("status")
    if status == "ok":
        _check_ok(row)
    elif status == "failed":
        _text(row, "error")
        _text(row, "model")
        if "key" in row and (not isinstance(row["key"], str) or not KEY.match(row["key"])):
            raise RowError("key is not a row key")
    else:
        raise RowError("status is neither ok nor failed")
    _text(row, "time", max_len=64)


def check_measure_row(row) -> None:
    """Rows of measures.jsonl: a model id, the number of points, finite numbers."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object")
    _text(row, "model_id")
    _text(row, "model")
    _int(row, "measure_n", 1, 10 ** 9)
    for k, v in row.items():
        if k.startswith(("sharpness", "feature_shift")) and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise RowError(f"{k} is not a finite number")
