"""RobustBench round trip: export, load back through robustbench's own loader, refusals, rb: models offline."""
import hashlib
import json
import os
import sys

import numpy as np
import pytest
import torch

from bench import export as bexport
from bench import run as bench_run
from bench.store.rows import append_row, read_rows
from zoo.checkpoint import load_checkpoint, model_from_checkpoint, sha256_file
from zoo.config import TrainConfig
from zoo.train import train
from conftest import import_file

pytestmark = pytest.mark.slow  # RobustBench exports loaded by robustbench's own loader

RB_FILES = os.path.join(os.path.dirname(__file__), "data", "robustbench")  # copies of RobustBench's files
SUBSET = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10_subset.npz")


def _rb():
    from bench.deps import import_autoattack

    import_autoattack()
    import robustbench.model_zoo.cifar10 as rb_cifar10
    import robustbench.model_zoo.cifar100 as rb_cifar100
    import robustbench.model_zoo.imagenet as rb_imagenet
    import robustbench.utils as rb_utils

    return rb_utils, {"cifar10": rb_cifar10, "cifar100": rb_cifar100, "imagenet": rb_imagenet}


def load_through_robustbench(paths, name, dataset, threat, monkeypatch):
    """Register the exported architecture module and zoo entry as a RobustBench PR would, then load the weights
    with robustbench.utils.load_model from the exported models/ folder (no network: the file is there)."""
    rb_utils, zoo_dicts = _rb()
    # the architecture module must stand alone: sharpbench's packages cannot be imported while it runs
    for mod in [m for m in sys.modules if m == "zoo" or m.startswith(("zoo.", "bench"))]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "zoo", None)
    monkeypatch.setitem(sys.modules, "bench", None)
    module = os.path.basename(paths["architecture"]).removesuffix(".py")
    assert module.isidentifier()
    import_file(paths["architecture"], f"robustbench.model_zoo.architectures.{module}", monkeypatch)
    table = {"Linf": "linf", "L2": "l2", "corruptions": "common_corruptions"}[threat]
    (entry_name, entry), = getattr(import_file(paths["entry"], "_entry", monkeypatch), table).items()
    assert entry_name == name and entry["gdrive_id"] == "FILL_IN_GDRIVE_ID"
    monkeypatch.setitem(getattr(zoo_dicts[dataset], table), name, entry)
    model_dir = paths["weights"].split(os.sep + "models" + os.sep)[0] + os.sep + "models"
    return rb_utils.load_model(name, model_dir=model_dir, dataset=dataset, threat_model=threat)


def _data_spec():
    return f"npz:{os.path.abspath(SUBSET)}" if os.path.exists(SUBSET) else "synthetic"


def _test_images(n=16):
    from zoo.data import load_dataset

    ds = load_dataset(_data_spec())
    return ds.x_test[:n].float() / 255


def test_zoo_to_bench_to_export_to_robustbench_loader_gives_identical_logits(tmp_path, monkeypatch, capsys):
    data = _data_spec()  # real CIFAR-10 test images when ../shared is there
    cfg = TrainConfig(arch="sharp_tiny", recipe="pgd_at", data=data, n_train=256, epochs=1, batch_size=64,
                      device="cpu", out=str(tmp_path / "zoo"), steps=2)
    ckpt = train(cfg, progress=False)
    out = tmp_path / "rows"
    assert bench_run.main(["--models", ckpt, "--attacks", "clean,autoattack,corruptions", "--data", data,
                           "--n-examples", "8", "--device", "cpu", "--out", str(out), "--no-progress",
                           "--cache-dir", str(tmp_path / "cache")]) == 0
    results = str(out / "results.jsonl")
    # the tiny sizes are not a RobustBench claim: refused with reasons, then written as a draft
    with pytest.raises(bexport.ExportRefused) as refused:
        bexport.export(ckpt, name="Sharp2026Tiny", out=str(tmp_path / "e"), results=results)
    assert any("first 8 test points" in p for p in refused.value.problems)
    paths = bexport.export(ckpt, name="Sharp2026Tiny", out=str(tmp_path / "e"), results=results, draft=True,
                           additional_data=False)
    info = json.loads(open(paths["info"]).read())
    assert "footnote" not in info and info["reported"] == "" and info["unreliable"] is False
    assert "first 8 test points" in open(paths["draft"]).read()
    cpaths = bexport.export(ckpt, name="Sharp2026Tiny", out=str(tmp_path / "e"), results=results, draft=True,
                            threat="corruptions", additional_data=False)
    cinfo = json.loads(open(cpaths["info"]).read())
    # adversarially trained, and still null, as RobustBench's corruptions entries have it; no `unreliable`
    assert cinfo["eps"] is None and "corruptions_acc" in cinfo and "unreliable" not in cinfo
    assert "regenerated" in open(cpaths["draft"]).read()
    ours = model_from_checkpoint(load_checkpoint(ckpt)).eval()
    x = _test_images()
    for p, threat in ((paths, "Linf"), (cpaths, "corruptions")):
        with monkeypatch.context() as m:
            loaded = load_through_robustbench(p, "Sharp2026Tiny", "cifar10", threat, m)
            with torch.no_grad():
                assert torch.equal(loaded(x), ours(x))


