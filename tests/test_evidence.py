"""Per-point evidence: flags stored in rows, the worst case over attacks, paired verdicts; each against an
independent construction."""
import json

import numpy as np
import pytest

from bench.report.paired import HELD, INCONCLUSIVE, NOT_HELD, bootstrap_diff, compare, mcnemar, verdict
from bench.report.worst_case import worst_cases
from bench.store.points import decode_sets, decode_states, encode_sets, encode_states
from bench.store.rows import append_row, read_rows
from bench.store.schema import RowError, check_result_row


def _states(rng, n, p_clean=0.8, p_robust=0.4):
    clean = rng.random(n) < p_clean
    return clean, clean & (rng.random(n) < p_robust / p_clean)


def test_states_round_trip_and_a_10000_point_row_grows_by_under_3_kb():
    rng = np.random.default_rng(0)
    for n in (0, 1, 4, 5, 6, 1017, 10000):
        clean, robust = _states(rng, n)
        pts = encode_states(clean, robust)
        c2, r2 = decode_states(json.loads(json.dumps(pts)))
        assert np.array_equal(c2, clean) and np.array_equal(r2, robust)
    assert len(json.dumps({"points": encode_states(*_states(rng, 10000))})) < 3 * 1024
    with pytest.raises(ValueError):
        encode_states([False], [True])  # robust without clean cannot be


def test_corruption_flags_round_trip():
    rng = np.random.default_rng(1)
    clean = rng.random(37) < 0.5
    sets = {f"fog/{s}": rng.random(37) < 0.3 for s in range(1, 6)}
    c2, s2 = decode_sets(encode_sets(clean, sets))
    assert np.array_equal(c2, clean) and all(np.array_equal(s2[k], v) for k, v in sets.items())


def _row(clean, robust, **over):
    n = len(clean)
    return {"key": "ab" * 10, "status": "ok", "attack": "pgd", "norm": "Linf", "eps": 8 / 255, "eps_str": "8/255",
            "model": "m", "model_id": "m" * 64, "data": "d", "time": "t", "attack_config": {"steps": 10}, "n": n,
            "clean_correct": int(clean.sum()), "clean_acc": clean.sum() / n, "robust_correct": int(robust.sum()),
            "robust_acc": robust.sum() / n, "points": encode_states(clean, robust), **over}


def test_a_row_whose_counts_disagree_with_its_flags_is_refused_on_read(tmp_path, capsys):
    rng = np.random.default_rng(2)
    clean, robust = _states(rng, 50)
    check_result_row(_row(clean, robust))
    k = int(robust.sum())
    with pytest.raises(RowError, match="disagree with the points"):
        check_result_row(_row(clean, robust, robust_correct=k - 1, robust_acc=(k - 1) / 50))
    path = str(tmp_path / "results.jsonl")
    append_row(path, _row(clean, robust, robust_correct=k - 1, robust_acc=(k - 1) / 50))
    old = _row(clean, robust)
    del old["points"]  # a row from before flags existed: still readable
    append_row(path, old)
    (kept,) = read_rows(path)
    assert "points" not in kept and "row skipped" in capsys.readouterr().err


def test_worst_case_over_two_attacks_is_the_and_of_their_flags():
    rng = np.random.default_rng(3)
    n = 200
    clean = rng.random(n) < 0.9
    pgd = clean & (rng.random(n) < 0.5)
    aa = clean & (rng.random(n) < 0.5)
    aa_short = aa[:64]  # AutoAttack on the first 64 points only
    rows = [_row(clean, pgd, key="a" * 20),
            _row(clean[:64], aa_short, key="b" * 20, attack="autoattack", attack_config={"version": "standard"})]
    wc = worst_cases(rows)
    full = wc[("m" * 64, "d", n, "Linf", round(8 / 255, 8))]
    assert full.attacks == ["PGD-10"] and np.array_equal(full.robust, pgd)
    short = wc[("m" * 64, "d", 64, "Linf", round(8 / 255, 8))]
    expected = pgd[:64] & aa_short  # written out: robust only where both failed
    assert short.attacks == ["AA", "PGD-10"] and np.array_equal(short.robust, expected)
    assert short.missed_by("AA") == int((aa_short & ~pgd[:64]).sum())
    assert short.acc == expected.mean() <= min(pgd[:64].mean(), aa_short.mean())


def test_bootstrap_interval_covers_a_known_difference_at_the_stated_rate():
    """Many data sets drawn with a known true difference; the 95% interval must cover it in about 95% of them."""
    rng = np.random.default_rng(4)
    n, trials, covered = 400, 300, 0
    p_a, p_b = 0.62, 0.55
    for t in range(trials):
        u = rng.random(n)  # shared difficulty: the pairing the bootstrap must respect
        a = u < p_a + 0.1 * (rng.random(n) - 0.5)
        b = u < p_b + 0.1 * (rng.random(n) - 0.5)
        _, lo, hi = bootstrap_diff(a[None], b[None], replicates=1000, seed=t)
        covered += lo <= p_a - p_b <= hi
    assert 0.91 <= covered / trials <= 0.985, covered / trials


