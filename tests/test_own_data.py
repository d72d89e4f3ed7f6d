"""A user's own data: `--data folder:DIR` (torchvision's ImageFolder layout), AutoAttack at any class count from 2,
the L1 threat model, and AutoAttack's rand version for randomized models."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

pytestmark = pytest.mark.slow  # models trained on image folders, AutoAttack at several class counts

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_tree(root, x_train, y_train, x_test, y_test, names, ext="png"):
    """uint8 NCHW arrays as DIR/train/<class>/<i>.png and DIR/test/<class>/<i>.png."""
    from PIL import Image

    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (img, label) in enumerate(zip(x, y)):
            folder = os.path.join(root, split, names[int(label)])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(np.asarray(img).transpose(1, 2, 0))).save(
                os.path.join(folder, f"{i:05d}.{ext}"))
    return str(root)


def synthetic_tree(root, classes: int, seed=0):
    from zoo.data import make_synthetic

    ds = make_synthetic(n_train=60 * classes, n_test=16 * classes, num_classes=classes, seed=seed)
    return write_tree(root, ds.x_train.numpy(), ds.y_train.numpy(), ds.x_test.numpy(), ds.y_test.numpy(),
                      [f"class-{c}" for c in range(classes)])


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, timeout=900,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))


def bench(*argv) -> int:
    """`python -m bench.run ARGV` in this process (its command line, parsed the same way; no interpreter start)."""
    from bench.run import main

    return main([str(a) for a in argv])


def rows_of(out):
    with open(os.path.join(out, "results.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def pyautoattack_on_five_classes(tree, ckpt, norm: str, eps: float, n: int):
    """pyautoattack's own run_standard_evaluation on the 5-class model and the first n points of its folder, with
    its n_target_classes set by hand to 4 (its standard 9, or 5 at L1, exceed the classes - 1):
    (points in [0,1], its adversarial images, its robust flags)."""
    from bench.data import load_points
    from bench.deps import import_autoattack
    from bench.eval.loading import load_model_spec

    pts = load_points(f"folder:{tree}", n=n)
    model = load_model_spec(ckpt, num_classes=5).model.eval()
    attack = import_autoattack()(model, norm=norm, eps=eps, version="standard", seed=0, device="cpu")
    attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = 4
    attack.logger.disabled = True
    x = pts.x.float().div(255)
    x_adv, _ = attack.run_standard_evaluation(x, pts.y, batch_size=250)
    with torch.no_grad():
        flags = (model(x_adv).argmax(1) == pts.y) & (model(x).argmax(1) == pts.y)
    return x, x_adv, flags.numpy()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A 5-class and a 2-class image folder, and a sharp_tiny trained on each by `python -m zoo.train`."""
    tmp = tmp_path_factory.mktemp("own")
    out = {}
    for k in (5, 2):
        tree = synthetic_tree(tmp / f"c{k}", k, seed=k)
        res = run("-m", "zoo.train", "--arch", "sharp_tiny", "--data", f"folder:{tree}", "--epochs", "2",
                  "--batch-size", "64", "--lr", "0.05", "--device", "cpu", "--out", str(tmp / f"zoo{k}"),
                  "--no-progress")
        assert res.returncode == 0, res.stderr[-2000:]
        out[k] = (tree, res.stdout.strip().splitlines()[-1])
    out["tmp"] = tmp
    return out


