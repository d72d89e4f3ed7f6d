"""What a row in results.jsonl (or measures.jsonl) may hold: types, and counts inside 0..n that agree.

Results folders travel between people, so a row is untrusted input like a checkpoint. A row that breaks these
rules is never trusted: readers skip it with one warning naming its line, its key does not count as done, and
the evaluation is computed again when asked for. Nothing here raises past the reader.
"""
from __future__ import annotations

import math
import re

from bench.store.points import PointsError, decode_sets, decode_states
from zoo.metadata import CLASS_NAME, SHA256
from zoo.pgd import THREAT_NORMS

KEY = re.compile(r"^[0-9a-f]{20}$")  # bench.store.rows.row_key
ATTACK = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
FIELD = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # every field name a row of ours holds; nothing else reaches a writer
EPS = re.compile(r"^[0-9][0-9.e+-]{0,30}(/[0-9][0-9.e+-]{0,30})?$")  # "8/255", "0.5", "1e-3", "0.5/255"
MAX_TEXT = 4096  # characters: paths and error messages are the longest strings a row holds
MAX_NAME = 200  # characters of a model name: a name fits a table cell (file names allow 255 bytes)
TOLERANCE = 1e-9  # accuracies are stored as count / n


def short_name(name: str) -> str:
    """A model's name as rows hold it: at most MAX_NAME characters, a longer one cut with '…' (the row's `path`
    keeps the file's full name)."""
    return name if len(name) <= MAX_NAME else name[:MAX_NAME - 1] + "…"


class RowError(ValueError):
    """Why a row cannot be trusted."""


def _text(row, field, optional=False, max_len=MAX_TEXT):
    v = row.get(field)
    if v is None and optional:
        return
    if not isinstance(v, str):
        raise RowError(f"{field} is not a string")
    if len(v) > max_len:
        raise RowError(f"{field} is {len(v)} characters long, over the limit of {max_len}")


def _number(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def _eps_text(row, optional=False):
    v = row.get("eps_str")
    if v is None and optional:
        return
    if not isinstance(v, str) or not EPS.match(v):
        raise RowError("eps_str is not a radius like 8/255 or 0.5")


# attack_config: what the writers read, typed; other settings may be any short scalar or list of them
_CONFIG_INT = ("steps", "restarts", "seed", "generator_version")
_CONFIG_NUMBER = ("alpha", "eps")
_CONFIG_LIST = ("names", "stages", "severities")


def _scalar(v) -> bool:
    return v is None or isinstance(v, bool) or _number(v) or (isinstance(v, str) and len(v) <= 256)


def _check_config(config) -> None:
    if not isinstance(config, dict):
        raise RowError("attack_config is not a mapping")
    for k, v in config.items():
        if not isinstance(k, str) or not FIELD.match(k):
            raise RowError("attack_config has a setting whose name is not a field name")
        if k in _CONFIG_INT and (isinstance(v, bool) or not isinstance(v, int)):
            raise RowError(f"attack_config.{k} is not an integer")
        if k in _CONFIG_NUMBER and (not _number(v) or v < 0):
            raise RowError(f"attack_config.{k} is not a non-negative number")
        if k in _CONFIG_LIST and (not isinstance(v, list) or len(v) > 256 or
                                  not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v)):
            raise RowError(f"attack_config.{k} is not a list of names")
        if not (_scalar(v) or isinstance(v, list) and len(v) <= 256 and all(_scalar(x) for x in v)):
            raise RowError(f"attack_config.{k} is neither a short value nor a list of them")


def _check_common(row: dict) -> None:
    """What every row, ok or failed, must hold right when it holds it: field names, the model's name, the
    evaluation it names."""
    for k in row:
        if not isinstance(k, str) or not FIELD.match(k):
            raise RowError(f"field {str(k)[:40]!r} is not a field name (lowercase letters, digits, _)")
    _text(row, "model", max_len=MAX_NAME)
    attack = row.get("attack")
    if attack is not None and (not isinstance(attack, str) or not ATTACK.match(attack)):
        raise RowError("attack is not an attack name")
    if row.get("norm") not in (None, *THREAT_NORMS):
        raise RowError(f"norm is not one of {', '.join(THREAT_NORMS)}")
    if "eps" in row and (not _number(row["eps"]) or row["eps"] < 0):
        raise RowError("eps is not a non-negative number")
    _eps_text(row, optional=True)
    if "attack_config" in row:
        _check_config(row["attack_config"])
    for field in ("model_id", "data", "path", "stage", "arch", "recipe", "hparams", "train_data", "device",
                  "precision", "corruption_source"):
        _text(row, field, optional=True)
    if row.get("n") is not None:
        _int(row, "n", 1, 10 ** 9)
    _check_data(row)




