"""ImageNet the way RobustBench evaluates it, and any timm model: on a synthetic folder made here (every class
folder of the list, only the first 12 images present)."""
import json
import os
import re

import pytest
import torch

from bench.data import load_points
from bench.data.__main__ import main as data_main
from bench.data.imagenet import image_list, write_synthetic_folder
from zoo.data import DataError

pytestmark = pytest.mark.slow  # ImageNet's protocol on decoded folders

PRESENT = 12


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    return str(write_synthetic_folder(str(tmp_path_factory.mktemp("imagenet")), PRESENT))


def test_our_points_equal_robustbenchs_load_imagenet(imagenet_dir, tmp_path):
    from bench.deps import import_robustbench

    import_robustbench()
    from robustbench.data import load_imagenet

    out = tmp_path / "points.pt"
    assert data_main([f"imagenet:{imagenet_dir}", "--n-examples", "8", "--save", str(out)]) == 0
    ours = torch.load(out, weights_only=True)
    x_rb, y_rb = load_imagenet(8, imagenet_dir)
    assert ours["x"].shape == x_rb.shape == (8, 3, 224, 224) and ours["x"].dtype == torch.float32
    assert (ours["x"] - x_rb).abs().max().item() <= 1e-6
    assert torch.equal(ours["y"], y_rb.long()) and ours["y"].dtype == torch.int64
    # labels are the list's classes (the index of the wnid in ImageNet's class map)
    assert ours["y"].tolist() == [label for _, label in image_list()[:8]]
    # the uint8 form is the same points
    assert data_main([f"imagenet:{imagenet_dir}", "--n-examples", "8", "--save", str(out), "--uint8"]) == 0
    u8 = torch.load(out, weights_only=True)["x"]
    assert u8.dtype == torch.uint8 and torch.equal(u8.float().div(255), ours["x"])


def test_only_the_first_n_images_are_needed_and_a_missing_one_is_named(imagenet_dir, capsys):
    pts = load_points(f"imagenet:{imagenet_dir}", n=PRESENT)
    assert pts.name == "imagenet" and pts.num_classes == 1000 and len(pts.y) == PRESENT
    thirteenth = image_list()[PRESENT][0]
    with pytest.raises(DataError, match=f"val/{thirteenth} is missing and 1 more"):
        load_points(f"imagenet:{imagenet_dir}", n=PRESENT + 2)
    assert data_main([f"imagenet:{imagenet_dir}", "--check", "--n-examples", str(PRESENT + 2)]) == 1
    out = capsys.readouterr().out
    assert out.count("missing: ") == 2 and thirteenth in out and f"{PRESENT} of the first {PRESENT + 2}" in out
    assert data_main([f"imagenet:{imagenet_dir}", "--check", "--n-examples", str(PRESENT)]) == 0


