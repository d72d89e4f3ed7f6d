"""Numbers as the references have them: PGD independent of the batch size, ASAM as published, eps as written."""
import dataclasses
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bench import run as bench_run
from bench.attacks.registry import make_attack
from bench.store.rows import read_rows
from zoo.config import TrainConfig
from zoo.optim import SGD
from zoo.pgd import parse_eps
from zoo.recipes import sam_step
from zoo.train import checkpoint_name, train

pytestmark = pytest.mark.slow  # AutoAttack and the recipes against their reference implementations on trained models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    return train(TrainConfig(arch="sharp_tiny", data="synthetic", epochs=2, batch_size=64, lr=0.05, device="cpu",
                             out=str(out)), progress=False)


def test_fractions_with_decimal_numerators_are_read_exactly():
    assert parse_eps("0.5/255") == 0.5 / 255 and parse_eps("0.25/255") == 0.25 / 255
    assert parse_eps("8/255") == 8 / 255 and parse_eps(" 2 / 255 ") == 2 / 255 and parse_eps("0.5") == 0.5
    for bad in ("1/0", "abc", "1/2/3", "-1/255", "nan", ""):
        with pytest.raises(ValueError, match="eps"):
            parse_eps(bad)


def test_seed_step_sizes_are_accepted_by_bench_and_zoo(tiny, tmp_path):
    out = tmp_path / "r"
    assert bench_run.main(["--models", tiny, "--attacks", "pgd", "--eps", "1/255,0.5/255", "--pgd-alpha", "0.25/255",
                           "--pgd-steps", "3", "--data", "synthetic", "--n-examples", "8", "--device", "cpu",
                           "--out", str(out), "--no-progress", "--no-leaderboard"]) == 0
    rows = read_rows(str(out / "results.jsonl"))
    assert sorted(r["eps"] for r in rows) == [0.5 / 255, 1 / 255]
    assert all(r["attack_config"]["alpha"] == round(0.25 / 255, 10) for r in rows)
    cfg = TrainConfig(recipe="pgd_at", eps="1/255", alpha="0.5/255").resolved()
    assert cfg.alpha_value == 0.5 / 255


def test_pgd_rows_do_not_depend_on_the_batch_size(tiny, tmp_path):
    from zoo.checkpoint import load_checkpoint, model_from_checkpoint
    from zoo.data import load_dataset

    model = model_from_checkpoint(load_checkpoint(tiny))
    ds = load_dataset("synthetic")
    # 70 points: no batch of a single image, which runs other CPU convolution kernels (its logits can differ in
    # the last bit from the same image's inside a larger batch; nothing PGD controls)
    x, y = ds.x_test[:70].float() / 255, ds.y_test[:70]
    advs = [make_attack("pgd", norm=norm, eps=4 / 255 if norm == "Linf" else 0.3, pgd_steps=3, restarts=2,
                        batch_size=bs)(model, x, y) for norm in ("Linf", "L2") for bs in (7, 64, 250)]
    for a in advs[1:3]:  # Linf: the step is the gradient's sign, bitwise the same in any batch
        assert torch.equal(a, advs[0])
    # L2: the step is the gradient itself, normalised; the CPU's input-gradient convolution rounds differently per
    # batch shape (a few 1e-9), which can move an example by one float32 ulp, never more than rounding
    for a in advs[4:6]:
        assert (a - advs[3]).abs().max() <= 1e-6
    rows = {}
    for bs in (7, 64, 250):
        out = tmp_path / f"b{bs}"
        assert bench_run.main(["--models", tiny, "--attacks", "pgd", "--eps", "4/255", "--pgd-steps", "3",
                               "--data", "synthetic", "--n-examples", "70", "--device", "cpu", "--batch-size", str(bs),
                               "--out", str(out), "--no-progress", "--no-leaderboard"]) == 0
        (r,) = read_rows(str(out / "results.jsonl"))
        rows[bs] = (r["key"], r["clean_correct"], r["robust_correct"], r["max_perturbation"])
    assert rows[7] == rows[64] == rows[250]


def test_training_pgd_keeps_its_own_seeded_stream():
    from zoo.pgd import random_start

    x = torch.rand(4, 3, 8, 8)
    torch.manual_seed(5)
    a = random_start(x, "Linf", 0.1)
    torch.manual_seed(5)
    b = random_start(x, "Linf", 0.1)
    c = random_start(x, "Linf", 0.1, example_ids=range(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # an example's bench start depends on its index, not on its batch-mates
    assert torch.equal(random_start(x[2:3], "Linf", 0.1, example_ids=[2]), c[2:3])


def test_asam_scales_weight_tensors_only_by_abs_w_plus_eta():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    rho, lr = 0.5, 0.1
    w = [p.detach().clone() for p in model.parameters()]
    model.train()

    def grads_at(ws):
        m = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).train()
        with torch.no_grad():
            for p, wi in zip(m.parameters(), ws):
                p.copy_(wi)
        loss = F.cross_entropy(m(x), y)
        return torch.autograd.grad(loss, list(m.parameters()))

    g = grads_at(w)
    t = [wi.abs() + 0.01 if wi.ndim > 1 else torch.ones_like(wi) for wi in w]  # Linear weights only
    tg = [ti * gi for ti, gi in zip(t, g)]
    norm = torch.sqrt(sum((v ** 2).sum() for v in tg))
    e = [rho * ti * v / norm for ti, v in zip(t, tg)]
    expected = [wi - lr * gi for wi, gi in zip(w, grads_at([wi + ei for wi, ei in zip(w, e)]))]
    opt = SGD(model.parameters(), lr=lr)
    sam_step(model, opt, x, y, TrainConfig(recipe="sam", adaptive=True).resolved(), nullcontext)
    for p, ex in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), ex, rtol=1e-5, atol=1e-6)


