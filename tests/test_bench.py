import dataclasses
import json
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from bench.eval import engine as bench_engine
from bench import run as bench_run
from bench.attacks.registry import make_attack
from bench.corruptions.generator import CORRUPTIONS, SEVERITIES, corrupt
from bench.eval.accuracy import evaluate_attack
from bench.stats import wilson
from bench.store.rows import read_rows, row_key
from bench.store.schema import check_measure_row
from zoo.checkpoint import load_checkpoint, model_from_checkpoint, seal
from zoo.config import TrainConfig
from zoo.train import train

pytestmark = pytest.mark.slow  # bench.run on trained checkpoints, every attack


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    base = TrainConfig(arch="sharp_tiny", data="synthetic", epochs=3, batch_size=64, lr=0.05, device="cpu",
                       out=str(out), steps=3)
    for recipe in ("standard", "pgd_at"):
        train(dataclasses.replace(base, recipe=recipe), progress=False)
    return out


def _ckpts(zoo_dir):
    return sorted(str(p) for p in zoo_dir.glob("*.pt"))


def _args(models, out, *extra):
    return ["--models", *models, "--data", "synthetic", "--n-examples", "16", "--device", "cpu", "--out", str(out),
            "--no-progress", *extra]


def _model(zoo_dir, which="standard"):
    path = next(p for p in _ckpts(zoo_dir) if f"-{which}-" in p)
    return model_from_checkpoint(load_checkpoint(path))


@pytest.mark.parametrize("name,norm,eps", [("pgd", "Linf", 8 / 255), ("pgd", "L2", 2.0),
                                           ("autoattack-fast", "Linf", 4 / 255)])