def test_equal_models_are_inconclusive_and_a_dominating_model_holds():
    rng = np.random.default_rng(5)
    n = 1000
    a = {s: rng.random(n) < 0.6 for s in (0, 1)}
    b = {s: rng.random(n) < 0.6 for s in (0, 1)}
    p = compare(a, b)
    assert p.lo < 0 < p.hi and abs(p.diff) < 0.05 and verdict(p) == INCONCLUSIVE
    same = compare(a, a)
    assert same.diff == same.lo == same.hi == 0 and verdict(same) == INCONCLUSIVE
    better = {s: f | (rng.random(n) < 0.1) for s, f in b.items()}  # right wherever b is, and more
    q = compare(better, b)
    assert q.lo > 0 and verdict(q) == HELD and verdict(q, side="<") == NOT_HELD and q.only_b == 0
    assert verdict(compare(b, better)) == NOT_HELD


def test_mcnemar_counts_match_a_hand_count():
    a = {0: np.array([1, 1, 0, 0, 1], bool), 1: np.array([1, 0, 0, 1, 1], bool)}
    b = {0: np.array([1, 0, 1, 0, 0], bool), 1: np.array([0, 0, 0, 1, 1], bool)}
    only_a, only_b, p = mcnemar(a, b)
    assert (only_a, only_b) == (2 + 1, 1 + 0) and 0 < p <= 1


def test_verdict_thresholds_and_sides():
    from bench.report.paired import Paired

    p = Paired(diff=-0.004, lo=-0.008, hi=-0.001, only_a=0, only_b=0, p_mcnemar=1, n=1, seeds=((0,), (0,)))
    assert verdict(p, -0.01, ">") == HELD  # within one point of standard
    assert verdict(p, 0.0, "<") == HELD  # and it does cost something
    assert verdict(p, 0.0, ">") == NOT_HELD


def test_every_renderer_ranks_the_same_rows_alike_by_the_one_rule(tmp_path):
    """Model A: AutoAttack leaves 50% robust but PGD fools half of those, so its worst case is lower than model
    B's, which both attacks leave at 40%. The rule ranks by the worst case at the largest eps: B first, in every
    renderer: leaderboard.md, the site's table and its configurations, its CSV and JSON downloads, and the study
    report's groups (a rule on AutoAttack alone would put A first)."""
    import csv
    import json

    from bench.report.tables import leaderboard_tables, to_markdown
    from bench.report.results import RobustColumn, rank_choice
    from bench.report.outputs import results_of
    from bench.report.web import build_site, pages
    from bench.report.study_report import per_model, rank_key, results_table, summarize

    n = 100
    clean = np.ones(n, bool)
    a_aa = np.arange(n) < 50
    a_pgd = (np.arange(n) < 25) | (np.arange(n) >= 50) & (np.arange(n) < 60)  # fools 25 points AA missed
    b_both = np.arange(n) < 40
    rows = []
    for name, aa, pgd in (("A", a_aa, a_pgd), ("B", b_both, b_both), ("C", b_both[::-1].copy(), b_both[::-1].copy())):
        mid = name * 64
        common = {"model": name, "model_id": mid, "recipe": "r", "hparams": name}  # one group per model
        rows.append(_row(clean, pgd, key=f"{name}p" * 10, **common))
        rows.append(_row(clean, aa, key=f"{name}a" * 10, attack="autoattack", attack_config={"version": "standard"},
                         **common))
    expected = ["B", "C", "A"]  # B and C tie at 40%: then clean (equal), then name
    results = results_of(rows)
    (table,) = leaderboard_tables(results).values()
    assert list(table["Model"]) == expected
    markdown = to_markdown(leaderboard_tables(results))
    assert [line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| ")][1:] == expected
    (section,) = pages.sections(results, pages.models(rows, {}))
    assert [line["model"]["name"] for line in section["lines"]] == expected
    assert [g["config"] for g in section["groups"]] == [f"r {x}" for x in expected]
    assert section["rank_by"] == "Worst 8/255"
    build_site(rows, str(tmp_path / "site"), results=results)
    with open(tmp_path / "site" / "results.csv", newline="") as f:
        lines = [r for r in csv.DictReader(f) if r["column"] == "Worst 8/255"]
    assert [r["model"] for r in lines] == expected and [int(r["rank"]) for r in lines] == [1, 2, 3]
    downloaded = json.loads((tmp_path / "site" / "results.json").read_text())
    assert list(dict.fromkeys(r["model"] for r in downloaded)) == expected
    assert rank_key(results) == RobustColumn("worst", "Linf", "8/255")
    s = summarize(per_model(results, []), rank_key(results))
    assert list(s.index) == [f"r {x}" for x in expected]
    assert [line.split("|")[1].strip() for line in results_table(per_model(results, []), s).splitlines()[2:]] == \
        [f"r {x}" for x in expected]
    assert rank_choice([("pgd", 0.03, "8/255"), ("autoattack", 0.03, "8/255")], lambda s: False) == \
        ("attack", "autoattack", "8/255")