def test_folder_points_equal_torchvision_imagefolder(subset_path, tmp_path):
    """The CIFAR-10 subset as an ImageFolder tree of PNGs: bench.data's points are ImageFolder + ToTensor on the
    same files, bit for bit, labels included, with the classes taking turns."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    d = np.load(subset_path)
    keep = np.concatenate([np.flatnonzero(d["y_train"] == c)[:20] for c in range(10)])
    tree = write_tree(tmp_path / "cifar", d["x_train"][keep], d["y_train"][keep], d["x_test"], d["y_test"], NAMES)
    res = run("-m", "bench.data", f"folder:{tree}", "--n-examples", "64", "--save", str(tmp_path / "p.pt"))
    assert res.returncode == 0, res.stderr
    saved = torch.load(tmp_path / "p.pt", weights_only=True)
    ref = ImageFolder(os.path.join(tree, "test"), transform=ToTensor())
    # the order stated in zoo.folder: k-th image of each class in class order, for k = 0, 1, ...
    seen: dict = {}
    rank = [seen.setdefault(t, []).append(i) or (len(seen[t]) - 1, t) for i, (_, t) in enumerate(ref.samples)]
    order = sorted(range(len(ref.samples)), key=lambda i: rank[i])[:64]
    assert torch.equal(saved["x"], torch.stack([ref[i][0] for i in order]))
    assert torch.equal(saved["y"], torch.tensor([ref[i][1] for i in order]))
    assert sorted(set(saved["y"][:10].tolist())) == list(range(10))  # every class among the first points
    # zoo.train, then bench.run on the same folder (its data read from the checkpoint): ok rows
    from zoo.config import TrainConfig
    from zoo.train import train

    ckpt = train(TrainConfig(arch="sharp_tiny", data=f"folder:{tree}", epochs=1, batch_size=50, device="cpu",
                             out=str(tmp_path / "zoo")), progress=False)
    assert bench("--models", ckpt, "--attacks", "clean,pgd", "--pgd-steps", "2", "--n-examples", "64", "--out",
                 tmp_path / "bench", "--no-progress") == 0
    rows = rows_of(tmp_path / "bench")
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["classes"] == NAMES


def test_train_and_bench_on_a_folder_with_fewer_than_ten_classes(folders):
    """zoo.train then bench.run on 5 and 2 classes: ok AutoAttack rows with 4 and 1 target classes, marked as
    not RobustBench's standard; the 5-class row's per-point flags equal pyautoattack run directly with
    n_target_classes = 4 on the same model, points and seed."""
    from bench.store.points import decode_states

    tmp = folders["tmp"]
    for k, targets in ((5, 4), (2, 1)):
        tree, ckpt = folders[k]
        out = tmp / f"bench{k}"
        assert bench("--models", ckpt, "--attacks", "clean,autoattack", "--n-examples", "24", "--out", out,
                     "--no-progress") == 0
        rows = rows_of(out)
        assert [r["status"] for r in rows] == ["ok"] * 2
        aa = rows[-1]
        assert aa["attack"] == "autoattack" and aa["n_target_classes"] == targets and aa["rb_standard"] is False
        assert aa["data"] == f"folder:{tree}" and aa["classes"] == [f"class-{c}" for c in range(k)]
        assert aa["robust_acc"] <= aa["clean_acc"]
        board = (out / "leaderboard.md").read_text()
        assert f"AutoAttack targeting {targets} class" in board and "‡" in board
        page = (out / "site" / "index.html").read_text()
        assert "not RobustBench&#39;s standard" in page or "not RobustBench's standard" in page
    tree, ckpt = folders[5]
    _, ours = decode_states(rows_of(tmp / "bench5")[-1]["points"])
    assert np.array_equal(ours, pyautoattack_on_five_classes(tree, ckpt, "Linf", 8 / 255, 24)[2])


def test_l2_autoattack_on_five_classes_equals_pyautoattack(folders, tmp_path):
    """An L2 AutoAttack row on the 5-class model (4 target classes) equals pyautoattack's L2 standard run per
    point, with its n_target_classes set to 4 by hand; every kept image is inside the L2 ball."""
    from bench.store.points import decode_states

    tree, ckpt = folders[5]
    out = tmp_path / "l2"
    assert bench("--models", ckpt, "--attacks", "autoattack", "--norm", "L2", "--n-examples", "16", "--out", out,
                 "--no-progress") == 0
    row = rows_of(out)[-1]
    assert row["status"] == "ok" and row["norm"] == "L2" and row["eps"] == 0.5 and row["n_target_classes"] == 4
    assert row["max_perturbation"] <= 0.5 + 1e-4 and row["robust_acc"] <= row["clean_acc"]
    clean, ours = decode_states(row["points"])
    theirs = pyautoattack_on_five_classes(tree, ckpt, "L2", 0.5, 16)[2]
    assert np.array_equal(ours, theirs) and 0 < int(ours.sum()) < int(clean.sum())  # some fall, some survive


def test_l1_autoattack_equals_pyautoattack_and_verify_checks_the_l1_ball(folders, tmp_path, capsys):
    """An L1 AutoAttack row equals pyautoattack's L1 standard run per point; bench.verify replays it and refuses
    an image moved outside the L1 ball; pgd at L1 is refused in one line."""
    from bench.store.points import decode_states

    tree, ckpt = folders[5]
    out = tmp_path / "l1"
    assert bench("--models", ckpt, "--attacks", "autoattack", "--norm", "L1", "--n-examples", "8", "--out", out,
                 "--save-adversarial", "--no-progress") == 0
    row = rows_of(out)[-1]
    assert row["status"] == "ok" and row["norm"] == "L1" and row["eps"] == 12.0 and row["max_perturbation"] <= 12 + 1e-4
    x, x_adv, theirs = pyautoattack_on_five_classes(tree, ckpt, "L1", 12.0, 8)
    assert np.array_equal(decode_states(row["points"])[1], theirs)

    from bench.run import main as bench_run
    from bench.verify import main as verify

    assert verify(["--results", str(out / "results.jsonl")]) == 0 and "ok " in capsys.readouterr().out
    moved = x_adv.clone()
    moved[0] = x[0]
    moved[0, :, :4, :4] = 1 - x[0, :, :4, :4].round()  # 48 coordinates moved by >= 0.5: L1 distance >= 24
    torch.save(moved, tmp_path / "moved.pt")
    code = verify(["--models", ckpt, "--adversarial", str(tmp_path / "moved.pt"), "--data", f"folder:{tree}",
                   "--norm", "L1", "--eps", "12"])
    shown = capsys.readouterr()
    assert code == 1 and "outside the L1 ball" in shown.out + shown.err, shown

    assert bench_run(["--models", ckpt, "--attacks", "pgd", "--norm", "L1", "--out", str(out)]) == 2
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()] == [
        "error: pgd at L1 is not implemented (it attacks in Linf, L2); at L1 use autoattack, autoattack-fast, "
        "autoattack-rand, imported, malt, or drop L1 from --norm"]


class Dropout(torch.nn.Module):
    """A randomized defence: dropout that stays on in eval mode."""

    def __init__(self, p):
        super().__init__()
        torch.manual_seed(0)
        self.p = p
        self.a, self.b = torch.nn.Linear(3 * 8 * 8, 64), torch.nn.Linear(64, 10)

    def forward(self, x):
        h = torch.relu(self.a(x.flatten(1)))
        return self.b(torch.nn.functional.dropout(h, self.p, training=self.p > 0))


def test_autoattack_rand_on_a_randomized_model():
    """autoattack-rand runs APGD-CE and APGD-DLR with EOT (20 draws) and records it; autoattack on the same model
    finds it randomized and says which version is right."""
    from bench.attacks.registry import make_attack
    from bench.eval.accuracy import evaluate_attack

    model = Dropout(0.1)
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = Dropout(0.0)(x).argmax(1)
    attack = make_attack("autoattack-rand", norm="Linf", eps=1 / 255)
    assert attack.config["version"] == "rand" and attack.config["eot_iter"] == 20
    row = evaluate_attack(model, attack, x, y, norm="Linf", eps=1 / 255)
    assert row["eot_iter"] == 20 and row["deterministic"] is False and row["rb_standard"] is False
    assert list(row["stage_acc"]) == ["clean", "apgd-ce", "apgd-dlr"] and not row["aa_checks"]["randomized"]
    row = evaluate_attack(model, make_attack("autoattack", norm="Linf", eps=1 / 255), x, y, norm="Linf", eps=1 / 255)
    assert row["deterministic"] is False and "--attacks autoattack-rand" in row["aa_checks"]["randomized"]
    row = evaluate_attack(Dropout(0.0), make_attack("autoattack-fast", norm="Linf", eps=1 / 255), x, y,
                          norm="Linf", eps=1 / 255)
    assert row["deterministic"] is True and row["aa_checks"]["randomized"] is None


def test_folder_identity_is_its_content(tmp_path):
    """Rows key on the test images' content: a copy elsewhere is the same data, a changed image is new data,
    and a row's points are refused once its folder changed."""
    from bench.data import load_points, points_of_row
    from zoo.data import DataError

    a = synthetic_tree(tmp_path / "a", 3)
    b = shutil.copytree(a, tmp_path / "b")
    pa, pb = load_points(f"folder:{a}", n=8), load_points(f"folder:{b}", n=8)
    assert pa.identity == pb.identity and pa.name != pb.name
    first = sorted(os.listdir(os.path.join(b, "test", "class-1")))[0]
    shutil.copy(os.path.join(b, "test", "class-0", sorted(os.listdir(os.path.join(b, "test", "class-0")))[0]),
                os.path.join(b, "test", "class-1", first))
    assert load_points(f"folder:{b}", n=8).identity != pa.identity
    with pytest.raises(DataError, match="changed since the row"):
        points_of_row({"data": f"folder:{b}", "n": 8, "data_fingerprint": pb.fingerprint})


