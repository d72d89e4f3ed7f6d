"""Validate a GPU in one command: training speed, host syncs, AutoAttack at 10000 images, compiled bf16 training
that the bench loads, and a PASS/FAIL line per target.

  python scripts/gpu_check.py              one GPU (about 20 minutes on an H100); writes results/gpu.md
  python scripts/gpu_check.py --big        adds WRN-28-10 to the speed table
  python scripts/gpu_check.py --quick      one GPU in about 7 minutes: fewer steps and epochs, AutoAttack on the
                                           PGD-AT model over 1000 images (its 10000-image time scaled, and said so),
                                           (d) for standard, SAM and PGD-AT only
  python scripts/gpu_check.py --tiny       CPU, toy sizes, well under a minute: the same code path (CI runs it)

(a) scripts/speed.py's measurement for standard, SAM and PGD-AT(10) on PreActResNet-18: ours against the
    conventional loop, images/s, model FLOPs utilisation against the measured bf16 matmul rate, peak GPU memory;
(b) the host-sync check of one loader batch and training step under torch.cuda.set_sync_debug_mode("error");
(c) AutoAttack standard (Linf 8/255) seconds on 10000 images, eager and compiled, on a standard and a PGD-AT
    PreActResNet-18 trained here on the real CIFAR-10 subset (its 1017 test images tiled to 10000 when full
    CIFAR-10 is absent: a timing figure, labelled so); both runs' robust accuracies must agree;
(d) a 2-epoch `zoo.train` per recipe with --compile and bf16, whose checkpoints the bench loads and evaluates;
(f) K = 1, 2, 4 training processes sharing the GPU (standard and PGD-AT, whole step compiled): aggregate images/s;
(g) the projected cost of `python -m bench.study --preset paper --seeds 0,1,2` on this GPU, training and evaluation
    hours apart, for K = 1, 2, 4 (bench.grid.estimate, from the speeds measured above);
(h) ImageNet at 224 on synthetic JPEGs: bench.data's decoding images/s and ResNet-50's APGD-CE rate (the
    AutoAttack stage every point goes through), each projected to RobustBench's 5000 points;
(e) PASS/FAIL against the targets below.

In (a) each recipe runs two ways: the model compiled (--compile) and the whole step compiled (--compile-step:
forward, backward, the recipe's passes and attack and the optimizer update; mode reduce-overhead, CUDA graphs,
on a GPU). The targets are read on the whole step; a verdict says whether it is faster for every recipe (the
condition for making it the default on CUDA).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from scripts.speed import graphs_per_step, matmul_rate, ours, reference  # noqa: E402
from zoo.files import write_text_atomic  # noqa: E402
from zoo.config import TrainConfig  # noqa: E402
from zoo.data import make_synthetic  # noqa: E402
from zoo.recipes import RECIPES  # noqa: E402

# one H100, PreActResNet-18, CIFAR shapes
TARGETS = {"standard_img_s": 47_000, "standard_vs_reference": 3.0, "sam_vs_standard": 0.45,
           "pgd_at_vs_standard": 0.10, "aa_standard_s": 120.0, "aa_pgd_at_s": 600.0, "k4_vs_k1_pgd_at": 1.5,
           "paper_grid_h": 8.0}
K_VALUES = (1, 2, 4)
AA_TARGET_N = 10_000  # RobustBench's full CIFAR-10 test set: the count the AutoAttack targets are stated for
SUBSET = os.path.join(ROOT, "..", "shared", "data", "cifar10_subset.npz")


def sizes(tiny: bool, cuda: bool, quick: bool = False) -> dict:
    """aa_n: images AutoAttack runs on per model; a smaller count than AA_TARGET_N is timed and its seconds scaled
    linearly to AA_TARGET_N (an estimate, labelled as one). recipes: those (d) trains."""
    if tiny:
        # PGD-AT with 2 attack steps: the same code path, a shorter graph to compile. The K processes of (f) run
        # the eager step here (k_whole ""), for PGD-AT only: the compiled step is compiled once per recipe in (a),
        # and a K-process is the same code for every recipe. AutoAttack is compiled for the standard model only
        # (aa_compiled): each stage's compiled path is the same for both models (the tests compare it to eager)
        return dict(arch="sharp_tiny", batch=32, steps=3, warmup=1, aa_n={"standard": 8, "pgd_at": 4},
                    aa_epochs=1, aa_batch=250, train_epochs=1, n_train=256, bench_n=32, compile="aot_eager",
                    workers=0, recipes=tuple(RECIPES), whole="default", k_whole="", k_steps=4, attack_steps=2,
                    aa_compiled=("standard",), k_recipes=("pgd_at",), imagenet=(8, 2, "test_efficientnet"))
    full = dict(arch="preact_resnet18", batch=128, steps=50, warmup=10,
                aa_n={"standard": AA_TARGET_N, "pgd_at": AA_TARGET_N}, aa_epochs=15,
                aa_batch=1000 if cuda else 250, train_epochs=2, n_train=None, bench_n=1000, compile="inductor",
                workers=min(8, os.cpu_count() or 1), recipes=tuple(RECIPES),
                whole="reduce-overhead" if cuda else "default", k_steps=60, aa_compiled=("standard", "pgd_at"),
                k_recipes=("standard", "pgd_at"), imagenet=(512, 256, "resnet50"))
    if quick:  # fits a short GPU lease; the same code and targets
        full.update(steps=30, aa_n={"standard": AA_TARGET_N, "pgd_at": 1000}, aa_epochs=10, train_epochs=1,
                    n_train=2048, recipes=("standard", "sam", "pgd_at"), k_steps=40)
    return full


def speed_section(archs, s, device, lines, verdicts):
    cuda = device.type == "cuda"
    peak = matmul_rate(device, torch.bfloat16 if cuda else torch.float32, 8192 if cuda else 512)
    ds = make_synthetic(n_train=s["batch"] * (s["steps"] + s["warmup"] + 1), n_test=16)
    backend = s["compile"]
    lines += ["## (a) Training speed and (b) host syncs", "",
              f"batch {s['batch']}, {s['steps']} timed steps after {s['warmup']} warm-up; ours: on-device data, "
              f"{'bf16 autocast, channels_last, ' if cuda else ''}the model compiled ({backend if cuda else 'off'}), "
              f"or the whole step compiled (mode {s['whole']}, backend {backend}); reference: fp32 loop with a "
              f"DataLoader ({s['workers']} workers). Measured {'bf16' if cuda else 'fp32'} matmul rate: "
              f"{peak / 1e12:.2f} TFLOP/s. Ratios and MFU are the whole step's.", "",
              "| arch | recipe | eager img/s | model compiled img/s | whole step img/s | graphs / breaks per step "
              "(whole) | CUDA graph replays per step (whole) | reference img/s | whole / reference | vs our standard | "
              "MFU | peak GPU memory | host syncs in a step |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    faster, one_graph = [], []
    for arch in archs:
        std = None
        for recipe in ("standard", "sam", "pgd_at"):
            cfg = TrainConfig(arch=arch, recipe=recipe, batch_size=s["batch"],
                              steps=s.get("attack_steps", 0)).resolved()  # PGD-AT: 10 steps
            eager_ips, _, _, _, _ = ours(arch, recipe, cfg, ds, device, s["steps"], s["warmup"], False, False)
            model_ips, _, _, _, _ = ours(arch, recipe, cfg, ds, device, s["steps"], s["warmup"], cuda, False)
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            ips, flops, _, syncs, replays = ours(arch, recipe, cfg, ds, device, s["steps"], s["warmup"], False, False,
                                        whole=s["whole"], backend=backend)
            mem = f"{torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB" if cuda else "n/a (CPU)"
            ref = reference(arch, recipe, cfg, ds, device, s["steps"], s["warmup"], s["workers"])
            x0 = ds.x_train[:s["batch"]].float().div(255).to(device)
            y0 = ds.y_train[:s["batch"]].to(device)
            graphs, breaks = graphs_per_step(arch, recipe, dataclasses.replace(cfg, compile_step=s["whole"]), device,
                                             x0, y0)
            one_graph.append((recipe, graphs, breaks))
            if replays is not None and arch == archs[0]:
                verdicts.append((f"a whole {recipe} step is one CUDA graph replay", replays == 1,
                                 f"{replays:g} replays per step"))
            std = ips if recipe == "standard" else std
            lines.append(f"| {arch} | {recipe} | {eager_ips:.0f} | {model_ips:.0f} | {ips:.0f} | {graphs} / {breaks} | "
                         f"{'n/a (CPU)' if replays is None else f'{replays:g}'} | {ref:.0f} | {ips / ref:.2f}x | "
                         f"{ips / std:.3f} | {100 * ips * flops / peak:.1f}% | {mem} | "
                         f"{syncs if syncs is not None else 'n/a (CPU)'} |")
            print(lines[-1], flush=True)
            if arch != archs[0]:
                continue
            s.setdefault("measured", {})[recipe] = ips
            faster.append((recipe, ips, model_ips))
            if recipe == "standard":
                verdicts.append(("standard >= 47,000 img/s", ips >= TARGETS["standard_img_s"], f"{ips:.0f} img/s"))
                verdicts.append(("standard >= 3x the reference loop", ips / ref >= TARGETS["standard_vs_reference"],
                                 f"{ips / ref:.2f}x"))
            elif recipe == "sam":
                verdicts.append(("SAM >= 0.45x our standard", ips / std >= TARGETS["sam_vs_standard"],
                                 f"{ips / std:.3f}x"))
            else:
                verdicts.append(("PGD-AT(10) >= 0.10x our standard", ips / std >= TARGETS["pgd_at_vs_standard"],
                                 f"{ips / std:.3f}x"))
            if syncs is not None:
                verdicts.append((f"no host sync in a {recipe} step", syncs == "none", syncs))
    verdicts.append(("the whole step is one graph with no break, every recipe",
                     all(g == 1 and b == 0 for _, g, b in one_graph),
                     ", ".join(f"{r} {g}/{b}" for r, g, b in one_graph)))
    verdicts.append(("whole step compiled faster than the model compiled, every recipe (then it becomes the "
                     "default on CUDA)", all(w > m for _, w, m in faster),
                     ", ".join(f"{r} {w / m:.2f}x" for r, w, m in faster)))
    lines.append("")


def k_worker(argv) -> int:
    """One of K processes timing the whole training step on one device, started together by k_section: after
    its warm-up it waits for the others (files in a barrier folder), then times its steps; prints a JSON line."""
    import json

    from scripts.speed import cycle_batches, sync, training_step
    from zoo.data import DeviceLoader

    ap = argparse.ArgumentParser()
    for name in ("recipe", "arch", "barrier", "whole", "backend", "device"):
        ap.add_argument(f"--{name}")
    for name in ("batch", "steps", "warmup", "index", "count", "attack_steps"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=0)
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    cfg = TrainConfig(arch=a.arch, recipe=a.recipe, batch_size=a.batch, steps=a.attack_steps).resolved()
    ds = make_synthetic(n_train=a.batch * 8, n_test=16)
    run = training_step(a.arch, a.recipe, cfg, device, whole=a.whole, backend=a.backend)
    batches = cycle_batches(DeviceLoader(ds.x_train, ds.y_train, a.batch, device, train=True, drop_last=True))
    for _ in range(a.warmup):
        run(*next(batches))
    sync(device)
    open(os.path.join(a.barrier, f"ready-{a.index}"), "w").close()
    while len(os.listdir(a.barrier)) < a.count:
        time.sleep(0.01)
    start = time.time()
    for _ in range(a.steps):
        run(*next(batches))
    sync(device)
    print(json.dumps({"start": start, "end": time.time(), "images": a.steps * a.batch}))
    return 0


def k_section(s, device, lines, verdicts, work):
    """K training processes on one device, started together: aggregate images/s against one alone."""
    import json
    import subprocess

    mps = "not checked (CPU)"
    if device.type == "cuda":
        mps = "on" if os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or os.path.exists("/tmp/nvidia-mps") else "off"
    whole = s.get("k_whole", s["whole"])
    lines += ["## (f) K trainings sharing one GPU", "",
              f"K processes each time {s['k_steps']} steps of the "
              f"{'whole compiled step' if whole else 'eager step (--tiny)'} ({s['arch']}, batch "
              f"{s['batch']}) after their warm-up, all started together; aggregate = all their images over the span "
              f"from the first start to the last end. CUDA MPS: {mps} (the README says how to start it).", "",
              "| recipe | K | aggregate img/s | vs K = 1 |", "|---|---|---|---|"]
    speedup = {}
    for recipe in s["k_recipes"]:
        base = None
        for k in K_VALUES:
            barrier = os.path.join(work, f"k-{recipe}-{k}")
            os.makedirs(barrier)
            env = dict(os.environ)
            if device.type == "cpu":  # CPU processes share the cores instead of each taking all of them
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // k))
            cmd = [sys.executable, os.path.abspath(__file__), "--k-worker", "--recipe", recipe, "--arch", s["arch"],
                   "--barrier", barrier, "--whole", whole, "--backend", s["compile"], "--device", str(device),
                   "--batch", str(s["batch"]), "--steps", str(s["k_steps"]), "--warmup", str(s["warmup"] + 2),
                   "--count", str(k), "--attack-steps", str(s.get("attack_steps", 0))]
            procs = [subprocess.Popen(cmd + ["--index", str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for i in range(k)]
            results = []
            for proc in procs:
                out, err = proc.communicate(timeout=1800)
                if proc.returncode:
                    raise RuntimeError(f"a K-worker failed: {err.strip().splitlines()[-1] if err.strip() else ''}")
                results.append(json.loads(out.strip().splitlines()[-1]))
            span = max(r["end"] for r in results) - min(r["start"] for r in results)
            agg = sum(r["images"] for r in results) / span
            base = agg if k == 1 else base
            speedup.setdefault(recipe, {})[k] = agg / base
            lines.append(f"| {recipe} | {k} | {agg:.0f} | {agg / base:.2f}x |")
            print(lines[-1], flush=True)
    s["k_speedup"] = speedup
    verdicts.append(("K = 4 aggregate >= 1.5x K = 1 for PGD-AT", speedup["pgd_at"][4] >= TARGETS["k4_vs_k1_pgd_at"],
                     f"{speedup['pgd_at'][4]:.2f}x"))
    lines.append("")


def projection_section(s, lines, verdicts):
    """The paper preset's grid (three seeds) in GPU-hours on this device, from the speeds measured above."""
    import dataclasses

    from bench.grid.estimate import project
    from bench.grid.presets import PRESETS

    p = dataclasses.replace(PRESETS["paper"], seeds=(0, 1, 2))
    speeds = {**s["measured"], **s["eval_rates"]}
    trainings = len(p.seeds) * (1 + len(p.rhos) + len(p.at) + len(p.sam_at))
    lines += ["## (g) The paper grid on this GPU", "",
              f"`python -m bench.study --preset paper --seeds 0,1,2`: {trainings} trainings of {p.arch}, {p.epochs} "
              "epochs on 50000 images, each at its recipe's images/s measured in (a) (adversarial training "
              "interpolated per attack step between standard and PGD-AT(10)); per checkpoint PGD-"
              f"{p.pgd_steps} at {sum(len(e) for e in p.eval_eps.values())} radii on {p.eval_n} points, AutoAttack "
              f"at {sum(len(e) for e in p.aa_eps.values())} radii on {p.aa_n} points (seconds per image of a "
              "standard or a PGD-AT model, measured in (c)) and the corruptions. K trainings share the GPU at (f)'s "
              "aggregate speed-up; evaluation, whose batches fill the GPU, is counted at K = 1.", "",
              "| K | training hours | evaluation hours | total GPU-hours | target |", "|---|---|---|---|---|"]
    totals = {}
    for k in K_VALUES:
        up = {fam: v.get(k, 1.0) for fam, v in s.get("k_speedup", {}).items()}
        res = project(p, speeds, up)
        totals[k] = res["train_h"] + res["eval_h"]
        lines.append(f"| {k} | {res['train_h']:.1f} | {res['eval_h']:.1f} | {totals[k]:.1f} | "
                     f"{TARGETS['paper_grid_h']:.0f} |")
        print(lines[-1], flush=True)
    best = min(totals, key=totals.get)
    verdicts.append((f"paper grid <= {TARGETS['paper_grid_h']:.0f} GPU-hours (projected)",
                     totals[best] <= TARGETS["paper_grid_h"], f"{totals[best]:.1f} h at K = {best}"))
    # the optional block of the SAM variants (--recipes +looksam,+esam,+gsam,+msam,+rwp): its cells alone
    from bench.grid.presets import SAM_VARIANTS

    block = dataclasses.replace(p, variants=SAM_VARIANTS)
    up = {fam: v.get(best, 1.0) for fam, v in s.get("k_speedup", {}).items()}
    extra = [c for c in project(block, speeds, up)["cells"] if c["cell"].split("-")[1] in SAM_VARIANTS]
    lines += ["", f"With the SAM variants' block (`--recipes {','.join('+' + v for v in SAM_VARIANTS)}`, "
              f"{len(extra)} more trainings at rho {block.variant_rho}): "
              f"{sum(c['train_s'] for c in extra) / 3600:.1f} training and {sum(c['eval_s'] for c in extra) / 3600:.1f} "
              f"evaluation GPU-hours more at K = {best} (each variant's passes per step from its Recipe)."]
    lines.append("")


