"""The one results model: rows -> ranked boards of tidy lines, which every renderer reads.

A board is one (threat model, dataset, n): its columns (each attack at each eps, the worst case where more than one
attack ran at that eps, corruptions) and one tidy line per (model, column) with the accuracy, its counts and 95%
interval, AutoAttack's flag, the worst case's attacks, or `failed` with the reason. The boards are ranked once,
by `rank_choice`; leaderboard.md, the site, its CSV/JSON downloads and the study report all read them, so they
cannot order models differently.

    boards(rows) -> [Board]          ranked; Board.lines is a DataFrame (one line per model and column),
                                     Board.records() the same as dicts (what the site's downloads hold)

Pure functions of rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from bench.attacks.registry import column_order, has_column, strength_of
from bench.attacks.evaluation import Evaluation, column_name, eps_key
from bench.report.worst_case import worst_cases
from bench.stats import wilson
from bench.store.rows import bf16_search, latest_ok

CLEAN, CORRUPTIONS = "Clean", "Corruptions"  # the column keys that are not attacks


def latest_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per (model, attack, norm, eps, data, n): the latest successful one (bench.store.rows.latest_ok)."""
    latest = latest_ok(rows)
    if not latest:
        return pd.DataFrame()
    df = pd.DataFrame(latest)
    df["eps_key"] = df["eps"].map(eps_key)
    df["norm"] = df["norm"].fillna("")
    return df


def missing_evaluations(rows: list[dict]) -> list[dict]:
    """Every evaluation asked for that has no result: its latest row failed and no row with its key is ok.
    One entry each: model, model_id, evaluation (attack, norm, eps), attack, norm, eps_key, data, n, reason and
    how many times it failed. A model that did not load is one entry with attack 'load'."""
    ok = {r.get("key") for r in rows if r.get("status") == "ok"}
    latest, failures = {}, {}
    for r in rows:
        key = r.get("key")
        if r.get("status") == "failed" and key not in ok:
            latest[key] = r
            failures[key] = failures.get(key, 0) + 1
    out = []
    for key, r in latest.items():
        attack = "load" if r.get("stage") == "load" else str(r.get("attack") or "")
        norm = r.get("norm") if isinstance(r.get("norm"), str) else ""
        eps = str(r.get("eps_str") or "") if norm else ""
        ek = eps_key(r["eps"]) if isinstance(r.get("eps"), (int, float)) and not isinstance(r.get("eps"), bool) else 0.0
        out.append({"model": str(r.get("model") or r.get("path") or "?"), "model_id": r.get("model_id"),
                    "evaluation": Evaluation(attack, norm or None, eps or "0").title,
                    "attack": attack, "norm": norm, "eps_key": ek, "eps_str": eps, "data": r.get("data"),
                    "n": r.get("n"), "reason": str(r.get("error") or "no reason recorded"),
                    "failures": failures[key]})
    return sorted(out, key=lambda m: (m["model"], m["evaluation"]))


@dataclass(frozen=True)
class RobustColumn:
    """A column of the study's per-model table (bench.report.study_report.per_model), and the key of its point
    flags: robust accuracy under one attack, or "worst" (the worst case over the attacks), at one norm and eps."""
    attack: str
    norm: str
    eps_str: str


def in_column_order(cols) -> list[tuple[str, float, str]]:
    """(attack, eps, eps_str) columns, eps ascending, attacks in the catalogue's order within an eps."""
    return sorted(cols, key=lambda t: (t[1], column_order(t[0])))


def rank_choice(cols, has_worst) -> tuple | None:
    """THE rank rule, for every table (markdown, site, downloads, report): most robust first by the tightest
    upper bound at the largest eps: the worst case over attacks where more than one attack ran there, else the
    strongest attack run there (AA over AA-fast over PGD); ties by clean accuracy, then name. cols: (attack, eps,
    eps_str); has_worst(eps_str): whether the table has that eps's worst case. Returns ("worst", eps_str),
    ("attack", attack, eps_str), or None for a table without attacks (ranked by corruptions, else clean)."""
    if not cols:
        return None
    eps = max(e for _, e, _ in cols)
    top = [c for c in cols if c[1] == eps]
    if has_worst(top[0][2]):
        return ("worst", top[0][2])
    a, _, s = min(top, key=lambda t: strength_of(t[0]))
    return ("attack", a, s)