def test_folder_errors_are_one_line(tmp_path, capsys):
    from PIL import Image

    from bench.data.__main__ import main

    def _one_line_error(spec):
        code = main([spec, "--n-examples", "4", "--save", os.devnull])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error")]  # the others: a progress bar's
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    tree = synthetic_tree(tmp_path / "t", 3)
    os.makedirs(os.path.join(tree, "train", "empty"))
    Image.new("RGB", (32, 32)).save(os.path.join(tree, "train", "empty", "a.png"))
    os.makedirs(os.path.join(tree, "test", "empty"))
    assert "test/empty holds no images" in _one_line_error(f"folder:{tree}")
    shutil.rmtree(os.path.join(tree, "train", "empty"))
    os.rmdir(os.path.join(tree, "test", "empty"))
    os.makedirs(os.path.join(tree, "test", "stranger"))
    Image.new("RGB", (32, 32)).save(os.path.join(tree, "test", "stranger", "a.png"))
    assert "test/stranger has no train/stranger" in _one_line_error(f"folder:{tree}")
    shutil.rmtree(os.path.join(tree, "test", "stranger"))
    bad = os.path.join(tree, "test", "class-2", "broken.png")
    with open(bad, "wb") as f:
        f.write(b"not an image")
    assert "test/class-2/broken.png cannot be decoded" in _one_line_error(f"folder:{tree}")
    os.remove(bad)
    Image.new("RGB", (40, 30)).save(os.path.join(tree, "test", "class-2", "wide.png"))
    line = _one_line_error(f"folder:{tree}")
    assert "images differ in size" in line and "40x30" in line and "--image-size" in line
    assert main([f"folder:{tree}", "--n-examples", "4", "--image-size", "24", "--save", str(tmp_path / "p.pt")]) == 0
    assert torch.load(tmp_path / "p.pt", weights_only=True)["x"].shape == (4, 3, 24, 24)
    shutil.rmtree(os.path.join(tree, "test"))
    os.makedirs(os.path.join(tree, "test"))
    assert "test/ holds no class folders" in _one_line_error(f"folder:{tree}")
    one = tmp_path / "one"
    os.makedirs(one / "train" / "only")
    os.makedirs(one / "test")
    assert "at least 2" in _one_line_error(f"folder:{one}")
    assert "no train/ folder" in _one_line_error(f"folder:{tmp_path / 'missing'}") or \
        "no such folder" in _one_line_error(f"folder:{tmp_path / 'missing'}")