def sam_variants_check(s, device, lines):
    """(i) The SAM variants' step time against standard training's and SAM's, eager and compiled: speed.py's
    measurement (--sam-variants) on this device."""
    from scripts.speed import sam_variants_section

    steps = 5 * max(1, s["steps"] // 5)  # whole LookSAM cycles (k = 5)
    section = sam_variants_section(s["arch"], s["batch"], device, steps, 3 if device.type == "cuda" else 1, 0.2,
                                   backend=s["compile"])
    lines += ["## (i) SAM variants: step time", *section[2:]]


def autoattack_section(s, device, data, lines, verdicts, work):
    from bench.attacks.registry import make_attack
    from bench.eval.accuracy import evaluate_attack
    from bench.eval.forward import prepare_for_eval
    from zoo.checkpoint import load_checkpoint, model_from_checkpoint
    from zoo.data import load_dataset
    from zoo.train import train

    ds = load_dataset(data)
    on_first = "" if s["n_train"] is None else f" on its first {s['n_train']} training images"
    lines += ["## (c) AutoAttack standard, Linf 8/255", "",
              f"The test images of {data} ({len(ds.y_test)}), tiled when a model's count exceeds them (a timing "
              f"figure: repeated images, not a robustness number for that many distinct ones); {s['arch']} trained "
              f"{s['aa_epochs']} epochs here{on_first}; batch {s['aa_batch']}; seconds include compilation.", "",
              "| checkpoint | images | mode | seconds | clean | robust | stage seconds |",
              "|---|---|---|---|---|---|---|"]
    for recipe in ("standard", "pgd_at"):
        n = s["aa_n"][recipe]
        reps = -(-n // len(ds.y_test))
        x = ds.x_test.repeat(reps, 1, 1, 1)[:n].float().div(255).to(device)
        y = ds.y_test.repeat(reps)[:n].to(device)
        cfg = TrainConfig(arch=s["arch"], recipe=recipe, data=data, epochs=s["aa_epochs"], device=str(device),
                          out=os.path.join(work, "aa"), n_train=s["n_train"])
        base = model_from_checkpoint(load_checkpoint(train(cfg, progress=False)))
        got = {}
        for mode in ("eager", "compiled") if recipe in s["aa_compiled"] else ("eager",):
            t0 = time.perf_counter()
            model = prepare_for_eval(base, device, compile_backend=s["compile"] if mode == "compiled" else None,
                                     batch_size=s["aa_batch"])
            res = evaluate_attack(model, make_attack("autoattack", norm="Linf", eps=8 / 255, batch_size=s["aa_batch"]),
                                  x, y, norm="Linf", eps=8 / 255, batch_size=s["aa_batch"])
            sec = time.perf_counter() - t0
            got[mode] = (sec, res)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in res.get("stage_seconds", {}).items())
            lines.append(f"| {recipe} | {n}{' (tiled)' if reps > 1 else ''} | {mode} | {sec:.1f} | "
                         f"{100 * res['clean_acc']:.2f}% | {100 * res['robust_acc']:.2f}% | {stages} |")
            print(lines[-1], flush=True)
        rates = s.setdefault("eval_rates", {})
        rates[f"aa_s_per_image_{recipe}"] = min(sec for sec, _ in got.values()) / n
        if recipe == "standard":  # PGD-10 and a plain forward on the same model and images: evaluation's other costs
            from bench.attacks.predict import predict

            model = prepare_for_eval(base, device, compile_backend=None, batch_size=s["aa_batch"])
            t1 = time.perf_counter()
            evaluate_attack(model, make_attack("pgd", norm="Linf", eps=8 / 255, pgd_steps=10,
                                               batch_size=s["aa_batch"]),
                            x, y, norm="Linf", eps=8 / 255, batch_size=s["aa_batch"])
            rates["pgd_s_per_image_step"] = (time.perf_counter() - t1) / (n * 10)
            t1 = time.perf_counter()
            predict(model, x, s["aa_batch"])
            rates["forward_s_per_image"] = (time.perf_counter() - t1) / n
        limit = TARGETS["aa_standard_s" if recipe == "standard" else "aa_pgd_at_s"]
        best = min(sec for sec, _ in got.values())
        scaled = best * AA_TARGET_N / n
        ran = " and ".join(got)
        how = (f"{best:.0f} s (the faster of {ran})" if n == AA_TARGET_N else
               f"about {scaled:.0f} s: {best:.1f} s on {n} images (the faster of {ran}) scaled linearly "
               f"to {AA_TARGET_N}, an estimate")
        verdicts.append((f"AutoAttack on {AA_TARGET_N} images, {recipe} model < {limit / 60:.0f} min", scaled < limit,
                         how))
        if "compiled" in got:
            (_, a), (_, b) = got["eager"], got["compiled"]
            verdicts.append((f"AutoAttack eager and compiled agree ({recipe})",
                             a["robust_correct"] == b["robust_correct"],
                             f"robust {a['robust_correct']} vs {b['robust_correct']} of {n}"))
    lines.append("")


def imagenet_section(s, device, lines, verdicts, work):
    """RobustBench's ImageNet protocol at 224 on synthetic JPEGs (bench.data.imagenet): decoding images/s with
    the bench's reader, and the AutoAttack stage ResNet-50 runs first (APGD-CE, 100 iterations) on points every
    one of which it classifies right (labels = its own predictions on random weights), projected to 5000."""
    from bench.attacks.registry import make_attack
    from bench.data import load_points
    from bench.data.imagenet import MAX_POINTS, write_synthetic_folder
    from bench.eval.accuracy import evaluate_attack
    from bench.eval.forward import prepare_for_eval
    from bench.eval.loading import load_timm

    n_dec, n_aa, arch = s["imagenet"]
    root = write_synthetic_folder(os.path.join(work, "imagenet"), n_dec, size=(375, 500))
    t0 = time.perf_counter()
    pts = load_points(f"imagenet:{root}", n=n_dec)
    decode_ips = n_dec / (time.perf_counter() - t0)
    net = load_timm(f"timm:{arch}@{_random_weights(arch, work)}", 1000).model
    model = prepare_for_eval(net, device, compile_backend=None, batch_size=s["aa_batch"])
    x = pts.x[:n_aa].float().div(255).to(device)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point right clean: the attack runs on all of them
    res = evaluate_attack(model, make_attack("autoattack", norm="Linf", eps=4 / 255, batch_size=s["aa_batch"]), x, y,
                          norm="Linf", eps=4 / 255, batch_size=s["aa_batch"])
    ce = res["stage_seconds"]["apgd-ce"]
    ce_ips = n_aa * 100 / ce  # image-iterations (a forward and a backward each) per second
    decode_5000, ce_5000 = MAX_POINTS / decode_ips, MAX_POINTS * 100 / ce_ips
    lines += ["## (h) ImageNet at 224 (RobustBench's protocol, synthetic JPEGs)", "",
              f"{n_dec} synthetic 500x375 JPEGs decoded by `bench.data` (Res256Crop224, {os.cpu_count()} CPU "
              f"threads); {arch} with random weights, AutoAttack standard Linf 4/255 on {n_aa} of them, labelled "
              "by the model's own predictions so every point is attacked. A random network is fooled by APGD-CE "
              "on every point, so the later stages have nothing to do: the table gives APGD-CE's rate, the "
              "stage every point goes through, and projects it and the decoding to RobustBench's 5000 points.", "",
              "| what | measured | 5000 points |", "|---|---|---|",
              f"| decoding (bench.data) | {decode_ips:.0f} images/s | {decode_5000:.1f} s |",
              f"| APGD-CE, 100 iterations ({arch}) | {ce_ips:.0f} image-iterations/s ({ce:.1f} s for {n_aa}) | "
              f"{ce_5000:.0f} s |", ""]
    print("\n".join(lines[-4:]), flush=True)
    verdicts.append(("ImageNet decoding for 5000 points takes < 10% of APGD-CE on them (decoding does not starve "
                     "the attack)", decode_5000 < 0.1 * ce_5000, f"{decode_5000:.1f} s vs {ce_5000:.0f} s"))


def _random_weights(arch: str, work: str) -> str:
    import timm

    path = os.path.join(work, f"{arch}-random.pt")
    torch.manual_seed(0)
    torch.save(timm.create_model(arch).state_dict(), path)
    return path


def training_section(s, device, data, lines, verdicts, work):
    from bench import run as bench_run
    from bench.store.rows import read_rows
    from zoo.checkpoint import load_checkpoint
    from zoo.train import train

    zoo = os.path.join(work, "zoo")
    lines += ["## (d) Compiled bf16 training, loaded by the bench", "",
              f"`zoo.train --compile {s['compile']} --amp bf16 --epochs {s['train_epochs']}` on {data}, then "
              f"`bench.run --attacks clean,pgd` on the first {s['bench_n']} test images.", "",
              "| recipe | seconds | images/s (last epoch) | precision | bench clean | bench PGD Linf 8/255 |",
              "|---|---|---|---|---|---|"]
    paths = {}
    for recipe in s["recipes"]:
        t0 = time.perf_counter()
        cfg = TrainConfig(arch=s["arch"], recipe=recipe, data=data, epochs=s["train_epochs"], n_train=s["n_train"],
                          device=str(device), out=zoo, amp="bf16", compile=s["compile"], steps=10)
        paths[recipe] = (train(cfg, progress=False), time.perf_counter() - t0)
    out = os.path.join(work, "bench")
    code = bench_run.main(["--models", *(p for p, _ in paths.values()), "--attacks", "clean,pgd", "--data", data,
                           "--n-examples", str(s["bench_n"]), "--device", str(device), "--out", out,
                           "--no-progress", "--no-leaderboard"])
    rows = [r for r in read_rows(os.path.join(out, "results.jsonl")) if r.get("status") == "ok"]
    for recipe, (path, sec) in paths.items():
        ck = load_checkpoint(path)
        mine = {r["attack"]: r for r in rows if r["path"] == path}
        clean, pgd = mine.get("clean"), mine.get("pgd")
        lines.append(f"| {recipe} | {sec:.0f} | {ck['history'][-1]['images_per_s']:.0f} | "
                     f"{ck['precision']['train']}, compile {ck['precision']['compile']} | "
                     f"{100 * clean['clean_acc']:.1f}% | {100 * pgd['robust_acc']:.1f}% |" if clean and pgd else
                     f"| {recipe} | {sec:.0f} | | | missing | missing |")
    ok = code == 0 and len(rows) == 2 * len(paths)
    verdicts.append(("compiled bf16 checkpoints of every recipe load and evaluate in the bench", ok,
                     f"{len(rows)}/{2 * len(paths)} rows, bench exit code {code}"))
    lines.append("")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="toy sizes on CPU (seconds); CI runs this")
    ap.add_argument("--quick", action="store_true", help="about 7 minutes on one GPU: fewer steps, epochs, "
                    "recipes in (d) and AutoAttack images for the PGD-AT model (its time scaled, and said so)")
    ap.add_argument("--big", action="store_true", help="also time wrn28_10 in (a)")
    ap.add_argument("--device", default=None, help="default cuda, or cpu with --tiny")
    ap.add_argument("--aa-n", type=int, default=None, help="AutoAttack images per model (default 10000; 16 with "
                    "--tiny; --quick: 10000 for the standard model, 1000 for PGD-AT)")
    ap.add_argument("--out", default=None, help="default results/gpu.md (nothing with --tiny)")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--k-worker"]:  # one of (f)'s K processes
        return k_worker(argv[1:])
    a = ap.parse_args(argv)
    device = torch.device(a.device or ("cpu" if a.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; run with --tiny on CPU, or on a machine with a GPU", file=sys.stderr)
        return 2
    s = sizes(a.tiny, device.type == "cuda", a.quick)
    if a.aa_n:
        s["aa_n"] = {k: a.aa_n for k in s["aa_n"]}
    data = f"npz:{os.path.relpath(SUBSET)}" if os.path.exists(SUBSET) else "digits"
    out = a.out if a.out is not None else ("" if a.tiny else os.path.join("results", "gpu.md"))
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or "cpu")
    driver = ""
    if cuda:
        try:
            import subprocess

            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            driver = "unknown"
    lines = [f"# GPU check{' (--tiny, CPU: functional check only, no target applies)' if a.tiny else ''}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}; device {name}" + (f", driver {driver}, CUDA {torch.version.cuda}"
                                                                   if cuda else f" ({os.cpu_count()} cores)") +
             f"; torch {torch.__version__}; python {platform.python_version()}; data {data}", ""]
    verdicts: list[tuple[str, bool, str]] = []
    t0 = time.perf_counter()
    functional = ("agree", "load and evaluate", "section ran")

    def report(final: bool) -> str:
        # written after every section, so a check cut short by its lease still leaves what it measured
        body = list(lines) + ["## (e) Targets", "", "| check | result | measured |", "|---|---|---|"]
        for what, ok, measured in verdicts:
            result = "n/a (CPU)" if a.tiny and not any(f in what for f in functional) else ("PASS" if ok else "FAIL")
            body.append(f"| {what} | {result} | {measured} |")
        body += ["", f"whole check: {time.perf_counter() - t0:.0f} s" + ("" if final else " so far (cut short?)"), ""]
        text = "\n".join(body)
        if out:
            write_text_atomic(out, text)
        return text

    sections = [("(a)/(b) training speed", lambda w: speed_section([s["arch"]] + (["wrn28_10"] if a.big else []), s,
                                                                   device, lines, verdicts)),
                ("(c) AutoAttack", lambda w: autoattack_section(s, device, data, lines, verdicts, w)),
                ("(d) compiled training", lambda w: training_section(s, device, data, lines, verdicts, w)),
                ("(f) K per GPU", lambda w: k_section(s, device, lines, verdicts, w)),
                ("(g) paper grid projection", lambda w: projection_section(s, lines, verdicts)),
                ("(h) ImageNet", lambda w: imagenet_section(s, device, lines, verdicts, w)),
                ("(i) SAM variants", lambda w: sam_variants_check(s, device, lines))]
    with tempfile.TemporaryDirectory() as work:
        for what, run in sections:
            t1 = time.perf_counter()
            try:
                run(work)
                verdicts.append((f"{what}: section ran", True, f"{time.perf_counter() - t1:.0f} s"))
            except Exception as e:  # one broken section must not hide what the others measure
                import traceback

                traceback.print_exc()
                lines += [f"**{what} failed**: `{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}`", ""]
                verdicts.append((f"{what}: section ran", False, f"{type(e).__name__} after "
                                                                f"{time.perf_counter() - t1:.0f} s"))
            report(final=False)
    text = report(final=True)
    print(text)
    if out:
        print(f"written: {out}")
    failed = [w for w, ok, _ in verdicts if not ok and (not a.tiny or any(f in w for f in functional))]
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
