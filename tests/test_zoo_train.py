import dataclasses

import pytest
import torch

from zoo.checkpoint import load_checkpoint, model_from_checkpoint
from zoo.recipes import RECIPES
from zoo.train import TrainingDiverged, main, train



def _remeasured(ckpt) -> float:
    """The checkpoint's clean accuracy measured here, on every test image of its data."""
    from zoo.checkpoint import model_from_checkpoint
    from zoo.data import load_dataset

    ds = load_dataset(ckpt["dataset"]["spec"])
    model = model_from_checkpoint(ckpt).eval()
    with torch.no_grad():
        pred = torch.cat([model(ds.x_test[i:i + 256].float() / 255).argmax(1) for i in range(0, len(ds.y_test), 256)])
    return (pred == ds.y_test).sum().item() / len(ds.y_test)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_trains_one_epoch(tiny_cfg, recipe):
    cfg = dataclasses.replace(tiny_cfg, recipe=recipe, steps=2)
    path = train(cfg, progress=False)
    ckpt = load_checkpoint(path)
    assert len(ckpt["history"]) == 1 and torch.isfinite(torch.tensor(ckpt["history"][0]["train_loss"]))
    assert ckpt["metrics"]["clean_test_acc"] == _remeasured(ckpt)


def test_loss_falls_on_learnable_task(tiny_cfg):
    ckpt = load_checkpoint(train(dataclasses.replace(tiny_cfg, epochs=4, schedule="cosine"), progress=False))
    losses = [h["train_loss"] for h in ckpt["history"]]
    assert losses[-1] < losses[0] - 0.3
    assert ckpt["metrics"]["clean_test_acc"] > 0.3  # 10 classes: chance is 0.1


def test_checkpoint_round_trips_with_weights_only(tiny_cfg):
    path = train(tiny_cfg, progress=False)
    assert path.endswith("sharp_tiny-standard-s0.pt")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "arch", "num_classes", "recipe", "config", "seed", "dataset", "history", "metrics",
                "versions", "normalization"):
        assert key in raw, key
    assert raw["config"]["eps"] == "8/255" and raw["config"]["steps"] == 10  # resolved defaults are stored
    model = model_from_checkpoint(raw)
    x = torch.rand(4, 3, 32, 32)
    again = model_from_checkpoint(load_checkpoint(path))
    assert torch.equal(model(x), again(x))
    # the stored metric is what the stored weights score
    from zoo.data import load_dataset
    from zoo.train import accuracy
    ds = load_dataset("synthetic")
    assert accuracy(model, ds.x_test, ds.y_test) == pytest.approx(raw["metrics"]["clean_test_acc"])


class Killed(Exception):
    pass


@pytest.mark.parametrize("recipe", ["standard", "pgd_at", "looksam", "msam"])
def test_killed_and_resumed_run_matches_uninterrupted(tiny_cfg, tmp_path, recipe):
    # LookSAM every 3 steps: its cycle crosses the epochs, so its stored direction must be resumed (MSAM's
    # perturbation comes from the momentum buffers, which resume with the optimizer)
    cfg = dataclasses.replace(tiny_cfg, epochs=3, recipe=recipe, steps=2, looksam_k=3)
    full = load_checkpoint(train(dataclasses.replace(cfg, out=str(tmp_path / "a")), progress=False))

    def die(epoch):
        if epoch == 2:
            raise Killed

    cut = dataclasses.replace(cfg, out=str(tmp_path / "b"))
    with pytest.raises(Killed):
        train(cut, progress=False, on_epoch_end=die)
    resumed = load_checkpoint(train(cut, resume=True, progress=False))
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert not list((tmp_path / "b").glob(".*.resume.pt"))  # the resume state is removed once finished


def test_nan_loss_stops_with_message_and_keeps_last_good_state(tiny_cfg, monkeypatch):
    import zoo.recipes as recipes

    real = recipes.RECIPES["standard"]
    calls = {"n": 0}

    def poisoned(model, opt, x, y, cfg, autocast):
        loss, logits = real.step(model, opt, x, y, cfg, autocast)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 8 else loss), logits  # epoch 1 has 8 steps

    monkeypatch.setitem(recipes.RECIPES, "standard", dataclasses.replace(real, step=poisoned))
    cfg = dataclasses.replace(tiny_cfg, epochs=2)
    with pytest.raises(TrainingDiverged, match="epoch 2.*last good state: .*resume.pt"):
        train(cfg, progress=False)
    state = [p for p in __import__("pathlib").Path(cfg.out).glob(".*.resume.pt")]
    assert len(state) == 1 and load_checkpoint(str(state[0]))["epoch"] == 1


def test_cli_errors_are_one_line(capsys, tmp_path):
    assert main(["--arch", "preact_resnet81", "--data", "synthetic", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "preact_resnet18" in err
    assert main(["--data", "imagenet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "digits" in err
    assert main(["--recipe", "sgd", "--data", "synthetic", "--out", str(tmp_path)]) == 2
    assert "standard" in capsys.readouterr().err


def test_cli_list(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "preact_resnet18" in out and "pgd_at" in out and "sam" in out


def test_cli_writes_path_on_last_line(capsys, tmp_path):
    assert main(["--arch", "sharp_tiny", "--data", "synthetic", "--epochs", "1", "--n-train", "128",
                 "--out", str(tmp_path), "--no-progress", "--device", "cpu"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith(".pt") and load_checkpoint(last)["dataset"]["n_train"] == 128


def test_resume_of_a_finished_run_returns_its_checkpoint(tiny_cfg):
    import os

    path = train(tiny_cfg, progress=False)
    stamp = os.stat(path).st_mtime_ns
    assert train(tiny_cfg, resume=True, progress=False) == path
    assert os.stat(path).st_mtime_ns == stamp  # nothing retrained or rewritten


def test_trains_on_real_cifar_subset(tiny_cfg, subset_path):
    cfg = dataclasses.replace(tiny_cfg, data=f"npz:{subset_path}", n_train=256)
    ckpt = load_checkpoint(train(cfg, progress=False))
    assert ckpt["dataset"] == {"spec": f"npz:{subset_path}", "n_train": 256, "n_test": 1017,
                               "augment": {"pad": 4, "flip": True}}  # CIFAR's crop and flip
    assert ckpt["num_classes"] == 10 and ckpt["metrics"]["clean_test_acc"] == _remeasured(ckpt)


def test_resume_refuses_a_finished_run_with_other_settings(tiny_cfg):
    train(tiny_cfg, progress=False)
    with pytest.raises(ValueError, match="different lr"):
        train(dataclasses.replace(tiny_cfg, lr=0.2), resume=True, progress=False)