def test_export_refuses_autoattack_with_fewer_targets():
    """bench.export (RobustBench) refuses an AutoAttack row that is not the standard protocol, saying why."""
    from bench.attacks.autoattack import attack_settings
    from bench.submit.rules import row_problems

    settings = attack_settings("standard", "Linf", 5)
    row = {"attack": "autoattack", "data": "cifar10", "n": 10000, "eps": 8 / 255, "eps_str": "8/255",
           "attack_config": {"attack": "autoattack", "version": "standard",
                             "stages": ["apgd-ce", "apgd-t", "fab-t", "square"], **settings.key_fields()},
           "n_target_classes": settings.n_target_classes, "rb_standard": settings.standard}
    problems = row_problems(row, ckpt="m.pt", dataset="cifar10", threat="Linf", eps_str="8/255", eps=8 / 255)
    assert problems == ["the AutoAttack row is not RobustBench's standard protocol: AutoAttack targeting 4 classes "
                        "(the model has 5), not the standard's 9"]
    ten = attack_settings("standard", "Linf", 10)
    assert ten.standard and ten.key_fields() == {}  # 10 classes: the standard, and the rows' keys unchanged
    assert row_problems({**row, "attack_config": {**row["attack_config"], "apgd_t_targets": 9, "fab_t_targets": 9},
                         "n_target_classes": 9, "rb_standard": True}, ckpt="m.pt", dataset="cifar10",
                        threat="Linf", eps_str="8/255", eps=8 / 255) == []