PAPER = {"title": "Sharp minima", "link": "https://arxiv.org/abs/2611.00001", "venue": "ICLR 2026", "reported": "45.10"}


def _autoattack_row(norm="Linf"):
    """The attack fields of an AutoAttack standard row at the leaderboard's eps for `norm`."""
    eps, eps_str = (0.5, "0.5") if norm == "L2" else (8 / 255, "8/255")
    return {"attack": "autoattack", "norm": norm, "eps": eps, "eps_str": eps_str,
            "attack_config": {"attack": "autoattack", "norm": norm, "eps": round(eps, 10), "version": "standard",
                              "stages": ["apgd-ce", "apgd-t", "fab-t", "square"], "seed": 0}}


def _write_row(results, ckpt, **over):
    """A row as bench.run writes it (counts that agree with the accuracies), with the fields in `over`."""
    row = {"status": "ok", "model_id": sha256_file(ckpt), "model": "m", **_autoattack_row(), "data": "cifar10",
           "n": 10000, "clean_acc": 0.8734, "robust_acc": 0.4421, "time": "2026-11-26T00:00:00",
           "pyautoattack": "0.2.0"}
    row.update(over)
    row["clean_correct"] = round(row["clean_acc"] * row["n"])
    row["clean_acc"] = row["clean_correct"] / row["n"]
    if row["attack"] != "corruptions":
        row["robust_correct"] = round(row["robust_acc"] * row["n"])
        row["robust_acc"] = row["robust_correct"] / row["n"]
    row["key"] = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()[:20]
    append_row(str(results), row)
    return row


@pytest.fixture(scope="module")
def timm_ckpt(tmp_path_factory):
    """A timm architecture (resnet18, 3x3 stem), one step on synthetic data labelled as CIFAR-10 training."""
    cfg = TrainConfig(arch="resnet18", data="synthetic", n_train=64, epochs=1, batch_size=64, device="cpu",
                      out=str(tmp_path_factory.mktemp("timm")))
    return _as_trained_on("cifar10", cfg)


@pytest.fixture(scope="module")
def timm_ckpts(timm_ckpt, hundred_classes, tmp_path_factory):
    """{dataset: checkpoint} for RobustBench's CIFAR leaderboards: timm_ckpt, and a 100-class resnet18 (one step
    on a tiny 100-class set) labelled as CIFAR-100 training."""
    c100 = _as_trained_on("cifar100", TrainConfig(arch="resnet18", data=hundred_classes, epochs=1, batch_size=64,
                                                  device="cpu", out=str(tmp_path_factory.mktemp("timm100"))))
    return {"cifar10": timm_ckpt, "cifar100": c100}


def _as_trained_on(dataset: str, cfg) -> str:
    """Train cfg, then record `dataset` as the training data (it stands in for a model trained on it: the export
    reads this field)."""
    from zoo.checkpoint import seal

    path = train(cfg, progress=False)
    ck = torch.load(path, weights_only=True)
    ck["dataset"]["spec"] = dataset
    torch.save(seal(ck), path)
    return path


def test_timm_architecture_exports_exact_fields_and_loads_in_robustbench(timm_ckpt, tmp_path, monkeypatch):
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt)
    paths = bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           title="Sharp minima", authors="A. Smith", link="https://x", venue="ICLR 2026",
                           reported="45.10", footnote="PGD-AT with SAM")
    info = json.loads(open(paths["info"]).read())
    assert info == {"link": "https://x", "name": "Sharp minima", "authors": "A. Smith", "additional_data": False,
                    "number_forward_passes": 1, "dataset": "cifar10", "venue": "ICLR 2026",
                    "architecture": "ResNet-18", "eps": "8/255", "clean_acc": "87.34", "reported": "45.10",
                    "autoattack_acc": "44.21", "footnote": "PGD-AT with SAM", "unreliable": False}
    assert "draft" not in paths and paths["info"].endswith(os.path.join("model_info", "cifar10", "Linf",
                                                                        "Smith2026Sharp.json"))
    sub = open(paths["issue"]).read()
    assert "87.34%" in sub and "44.21%" in sub and "pyautoattack 0.2.0" in sub
    assert "Draft" not in open(paths["pull_request"]).read()
    ours = model_from_checkpoint(load_checkpoint(timm_ckpt)).eval()
    x = _test_images(4)
    loaded = load_through_robustbench(paths, "Smith2026Sharp", "cifar10", "Linf", monkeypatch)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