def _check_data(row: dict) -> None:
    """A folder's fingerprint, class names and size, when the row holds them; AutoAttack's settings."""
    fp = row.get("data_fingerprint")
    if fp is not None and (not isinstance(fp, str) or not SHA256.match(fp)):
        raise RowError("data_fingerprint is not a sha256")
    classes = row.get("classes")
    if classes is not None and (not isinstance(classes, list) or not 2 <= len(classes) <= 100000 or
                                not all(isinstance(c, str) and CLASS_NAME.match(c) for c in classes)):
        raise RowError("classes is not a list of class names (folder names without control characters)")
    for field, hi in (("image_size", 4096), ("n_target_classes", 100000), ("eot_iter", 10000)):
        if row.get(field) is not None:
            _int(row, field, 1, hi)
    if row.get("workers") is not None:  # the processes that computed its batches: none when no point was left
        _int(row, "workers", 0, 100000)
    for field in ("rb_standard", "deterministic"):
        if field in row and not isinstance(row[field], bool):
            raise RowError(f"{field} is not true or false")


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
    elif norm not in THREAT_NORMS:
        raise RowError(f"norm is not one of {', '.join(THREAT_NORMS)}")
    eps = row.get("eps")
    if not _number(eps) or eps < 0:
        raise RowError("eps is not a non-negative number")
    _eps_text(row)
    for field in ("model_id", "data", "time"):
        _text(row, field)
    if not isinstance(row.get("attack_config"), dict):
        raise RowError("attack_config is not a mapping")
    if row.get("train_seed") is not None and (isinstance(row["train_seed"], bool) or not isinstance(row["train_seed"], int)):
        raise RowError("train_seed is not an integer")
    if "verified" in row and not isinstance(row["verified"], bool):
        raise RowError("verified is not true or false")
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
    if "adversarial" in row:
        _check_images(row["adversarial"], n)
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


def _check_images(ref, n) -> None:
    """The adversarial images a row names: a file under the results folder's adversarial/, its sha256, its shape
    (n points first)."""
    from bench.store.adversarial import REF

    if not isinstance(ref, dict) or not isinstance(ref.get("path"), str) or not REF.match(ref["path"]):
        raise RowError("adversarial.path is not adversarial/<row key>.pt")
    if not isinstance(ref.get("sha256"), str) or not re.match(r"^[0-9a-f]{64}$", ref["sha256"]):
        raise RowError("adversarial.sha256 is not a sha256")
    shape = ref.get("shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 5 or shape[0] != n or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 10 ** 6 for d in shape):
        raise RowError("adversarial.shape is not the shape of the row's n points")


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
    if status not in ("ok", "failed"):
        raise RowError("status is neither ok nor failed")
    _check_common(row)
    if status == "ok":
        _check_ok(row)
    else:
        _text(row, "error")
        if "key" in row and (not isinstance(row["key"], str) or not KEY.match(row["key"])):
            raise RowError("key is not a row key")
    _text(row, "time", max_len=64)


def check_verify_row(row) -> None:
    """Rows of verify.jsonl (bench.verify): which row and file were replayed, and what came of it."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object")
    if not isinstance(row.get("key"), str) or not KEY.match(row["key"]):
        raise RowError("key is not a row key")
    if not isinstance(row.get("sha256"), str) or not re.match(r"^[0-9a-f]{64}$", row["sha256"]):
        raise RowError("sha256 is not a sha256")
    if row.get("status") not in ("ok", "failed"):
        raise RowError("status is neither ok nor failed")
    for field in ("replayed", "fooled"):
        if row.get(field) is not None and (isinstance(row[field], bool) or not isinstance(row[field], int)
                                           or row[field] < 0):
            raise RowError(f"{field} is not a count")
    _text(row, "reason", optional=True, max_len=MAX_TEXT)
    _text(row, "time", max_len=64)


HF_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")  # the Hub's ORG/NAME


def check_published_row(row) -> None:
    """Rows of published.jsonl (bench.export --hf --repo-id): which weights went to which Hub repository."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object")
    for field in ("model_id", "weights_sha256"):
        if not isinstance(row.get(field), str) or not SHA256.match(row[field]):
            raise RowError(f"{field} is not a sha256")
    if not isinstance(row.get("repo_id"), str) or not HF_REPO_ID.match(row["repo_id"]):
        raise RowError("repo_id is not ORG/NAME")
    _text(row, "time", max_len=64)


def check_measure_row(row) -> None:
    """Rows of measures.jsonl: a model id, the number of points, finite numbers; the engine's rows also a key and a
    status (a failed one its error). Rows written before measures were an evaluation have neither."""
    if not isinstance(row, dict):
        raise RowError("not a JSON object")
    _text(row, "model_id")
    _text(row, "model")
    _int(row, "measure_n", 1, 10 ** 9)
    if "key" in row or "status" in row:
        if not isinstance(row.get("key"), str) or row.get("status") not in ("ok", "failed"):
            raise RowError("a measures row with a key needs a status, ok or failed")
        if row["status"] == "failed":
            _text(row, "error")
    for k, v in row.items():
        if k.startswith(("sharpness", "feature_shift")) and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise RowError(f"{k} is not a finite number")


def check_cell_row(row) -> None:
    """A row of the study's cells.jsonl: a cell done or failed (with what it misses), or a report written."""
    if not isinstance(row, dict) or row.get("kind") not in ("cell", "report"):
        raise RowError("not a cell or report row")
    for field in ("run", "worker", "time"):
        if not isinstance(row.get(field), str):
            raise RowError(f"{field} is not a string")
    if row["kind"] == "cell":
        if not isinstance(row.get("cell"), str) or row.get("status") not in ("done", "failed"):
            raise RowError("cell row without a cell key and a status")
        for field in ("train_seconds", "seconds"):
            v = row.get(field)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise RowError(f"{field} is not a number")
        for field in ("checkpoint", "model_id", "error"):
            if row.get(field) is not None and not isinstance(row[field], str):
                raise RowError(f"{field} is not a string")
        missing = row.get("missing", [])
        if not isinstance(missing, list) or not all(
                isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("evaluation", "status", "reason"))
                for m in missing):
            raise RowError("missing is not a list of evaluations with their status and reason")