@dataclass(frozen=True)
class Column:
    key: str  # what every renderer calls it: "AA 8/255", "Worst 8/255", "Corruptions"
    kind: str  # "attack", "worst" or "corruptions"
    attack: str = ""
    eps: float = 0.0  # in input units (8/255 = 0.0313...)
    eps_str: str = ""


@dataclass
class Board:
    norm: str  # "" for a board of clean accuracy and corruptions only
    data: str
    n: int  # test points: the first n, in the dataset's order
    columns: list[Column]  # Clean is not listed: every board has it
    rank_by: str | None  # the column key models are ranked by (then clean accuracy, then name); None: clean only
    models: list[str]  # model ids, in rank order
    lines: pd.DataFrame = field(repr=False)  # one line per (model, column), Clean included; see LINE_FIELDS

    def cell(self, model_id: str, key: str) -> dict | None:
        """The line of one model and column as a dict, or None when the model has nothing there."""
        return self._index.get((model_id, key))

    def records(self) -> list[dict]:
        """The board's lines as dicts, in rank order, missing numbers as None (pandas holds them as NaN)."""
        return self._records

    def __post_init__(self):
        self._records = [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()}
                         for r in self.lines.to_dict("records")]
        self._index = {(r["model_id"], r["column"]): r for r in self._records}


# one tidy line: which board, which model (and what it is), which column, and what it holds there
LINE_FIELDS = ["norm", "data", "n", "rank", "model_id", "model", "arch", "recipe", "hparams", "train_data", "seed",
               "verified", "column", "kind", "attack", "eps", "eps_str", "status", "acc", "correct", "lo", "hi",
               "flag", "protocol", "attacks", "missed", "reason", "corruption_source", "corruption_names",
               "corruption_severities"]


def _interval(correct, n):
    if correct is None or (isinstance(correct, float) and pd.isna(correct)) or not n:
        return None, None
    return wilson(int(correct), int(n))


def _num(v):
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else float(v)


def _model_fields(r) -> dict:
    return {"model_id": r["model_id"], "model": r["model"], "arch": r.get("arch") or "",
            "recipe": r.get("recipe") or "", "hparams": r.get("hparams") or "",
            "train_data": r.get("train_data") or "", "seed": r.get("train_seed"), "verified": bool(r.get("verified"))}


def _blank(board, model, column: Column) -> dict:
    return {**board, **model, "rank": None, "column": column.key, "kind": column.kind, "attack": column.attack,
            "eps": column.eps, "eps_str": column.eps_str, "status": "ok", "acc": None, "correct": None, "lo": None,
            "hi": None, "flag": "", "protocol": "", "attacks": [], "missed": {}, "reason": "", "corruption_source": None,
            "corruption_names": [], "corruption_severities": []}


def _fired(checks) -> str:
    """AutoAttack's checks that fired on a row, as one text ('' when none did)."""
    if not isinstance(checks, dict):
        return ""
    return "; ".join(f"{k}: {v}" for k, v in checks.items() if v)


def protocol_note(row) -> str:
    """Why an AutoAttack row is not RobustBench's standard protocol ('' when it is, or is no AutoAttack row)."""
    if row.get("rb_standard") is not False:
        return ""
    cfg = row.get("attack_config") if isinstance(row.get("attack_config"), dict) else {}
    if bf16_search(row):
        return "AutoAttack's search in bf16 (every flag decided in fp32)"
    if cfg.get("version") == "rand":
        return f"AutoAttack's rand version (EOT over {row.get('eot_iter') or cfg.get('eot_iter')} draws)"
    k = _num(row.get("n_target_classes"))  # a table's column holds it as a float
    text = (f"AutoAttack targeting {k:.0f} class{'es' * (k != 1)} (the model has {k + 1:.0f}), not the standard's "
            "9" if k is not None else "AutoAttack with non-standard settings")
    if isinstance(cfg.get("apgd_t_loss"), str):
        text += f", APGD-T on the {cfg['apgd_t_loss']} loss (the targeted DLR loss needs 4 classes)"
    return text


def rank_groups(items: list, value, rank_by: str | None, name) -> list:
    """THE ordering under the rank rule, for models and for groups of seeds alike: rank_by's value, highest first
    (nothing there: last), then clean accuracy, then name. value(item, column key) -> float or None."""
    def key(item):
        v = value(item, rank_by) if rank_by else None
        c = value(item, CLEAN)
        return (v is None, -(v or 0.0), c is None, -(c or 0.0), name(item))

    return sorted(items, key=key)