@pytest.mark.parametrize("over,reason", [
    ({"data": "digits", "n": 64}, "first 64 test points of digits"),
    ({"attack": "autoattack-fast", "attack_config": {"attack": "autoattack-fast", "version": "standard",
                                                     "stages": ["apgd-ce", "apgd-t"], "seed": 0}},
     "requires AutoAttack standard"),
    ({"attack": "pgd", "attack_config": {"attack": "pgd", "steps": 20}}, "requires AutoAttack standard"),
])
def test_claims_robustbench_would_not_accept_are_refused_with_the_fix(timm_ckpt, tmp_path, over, reason, capsys):
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt, **over)
    code = bexport.main([timm_ckpt, "--name", "Smith2026Sharp", "--out", str(tmp_path / "e"),
                         "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and reason in err and "python -m bench.run" in err and "--draft" in err
    assert not (tmp_path / "e").exists()  # nothing written without --draft
    assert all(len(line) < 400 for line in err.splitlines())


def test_wrong_eps_and_names_are_refused(timm_ckpt, tmp_path):
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt, eps=4 / 255, eps_str="4/255")
    with pytest.raises(bexport.ExportRefused, match="at eps 8/255, not 4/255"):
        bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path), results=str(results), eps="4/255")
    _write_row(results, timm_ckpt)
    with pytest.raises(bexport.ExportRefused, match="Surname"):
        bexport.export(timm_ckpt, name="mymodel", out=str(tmp_path), results=str(results))
    with pytest.raises(bexport.ExportRefused, match="no cifar100 L2 leaderboard"):
        bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path), results=str(results), threat="L2",
                       dataset="cifar100")


def test_a_full_row_is_preferred_to_a_newer_partial_one(timm_ckpt, tmp_path):
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt, robust_acc=0.40)
    _write_row(results, timm_ckpt, n=64, robust_acc=0.5, time="2026-11-27T00:00:00")
    paths = bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results), **PAPER)
    assert json.loads(open(paths["info"]).read())["autoattack_acc"] == "40.00"


def _corruption_row(ckpt, source="official", names=None):
    from bench.corruptions.generator import CORRUPTIONS

    names = names or list(CORRUPTIONS)
    per = {f"{c}/{s}": round(0.5 + 0.01 * i + 0.001 * s, 6) for i, c in enumerate(names) for s in range(1, 6)}
    return {"attack": "corruptions", "norm": None, "eps": 0.0, "eps_str": "0", "robust_acc": float(np.mean(list(per.values()))),
            "corruption_severity_acc": per, "corruption_source": source,
            "attack_config": {"attack": "corruptions", "names": names, "severities": [1, 2, 3, 4, 5],
                              "source": source, "seed": 0}}


def test_corruptions_export_fields_and_robustbench_unaggregated_layout(timm_ckpt, tmp_path):
    import pandas as pd

    results = tmp_path / "results.jsonl"
    row = _write_row(results, timm_ckpt, **_corruption_row(timm_ckpt))
    paths = bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           threat="corruptions", **PAPER)
    info = json.loads(open(paths["info"]).read())
    assert info["eps"] is None
    assert info["corruptions_acc"] == f"{100 * row['robust_acc']:.2f}" and "autoattack_acc" not in info
    # read back exactly as robustbench's corruptions evaluation reads unaggregated_results.csv
    frame = pd.read_csv(paths["unaggregated"], header=[0, 1], index_col=0)
    frame.columns = frame.columns.set_levels([frame.columns.levels[0], frame.columns.levels[1].astype(int)])
    assert list(frame.index) == ["Smith2026Sharp"] and frame.shape == (1, 75)
    for (c, s), v in frame.loc["Smith2026Sharp"].items():
        assert v == pytest.approx(row["corruption_severity_acc"][f"{c}/{s}"])
    rb_header = open(os.path.join(RB_FILES, "cifar10_corruptions_unaggregated_results_head.csv")).read().splitlines()
    assert open(paths["unaggregated"]).read().splitlines()[:2] == rb_header[:2]  # RobustBench's file's columns


@pytest.mark.parametrize("source,names,reason", [("regenerated", None, "official files"),
                                                 ("official", ["fog", "snow"], "missing: brightness")])
