"""A researcher's first week: studies keep their own checkpoints, every --help is whole and shows its defaults,
logs hold no escape codes, and the time estimate counts the points an attack will run on."""
import argparse
import hashlib
import importlib
import shutil

import pytest
import torch
from conftest import copy_checkpoints

pytestmark = pytest.mark.slow  # two studies, on the smoke study's checkpoints

COMMANDS = ["bench.run", "bench.study", "bench.site", "bench.leaderboard", "bench.verify", "bench.export",
            "bench.data.__main__", "zoo.train"]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_second_study_never_replaces_the_first_ones_checkpoints(smoke_study, tmp_path, capsys):
    """The smoke study (copied with its zoo folder, so its claim moves with it) and its replayable rows; a second
    study of other data into the first one's zoo folder is refused in one line naming both, as is one into a
    folder of other settings' checkpoints; with the default zoo folder (OUT/zoo) it trains its own, and the first
    study's checkpoints, rows and replay are untouched."""
    from bench.run import main as bench_run
    from bench.study import main as study
    from bench.verify import main as verify

    first = tmp_path / "first"
    shutil.copytree(smoke_study[0], first / "study")
    shutil.copytree(smoke_study[1], first / "zoo")  # the claim (../study) moves with the two folders
    ckpts = sorted((first / "zoo").glob("*.pt"))
    before = {p.name: _sha(p) for p in ckpts}
    assert bench_run(["--models", *map(str, ckpts), "--attacks", "clean,pgd", "--n-examples", "16", "--pgd-steps", "2",
                      "--save-adversarial", "--out", str(first / "bench"), "--no-leaderboard"]) == 0
    second = ["--preset", "smoke", "--data", "synthetic", "--epochs", "1", "--aa-n", "4", "--no-progress"]
    capsys.readouterr()
    assert study([*second, "--out", str(tmp_path / "second"), "--zoo-dir", str(first / "zoo")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --zoo-dir") and str(first / "study") in line and str(tmp_path / "second") in line
    assert "--retrain" in line
    unclaimed = copy_checkpoints(first / "zoo", tmp_path / "unclaimed")  # the same files, no study's claim
    assert study([*second, "--out", str(tmp_path / "third"), "--zoo-dir", str(unclaimed)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "was trained with other data, epochs" in line and "--retrain" in line
    assert study([*second, "--out", str(tmp_path / "second")]) == 0  # its own zoo folder: OUT/zoo
    assert len(list((tmp_path / "second" / "zoo").glob("*.pt"))) == 3
    assert {p.name: _sha(p) for p in (first / "zoo").glob("*.pt")} == before
    capsys.readouterr()
    assert verify(["--results", str(first / "bench" / "results.jsonl")]) == 0
    assert "fooled points replay" in capsys.readouterr().out


def _parsers() -> dict:
    """Every command's parser, as its main builds it (parse_args intercepted)."""
    found = {}

    def grab(self, *a, **k):
        found[self.prog] = self
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", grab)
        for name in COMMANDS:
            try:
                importlib.import_module(name).main(["x"])
            except SystemExit:
                pass
    return found


def test_every_help_is_whole_and_shows_its_defaults(capsys):
    parsers = _parsers()
    assert len(parsers) == len(COMMANDS)
    for prog, p in parsers.items():
        assert p.description and p.description.rstrip().endswith((".", ")")), (prog, p.description)
        text = p.format_help()
        assert p.description.split(",")[0][:40] in " ".join(text.split())  # not cut short
        for a in p._actions:
            if not a.option_strings or a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction):
                continue
            has_default = (a.default is not None and a.default is not False and a.default != ""
                           and not isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)))
            if has_default:
                help_text = p._get_formatter()._expand_help(a) if a.help else ""
                assert "default" in help_text.lower(), (prog, a.option_strings, a.help)


def test_the_smoke_studys_log_holds_no_escape_codes(smoke_study):
    """The main command with its output in files (as `... > log 2>&1`): no progress bar, one line per stage."""
    _, _, res = smoke_study
    for text in (res.stdout, res.stderr):
        assert "\x1b" not in text and "\r" not in text
    assert "apgd-ce (1/4) done:" in res.stderr  # AutoAttack's stages, a line each
    assert "epoch 8/8" in res.stderr


class _RightOn(torch.nn.Module):
    """Right on the points of `mask` (logit 1 on the label), wrong on the others; every call costs the same."""

    def __init__(self, y, mask):
        super().__init__()
        self.y, self.mask, self.w = y, mask, torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        idx = (x.flatten(1)[:, 0] * 1000).round().long()
        pred = torch.where(self.mask[idx], self.y[idx], (self.y[idx] + 1) % 10)
        return torch.nn.functional.one_hot(pred, 10).float() + 0 * self.w + 0 * x.sum((1, 2, 3)).unsqueeze(1)


def test_the_estimate_counts_the_points_right_on_clean_inputs_at_the_attacks_batch(monkeypatch):
    from bench.attacks import budget
    from bench.attacks.registry import make_attack
    from bench.eval import engine

    n = 40
    x = torch.zeros(n, 3, 4, 4)
    x[:, 0, 0, 0] = torch.arange(n) / 1000
    y = torch.arange(n) % 10
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:12] = True
    said, batches = [], []
    monkeypatch.setattr(engine, "say", said.append)
    monkeypatch.setattr(budget, "call_seconds", lambda model, xx, b: batches.append(b) or (1.0, 0.5))

    class Loaded:
        model = _RightOn(y, mask)

    cfg = make_attack("autoattack", norm="Linf", eps=8 / 255).config
    seconds = engine.warn_if_long("m autoattack Linf 8/255", cfg, Loaded, x, y, 250, {})
    assert batches == [12]  # timed at the batch AutoAttack runs: the 12 points it attacks
    assert seconds == pytest.approx(budget.seconds_if_all_survive(cfg, 12, 250, 1.0, 0.5))
    assert said and "the 12 of 40 points right on clean inputs" in said[0]
    pgd = make_attack("pgd", norm="Linf", eps=8 / 255, pgd_steps=20).config
    engine.warn_if_long("m pgd", pgd, Loaded, x, y, 16, {})  # PGD attacks every point, at its batch
    assert batches[-1] == 16
