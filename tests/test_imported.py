"""Adversarial images from any tool: `bench.run --attacks imported:FILE --name TOOL` records a row that equals the
attack's own row on the same images, keeps the images so bench.verify replays them, joins the worst case; and
refuses, in one line with nothing written, images out of the ball, of the wrong shape, or NaN."""
import json
import os

import pytest
import torch

ARGS = ["--n-examples", "16", "--no-progress", "--data", "synthetic"]


def rows(out):
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def pgd_images(checkpoint, tmp_path_factory):
    """A model, its PGD row on 16 points and that row's stored images."""
    from bench.run import main

    ck = checkpoint()
    out = tmp_path_factory.mktemp("pgd")
    assert main(["--models", ck, "--attacks", "pgd", "--pgd-steps", "3", "--save-adversarial", "--out", str(out),
                 *ARGS]) == 0
    (row,) = rows(out)
    return ck, row, os.path.join(out, row["adversarial"]["path"])


def test_imported_images_make_the_attacks_row_replay_and_join_the_worst_case(pgd_images, tmp_path):
    from bench.run import main
    from bench.verify import main as verify

    ck, pgd_row, images = pgd_images
    out = tmp_path / "out"
    assert main(["--models", ck, "--attacks", f"pgd,imported:{images}", "--name", "other-tool", "--pgd-steps", "3",
                 "--out", str(out), *ARGS]) == 0
    by = {r["attack"]: r for r in rows(out)}
    mine = by["imported"]
    assert mine["points"] == pgd_row["points"] and mine["robust_acc"] == pgd_row["robust_acc"]
    assert mine["attack_config"]["tool"] == "other-tool" and len(mine["attack_config"]["file_sha256"]) == 64
    assert os.path.isfile(out / mine["adversarial"]["path"])  # kept as --save-adversarial keeps them
    assert verify(["--results", str(out / "results.jsonl")]) == 0
    board = (out / "leaderboard.md").read_text()
    assert "Imported 8/255" in board and "Worst 8/255" in board and "over Imported, PGD-3" in board


@pytest.mark.parametrize("damage,says", [
    (lambda x: (x + 0.2 * (torch.rand_like(x) - 0.5)).clamp(0, 1), "outside the eps 0.0313725 ball"),
    (lambda x: x[:8], "pass --n-examples 8"),
    (lambda x: x[:, :, :16], "not the data's"),
    (lambda x: torch.where(torch.rand_like(x) < 0.01, torch.full_like(x, float("nan")), x), "NaN"),
    (lambda x: x * 300, "outside [0,1]"),
])
def test_images_that_do_not_fit_their_points_are_refused_in_one_line_with_nothing_written(pgd_images, tmp_path,
                                                                                          capsys, damage, says):
    from bench.run import main

    ck, _, images = pgd_images
    bad = tmp_path / "bad.pt"
    torch.save(damage(torch.load(images, weights_only=True)), bad)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["--models", ck, "--attacks", f"clean,imported:{bad}", "--out", str(out), *ARGS]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not (out / "results.jsonl").exists()