def test_corruptions_claims_need_all_official_sets(timm_ckpt, tmp_path, source, names, reason):
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt, **_corruption_row(timm_ckpt, source, names))
    with pytest.raises(bexport.ExportRefused) as info:
        bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path), results=str(results),
                       threat="corruptions")
    assert any(reason in p for p in info.value.problems)


def test_training_data_other_than_the_benchmark_needs_a_stated_additional_data(tmp_path):
    from zoo.data import make_synthetic

    ds = make_synthetic(n_train=64, n_test=8)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=ds.x_train.numpy(), y_train=ds.y_train.numpy(), x_test=ds.x_test.numpy(),
             y_test=ds.y_test.numpy())
    ckpt = train(TrainConfig(arch="sharp_tiny", data=f"npz:{npz}", epochs=1, batch_size=64, device="cpu",
                             out=str(tmp_path / "zoo")), progress=False)
    results = tmp_path / "results.jsonl"
    _write_row(results, ckpt)
    with pytest.raises(bexport.ExportRefused, match="--additional-data"):
        bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results), **PAPER)
    paths = bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           additional_data=True, **PAPER)
    assert json.loads(open(paths["info"]).read())["additional_data"] is True


def test_cifar100_model_exports_into_cifar100_and_loads_in_robustbench(tmp_path, monkeypatch):
    from zoo.data import make_synthetic

    ds = make_synthetic(n_train=200, n_test=16, num_classes=100)
    npz = tmp_path / "c100.npz"  # every class present, so the npz loader counts 100
    np.savez(npz, x_train=ds.x_train.numpy(), y_train=np.arange(200) % 100, x_test=ds.x_test.numpy(),
             y_test=ds.y_test.numpy())
    data = f"npz:{npz}"
    ckpt = train(TrainConfig(arch="sharp_tiny", data=data, epochs=1, batch_size=64, device="cpu",
                             out=str(tmp_path / "zoo")), progress=False)
    assert load_checkpoint(ckpt)["num_classes"] == 100
    out = tmp_path / "rows"
    assert bench_run.main(["--models", ckpt, "--attacks", "clean", "--data", data, "--n-examples", "16",
                           "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    results = out / "results.jsonl"
    _write_row(results, ckpt, data="cifar100")
    paths = bexport.export(ckpt, name="Smith2026Hundred", out=str(tmp_path / "e"), results=str(results),
                           additional_data=False, **PAPER)
    assert paths["info"].endswith(os.path.join("model_info", "cifar100", "Linf", "Smith2026Hundred.json"))
    assert json.loads(open(paths["info"]).read())["dataset"] == "cifar100"
    loaded = load_through_robustbench(paths, "Smith2026Hundred", "cifar100", "Linf", monkeypatch)
    x = ds.x_test[:4].float() / 255
    with torch.no_grad():
        assert loaded(x).shape == (4, 100)


def test_robustbench_zoo_model_is_evaluated_offline_and_keyed_by_its_file(tmp_path, capsys):
    _rb()
    from robustbench.model_zoo.cifar10 import Wong2020FastNet

    torch.manual_seed(0)
    model_dir = tmp_path / "models"
    path = model_dir / "cifar10" / "Linf" / "Wong2020Fast.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": Wong2020FastNet().state_dict()}, path)
    out = tmp_path / "r"
    args = ["--models", "rb:Wong2020Fast", "--rb-model-dir", str(model_dir), "--attacks", "clean,pgd",
            "--pgd-steps", "2", "--data", "synthetic", "--n-examples", "4", "--device", "cpu", "--out", str(out),
            "--no-progress", "--no-leaderboard"]
    assert bench_run.main(args) == 0
    rows = read_rows(str(out / "results.jsonl"))
    assert len(rows) == 2 and {r["model_id"] for r in rows} == {sha256_file(str(path))}
    assert all(r["model"] == "rb:Wong2020Fast" and r["status"] == "ok" for r in rows)
    assert bench_run.main(args) == 0 and len(read_rows(str(out / "results.jsonl"))) == 2  # same file: reused
    torch.manual_seed(1)
    torch.save({"state_dict": Wong2020FastNet().state_dict()}, path)  # a different file under the same name
    assert bench_run.main(args) == 0 and len(read_rows(str(out / "results.jsonl"))) == 4
    # a name RobustBench does not know, and a missing file offline: one failed row each, one line
    assert bench_run.main([*args[:1], "rb:NoSuch2020Model", *args[2:]]) == 1
    assert "not in RobustBench's cifar10/Linf model zoo" in capsys.readouterr().err