def test_asam_default_radius_is_recorded():
    asam = TrainConfig(recipe="sam", adaptive=True).resolved()
    sam = TrainConfig(recipe="sam").resolved()
    assert asam.rho == 0.5 and sam.rho == 0.05
    assert dataclasses.replace(TrainConfig(recipe="sam", adaptive=True, rho=0.2)).resolved().rho == 0.2
    assert checkpoint_name(asam).endswith("-sam-asam0.5-s0.pt") and checkpoint_name(sam).endswith("-sam-rho0.05-s0.pt")


class _Linear(nn.Module):
    """A fixed linear classifier on [0,1] images; `mode` makes it trip one of AutoAttack's checks."""

    def __init__(self, mode="plain", classes=10):
        super().__init__()
        torch.manual_seed(1)
        self.w = nn.Parameter(torch.randn(classes, 3 * 32 * 32) * 0.05)
        self.mode = mode

    def forward(self, x):
        if self.mode == "quantised":  # a gradient-masking defence: zero input gradients, decisions still move
            x = torch.round(x * 8) / 8
        if self.mode == "dynamic":  # a defence that takes gradients inside its forward
            with torch.enable_grad():
                probe = x.detach().requires_grad_(True)
                torch.autograd.grad((probe * probe).sum(), probe)
        z = x.flatten(1) @ self.w.t()
        if self.mode == "randomized":
            z = z + torch.randn_like(z)
        if self.mode == "softmax":
            z = z.softmax(1)
        return z


def _aa(model, n=16, eps=8 / 255, stages=("apgd-ce", "apgd-t", "fab-t", "square")):
    from bench.attacks.autoattack import run_autoattack

    torch.manual_seed(0)
    x = torch.rand(n, 3, 32, 32)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)  # every point right clean, so every stage has points to attack
    return run_autoattack(model, x, y, norm="Linf", eps=eps, stages=stages, seed=0, batch_size=n)[1]


@pytest.mark.parametrize("mode,fires", [("randomized", {"randomized"}), ("softmax", {"output_range"}),
                                        ("dynamic", {"dynamic_defence"}),
                                        ("quantised", {"zero_gradients", "square"})])
def test_autoattack_checks_fire_and_are_recorded(mode, fires):
    info = _aa(_Linear(mode), stages=("apgd-ce", "apgd-t", "fab-t", "square") if mode == "quantised"
               else ("apgd-ce",))
    checks = info["aa_checks"]
    assert set(checks) == {"randomized", "output_range", "zero_gradients", "dynamic_defence", "n_classes", "square"}
    assert {k for k, v in checks.items() if v} == fires, checks
    # per-model state is isolated: a plain model evaluated next in the same process passes every check
    assert not any(_aa(_Linear("plain"), stages=("apgd-ce",))["aa_checks"].values())


def test_autoattack_class_count_check():
    checks = _aa(_Linear("plain", classes=3), stages=("apgd-ce", "apgd-t"))["aa_checks"]
    assert checks["n_classes"] and "3 classes" in checks["n_classes"]


def test_flagged_autoattack_row_is_warned_and_marked(tmp_path, monkeypatch, capsys):
    from bench.report.outputs import results_of
    from bench.report.tables import leaderboard_tables, to_markdown

    (tmp_path / "toyaa.py").write_text("import torch\n\ndef softmax_model():\n    torch.manual_seed(0)\n"
                                       "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, 10),"
                                       " torch.nn.Softmax(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toyaa

    torch.save(toyaa.softmax_model().state_dict(), tmp_path / "soft.pt")
    out = tmp_path / "r"
    assert bench_run.main(["--models", str(tmp_path / "soft.pt"), "--arch", "toyaa:softmax_model", "--attacks",
                           "clean,autoattack-fast", "--data", "synthetic", "--n-examples", "8", "--device", "cpu",
                           "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("AutoAttack check output_range") == 1
    (aa,) = [r for r in read_rows(str(out / "results.jsonl")) if r["attack"] == "autoattack-fast"]
    assert aa["aa_checks"]["output_range"] and not aa["aa_checks"]["randomized"]
    md = to_markdown(leaderboard_tables(results_of(read_rows(str(out / "results.jsonl")))))
    assert " †" in md and "AutoAttack flagged" in md