def test_a_model_of_other_data_has_no_robustbench_leaderboard(folders, tmp_path, capsys):
    """A model trained on an image folder is refused for RobustBench's CIFAR-10 leaderboards even as a draft (its
    images are not the leaderboard's, whatever its class count), in one line that points to the Hub and names the
    folder by its name only; nothing is written."""
    from bench.export import main

    tree, ckpt = folders[5]
    code = main([ckpt, "--name", "Smith2026Sharp", "--dataset", "cifar10", "--out", str(tmp_path / "rb"),
                 "--results", str(tmp_path / "none.jsonl"), "--draft"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("refused: ")]
    assert code == 2 and err == ["refused: the model was trained on folder:c5, not a RobustBench dataset (cifar10, "
                                 "cifar100, imagenet): it has no RobustBench leaderboard (publish it with --hf DIR "
                                 "instead)"]
    assert not os.path.exists(tmp_path / "rb")


def test_nothing_published_names_the_training_folders_path(folders, tmp_path):
    """The Hub folder (card, config, sharpbench.json) and the site of a model trained on folder:/ABS/PATH hold no
    absolute path of this machine: the data is named by its folder's name and the card by its fingerprint, the
    checkpoint by its file name; the card's training table lists only what its recipe reads."""
    from bench.export import main

    tree, ckpt = folders[2]
    out = tmp_path / "rows"
    assert bench("--models", ckpt, "--attacks", "clean,pgd", "--n-examples", "16", "--pgd-steps", "2", "--out", out,
                 "--no-progress") == 0
    hub = tmp_path / "hub"
    assert main([ckpt, "--hf", str(hub), "--results", str(out / "results.jsonl")]) == 0
    private = [str(tree), str(folders["tmp"]), os.path.dirname(ckpt)]
    published = [*hub.iterdir(), *(out / "site").rglob("*.html"), *(out / "site").rglob("*.json"),
                 *(out / "site").rglob("*.csv")]
    assert len(published) > 6
    for f in published:
        text = f.read_text(errors="replace") if f.suffix != ".safetensors" else ""
        leaked = [p for p in private if p in text]
        assert not leaked, (f, leaked)
    card = (hub / "README.md").read_text()
    assert "folder:c2" in card and "content fingerprint" in card
    assert "| eps |" not in card and "| beta |" not in card and "| out |" not in card  # standard reads none
    assert "adversarial/" not in card and "results.jsonl" not in card
