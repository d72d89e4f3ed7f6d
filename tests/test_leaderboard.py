from bench.report.outputs import results_of
from bench.report.tables import leaderboard_tables, to_markdown
from bench.report.worst_case import attack_sanity_warnings


def row(mid, attack, norm, eps, eps_str, clean, robust, t="2026-01-01T00:00:00"):
    return {"status": "ok", "model_id": mid, "model": f"m-{mid}", "arch": "a", "recipe": "r", "hparams": "",
            "attack": attack, "norm": norm, "eps": eps, "eps_str": eps_str, "clean_acc": clean, "robust_acc": robust,
            "data": "d", "n": 100, "time": t}


def test_tables_sort_by_strongest_attack_at_largest_eps():
    rows = [row("1", "clean", None, 0.0, "0", 0.9, 0.9), row("2", "clean", None, 0.0, "0", 0.8, 0.8),
            row("1", "pgd", "Linf", 8 / 255, "8/255", 0.9, 0.30), row("2", "pgd", "Linf", 8 / 255, "8/255", 0.8, 0.40),
            row("1", "autoattack", "Linf", 8 / 255, "8/255", 0.9, 0.50), row("2", "autoattack", "Linf", 8 / 255, "8/255", 0.8, 0.35),
            row("1", "pgd", "Linf", 2 / 255, "2/255", 0.9, 0.7),
            {**row("2", "corruptions", None, 0.0, "0", 0.8, 0.6)},
            {**row("1", "autoattack", "Linf", 8 / 255, "8/255", 0.9, 0.10), "status": "failed"}]
    (key, table), = leaderboard_tables(results_of(rows)).items()
    assert key == ("Linf", "d", 100)
    assert list(table.columns) == ["Model", "Arch", "Recipe", "Clean", "PGD 2/255", "PGD 8/255", "AA 8/255", "Corruptions"]
    assert list(table["Model"]) == ["m-1", "m-2"]  # AA 8/255 decides, though PGD 8/255 would order them the other way
    assert table.loc[0, "AA 8/255"] == 0.50  # failed rows never count
    md = to_markdown(leaderboard_tables(results_of(rows)))
    assert "| m-1" in md and "50.00" in md and "60.00" in md


def test_latest_row_wins_and_aa_above_pgd_warns():
    rows = [row("1", "pgd", "Linf", 0.1, "0.1", 0.9, 0.2, t="2026-01-01T00:00:00"),
            row("1", "pgd", "Linf", 0.1, "0.1", 0.9, 0.25, t="2026-01-02T00:00:00"),
            row("1", "autoattack", "Linf", 0.1, "0.1", 0.9, 0.3)]
    (table,) = leaderboard_tables(results_of(rows)).values()
    assert table.loc[0, "PGD 0.1"] == 0.25
    (w,) = attack_sanity_warnings(rows)
    assert "more accurate than PGD" in w
