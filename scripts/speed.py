"""Speed benchmark: the project's training path against a conventional research loop, measured in one run.

  python scripts/speed.py                      CPU-sized defaults on CPU, full sizes on CUDA
  python scripts/speed.py --big                adds wrn28_10
  python scripts/speed.py --out results/speed.md
  python scripts/speed.py --compile --profile  compiled training and evaluation; top kernels of each step
  python scripts/speed.py --only-autoattack     AutoAttack, ours against pyautoattack on the smoke PGD-AT model
  python scripts/speed.py --whole-step --arch sharp_small --batch-size 128 --recipes standard,sam,pgd_at \
      --out results/speed_whole_step.md        eager vs the whole step compiled (inductor), per recipe

For each recipe it times training images/s of (a) the project's trainer step (device-resident data, on-device
augmentation, bf16 autocast + channels_last on CUDA, optional torch.compile, no host syncs) and (b) a
conventional loop (fp32, torchvision DataLoader with CPU transforms, normalization outside the model, .item()
every step, PGD through a full backward), same model, batch size and device; prints the ratio. It also times
PGD-20 evaluation and AutoAttack standard, measures the device's matrix-multiply rate, and reports model FLOPs
utilisation (FLOPs counted by torch's FlopCounterMode on one real step). With --profile it adds, per recipe,
the operators that take the time in our step (torch.profiler), and AutoAttack's seconds per stage.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench.attacks.registry import ATTACKS  # noqa: E402
from zoo.config import TrainConfig  # noqa: E402
from zoo.data import DeviceLoader, make_synthetic  # noqa: E402
from zoo.models import create_model  # noqa: E402
from zoo.errors import first_line  # noqa: E402
from zoo.recipes import get_recipe  # noqa: E402
from zoo.train import bf16_autocast  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device, dtype, n) -> float:
    """Measured FLOP/s of an n x n x n matrix product on random data."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 10 if device.type == "cuda" else 3
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def timed(step_fn, batches, warmup, device) -> float:
    """images/s over the timed batches, after warmup batches (compilation, autotuning, caches)."""
    it = iter(batches)
    for _ in range(warmup):
        step_fn(*next(it))
    sync(device)
    t0, n = time.perf_counter(), 0
    for x, y in it:
        step_fn(x, y)
        n += len(y)
    sync(device)
    return n / (time.perf_counter() - t0)


def profile_table(step_fn, batches, device, rows=12) -> str:
    """The operators that take the time in a few steps (self time, device time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for x, y in batches[:2]:  # warm (compiled graphs, autotuning) outside the profile
        step_fn(x, y)
    sync(device)
    with profile(activities=acts) as prof:
        for x, y in batches[2:6]:
            step_fn(x, y)
        sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48)


def training_step(arch, recipe, cfg, device, mode=None, whole=None, backend=None):
    """The project's training step as the trainer runs it (channels_last and bf16 autocast on CUDA), on a fresh
    seeded model: a function of one batch. mode: None (eager), "default" or another torch.compile mode for the
    model. whole: a torch.compile mode for the whole step instead (zoo.train's --compile-step: forward, backward,
    extra passes, attack and the optimizer update, the learning rate a device tensor), with backend (default
    inductor)."""
    import dataclasses

    from zoo.train import compiled_step, make_optimizer

    is_cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = create_model(arch, 10, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]).to(device)
    if is_cuda:
        model = model.to(memory_format=torch.channels_last)
    if mode or whole:
        torch._dynamo.config.recompile_limit += 8  # each timed model gets its own graphs, none falls back to eager
    net = torch.compile(model, mode=None if mode == "default" else mode) if mode and not whole else model
    net.train()
    cfg = dataclasses.replace(cfg, lr=0.01, compile_step=whole or "", compile=backend or "")
    opt = make_optimizer(model, cfg)
    autocast = bf16_autocast(device, enabled=is_cuda)  # the trainer's default: bf16 on CUDA, fp32 on CPU
    r, compiled, count = get_recipe(recipe), {}, [0]

    def step_at(index):  # the recipe's step of this index (LookSAM alternates two), each compiled once
        fn = r.step_of(cfg, index)
        if whole and fn not in compiled:
            compiled[fn] = compiled_step(r, cfg, fn)
        return compiled[fn] if whole else fn

    def run(x, y):
        if is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        count[0] += 1
        return step_at(count[0] - 1)(net, opt, x, y, cfg, autocast)
    return run


def ours(arch, recipe, cfg, ds, device, steps, warmup, compile_, profile_=False, whole=None, backend=None):
    is_cuda = device.type == "cuda"
    run = training_step(arch, recipe, cfg, device, "default" if compile_ else None, whole=whole, backend=backend)
    loader = DeviceLoader(ds.x_train, ds.y_train, cfg.batch_size, device, train=True, drop_last=True)

    # batches come from the loader inside the timed loop: on-device augmentation is part of the cost, as the
    # reference loop's DataLoader is part of its
    ips = timed(run, (b for _, b in zip(range(steps + warmup), cycle_batches(loader))), warmup, device)
    batches = [b for _, b in zip(range(6), cycle_batches(loader))]
    x0, y0 = batches[0]
    counted = training_step(arch, recipe, cfg, device) if whole else run  # an eager twin: the same FLOPs
    with FlopCounterMode(display=False) as fc:  # FLOPs of one real step, forward and backward included
        counted(x0, y0)
    fresh = cycle_batches(loader)
    syncs = host_syncs(lambda: run(*next(fresh))) if is_cuda else None  # loader and step together
    prof = profile_table(run, batches, device) if profile_ else None
    replays = graph_replays_per_step(run, batches, device) if is_cuda else None
    return ips, fc.get_total_flops() / len(y0), prof, syncs, replays


def graph_replays_per_step(step_fn, batches, device, steps: int = 3) -> float:
    """CUDA graph launches per step (cudaGraphLaunch calls in the profiler's runtime trace): 1.0 when a
    reduce-overhead whole step replays as one CUDA graph, 0 when nothing runs as a graph."""
    from torch.profiler import ProfilerActivity, profile

    for x, y in batches[:2]:  # recorded graphs are warm before the count
        step_fn(x, y)
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for x, y in batches[2:2 + steps]:
            step_fn(x, y)
        sync(device)
    return sum(e.count for e in prof.key_averages() if e.key == "cudaGraphLaunch") / steps


def graphs_per_step(arch, recipe, cfg, device, x, y) -> tuple[int, int]:
    """(graphs, graph breaks) that dynamo makes of one call of the recipe's step (torch._dynamo.explain)."""
    from zoo.train import make_optimizer

    torch.manual_seed(0)
    model = create_model(arch, 10, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]).to(device).train()
    opt = make_optimizer(model, cfg)
    autocast = bf16_autocast(device, enabled=device.type == "cuda")
    e = torch._dynamo.explain(get_recipe(recipe).step)(model, opt, x, y, cfg, autocast)
    return e.graph_count, e.graph_break_count