def _rank(lines: list[dict], rank_by: str | None) -> list[str]:
    acc = {(ln["model_id"], ln["column"]): ln["acc"] for ln in lines}
    names = {ln["model_id"]: str(ln["model"]) for ln in lines}
    return rank_groups(list(names), lambda mid, key: acc.get((mid, key)), rank_by, names.get)


def _finish(norm, data, n, columns, lines) -> Board:
    choice = rank_choice([(c.attack, c.eps, c.eps_str) for c in columns if c.kind == "attack"],
                         lambda s: any(c.key == f"Worst {s}" for c in columns))
    if choice is None:
        rank_by = CORRUPTIONS if any(c.kind == "corruptions" for c in columns) else None
    else:
        rank_by = f"Worst {choice[1]}" if choice[0] == "worst" else column_name(choice[1], choice[2])
    order = _rank(lines, rank_by)
    place = {mid: i for i, mid in enumerate(order, 1)}
    for ln in lines:
        ln["rank"] = place[ln["model_id"]]
    frame = pd.DataFrame(lines, columns=LINE_FIELDS)
    frame = frame.sort_values("rank", kind="stable").reset_index(drop=True)
    return Board(norm, data, int(n), columns, rank_by, order, frame)


def _ordered(attack_cols: list[Column], worst: set[str]) -> list[Column]:
    """Each eps's attack columns, then that eps's worst case."""
    out = []
    for eps_str in dict.fromkeys(c.eps_str for c in attack_cols):
        group = [c for c in attack_cols if c.eps_str == eps_str]
        out += group
        if f"Worst {eps_str}" in worst:
            out.append(Column(f"Worst {eps_str}", "worst", "", group[0].eps, eps_str))
    return out


def _attack_line(board, model, c: Column, m, norm, here, mid) -> dict | None:
    """A model's line in an attack column: its latest ok row there, else `failed` with the reason, else None."""
    hit = m[(m["attack"] == c.attack) & (m["norm"] == norm) & (m["eps_key"] == eps_key(c.eps))]
    line = _blank(board, model, c)
    if len(hit):
        h = hit.iloc[0]
        correct = h.get("robust_correct")
        line.update(acc=_num(h["robust_acc"]), correct=None if pd.isna(correct) else int(correct),
                    flag=_fired(h.get("aa_checks")), protocol=protocol_note(h))
        line["lo"], line["hi"] = _interval(line["correct"], h["n"])
        return line
    failed = [x for x in here if x["model_id"] == mid and x["norm"] == norm
              and x["attack"] == c.attack and x["eps_key"] == eps_key(c.eps)]
    if not failed:
        return None
    line.update(status="failed", reason=failed[0]["reason"])
    return line


def _model_lines(board, m, mid, attack_cols, here, worst, worst_keys: set) -> list[dict]:
    """One model's lines on a board: Clean, each attack column, each worst case over more than one attack,
    Corruptions."""
    data, n, norm = board["data"], board["n"], board["norm"]
    model = _model_fields(m.iloc[0])
    clean = m[m["attack"] == "clean"]
    src = clean.iloc[0] if len(clean) else m.iloc[0]
    line = _blank(board, model, Column(CLEAN, "clean"))
    correct = src.get("clean_correct")
    line.update(acc=_num(src["clean_acc"]), correct=None if pd.isna(correct) else int(correct))
    line["lo"], line["hi"] = _interval(line["correct"], n)
    lines = [line]
    lines += [ln for c in attack_cols if (ln := _attack_line(board, model, c, m, norm, here, mid)) is not None]
    for e, s in dict.fromkeys((c.eps, c.eps_str) for c in attack_cols):
        wc = worst.get((mid, data, int(n), norm, eps_key(e)))
        if wc is not None and len(wc.attacks) > 1:
            line = _blank(board, model, Column(f"Worst {s}", "worst", "", e, s))
            correct = int(wc.robust.sum())
            line.update(acc=wc.acc, correct=correct, attacks=list(wc.attacks),
                        missed={a: wc.missed_by(a) for a in wc.attacks})
            line["lo"], line["hi"] = _interval(correct, wc.n)
            lines.append(line)
            worst_keys.add(f"Worst {s}")
    corr = m[m["attack"] == "corruptions"]
    if len(corr):
        line = _blank(board, model, Column(CORRUPTIONS, "corruptions"))
        cfg = corr.iloc[0].get("attack_config")
        cfg = cfg if isinstance(cfg, dict) else {}
        line.update(acc=_num(corr.iloc[0]["robust_acc"]), corruption_source=corr.iloc[0].get("corruption_source"),
                    corruption_names=list(cfg.get("names", [])), corruption_severities=list(cfg.get("severities", [])))
        lines.append(line)
    return lines