def test_bad_imagenet_folders_give_one_line_errors(tmp_path, imagenet_dir, capsys):
    with pytest.raises(DataError, match="has no val/ folder"):
        load_points(f"imagenet:{tmp_path}", n=4)
    broken = tmp_path / "broken"
    write_synthetic_folder(str(broken), 2)
    first = image_list()[1][0]
    (broken / "val" / first).write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=f"val/{first} cannot be decoded"):
        load_points(f"imagenet:{broken}", n=2)
    assert data_main(["imagenetx:foo", "--save", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "unknown --data 'imagenetx:foo'" in err and len(err.strip().splitlines()) == 1


def test_an_imagenet_c_set_equals_robustbenchs_load_imagenetc(tmp_path):
    from bench.data.imagenet import corruption_set
    from bench.deps import import_robustbench

    import_robustbench()
    from robustbench.data import PREPROCESSINGS, load_imagenetc

    write_synthetic_folder(str(tmp_path), 4, seed=1, folder="ImageNet-C/fog/3", size=(224, 224))
    x, y = corruption_set(str(tmp_path / "ImageNet-C"), "fog", 3, 4)
    x_rb, y_rb = load_imagenetc(4, 3, str(tmp_path), corruptions=["fog"], prepr=PREPROCESSINGS["Res224"])
    assert x.shape == (4, 224, 224, 3)
    assert (torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255) - x_rb).abs().max().item() <= 1e-6
    assert y.tolist() == y_rb.tolist()


def test_bench_data_saves_the_points_the_bench_uses_for_any_spec(tmp_path):
    out = tmp_path / "p.pt"
    assert data_main(["synthetic", "--n-examples", "5", "--save", str(out)]) == 0
    saved = torch.load(out, weights_only=True)
    pts = load_points("synthetic", n=5)
    assert torch.equal(saved["x"], pts.x.float().div(255)) and torch.equal(saved["y"], pts.y)


def _local_weights(arch, path, imagenet_dir):
    """A timm model with random weights whose first point is classified right by a small margin (so AutoAttack
    has a point to attack)."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model(arch, pretrained=False).eval()
    pts = load_points(f"imagenet:{imagenet_dir}", n=1)
    mean = torch.tensor(net.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(net.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net((pts.x.float() / 255 - mean) / std)[0]
        label = int(pts.y[0])
        net.get_classifier().bias[label] += logits.max() - logits[label] + 1e-3
    torch.save(net.state_dict(), path)


def test_a_timm_model_with_local_weights_runs_clean_and_autoattack_offline(imagenet_dir, tmp_path):
    from bench.run import main as run_main

    # timm's own smallest test network: the path of any timm model (README: resnet18 the same way)
    weights = tmp_path / "local.pt"
    _local_weights("test_efficientnet", weights, imagenet_dir)
    out = tmp_path / "out"
    from bench.corruptions.generator import CORRUPTIONS, SEVERITIES

    corrupted = tmp_path / "ImageNet-C"  # only the first 4 images of each of the 75 sets, no other class folder
    for name in CORRUPTIONS:
        for sev in SEVERITIES:
            write_synthetic_folder(str(tmp_path), 4, seed=sev, folder=f"ImageNet-C/{name}/{sev}", class_folders=False,
                                   size=(224, 224))
    rc = run_main(["--models", f"timm:test_efficientnet@{weights}", "--data", f"imagenet:{imagenet_dir}", "--attacks",
                   "clean,autoattack,corruptions", "--norm", "Linf", "--eps", "4/255", "--n-examples", "4",
                   "--corruptions-dir", str(corrupted), "--out", str(out), "--no-progress", "--save-adversarial"])
    assert rc == 0
    rows = [json.loads(line) for line in open(out / "results.jsonl")]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    clean, aa, corr = rows
    assert corr["attack_config"]["source"] == "official" and len(corr["corruption_severity_acc"]) == 75
    assert corr["corruption_source"] == "official" and 0 <= corr["robust_acc"] <= 1
    from zoo.checkpoint import sha256_file

    assert clean["model"] == "timm:test_efficientnet@local" and clean["arch"] == "test_efficientnet"
    assert clean["model_id"] == sha256_file(str(weights)) and len(clean["weights_sha256"]) == 64
    assert clean["data"] == "imagenet" and clean["n"] == 4 and aa["eps_str"] == "4/255"
    # the point right on clean inputs is fooled at 4/255: the attack runs at 224 x 224
    assert clean["clean_correct"] >= 1 and aa["robust_correct"] < aa["clean_correct"] == clean["clean_correct"]
    board = (out / "leaderboard.md").read_text()
    assert "imagenet" in board and "timm:test_efficientnet@local" in board
    # the site's gallery shows the fooled point: bench.run told it where ImageNet's folder is
    (page,) = (out / "site" / "models").glob("*.html")
    assert "ImageNet" in (out / "site" / "index.html").read_text() and "Adversarial examples" in page.read_text()
    assert list((out / "site" / "models").glob("*-adv/*-0-adversarial.png"))


def test_timm_names_and_weights_fail_in_one_line(tmp_path, monkeypatch):
    import timm

    from bench.eval.loading import load_model_spec
    from zoo.checkpoint import CheckpointError
    from zoo.models import ArchError

    with pytest.raises(ArchError, match="unknown timm model 'resnet181'; closest: resnet18"):
        load_model_spec("timm:resnet181", num_classes=1000)
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable .safetensors"):
        load_model_spec(f"timm:resnet18@{bad}", num_classes=1000)

    # timm's own pretrained path, as installed: it imports huggingface_hub (a pin timm 1.0.9 can import), and
    # offline it reads the local cache only and says so in one line
    import huggingface_hub.constants as hub
    import timm.models._hub as timm_hub

    assert timm_hub._has_hf_hub, "timm cannot import huggingface_hub: check the pin in pyproject.toml"
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as refused:
        load_model_spec("timm:resnet18", num_classes=1000)
    assert re.fullmatch(r"timm:resnet18: no network for timm's pretrained weights \(HF_HUB_OFFLINE is set\) and they "
                        r"are not in the local Hugging Face cache; .* pass timm:resnet18@PATH with local weights",
                        str(refused.value)), str(refused.value)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)

    def online_but_failing(*a, pretrained=False, **k):
        if pretrained:
            raise OSError("the server said no")
        return real(*a, **k)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", online_but_failing)
    monkeypatch.setattr("socket.create_connection", lambda *a, **k: type("C", (), {"close": lambda self: None})())
    with pytest.raises(CheckpointError, match=r"could not fetch its pretrained weights \(OSError: the server said no\)"):
        load_model_spec("timm:resnet18", num_classes=1000)
    # safetensors weights load as data; a model for other classes than the data's is refused with the numbers
    from safetensors.torch import save_file

    net = real("resnet18", num_classes=10)
    good = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(good))
    lm = load_model_spec(f"timm:resnet18@{good}", num_classes=10, size=32)
    assert lm.meta.arch == "resnet18" and lm.meta.mean == list(net.pretrained_cfg["mean"])
    with pytest.raises(CheckpointError, match="the weights have 10 classes and the data has 1000"):
        load_model_spec(f"timm:resnet18@{good}", num_classes=1000, size=32)


def test_imagenet_corruptions_are_the_official_files_or_a_named_failure(imagenet_dir, tmp_path, capsys):
    from bench.run import main as run_main

    weights = tmp_path / "w.pt"
    _local_weights("test_efficientnet", weights, imagenet_dir)
    args = ["--models", f"timm:test_efficientnet@{weights}", "--data", f"imagenet:{imagenet_dir}", "--attacks",
            "corruptions", "--n-examples", "2", "--out", str(tmp_path / "out"), "--no-progress", "--no-leaderboard"]
    assert run_main(args + ["--corruptions-source", "regenerated"]) == 2
    assert "ImageNet's corruptions are the official ImageNet-C files" in capsys.readouterr().err
    assert run_main(args) == 1  # no DIR/ImageNet-C: the evaluation fails, naming the first missing file
    (row,) = [json.loads(line) for line in open(tmp_path / "out" / "results.jsonl")]
    assert row["status"] == "failed" and "ImageNet-C" in row["error"] and "is missing" in row["error"]


def test_a_timm_model_exports_to_robustbenchs_imagenet_leaderboard_and_loads_there(imagenet_dir, tmp_path,
                                                                                    monkeypatch):
    """The claim is refused on 4 points (RobustBench's is over its 5000); on a row over the 5000 at 4/255 the
    export writes the ImageNet entry (Res256Crop224), which pastes into robustbench's own imagenet.py, and
    robustbench's loader gives our model's logits."""
    from bench import export as bexport
    from bench.run import main as run_main
    from test_export import PAPER, _write_row, load_through_robustbench
    from test_export_as_robustbench import pasted_last_parses

    weights = tmp_path / "local.pt"
    _local_weights("test_efficientnet", weights, imagenet_dir)
    spec, out = f"timm:test_efficientnet@{weights}", tmp_path / "out"
    assert run_main(["--models", spec, "--data", f"imagenet:{imagenet_dir}", "--attacks", "clean,autoattack",
                     "--norm", "Linf", "--eps", "4/255", "--n-examples", "4", "--out", str(out), "--no-progress",
                     "--no-leaderboard"]) == 0
    results = out / "results.jsonl"
    with pytest.raises(bexport.ExportRefused) as refused:
        bexport.export(spec, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                       additional_data=False, **PAPER)
    assert any("all 5000 imagenet test points" in p for p in refused.value.problems)
    aa = {"attack": "autoattack", "norm": "Linf", "eps": 4 / 255, "eps_str": "4/255",
          "attack_config": {"attack": "autoattack", "norm": "Linf", "eps": round(4 / 255, 10), "version": "standard",
                            "stages": ["apgd-ce", "apgd-t", "fab-t", "square"], "seed": 0}}
    _write_row(results, str(weights), data="imagenet", n=5000, **aa)
    paths = bexport.export(spec, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           additional_data=False, **PAPER)
    info = json.loads(open(paths["info"]).read())
    assert (info["dataset"], info["eps"], info["architecture"]) == ("imagenet", "4/255", "test_efficientnet (timm)")
    entry = pasted_last_parses(paths, "imagenet", "Linf", "Smith2026Sharp")
    assert entry["preprocessing"].value == "Res256Crop224"
    from bench.eval.loading import load_timm

    ours = load_timm(spec, 1000).model.eval()
    x = load_points(f"imagenet:{imagenet_dir}", n=2).x.float() / 255
    with torch.no_grad():
        expected = ours(x)
        assert torch.equal(load_through_robustbench(paths, "Smith2026Sharp", "imagenet", "Linf", monkeypatch)(x),
                           expected)
    # the corruptions leaderboard: the official ImageNet-C row over the 5000 points, pasted into its dictionary
    from test_export import _corruption_row

    monkeypatch.undo()  # robustbench's loader ran with sharpbench's packages hidden
    _write_row(results, str(weights), data="imagenet", n=5000, **_corruption_row(str(weights)))
    paths = bexport.export(spec, name="Smith2026Sharp", out=str(tmp_path / "c"), results=str(results),
                           threat="corruptions", additional_data=False, **PAPER)
    assert json.loads(open(paths["info"]).read())["eps"] is None and os.path.exists(paths["unaggregated"])
    assert pasted_last_parses(paths, "imagenet", "corruptions", "Smith2026Sharp")["preprocessing"].value == \
        "Res256Crop224"