def whole_step_rows(arch, recipes, ds, bs, device, steps, warmup, backend="inductor") -> list[str]:
    """Per recipe, side by side in this process: the eager step's images/s and the whole step compiled
    (zoo.train --compile-step default, this backend) images/s, with the compile time (the first call) and
    dynamo's graphs and breaks for one step."""
    import dataclasses

    out = ["| arch | recipe | eager img/s | whole step img/s | whole / eager | compile s | graphs / breaks |",
           "|---|---|---|---|---|---|---|"]
    loader = DeviceLoader(ds.x_train, ds.y_train, bs, device, train=True, drop_last=True)
    for recipe in recipes:
        cfg = TrainConfig(arch=arch, recipe=recipe, batch_size=bs).resolved()
        batches = [b for _, b in zip(range(steps + warmup), cycle_batches(loader))]
        eager = training_step(arch, recipe, cfg, device)
        eager_ips = timed(eager, iter(batches), warmup, device)
        whole = training_step(arch, recipe, cfg, device, whole="default", backend=backend)
        t0 = time.perf_counter()
        whole(*batches[0])  # compiles
        sync(device)
        compile_s = time.perf_counter() - t0
        whole_ips = timed(whole, iter(batches), warmup, device)
        graphs, breaks = graphs_per_step(arch, recipe, dataclasses.replace(cfg, compile_step="default"), device,
                                         *batches[0])
        out.append(f"| {arch} | {recipe} | {eager_ips:.1f} | {whole_ips:.1f} | {whole_ips / eager_ips:.2f}x | "
                   f"{compile_s:.0f} | {graphs} / {breaks} |")
        print(out[-1], flush=True)
    return out


def malt_section(ck: str, data: str, n: int, device, batch: int, reps: int) -> list[str]:
    """MALT against AutoAttack (standard) on one model and the same points, alternating, reps runs each: their
    seconds (the attack alone, the model and data loaded once) and the per-point agreement of their flags."""
    import statistics

    from bench.attacks.registry import make_attack
    from bench.data import load_points
    from bench.eval.accuracy import evaluate_attack
    from bench.eval.loading import load_model_spec
    from bench.store.points import decode_states

    pts = load_points(data, n=n)
    lm = load_model_spec(ck, num_classes=pts.num_classes, size=pts.x.shape[-1])
    model = lm.model.to(device).eval()
    x, y = pts.x.float().div(255).to(device), pts.y.to(device)
    times, robust = {"malt": [], "autoattack": []}, {}
    for _ in range(reps):
        for name in times:
            attack = make_attack(name, norm="Linf", eps=8 / 255, batch_size=batch, num_classes=pts.num_classes)
            t0 = time.perf_counter()
            res = evaluate_attack(model, attack, x, y, norm="Linf", eps=8 / 255, batch_size=batch)
            times[name].append(time.perf_counter() - t0)
            robust[name] = decode_states(res["points"])[1]
    both = int((robust["malt"] & robust["autoattack"]).sum())
    only_m, only_a = int((robust["malt"] & ~robust["autoattack"]).sum()), int((~robust["malt"] & robust["autoattack"]).sum())
    med = {k: statistics.median(v) for k, v in times.items()}
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    return ["## MALT against AutoAttack", "",
            f"`python scripts/speed.py --malt` ({time.strftime('%Y-%m-%d')}): Linf 8/255 on `{os.path.relpath(ck)}` "
            f"and the first {len(y)} test points of `{data}`, {dev}, batch {batch}; {reps} runs of each, alternating, "
            "the attack alone (the model and points loaded once); the median, and every time in brackets. MALT: the "
            "5 targets nearest by linearized margin, pyautoattack's APGD-T on each (bench/attacks/malt.py).", "",
            "| attack | seconds | robust points |", "|---|---|---|",
            f"| MALT | {med['malt']:.1f} ({seconds_text(times['malt'])}) | "
            f"{int(robust['malt'].sum())} of {len(y)} |",
            f"| AutoAttack | {med['autoattack']:.1f} ({seconds_text(times['autoattack'])}) | "
            f"{int(robust['autoattack'].sum())} of {len(y)} |", "",
            f"MALT / AutoAttack time: {med['malt'] / med['autoattack']:.2f}. Per point: {both} robust under both, "
            f"{only_m} robust under MALT only (AutoAttack fooled them), {only_a} under AutoAttack only (MALT fooled "
            f"them); the other {len(y) - both - only_m - only_a} fooled by both.", ""]


SAM_VARIANTS = ("standard", "sam", "looksam", "esam", "gsam", "msam", "rwp")