def _failed_only_boards(df, missing, have) -> list[Board]:
    """Boards of evaluations that failed on points no ok row of their model covers: `failed` lines only."""
    by_model = {mid: m.iloc[-1] for mid, m in df.groupby("model_id")}
    alone: dict = {}
    for x in missing:
        if x["norm"] and (x["norm"], x["data"], x["n"]) not in have and x["model_id"] in by_model:
            alone.setdefault((x["norm"], x["data"], int(x["n"])), []).append(x)
    out = []
    for (norm, data, n), group in alone.items():
        board = {"norm": norm, "data": data, "n": n}
        columns = [Column(column_name(a, s), "attack", a, float(e), s)
                   for a, e, s in in_column_order({(x["attack"], x["eps_key"], x["eps_str"]) for x in group})]
        lines = []
        for mid in dict.fromkeys(x["model_id"] for x in group):
            model = _model_fields(by_model[mid])
            lines.append(_blank(board, model, Column(CLEAN, "clean")))
            for x in group:
                if x["model_id"] == mid:
                    line = _blank(board, model, next(c for c in columns if c.key == column_name(x["attack"], x["eps_str"])))
                    line.update(status="failed", reason=x["reason"])
                    lines.append(line)
        out.append(_finish(norm, data, n, columns, lines))
    return out


def boards(rows: list[dict], missing: list[dict] | None = None, worst: dict | None = None) -> list[Board]:
    """Every board of these rows, models ranked, in RobustBench's order within a dataset: Linf, L2, L1, then
    clean/corruptions, the most test points first. A failed evaluation keeps its column and shows `failed`;
    one that failed on points no other row of its model covers gets a board of its own. missing and worst: the
    rows' missing_evaluations and worst_cases, when the caller has them."""
    df = latest_frame(rows)
    missing = [m for m in (missing_evaluations(rows) if missing is None else missing) if has_column(m["attack"])]
    if df.empty:
        return []
    worst = worst_cases(rows) if worst is None else worst
    out = []
    for (data, n), part in df.groupby(["data", "n"]):
        here = [m for m in missing if m["data"] == data and m["n"] == n and m["model_id"] in set(part["model_id"])]
        norms = sorted({x for x in part["norm"].unique() if x} | {m["norm"] for m in here}) or [""]
        for norm in norms:
            board = {"norm": norm, "data": data, "n": int(n)}
            sub = part[part["norm"] == norm] if norm else part.iloc[:0]
            cols = {(a, e, s) for a, e, s in sub[["attack", "eps_key", "eps_str"]].itertuples(index=False)}
            seen = {(a, e) for a, e, _ in cols}
            cols |= {(m["attack"], m["eps_key"], m["eps_str"]) for m in here
                     if m["norm"] == norm and (m["attack"], m["eps_key"]) not in seen}
            attack_cols = [Column(column_name(a, s), "attack", a, float(e), s)
                           for a, e, s in in_column_order(dict(((a, e), (a, e, s)) for a, e, s in cols).values())]
            lines, worst_keys = [], set()
            for mid, m in part.groupby("model_id"):
                lines += _model_lines(board, m, mid, attack_cols, here, worst, worst_keys)
            columns = _ordered(attack_cols, worst_keys)
            if any(ln["column"] == CORRUPTIONS for ln in lines):
                columns.append(Column(CORRUPTIONS, "corruptions"))
            out.append(_finish(norm, data, n, columns, lines))
    out += _failed_only_boards(df, missing, {(b.norm, b.data, b.n) for b in out})
    norm_order = {"Linf": 0, "L2": 1, "L1": 2, "": 3}
    out.sort(key=lambda b: (b.data, norm_order.get(b.norm, 3), -b.n))
    return out


def config_of(r: dict) -> str:
    """A model's recipe with its settings ('sam rho=0.05'): what the seeds of one configuration share."""
    return f"{r.get('recipe') or ''} {r.get('hparams') or ''}".strip()