def test_attacks_stay_in_ball_and_range_and_lower_accuracy(zoo_dir, name, norm, eps):
    from zoo.data import load_dataset

    model = _model(zoo_dir)
    ds = load_dataset("synthetic")
    x, y = ds.x_test[:12].float() / 255, ds.y_test[:12]
    attack = make_attack(name, norm=norm, eps=eps, pgd_steps=10)
    x_adv = attack(model, x, y)
    d = (x_adv - x).flatten(1)
    size = d.abs().max(1).values if norm == "Linf" else d.norm(dim=1)
    assert (size <= eps + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    res = evaluate_attack(model, make_attack(name, norm=norm, eps=eps), x, y, norm=norm, eps=eps)
    assert res["robust_acc"] < res["clean_acc"]  # a trained tiny net is not robust at these radii
    assert not model.training


def test_run_writes_rows_and_leaderboard_and_rerun_adds_nothing(zoo_dir, tmp_path):
    out = tmp_path / "r"
    # AutoAttack's rows are checked where it runs anyway (the compiled-bench test below): stages only remove points
    args = _args(_ckpts(zoo_dir), out, "--attacks", "clean,pgd", "--eps", "8/255")
    assert bench_run.main(args) == 0
    assert bench_run.main(args[:-3] + ["pgd", "--eps", "2/255"]) == 0
    rows = read_rows(str(out / "results.jsonl"))
    assert len(rows) == 2 * (1 + 1 + 1) and all(r["status"] == "ok" for r in rows)
    from zoo.data import load_dataset

    ds = load_dataset("synthetic")
    for r in rows:
        # counts re-derived here: the model's own predictions on the row's points, and Wilson's interval of them
        model = model_from_checkpoint(load_checkpoint(r["path"])).eval()
        with torch.no_grad():
            right = (model(ds.x_test[:r["n"]].float() / 255).argmax(1) == ds.y_test[:r["n"]]).sum().item()
        assert r["clean_correct"] == right and r["clean_ci95"] == list(wilson(right, r["n"]))
        if r["attack"] != "clean":
            assert r["max_perturbation"] <= r["eps"] + 1e-6
    std_pgd = [r for r in rows if r["attack"] == "pgd" and r["eps_str"] == "8/255" and "-standard-" in r["path"]]
    assert std_pgd and std_pgd[0]["robust_acc"] < std_pgd[0]["clean_acc"]  # the attack does hurt the standard model
    board = (out / "leaderboard.md").read_text()
    assert "PGD 8/255" in board and "PGD 2/255" in board and "sharp_tiny-pgd_at" in board
    assert (out / "robustness_Linf.png").exists()
    before = (out / "results.jsonl").read_text()
    assert bench_run.main(args) == 0
    assert (out / "results.jsonl").read_text() == before


def test_two_batch_sizes_give_equal_rows_or_different_keys(zoo_dir, tmp_path):
    """PGD's random starts are drawn per point: a second --batch-size finds its rows. AutoAttack's are drawn per
    batch: a second --batch-size is a new evaluation with its own key, and the first row stays."""
    out = tmp_path / "r"
    model = [p for p in _ckpts(zoo_dir) if "-standard-" in p]
    for batch in ("4", "16"):
        assert bench_run.main(_args(model, out, "--attacks", "pgd,autoattack-fast", "--batch-size", batch)) == 0
    rows = read_rows(str(out / "results.jsonl"))
    pgd = [r for r in rows if r["attack"] == "pgd"]
    aa = [r for r in rows if r["attack"] == "autoattack-fast"]
    assert len(pgd) == 1 and pgd[0]["batch_size"] == 4  # the second run found it
    assert len(aa) == 2 and aa[0]["key"] != aa[1]["key"]
    assert [r["attack_config"].get("batch") for r in aa] == [4, 16]


def test_a_bf16_search_has_its_own_key_fp32_flags_and_never_stands_for_the_protocol(zoo_dir, tmp_path):
    """--precision bf16: AutoAttack's search under bf16 autocast is its own evaluation (own key), never
    RobustBench's standard (the reason on its row), and every robust flag is the fp32 model's: bench.verify
    replays its images on the fp32 model and finds each fooled point fooled. The fp32 row is the board's number
    whichever of the two came last."""
    from bench import verify
    from bench.report.results import protocol_note
    from bench.store.rows import latest_ok

    out = tmp_path / "r"
    model = [p for p in _ckpts(zoo_dir) if "-pgd_at-" in p]
    for precision in ("fp32", "bf16"):
        assert bench_run.main(_args(model, out, "--attacks", "autoattack-fast", "--precision", precision,
                                    "--save-adversarial")) == 0
    rows = read_rows(str(out / "results.jsonl"))
    fp32, bf16 = rows
    assert fp32["key"] != bf16["key"] and bf16["attack_config"]["search_precision"] == "bf16"
    assert "search_precision" not in fp32["attack_config"]  # the protocol's rows keep their keys
    assert (fp32["rb_standard"], bf16["rb_standard"]) == (True, False)
    assert "bf16" in protocol_note(bf16) and protocol_note(fp32) == ""
    assert bf16["robust_correct"] <= bf16["clean_correct"] < 16
    assert [r["key"] for r in latest_ok(rows)] == [fp32["key"]]
    assert verify.main(["--results", str(out / "results.jsonl")]) == 0


def test_killed_run_resumes_with_first_models_rows_intact(zoo_dir, tmp_path, monkeypatch):
    out = tmp_path / "r"
    models = _ckpts(zoo_dir)
    args = _args(models, out, "--attacks", "clean,pgd")
    real = bench_engine.evaluate_attack

    def dies_on_second(model, attack, x, y, **kw):
        if dies_on_second.calls >= 2:
            raise KeyboardInterrupt  # the process is killed while evaluating the second model
        dies_on_second.calls += 1
        return real(model, attack, x, y, **kw)

    dies_on_second.calls = 0
    monkeypatch.setattr(bench_engine, "evaluate_attack", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        bench_run.main(args)
    first = (out / "results.jsonl").read_text()
    assert len(first.splitlines()) == 2
    monkeypatch.setattr(bench_engine, "evaluate_attack", real)
    assert bench_run.main(args) == 0
    text = (out / "results.jsonl").read_text()
    assert text.startswith(first) and len(text.splitlines()) == 4
    assert len({r["key"] for r in read_rows(str(out / "results.jsonl"))}) == 4


def test_corrupt_checkpoint_gives_one_failed_row_and_the_rest_run(zoo_dir, tmp_path, capsys):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    missing = str(tmp_path / "absent.pt")
    out = tmp_path / "r"
    code = bench_run.main(_args([str(bad), *_ckpts(zoo_dir), missing], out, "--attacks", "clean,pgd"))
    assert code == 1
    rows = read_rows(str(out / "results.jsonl"))
    failed = [r for r in rows if r["status"] == "failed"]
    # the missing path is named before any data is loaded (no row: there is no file to record); the damaged file
    # has its failed row; the good checkpoints run
    assert [os.path.basename(r["model"]) for r in failed] == ["broken.pt"]
    assert sum(r["status"] == "ok" for r in rows) == 4
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and f"--models {missing}: no such file" in err


def test_nan_model_is_a_failed_row(zoo_dir, tmp_path):
    path = _ckpts(zoo_dir)[0]
    ckpt = load_checkpoint(path)
    ckpt["model"] = {k: (v * float("nan") if v.is_floating_point() and k.endswith("fc.weight") else v)
                     for k, v in ckpt["model"].items()}
    torch.save(seal(ckpt), tmp_path / "nan.pt")  # NaN weights with a valid checksum: caught by the first forward
    out = tmp_path / "r"
    assert bench_run.main(_args([str(tmp_path / "nan.pt")], out, "--attacks", "clean")) == 1
    (row,) = read_rows(str(out / "results.jsonl"))
    assert row["status"] == "failed" and "NaN" in row["error"]


def test_unknown_attack_is_a_one_line_error(zoo_dir, tmp_path, capsys):
    assert bench_run.main(_args(_ckpts(zoo_dir), tmp_path, "--attacks", "clean,fgsm")) == 2
    err = capsys.readouterr().err.strip()
    assert "fgsm" in err and "autoattack" in err and err.count("\n") == 0
    assert not (tmp_path / "results.jsonl").exists()


def test_cache_key_changes_with_attack_settings():
    a = make_attack("pgd", norm="Linf", eps=8 / 255, pgd_steps=20).config
    b = make_attack("pgd", norm="Linf", eps=8 / 255, pgd_steps=10).config
    c = make_attack("pgd", norm="Linf", eps=4 / 255, pgd_steps=20).config
    keys = {row_key("m", cfg, "synthetic", 16) for cfg in (a, b, c)}
    assert len(keys) == 3 and row_key("m", a, "synthetic", 16) != row_key("m", a, "synthetic", 32)


def test_wilson_interval():
    lo, hi = wilson(8, 16)
    assert lo < 0.5 < hi and wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_changes_image_and_keeps_format(name):
    rng = np.random.default_rng(0)
    x = rng.integers(30, 220, size=(6, 32, 32, 3), dtype=np.uint8)
    for s in SEVERITIES:
        out = corrupt(x, name, s)
        assert out.shape == x.shape and out.dtype == np.uint8
        assert (out != x).any(), (name, s)
        assert np.array_equal(out, corrupt(x, name, s))  # seeded


def test_corruption_strength_grows_with_severity():
    x = np.random.default_rng(1).integers(30, 220, size=(32, 32, 32, 3), dtype=np.uint8)
    for name in ("gaussian_noise", "contrast", "brightness", "fog"):
        d = [np.abs(corrupt(x, name, s).astype(int) - x).mean() for s in SEVERITIES]
        assert d[0] < d[-1], name


def test_corruptions_row_regenerated_and_official(zoo_dir, tmp_path):
    out = tmp_path / "r"
    args = _args(_ckpts(zoo_dir)[:1], out, "--attacks", "corruptions", "--corruptions", "gaussian_noise,contrast",
                 "--cache-dir", str(tmp_path / "cache"))
    assert bench_run.main(args) == 0
    (row,) = read_rows(str(out / "results.jsonl"))
    assert row["corruption_source"] == "regenerated" and len(row["corruption_severity_acc"]) == 10
    assert row["robust_acc"] == pytest.approx(np.mean(list(row["corruption_severity_acc"].values())))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 10
    # official layout: <name>.npy with severities 1..5 stacked, labels.npy
    from zoo.data import load_dataset

    ds = load_dataset("synthetic")
    imgs = ds.x_test[:16].permute(0, 2, 3, 1).numpy()
    off = tmp_path / "official"
    off.mkdir()
    for name in ("gaussian_noise", "contrast"):
        np.save(off / f"{name}.npy", np.concatenate([imgs] * 5))
    np.save(off / "labels.npy", np.concatenate([ds.y_test[:16].numpy()] * 5))
    assert bench_run.main([*args, "--corruptions-dir", str(off)]) == 0
    rows = read_rows(str(out / "results.jsonl"))
    assert rows[-1]["corruption_source"] == "official"
    assert rows[-1]["robust_acc"] == pytest.approx(rows[-1]["clean_acc"])  # uncorrupted "official" copies


def test_autoattack_resumes_from_its_own_state(zoo_dir, tmp_path, monkeypatch):
    import pyautoattack

    from bench.attacks.autoattack import run_autoattack
    from zoo.data import load_dataset

    model = _model(zoo_dir)
    ds = load_dataset("synthetic")
    x, y = ds.x_test[:10].float() / 255, ds.y_test[:10]
    kw = dict(norm="Linf", eps=8 / 255, stages=("apgd-ce", "apgd-t"), seed=0, batch_size=10)
    ref_adv, ref = run_autoattack(model, x, y, **kw)

    real = pyautoattack.AutoAttack.run_standard_evaluation

    def killed_in_stage_two(self, *a, **k):
        if self.attacks_to_run == ["apgd-t"]:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    state = str(tmp_path / "aa.pt")
    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", killed_in_stage_two)
    with pytest.raises(KeyboardInterrupt):
        run_autoattack(model, x, y, state_path=state, **kw)
    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", real)
    adv, info = run_autoattack(model, x, y, state_path=state, **kw)
    assert info["resumed_stages"] == ["apgd-ce"]
    assert info["stage_acc"] == ref["stage_acc"]
    assert torch.equal(adv, ref_adv)


def test_export_without_a_row_names_the_command_that_makes_it(zoo_dir, tmp_path, capsys):
    from bench import export

    ckpt = _ckpts(zoo_dir)[0]
    out = tmp_path / "r"
    assert bench_run.main(_args([ckpt], out, "--attacks", "clean")) == 0
    capsys.readouterr()
    code = export.main([ckpt, "--name", "Sharp2026Tiny", "--out", str(tmp_path / "e"),
                        "--results", str(out / "results.jsonl"), "--threat-model", "L2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no AutoAttack L2 eps 0.5 row" in err and "--attacks clean,autoattack --norm L2 --eps 0.5" in err


def test_plain_state_dict_needs_and_uses_arch(zoo_dir, tmp_path, capsys):
    ckpt_path = _ckpts(zoo_dir)[0]
    sd_path = tmp_path / "weights.pt"
    torch.save({"state_dict": load_checkpoint(ckpt_path)["model"]}, sd_path)  # RobustBench's layout
    out = tmp_path / "r"
    assert bench_run.main(_args([str(sd_path)], out, "--attacks", "clean")) == 1
    assert "--arch" in capsys.readouterr().err
    assert bench_run.main(_args([str(sd_path)], out, "--attacks", "clean", "--arch", "sharp_tiny")) == 0
    assert bench_run.main(_args([ckpt_path], out, "--attacks", "clean")) == 0
    plain, ours = [r for r in read_rows(str(out / "results.jsonl")) if r["status"] == "ok"]
    assert plain["clean_acc"] == ours["clean_acc"] and plain["arch"] == "sharp_tiny"


def test_bucketed_forward_matches_eager_and_compiles_only_bucket_sizes(zoo_dir):
    from bench.eval.forward import CPU_EAGER_BELOW, BucketedForward, buckets_for, prepare_for_eval

    assert buckets_for(250) == [32, 64, 128, 250] and buckets_for(16) == [16]
    model = _model(zoo_dir).eval()
    shapes = []

    def counting_backend(gm, example_inputs):  # records the batch size of every graph dynamo compiles
        shapes.append(next(t.shape[0] for t in example_inputs if torch.is_tensor(t) and t.shape[1:] == (3, 32, 32)))
        return gm.forward

    torch._dynamo.reset()
    fast = BucketedForward(model, 100, backend=counting_backend).eval()
    torch.manual_seed(0)
    x = torch.rand(230, 3, 32, 32)
    for n in (100, 77, 40, 33, 9, 1, 230):  # AutoAttack-like shrinking batches, then one larger than any bucket
        xb = x[:n].clone().requires_grad_(True)
        out = fast(xb)
        (g,) = torch.autograd.grad(out.logsumexp(1).sum(), xb)
        xe = x[:n].clone().requires_grad_(True)
        ref = model(xe)
        (ge,) = torch.autograd.grad(ref.logsumexp(1).sum(), xe)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g, ge, rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            torch.testing.assert_close(fast(x[:n]), ref.detach(), rtol=1e-4, atol=1e-5)
    assert shapes and set(shapes) <= set(fast.buckets), shapes
    assert len(shapes) <= 2 * len(fast.buckets)  # one graph per (bucket, grad mode) at most
    # on a CPU a batch under CPU_EAGER_BELOW images is the eager model's own call: no padding, no new graph
    torch._dynamo.reset()
    small = prepare_for_eval(model, torch.device("cpu"), compile_backend=counting_backend, batch_size=100)
    shapes.clear()
    n = CPU_EAGER_BELOW - 1
    with torch.no_grad():
        assert torch.equal(small(x[:n]), model(x[:n])) and shapes == []
        small(x[:CPU_EAGER_BELOW])
    assert shapes == [32]
    fast.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        fast(x[:4])


# inductor's own run of this (clean and PGD) is in tests/test_compiled_step.py, the one module that compiles with it
@pytest.mark.parametrize("backend,attacks", [("aot_eager", "clean,pgd,autoattack")])
def test_compiled_bench_gives_the_same_rows_as_eager(zoo_dir, tmp_path, capfd, backend, attacks):
    models = _ckpts(zoo_dir)[:1]
    attacks = ["--attacks", attacks, "--eps", "4/255", "--n-examples", "12", "--batch-size", "8"]
    assert bench_run.main(_args(models, tmp_path / "eager", *attacks, "--no-leaderboard")) == 0
    torch._dynamo.reset()
    capfd.readouterr()
    assert bench_run.main(_args(models, tmp_path / "compiled", *attacks, "--no-leaderboard", "--compile",
                                backend)) == 0
    assert "dynamic defense" not in "".join(capfd.readouterr())  # AutoAttack's check must see the model, not dynamo
    eager, compiled = (sorted(read_rows(str(tmp_path / d / "results.jsonl")), key=lambda r: r["key"])
                       for d in ("eager", "compiled"))
    assert [r["key"] for r in eager] == [r["key"] for r in compiled]  # compiling is not part of the cache key
    for a, b in zip(eager, compiled):
        assert b["compile"] == backend and a["compile"] is None
        assert (a["clean_correct"], a["robust_correct"]) == (b["clean_correct"], b["robust_correct"]), a["attack"]
    for r in eager + compiled:
        if r["attack"] == "autoattack":  # each stage only removes robust points, and points survive to the end
            s = r["stage_acc"]
            seq = [s["clean"], s["apgd-ce"], s["apgd-t"], s["fab-t"], s["square"]]
            assert seq == sorted(seq, reverse=True) and r["robust_acc"] > 0
            assert s["square"] == pytest.approx(r["robust_acc"], abs=1e-6)  # pyautoattack's float32 fraction


def test_engine_returns_outcomes_and_bounds_retries_of_a_failing_evaluation(zoo_dir, tmp_path, monkeypatch):
    """ok, cached, failed with its reason, then refused once it failed max_failures times; --retry-failed runs
    it regardless; an out-of-memory failure is retried once at half the batch, and the row says so."""
    from bench.eval.engine import EvalSettings, evaluate

    model = _ckpts(zoo_dir)[:1]
    s = EvalSettings(attacks="clean,pgd", data="synthetic", n_examples=16, device="cpu", out=str(tmp_path),
                     progress=False, max_failures=2, batch_size=8)
    real = bench_engine.evaluate_attack
    batches = []

    def broken(model, attack, x, y, **kw):
        if attack.name == "pgd":
            batches.append(kw["batch_size"])
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, attack, x, y, **kw)

    monkeypatch.setattr(bench_engine, "evaluate_attack", broken)
    first = evaluate(model, s)
    assert [o.status for o in first] == ["ok", "failed"] and "out of memory" in first[1].reason
    assert batches == [8, 4]  # once at the batch asked for, once at half
    assert [o.status for o in evaluate(model, s)] == ["cached", "failed"]  # below the bound: tried again
    third = evaluate(model, s)
    assert [o.status for o in third] == ["cached", "refused"] and "out of memory" in third[1].reason
    assert len(batches) == 4  # the refused evaluation did not run
    monkeypatch.setattr(bench_engine, "evaluate_attack", real)
    assert [o.status for o in evaluate(model, s)] == ["cached", "refused"]
    again = evaluate(model, dataclasses.replace(s, retry_failed=True))
    assert [o.status for o in again] == ["cached", "ok"]
    rows = read_rows(str(tmp_path / "results.jsonl"))
    assert [r["status"] for r in rows if r["attack"] == "pgd"] == ["failed", "failed", "ok"]

    def oom_once(model, attack, x, y, **kw):
        if attack.name == "pgd" and kw["batch_size"] == 8:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(model, attack, x, y, **kw)

    monkeypatch.setattr(bench_engine, "evaluate_attack", oom_once)
    out2 = tmp_path / "halved"
    assert [o.status for o in evaluate(model, dataclasses.replace(s, out=str(out2)))] == ["ok", "ok"]
    (pgd_row,) = [r for r in read_rows(str(out2 / "results.jsonl")) if r["attack"] == "pgd"]
    assert pgd_row["oom_retry"] == {"batch_size": 8, "retried_at": 4} and pgd_row["batch_size"] == 4
    (ref,) = [r for r in rows if r["attack"] == "pgd" and r["status"] == "ok"]
    assert pgd_row["robust_correct"] == ref["robust_correct"] and pgd_row["key"] == ref["key"]


def test_measures_are_an_evaluation_with_keyed_rows_failed_rows_and_the_retry_bound(zoo_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    """bench.run --attacks measures: a keyed row in measures.jsonl (the study report's), cached on a rerun; a
    failing measure leaves a failed row there, is tried again below the bound and refused at it; a row written
    before measures had keys is found done; at L1 (no feature PGD there) it is refused in one line."""
    from bench.eval.engine import EvalSettings, evaluate
    from bench.report.outputs import read_measures

    model = _ckpts(zoo_dir)[:1]
    s = EvalSettings(attacks="measures", norm="Linf,L2", eps="2/255", data="synthetic", n_examples=16, device="cpu",
                     out=str(tmp_path / "a"), progress=False, max_failures=2)
    assert [o.status for o in evaluate(model, s)] == ["ok"]
    row, = read_rows(str(tmp_path / "a" / "measures.jsonl"), check=check_measure_row)
    assert row["status"] == "ok" and row["measure_n"] == 16 and row["feature_eps_L2"] == "2/255"
    assert row["sharpness_worst"] >= 0 and row["attack_config"]["feature_eps"] == {"Linf": "2/255", "L2": "2/255"}
    assert not os.path.exists(tmp_path / "a" / "results.jsonl") or all(
        r["attack"] != "measures" for r in read_rows(str(tmp_path / "a" / "results.jsonl")))
    assert [o.status for o in evaluate(model, s)] == ["cached"]

    legacy = {k: v for k, v in row.items() if k in ("model_id", "model", "measure_n", "loss", "rho") or
              k.startswith(("sharpness", "feature"))}  # a row as measures were written before they had keys
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "measures.jsonl").write_text(json.dumps(legacy) + "\n")
    assert [o.status for o in evaluate(model, replace(s, out=str(tmp_path / "b")))] == ["cached"]
    assert [o.status for o in evaluate(model, replace(s, out=str(tmp_path / "b"), seed=1))] == ["ok"]  # not its seed

    def broken(*a, **k):
        raise RuntimeError("the measure broke")

    monkeypatch.setattr(bench_engine, "measure", broken)
    failing = replace(s, out=str(tmp_path / "c"))
    assert [o.status for o in evaluate(model, failing)] == ["failed"]
    assert [o.status for o in evaluate(model, failing)] == ["failed"]
    third, = evaluate(model, failing)
    assert third.status == "refused" and "the measure broke" in third.reason
    rows = read_rows(str(tmp_path / "c" / "measures.jsonl"), check=check_measure_row)
    assert [r["status"] for r in rows] == ["failed", "failed"] and read_measures(str(tmp_path / "c")) == []

    capsys.readouterr()
    assert bench_run.main(_args(model, tmp_path / "d", "--attacks", "measures", "--norm", "L1")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "measures at L1" in err and not os.path.exists(tmp_path / "d" / "measures.jsonl")