def sam_variants_section(arch, bs, device, steps, reps, rho, backend="inductor", records=None) -> list[str]:
    """Each SAM variant's step time relative to standard training's and to SAM's, eager and with the whole step
    compiled (inductor), measured in this one process: every round times every recipe once, eager then
    compiled, on the same batches; the median of the rounds. steps: timed steps per measurement, a multiple of
    LookSAM's k so its cycle is counted whole. records: a list that gets one row per (round, recipe, mode), the
    step times a study's report pairs by round (bench.report.variants)."""
    import statistics

    ds = make_synthetic(n_train=bs * (steps + 2), n_test=16)
    loader = DeviceLoader(ds.x_train, ds.y_train, bs, device, train=True, drop_last=True)
    batches = [b for _, b in zip(range(steps + 2), cycle_batches(loader))]
    runs = {}
    for recipe in SAM_VARIANTS:
        cfg = TrainConfig(arch=arch, recipe=recipe, batch_size=bs, rho=rho if recipe != "standard" else None)
        cfg = cfg.resolved()
        eager = training_step(arch, recipe, cfg, device)
        whole = training_step(arch, recipe, cfg, device, whole="default", backend=backend)
        for fn in (eager, whole):  # compile (every step function of the recipe) and warm outside the timing
            for x, y in batches[:cfg.looksam_k if recipe == "looksam" else 1]:
                fn(x, y)
        runs[recipe] = (eager, whole)
    seconds = {(r, m): [] for r in SAM_VARIANTS for m in ("eager", "compiled")}
    for rnd in range(reps):
        for recipe, (eager, whole) in runs.items():
            for mode, fn in (("eager", eager), ("compiled", whole)):
                seconds[(recipe, mode)].append(bs / timed(fn, iter(batches[:steps + 1]), 1, device))
                if records is not None:
                    records.append({"kind": "step_time", "recipe": recipe, "mode": mode, "round": rnd,
                                    "seconds_per_step": seconds[(recipe, mode)][-1], "arch": arch, "batch": bs,
                                    "rho": rho, "device": str(device), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    step_s = {k: statistics.median(v) for k, v in seconds.items()}  # seconds per step
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    out = ["## SAM and its cheaper variants: step time", "",
           f"`python scripts/speed.py --sam-variants` ({time.strftime('%Y-%m-%d')}): {arch}, batch {bs}, {dev}, "
           f"{'bf16 autocast' if device.type == 'cuda' else 'fp32'}; rho {rho} (the study's) wherever a recipe takes "
           f"one, each recipe's defaults otherwise (LookSAM k 5). {steps} timed steps "
           f"per measurement, {reps} rounds alternating recipes and modes, the median. Compiled: the whole step "
           f"(`zoo.train --compile-step default`, {backend}). Ratios are per step, on the same batches.", "",
           "| recipe | passes (modelled) | eager ms/step | vs standard | vs SAM | compiled ms/step | vs standard | "
           "vs SAM |", "|---|---|---|---|---|---|---|---|"]
    for recipe in SAM_VARIANTS:
        cfg = TrainConfig(recipe=recipe).resolved()
        cells = []
        for mode in ("eager", "compiled"):
            t = step_s[(recipe, mode)]
            cells += [f"{1000 * t:.1f}", f"{t / step_s[('standard', mode)]:.2f}x", f"{t / step_s[('sam', mode)]:.2f}x"]
        out.append(f"| {recipe} | {get_recipe(recipe).passes(cfg):.2f} | " + " | ".join(cells) + " |")
        print(out[-1], flush=True)
    return out + [""]


def project_frame(tb) -> str:
    """The innermost frame of a traceback that lies in this project's code, as 'path:line in function'."""
    def ours(path):  # the project's packages and scripts, not a virtual environment inside the checkout
        return os.path.relpath(path, ROOT).split(os.sep)[0] in ("zoo", "bench", "scripts")
    frames = [f for f in traceback.extract_tb(tb) if ours(f.filename)]
    if not frames:
        return "outside the project"
    f = frames[-1]
    return f"{os.path.relpath(f.filename, ROOT)}:{f.lineno} in {f.name} (`{(f.line or '').strip()[:70]}`)"


def host_syncs(fn) -> str:
    """'none' when fn runs under CUDA's sync debug mode set to error, else the first synchronising call and the
    project source line that made it."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return "none"
    except RuntimeError as e:
        return f"{first_line(str(e), 60)} at {project_frame(e.__traceback__)}"
    finally:
        torch.cuda.set_sync_debug_mode(0)


def cycle_batches(loader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


class _PILSet(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        from PIL import Image

        self.imgs = [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in x]
        self.y, self.t = y.tolist(), transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.t(self.imgs[i]), self.y[i]


REFERENCE_RECIPES = ("standard", "sam", "pgd_at", "sam_at")  # what the conventional loop below implements


def reference(arch, recipe, cfg, ds, device, steps, warmup, workers):
    """The conventional loop: fp32, DataLoader + CPU transforms, Normalize outside the model, .item() each step,
    PGD with loss.backward() (parameter gradients computed and thrown away)."""
    import torchvision.transforms as T

    torch.manual_seed(0)
    net = create_model(arch, 10, [0.0] * 3, [1.0] * 3).net.to(device)  # the bare network
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    mean = torch.tensor([0.49, 0.48, 0.45], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.24, 0.26], device=device).view(1, 3, 1, 1)
    tf = T.Compose([T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip(), T.ToTensor()])
    dl = torch.utils.data.DataLoader(_PILSet(ds.x_train, ds.y_train, tf), batch_size=cfg.batch_size, shuffle=True,
                                     num_workers=workers, drop_last=True, pin_memory=device.type == "cuda",
                                     persistent_workers=workers > 0)

    def attack(x, y):
        delta = torch.empty_like(x).uniform_(-cfg.eps_value, cfg.eps_value).requires_grad_(True)
        for _ in range(cfg.steps):
            loss = F.cross_entropy(net(((x + delta).clamp(0, 1) - mean) / std), y)
            loss.backward()
            d = delta + cfg.alpha_value * delta.grad.sign()
            delta = d.clamp(-cfg.eps_value, cfg.eps_value).detach().requires_grad_(True)
        opt.zero_grad()
        return (x + delta).clamp(0, 1).detach()

    def sam(x, y):
        loss = F.cross_entropy(net((x - mean) / std), y)
        loss.backward()
        with torch.no_grad():
            gn = torch.norm(torch.stack([p.grad.norm() for p in net.parameters()]))
            es = [cfg.rho * p.grad / (gn + 1e-12) for p in net.parameters()]
            for p, e in zip(net.parameters(), es):
                p.add_(e)
        opt.zero_grad()
        F.cross_entropy(net((x - mean) / std), y).backward()
        with torch.no_grad():
            for p, e in zip(net.parameters(), es):
                p.sub_(e)
        opt.step()
        opt.zero_grad()
        return loss

    def run(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if recipe in ("pgd_at", "sam_at"):
            x = attack(x, y)
        if recipe in ("sam", "sam_at"):
            loss = sam(x, y)
        else:
            loss = F.cross_entropy(net((x - mean) / std), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        loss.item()  # the habitual per-step logging sync

    net.train()

    def batches():
        n = 0
        while True:
            for b in dl:
                if n >= steps + warmup:
                    return
                n += 1
                yield b

    return timed(run, batches(), warmup, device)


def eval_speed(arch, device, n, batch, compile_):
    from bench.attacks.registry import make_attack
    from bench.eval.forward import prepare_for_eval

    model = create_model(arch, 10, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    model = prepare_for_eval(model, device, compile_backend="inductor" if compile_ else None, batch_size=batch)
    x, y = torch.rand(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device)
    atk = make_attack("pgd", norm="Linf", eps=8 / 255, pgd_steps=20)
    atk(model, x[:batch], y[:batch])
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        atk(model, x[i:i + batch], y[i:i + batch])
    sync(device)
    return n / (time.perf_counter() - t0)


def autoattack_speed(arch, device, n, data, epochs, batch, compile_):
    """Seconds per 1000 images of AutoAttack standard on a standard- and a PGD-AT-trained checkpoint, each trained
    here with the project's trainer (the cost depends on how many points stay robust, so it needs real models)."""
    import tempfile

    from bench.attacks.registry import make_attack
    from bench.eval.accuracy import evaluate_attack
    from bench.eval.forward import prepare_for_eval
    from zoo.data import load_dataset
    from zoo.train import train
    from zoo.checkpoint import load_checkpoint, model_from_checkpoint

    out = {}
    ds = load_dataset(data)
    n = min(n, len(ds.y_test))  # the time is scaled by the points actually attacked
    x = ds.x_test[:n].float().div(255).to(device)
    y = ds.y_test[:n].to(device)
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in ("standard", "pgd_at"):
            cfg = TrainConfig(arch=arch, recipe=recipe, data=data, epochs=epochs, device=str(device), out=tmp)
            model = model_from_checkpoint(load_checkpoint(train(cfg, progress=False)))
            t0 = time.perf_counter()  # compilation counts: a user pays it once per model
            model = prepare_for_eval(model, device, compile_backend="inductor" if compile_ else None, batch_size=batch)
            res = evaluate_attack(model, make_attack("autoattack", norm="Linf", eps=8 / 255, batch_size=batch), x, y,
                                  norm="Linf", eps=8 / 255, batch_size=batch)
            out[recipe] = (1000 * (time.perf_counter() - t0) / n, res)
    return n, out


STANDARD_STAGES = ATTACKS["autoattack"].factory.stages  # AutoAttack standard's, in order


def seconds_text(times: list[float]) -> str:
    """Every run's seconds, as the tables show them in brackets."""
    return ", ".join(f"{t:.1f}" for t in times)


def attacked(ck: str, data: str | None, n: int, device) -> tuple:
    """(model in eval mode on device, points, x in [0,1], y): one checkpoint and the first n test points of data
    (None: the data it was trained on)."""
    from bench.data import load_points
    from bench.eval.loading import data_of_models, load_model_spec

    pts = load_points(data or data_of_models([ck])[0], n=n)
    model = load_model_spec(ck).model.to(device).eval()
    return model, pts, pts.x.float().div(255).to(device), pts.y.to(device)


def pyautoattack_images(model, x, y, device, batch: int) -> torch.Tensor:
    """pyautoattack's own run_standard_evaluation (Linf 8/255) on the model: its adversarial images."""
    from bench.attacks.autoattack import Float32Logits, standard_attack

    aa = standard_attack(Float32Logits(model).eval(), norm="Linf", eps=8 / 255, device=str(device))
    return aa.run_standard_evaluation(x, y, batch_size=batch)[0]


def alternate(runs: dict, model, x, y, device, batch: int, reps: int, setup=None, label: str | None = None):
    """Each of `runs` (name -> a call returning adversarial images of x) `reps` times, alternating: every run's
    seconds by name, and each name's per-point robust flags (right on x and on its images) from its last run.
    setup: called before each run, outside its time; label: print each run's time under it."""
    from bench.attacks.predict import predict

    clean = predict(model, x, batch) == y
    times: dict = {name: [] for name in runs}
    flags = {}
    for _ in range(reps):
        for name, run in runs.items():
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            adv = run()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            flags[name] = (clean & (predict(model, adv, batch) == y)).cpu()
            if label is not None:
                print(label, name, f"{times[name][-1]:.1f} s", flush=True)
    return times, flags


def autoattack_side_by_side(ck: str, data: str, n: int, device, batch: int, reps: int) -> dict:
    """AutoAttack standard (Linf 8/255) on one checkpoint's first n test points of `data`, run by the bench
    (staged, resumable, checked, APGD with the early exit), by the bench without the exit, and by pyautoattack's
    own run_standard_evaluation, same model, points, device, seed and batch, alternating, `reps` times each;
    returns the best seconds of each, every time, each run's per-point robust flags and our stages' seconds."""
    from bench.attacks.autoattack import run_autoattack

    model, _, x, y = attacked(ck, data, n, device)
    stage_seconds = {}

    def ours(name, early_exit):
        def run():
            adv, info = run_autoattack(model, x, y, norm="Linf", eps=8 / 255, stages=STANDARD_STAGES,
                                       batch_size=batch, early_exit=early_exit)
            stage_seconds[name] = info["stage_seconds"]
            return adv
        return run

    times, flags = alternate({"ours": ours("ours", True), "ours, no exit": ours("ours, no exit", False),
                              "pyautoattack": lambda: pyautoattack_images(model, x, y, device, batch)},
                             model, x, y, device, batch, reps)
    return {"n": len(y), "seconds": {k: min(v) for k, v in times.items()}, "all": times, "flags": flags,
            "stage_seconds": stage_seconds}


SMOKE_MODELS = tuple(os.path.join("runs", "study-smoke", "zoo", f"sharp_small-{r}-s0.pt")
                     for r in ("standard", "sam-rho0.05", "pgd_at-linf8_255"))


def autoattack_section(cks: list[str], data: str, n: int, device, batch: int, reps: int) -> list[str]:
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    lines = ["## AutoAttack: ours against pyautoattack, side by side", "",
             f"`python scripts/speed.py --only-autoattack` ({time.strftime('%Y-%m-%d')}): AutoAttack standard, Linf "
             f"8/255, on the first {n} test points of `{data}`, {dev}, batch {batch}, seed 0. Ours: "
             "`bench.attacks.autoattack.run_autoattack` (one stage per call on the points still robust, state saved "
             "after each, pyautoattack's checks; APGD with the early exit of `bench.attacks.apgd_exit`); ours, no "
             "exit: the same with pyautoattack's APGD loops as they are; pyautoattack: its own "
             "`run_standard_evaluation` on the same model object, points and device. Run alternately, "
             f"{reps} times each; the attack's own time (model loaded, imports done), the best of each and every "
             "time in brackets. Flags: the points whose robust flag equals pyautoattack's.", "",
             "| model | run | seconds | robust points | flags equal | pyautoattack / run |", "|---|---|---|---|---|---|"]
    stages = []
    for ck in cks:
        r = autoattack_side_by_side(ck, data, n, device, batch, reps)
        ref, theirs = r["seconds"]["pyautoattack"], r["flags"]["pyautoattack"]
        for run, secs in r["seconds"].items():
            f = r["flags"][run]
            every = seconds_text(r["all"][run])
            lines.append(f"| `{os.path.basename(ck)}` | {run} | {secs:.1f} ({every}) | {int(f.sum())} of {r['n']} | "
                         f"{int((f == theirs).sum())} of {r['n']} | {ref / secs:.2f}x |")
        stages.append(f"- `{os.path.basename(ck)}`: " + "; ".join(
            f"{run}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) for run, s in r["stage_seconds"].items()))
        print(lines[-3:], flush=True)
    return lines + ["", "Ours, per stage (s, the last run):", "", *stages, ""]


def bf16_section(cks: list[str], data: str | None, n: int, device, batch: int, reps: int) -> list[str]:
    """AutoAttack standard with its search in fp32 and in bf16 (--precision bf16; every flag decided by the fp32
    model), alternating, reps runs each: the time, the robust points, and the points the bf16 search leaves
    robust that fp32's fools (or the reverse). data None: each checkpoint's own (its training record)."""
    from bench.attacks.autoattack import run_autoattack

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    where = f"`{data}`" if data else "the data each model was trained on"
    lines = ["## AutoAttack with its search in bf16", "",
             f"`python scripts/speed.py --aa-bf16` ({time.strftime('%Y-%m-%d')}): AutoAttack standard, Linf 8/255, "
             f"the first {n} test points of {where}, {dev}, batch {batch}. fp32: RobustBench's protocol; bf16: "
             "`bench.run --precision bf16`, the search under bf16 autocast, each stage's fooled points (and so "
             "every flag) decided by the fp32 model. Alternating, "
             f"{reps} runs each; the median, every time in brackets. Missed: points the bf16 search leaves robust "
             "that the fp32 search fools; found: the reverse.", "",
             "| model | data | search | seconds | robust points | missed by bf16 | found by bf16 only | fp32 / bf16 "
             "time |", "|---|---|---|---|---|---|---|---|"]
    for ck in cks:
        model, pts, x, y = attacked(ck, data, n, device)

        def search(precision):
            return lambda: run_autoattack(model, x, y, norm="Linf", eps=8 / 255, stages=STANDARD_STAGES,
                                          batch_size=batch, precision=precision)[0]

        times, flags = alternate({"fp32": search("fp32"), "bf16": search("bf16")}, model, x, y, device, batch, reps,
                                 label=os.path.basename(ck))
        f32, b16 = flags["fp32"], flags["bf16"]
        ratio = statistics.median(times["fp32"]) / statistics.median(times["bf16"])
        for precision in times:
            every = seconds_text(times[precision])
            missed = f"{int((b16 & ~f32).sum())} of {n}" if precision == "bf16" else ""
            found = f"{int((f32 & ~b16).sum())} of {n}" if precision == "bf16" else ""
            lines.append(f"| `{os.path.basename(ck)}` | `{pts.name}` | {precision} | "
                         f"{statistics.median(times[precision]):.1f} "
                         f"({every}) | {int(flags[precision].sum())} of {n} | {missed} | {found} | "
                         f"{f'{ratio:.2f}x' if precision == 'bf16' else ''} |")
    return lines + [""]


def compile_section(cks: list[str], n: int, device, batch: int, reps: int, backend: str = "inductor") -> list[str]:
    """AutoAttack standard on each checkpoint with the model eager and through the bucketed compiled forward
    (`bench.run --compile`), and pyautoattack's own run_standard_evaluation on the eager model, alternating, reps
    runs each (compiling included in each run's time: a fresh wrapper each run, dynamo's cache reset): the time
    and the points whose robust flag differs from the eager run's."""
    import torch._dynamo

    from bench.attacks.autoattack import run_autoattack
    from bench.eval.forward import CPU_EAGER_BELOW, prepare_for_eval

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    small_eager = f"; a batch under {CPU_EAGER_BELOW} images eager" if device.type == "cpu" else ""
    lines = ["## AutoAttack with the model compiled", "",
             f"`python scripts/speed.py --aa-compile` ({time.strftime('%Y-%m-%d')}): AutoAttack standard, Linf "
             f"8/255, the first {n} test points of the data each model was trained on, {dev}, batch {batch}. "
             f"Ours eager: the model as loaded; ours compiled: `bench.run --compile` ({backend}; the working batch "
             f"padded up to the next of a few fixed sizes from 32{small_eager}, bench/eval/forward.py), a fresh "
             "wrapper each run with dynamo's in-process cache reset, its compiling counted in its time (inductor's "
             "on-disk cache keeps what an earlier run compiled, as it does for a second `bench.run` on one machine); "
             "pyautoattack: its own `run_standard_evaluation` on the eager model. Alternating, "
             f"{reps} runs each; the median, every time in brackets. Flags: the points whose robust flag equals "
             "ours eager.", "",
             "| model | run | seconds | robust points | flags equal | pyautoattack / run |",
             "|---|---|---|---|---|---|"]
    for ck in cks:
        model, _, x, y = attacked(ck, None, n, device)

        def ours(compile_backend):  # a fresh wrapper each run: its compiling is in the run's time
            def run():
                m = prepare_for_eval(model, device, compile_backend=compile_backend, batch_size=batch)
                return run_autoattack(m, x, y, norm="Linf", eps=8 / 255, stages=STANDARD_STAGES, batch_size=batch)[0]
            return run

        times, flags = alternate({"ours eager": ours(None), "ours compiled": ours(backend),
                                  "pyautoattack": lambda: pyautoattack_images(model, x, y, device, batch)},
                                 model, x, y, device, batch, reps, setup=torch._dynamo.reset,
                                 label=os.path.basename(ck))
        ref = statistics.median(times["pyautoattack"])
        for mode in times:
            every = seconds_text(times[mode])
            lines.append(f"| `{os.path.basename(ck)}` | {mode} | {statistics.median(times[mode]):.1f} ({every}) | "
                         f"{int(flags[mode].sum())} of {n} | {int((flags[mode] == flags['ours eager']).sum())} of "
                         f"{n} | {ref / statistics.median(times[mode]):.2f}x |")
    return lines + [""]


def aa_worker(spec: dict) -> None:
    """One process of --aa-workers (run as `speed.py --aa-worker JSON`): loads the model and points, says it is
    ready, waits for the start, runs AutoAttack (sharing spec['board'] when given) and writes its end time, its
    flags and its images' digest."""
    import hashlib

    from bench.attacks.autoattack import run_autoattack
    from bench.attacks.predict import predict
    from bench.data import load_points
    from bench.eval.loading import load_model_spec
    from bench.store.batches import BatchBoard

    torch.set_num_threads(spec["threads"])
    model = load_model_spec(spec["ck"]).model.eval()
    pts = load_points(spec["data"], n=spec["n"])
    x, y = pts.x.float().div(255), pts.y
    board = BatchBoard(spec["board"], spec["lock"]) if spec["board"] else None
    open(spec["out"] + ".ready", "w").close()
    while not os.path.exists(spec["start"]):
        time.sleep(0.01)
    adv, info = run_autoattack(model, x, y, norm="Linf", eps=8 / 255, stages=STANDARD_STAGES,
                               batch_size=spec["batch"], board=board)
    end = time.time()
    flags = ((predict(model, x, spec["batch"]) == y) & (predict(model, adv, spec["batch"]) == y)).tolist()
    with open(spec["out"], "w") as f:
        json.dump({"end": end, "flags": flags, "workers": info["workers"],
                   "adv": hashlib.sha256(adv.numpy().tobytes()).hexdigest()}, f)


def workers_run(ck: str, data: str, n: int, batch: int, workers: int, threads: int, tmp: str) -> dict:
    """One AutoAttack evaluation by `workers` processes of `threads` threads each: the seconds from a common
    start (imports and model loading before it) to the last one's end, the flags, the images' digest, and the
    workers the evaluation counted."""
    import shutil
    import subprocess

    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    board = os.path.join(tmp, "board") if workers > 1 else None
    if board:
        os.makedirs(board)
    procs, outs = [], []
    for w in range(workers):
        out = os.path.join(tmp, f"w{w}.json")
        spec = {"ck": ck, "data": data, "n": n, "batch": batch, "threads": threads, "board": board,
                "lock": os.path.join(tmp, "results.jsonl"), "start": os.path.join(tmp, "start"), "out": out}
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
        procs.append(subprocess.Popen([sys.executable, __file__, "--aa-worker", json.dumps(spec)], env=env))
        outs.append(out)
    while not all(os.path.exists(o + ".ready") for o in outs):
        if any(p.poll() not in (None, 0) for p in procs):
            raise RuntimeError("an AutoAttack worker failed before starting")
        time.sleep(0.05)
    t0 = time.time()
    open(os.path.join(tmp, "start"), "w").close()
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("an AutoAttack worker failed")
    res = []
    for o in outs:
        with open(o) as f:
            res.append(json.load(f))
    if any((r["flags"], r["adv"]) != (res[0]["flags"], res[0]["adv"]) for r in res):
        raise RuntimeError("the workers merged different results")
    return {"seconds": max(r["end"] for r in res) - t0, "flags": res[0]["flags"], "adv": res[0]["adv"],
            "workers": res[0]["workers"]}


def workers_section(ck: str, data: str, n: int, batch: int, reps: int) -> list[str]:
    """AutoAttack on one evaluation: 1 process of 2 threads against 2 processes of 1 thread sharing its batches
    (bench.store.batches), alternating, reps runs each."""
    import tempfile

    runs = {"1 process, 2 threads": (1, 2), "2 workers, 1 thread each": (2, 1)}
    times: dict = {k: [] for k in runs}
    last: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(reps):
            for name, (workers, threads) in runs.items():
                last[name] = r = workers_run(ck, data, n, batch, workers, threads, os.path.join(tmp, "run"))
                times[name].append(r["seconds"])
                print(f"{name}: {r['seconds']:.1f} s", flush=True)
    one = last["1 process, 2 threads"]
    lines = ["## AutoAttack over workers: one evaluation, 1 process against 2", "",
             f"`python scripts/speed.py --aa-workers` ({time.strftime('%Y-%m-%d')}): AutoAttack standard, Linf "
             f"8/255, `{os.path.basename(ck)}` on the first {n} test points of `{data}`, batch {batch} (so that "
             f"each stage has several batches to share), cpu ({os.cpu_count()} cores). The same 2 threads either "
             "way: one process of 2, or two processes of 1 sharing the evaluation's batches "
             "(`bench/store/batches.py`). Each process loads the model and the points, then all start together; "
             "the seconds run from that start to the last one's end. Alternating, "
             f"{reps} runs each; the median, and every time in brackets.", "",
             "| run | seconds | robust points | flags equal to 1 process's | images equal | workers counted |",
             "|---|---|---|---|---|---|"]
    for name, r in last.items():
        every = seconds_text(times[name])
        equal = sum(a == b for a, b in zip(r["flags"], one["flags"]))
        lines.append(f"| {name} | {statistics.median(times[name]):.1f} ({every}) | {sum(r['flags'])} of {n} | "
                     f"{equal} of {n} | {'yes' if r['adv'] == one['adv'] else 'no'} | {r['workers']} |")
    ratio = statistics.median(times["1 process, 2 threads"]) / statistics.median(times["2 workers, 1 thread each"])
    return lines + ["", f"1 process / 2 workers: {ratio:.2f}x.", ""]


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--aa-worker":  # one process of --aa-workers
        aa_worker(json.loads(sys.argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--arch", default=None, help="default preact_resnet18 on CUDA, sharp_tiny on CPU")
    ap.add_argument("--big", action="store_true", help="also wrn28_10")
    ap.add_argument("--batch-size", type=int, default=None, help="default 128 on CUDA, 32 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers of the reference loop")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (training and evaluation)")
    ap.add_argument("--profile", action="store_true", help="add the top operators of each of our steps")
    ap.add_argument("--recipes", default="standard,sam,pgd_at")
    ap.add_argument("--aa-n", type=int, default=None, help="AutoAttack images (default 1000 on CUDA, 16 on CPU)")
    ap.add_argument("--aa-data", default=None,
                    help="data the AutoAttack checkpoints are trained and attacked on (default: the real CIFAR-10 "
                         "subset in ../shared when present, else digits)")
    ap.add_argument("--aa-epochs", type=int, default=None)
    ap.add_argument("--no-aa", action="store_true")
    ap.add_argument("--whole-step", action="store_true",
                    help="only the eager step against the whole step compiled (--compile-step default, inductor), "
                         "per recipe of --recipes, side by side")
    ap.add_argument("--only-autoattack", action="store_true",
                    help="only AutoAttack, ours against pyautoattack on the main command's standard, SAM and PGD-AT "
                         "checkpoints (or --aa-checkpoints), written as its own section of --out")
    ap.add_argument("--aa-checkpoints", default=",".join(SMOKE_MODELS),
                    help="--only-autoattack's checkpoints, comma-separated; their training data is the data")
    ap.add_argument("--aa-checkpoint", default=os.path.join("runs", "study-smoke", "zoo",
                                                            "sharp_small-pgd_at-linf8_255-s0.pt"),
                    help="the robust model of --only-autoattack (default: the main command's PGD-AT model); its "
                         "training data is the data")
    ap.add_argument("--aa-reps", type=int, default=2,
                    help="runs of each, alternating: --only-autoattack, --malt and --sam-variants run one more")
    ap.add_argument("--malt", action="store_true",
                    help="only MALT against AutoAttack on --aa-checkpoint (the smoke PGD-AT model), written as its "
                         "own section of --out")
    ap.add_argument("--sam-variants", action="store_true",
                    help="only the SAM variants' step times against standard and SAM, eager and compiled, written "
                         "as their own section of --out")
    ap.add_argument("--rho", type=float, default=0.2, help="SAM's radius in --sam-variants (the study's)")
    ap.add_argument("--rows", default=None, metavar="JSONL",
                    help="--sam-variants: also append each round's step times here (a study's step_times.jsonl, "
                         "which its report's cost column pairs by round)")
    ap.add_argument("--aa-compile", action="store_true",
                    help="only AutoAttack on --aa-checkpoints with the model eager and compiled (bench.run --compile, "
                         "inductor), compiling counted: time and flags, written as its own section of --out")
    ap.add_argument("--aa-bf16", action="store_true",
                    help="only AutoAttack on --aa-checkpoints with its search in fp32 and in bf16 (flags decided in "
                         "fp32): time and the points bf16 misses, written as its own section of --out")
    ap.add_argument("--aa-workers", action="store_true",
                    help="only AutoAttack on --aa-checkpoint by 1 process against 2 sharing its batches (batch "
                         "--batch-size, default 16), written as its own section of --out")
    ap.add_argument("--out", default="results/speed.md")
    a = ap.parse_args(argv)

    from zoo.distributed import resolve_device

    device = resolve_device(a.device)
    if a.aa_compile:
        section = compile_section(a.aa_checkpoints.split(","), a.aa_n or 64, device,
                                  a.batch_size or (1000 if device.type == "cuda" else 250), a.aa_reps + 1)
        print("\n".join(section))
        return write_section(section, a.out)
    if a.aa_bf16:
        cks = a.aa_checkpoints.split(",")
        section = bf16_section(cks, a.aa_data, a.aa_n or 64, device,
                               a.batch_size or (1000 if device.type == "cuda" else 250), a.aa_reps + 1)
        print("\n".join(section))
        return write_section(section, a.out)
    if a.aa_workers:
        from bench.eval.loading import data_of_models

        section = workers_section(a.aa_checkpoint, a.aa_data or data_of_models([a.aa_checkpoint])[0], a.aa_n or 64,
                                  a.batch_size or 16, a.aa_reps + 1)
        print("\n".join(section))
        return write_section(section, a.out)
    if a.malt:
        from bench.eval.loading import data_of_models

        section = malt_section(a.aa_checkpoint, a.aa_data or data_of_models([a.aa_checkpoint])[0], a.aa_n or 64,
                               device, a.batch_size or (1000 if device.type == "cuda" else 250), a.aa_reps + 1)
        print("\n".join(section))
        return write_section(section, a.out)
    if a.sam_variants:
        cuda = device.type == "cuda"
        records: list = []
        section = sam_variants_section(a.arch or ("preact_resnet18" if cuda else "sharp_tiny"),
                                       a.batch_size or 128, device, a.steps or (50 if cuda else 10), a.aa_reps + 1,
                                       a.rho, records=records)
        if a.rows:
            from bench.store.rows import append_row

            for r in records:
                append_row(a.rows, r)
            print(f"written: {a.rows} ({len(records)} step times)")
        return write_section(section, a.out)
    if a.only_autoattack:
        from bench.eval.loading import data_of_models

        cks = a.aa_checkpoints.split(",")
        section = autoattack_section(cks, a.aa_data or data_of_models(cks)[0], a.aa_n or 64, device,
                                     a.batch_size or (1000 if device.type == "cuda" else 250), a.aa_reps + 1)
        print("\n".join(section))
        return write_section(section, a.out)
    cuda = device.type == "cuda"
    archs = [a.arch or ("preact_resnet18" if cuda else "sharp_tiny")] + (["wrn28_10"] if a.big else [])
    bs = a.batch_size or (128 if cuda else 32)
    steps, warmup = a.steps or (50 if cuda else 6), a.warmup if a.warmup is not None else (10 if cuda else 2)
    workers = a.workers if a.workers is not None else (min(8, os.cpu_count() or 1) if cuda else 0)
    ds = make_synthetic(n_train=bs * (steps + warmup + 1), n_test=16)
    subset = os.path.join(ROOT, "..", "shared", "data", "cifar10_subset.npz")
    aa_data = a.aa_data or (f"npz:{os.path.relpath(subset)}" if os.path.exists(subset) else "digits")

    if a.whole_step:
        rows = whole_step_rows(archs[0], a.recipes.split(","), ds, bs, device, steps, warmup)
        lines = [f"# Speed: the whole training step compiled ({time.strftime('%Y-%m-%d')})", "",
                 f"device: {torch.cuda.get_device_name(device) if cuda else platform.processor() or 'cpu'} "
                 f"({os.cpu_count()} CPU cores, {torch.get_num_threads()} threads); torch {torch.__version__}; "
                 f"batch {bs}; {steps} timed steps after {warmup} warm-up, the same batches for both; fp32 on CPU, "
                 "bf16 autocast on CUDA. Eager: the recipe's step as `zoo.train` runs it by default. Whole step: "
                 "`zoo.train --compile-step default` (torch.compile, fullgraph=True, inductor): attack, forwards, "
                 "gradients and SGD update in one graph. Compile s: the first call. Graphs / breaks: "
                 "torch._dynamo.explain of one step.", "", *rows]
        return write_table(lines, a.out)
    peak_bf16 = matmul_rate(device, torch.bfloat16, 8192 if cuda else 1024)
    peak_fp32 = matmul_rate(device, torch.float32, 8192 if cuda else 1024)
    lines = [f"# Speed ({time.strftime('%Y-%m-%d')})", "",
             f"device: {torch.cuda.get_device_name(device) if cuda else platform.processor() or 'cpu'} "
             f"({os.cpu_count()} CPU cores); torch {torch.__version__}; batch {bs}; {steps} timed steps after "
             f"{warmup} warm-up; compile={a.compile}; reference DataLoader workers={workers}", "",
             f"measured matmul rate: bf16 {peak_bf16 / 1e12:.2f} TFLOP/s, fp32 {peak_fp32 / 1e12:.2f} TFLOP/s", "",
             "| arch | recipe | ours img/s | reference img/s | ours / reference | vs our standard | "
             f"GFLOP/img (step) | MFU vs {'bf16' if cuda else 'fp32'} matmul |", "|---|---|---|---|---|---|---|---|"]
    peak = peak_bf16 if cuda else peak_fp32  # the precision our training runs in on this device
    profiles, sync_notes = [], []
    for arch in archs:
        std_ips = None
        for recipe in a.recipes.split(","):
            cfg = TrainConfig(arch=arch, recipe=recipe, batch_size=bs).resolved()  # PGD-10 at 8/255; FGSM-RS 1 step
            ips, flops, prof, syncs, _ = ours(arch, recipe, cfg, ds, device, steps, warmup, a.compile, a.profile)
            if prof:
                profiles.append((arch, recipe, prof))
            if syncs is not None:
                sync_notes.append(f"{arch} {recipe}: {syncs}")
            # the conventional loop exists for the seed's four recipes; the others are compared with our standard
            ref = reference(arch, recipe, cfg, ds, device, steps, warmup, workers) if recipe in REFERENCE_RECIPES \
                else None
            std_ips = ips if recipe == "standard" else std_ips
            rel = f"{ips / std_ips:.3f}" if std_ips else ""
            ref_cols = f"{ref:.0f} | {ips / ref:.2f}x" if ref else "n/a | n/a"
            lines.append(f"| {arch} | {recipe} | {ips:.0f} | {ref_cols} | {rel} | {flops / 1e9:.3f} "
                         f"| {100 * ips * flops / peak:.1f}% |")
            print(lines[-1], flush=True)
    n_eval = 2048 if cuda else 64
    if sync_notes:
        lines += ["", "host syncs inside one of our steps (CUDA sync debug mode): " + "; ".join(sync_notes)]
    eval_batch = 1000 if cuda else 32
    pgd_ips = eval_speed(archs[0], device, n_eval, eval_batch, a.compile)
    lines += ["", f"PGD-20 evaluation ({archs[0]}, Linf 8/255, fp32, batch {eval_batch}, compile={a.compile}, "
              f"untrained weights): {pgd_ips:.0f} images/s", ""]
    if not a.no_aa:
        n = a.aa_n or (1000 if cuda else 16)
        epochs = a.aa_epochs or (10 if cuda else 5)
        n, res = autoattack_speed(archs[0], device, n, aa_data, epochs, 1000 if cuda else 250, a.compile)
        stages = STANDARD_STAGES
        lines += [f"AutoAttack standard, Linf 8/255, fp32, compile={a.compile}, {n} test images of {aa_data} "
                  f"({archs[0]} trained {epochs} epochs here); seconds per 1000 images (measured on n, scaled "
                  "linearly; compilation included), and where they go:", "",
                  "| checkpoint | s / 1000 img | clean | robust | " + " | ".join(f"{s} s" for s in stages) + " |",
                  "|---|---|---|---|" + "---|" * len(stages)]
        for recipe, (sec, r) in res.items():
            per = r.get("stage_seconds", {})
            lines.append(f"| {recipe} | {sec:.1f} | {100 * r['clean_acc']:.1f}% | {100 * r['robust_acc']:.1f}% | "
                         + " | ".join(f"{per.get(s, 0.0):.1f}" for s in stages) + " |")
    for arch, recipe, prof in profiles:
        lines += ["", f"## Where the time goes: {arch} {recipe} (our step, 4 steps profiled)", "", "```", prof, "```"]
    return write_table(lines, a.out)


def write_section(section: list[str], out: str) -> int:
    """Replace the section titled section[0] in out (when given), keeping the file's other sections."""
    if out:
        from faults import replace_section
        from zoo.files import write_text_atomic

        write_text_atomic(out, replace_section(out, section[0], section))
        print(f"written: {out}")
    return 0


def write_table(lines: list[str], out: str) -> int:
    """Print the report and write it to out (when given)."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