def seed_group(r: dict) -> tuple[str, str, str]:
    """The one key models are pooled over seeds by (REPORT.md's groups, the claims' per-point flags, the site's
    configurations): architecture, recipe with its settings, training data."""
    return (r.get("arch") or "", config_of(r), r.get("train_data") or "")


def seed_groups(rows: list[dict]) -> dict[str, dict]:
    """model_id -> {"key": its seed_group, "name": the group's name, "model": the trained model it is}. The name
    is the configuration, with the architecture and training data added where the rows hold more than one; the
    trained model is the first model_id seen with the same weights (a .pt and the same weights read back from the
    Hub are one model, not two seeds)."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("model_id")]
    keys = {r["model_id"]: seed_group(r) for r in ok}
    archs, datas = ({k[i] for k in keys.values()} for i in (0, 2))
    first: dict = {}
    out = {}
    for r in ok:
        mid = r["model_id"]
        if mid in out:
            continue
        arch, config, data = keys[mid]
        name = " · ".join([config] + [arch] * (len(archs) > 1) + [data] * (len(datas) > 1))
        out[mid] = {"key": keys[mid], "name": name, "model": first.setdefault(r.get("weights_sha256") or mid, mid)}
    return out


def point_flags(rows: list[dict], groups: dict) -> dict:
    """{group: {column: {train seed: boolean flags}}} from rows with per-point flags: column 'clean' (right
    clean, from clean rows) and a RobustColumn (robust under that attack). groups: the rows' seed_groups,
    whose names the per-model table's groups carry too."""
    from bench.store.points import decode_states

    df = latest_frame(rows)
    out: dict = {}
    if df.empty or "points" not in df.columns:
        return out
    for r in df.to_dict("records"):
        if not isinstance(r.get("points"), dict) or r["attack"] == "corruptions":
            continue
        clean, robust = decode_states(r["points"])
        col = "clean" if r["attack"] == "clean" else RobustColumn(r["attack"], r["norm"], r["eps_str"])
        group = groups[r["model_id"]]["name"]
        out.setdefault(group, {}).setdefault(col, {})[r.get("train_seed")] = clean if col == "clean" else robust
    return out


@dataclass(frozen=True)
class Results:
    """What every renderer of one set of rows reads, computed once: the ranked boards, the missing evaluations,
    the worst cases, the seed groups and the per-point flags (leaderboard.md, REPORT.md, its claims and the site
    take it from bench.report.outputs.write_outputs)."""
    rows: list = field(repr=False)
    boards: list
    missing: list
    worst: dict  # worst_cases: (model_id, data, n, norm, eps_key) -> the worst case over the attacks run there
    groups: dict  # seed_groups: model_id -> its group's key and name, and the trained model it is

    @classmethod
    def of(cls, rows: list[dict]) -> "Results":
        missing, worst = missing_evaluations(rows), worst_cases(rows)
        return cls(rows, boards(rows, missing, worst), missing, worst, seed_groups(rows))

    @cached_property
    def flags(self) -> dict:
        """point_flags by seed group (the claims' paired tests); decoded when a renderer first asks."""
        return point_flags(self.rows, self.groups)


def corruptions_note(board) -> str:
    """What the board's Corruptions column is the mean of, read off its lines: the corruptions, severities,
    where the sets came from and the data (models that ran different sets are named with theirs)."""
    sets: dict = {}
    for line in board.records():
        if line["kind"] == "corruptions" and line["status"] == "ok":
            key = (tuple(line["corruption_names"] or ()), tuple(line["corruption_severities"] or ()),
                   line["corruption_source"] or "")
            sets.setdefault(key, []).append(line["model"])
    if not sets:
        return ""
    source = {"official": "the official files", "regenerated": "sets regenerated with the CIFAR-10-C generator"}
    parts = []
    for (names, sev, src), models in sets.items():
        if not sev:
            sev_text = "severities not recorded"
        elif sev == tuple(range(sev[0], sev[-1] + 1)):
            sev_text = f"severities {sev[0]}-{sev[-1]}"
        else:
            sev_text = "severities " + ", ".join(map(str, sev))
        which = (f"{len(names)} corruption{'s' * (len(names) != 1)} ({', '.join(names)})" if names
                 else "corruptions not recorded in the rows")
        text = (f"mean over {which} x {sev_text}, "
                f"{source.get(src, src or 'unknown source')}, on the board's {board.data} test points")
        parts.append(text + (f" (for {', '.join(models)})" if len(sets) > 1 else ""))
    return "Corruptions = " + "; ".join(parts) + "."
