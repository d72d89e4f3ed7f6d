"""Where a training step's time goes, and where it synchronises with the host: the figures behind a missed speed
target in results/gpu.md.

  python scripts/step_breakdown.py                 CUDA: preact_resnet18, standard / sam / pgd_at
  python scripts/step_breakdown.py --device cpu --arch sharp_tiny --batch 32 --steps 3   (CI-sized check)

Per recipe it prints: images/s of the loader alone, of the step alone on batches fetched beforehand, and of both
together; the step at 4x the batch (a step whose images/s barely grows with the batch is bound by the GPU's
work, one that grows ~4x by the host's kernel launches); the host's wall time per step against the device's
kernel time per step (torch.profiler); torch.compile with mode='reduce-overhead' (CUDA graphs) for comparison;
and, under torch.cuda.set_sync_debug_mode('error'), the first synchronising call of a fresh loader's first
batch, of a mid-epoch batch and of a step, each with the project's source line that made it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from scripts.speed import timed, host_syncs, sync, training_step  # noqa: E402
from zoo.config import TrainConfig  # noqa: E402
from zoo.data import DeviceLoader, make_synthetic  # noqa: E402


def first_sync(fn, device) -> str:
    return host_syncs(fn) if device.type == "cuda" else "n/a (CPU)"


def build(arch, recipe, batch, device, mode):
    cfg = TrainConfig(arch=arch, recipe=recipe, batch_size=batch).resolved()
    return training_step(arch, recipe, cfg, device, None if mode == "eager" else mode)


def breakdown(arch, recipe, batch, steps, warmup, device, modes):
    ds = make_synthetic(n_train=4 * batch * (steps + warmup + 2), n_test=16)
    loader = DeviceLoader(ds.x_train, ds.y_train, batch, device, train=True, drop_last=True)
    big = DeviceLoader(ds.x_train, ds.y_train, 4 * batch, device, train=True, drop_last=True)
    out = {}
    it = iter(loader)
    batches = [next(it) for _ in range(steps + warmup)]

    def loader_only():
        for _ in zip(range(steps + warmup), iter(loader)):
            pass
    sync(device)
    t0 = time.perf_counter()
    loader_only()
    sync(device)
    out["loader img/s"] = batch * (steps + warmup) / (time.perf_counter() - t0)
    run = build(arch, recipe, batch, device, "default")
    out["step img/s (batches fetched beforehand)"] = timed(run, iter(batches), warmup, device)

    def both():
        for b in zip(range(steps + warmup), iter(loader)):
            run(*b[1])
    sync(device)
    t0 = time.perf_counter()
    both()
    sync(device)
    out["loader + step img/s"] = batch * (steps + warmup) / (time.perf_counter() - t0)
    bigb = [b for _, b in zip(range(max(steps // 4, 2) + warmup), iter(big))]
    out[f"step img/s at batch {4 * batch}"] = timed(build(arch, recipe, 4 * batch, device, "default"), iter(bigb),
                                                     warmup, device)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda"
                                                    else [])
    n_prof = min(steps, 10)
    sync(device)
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        for b in batches[:n_prof]:
            run(*b)
        sync(device)
    wall = (time.perf_counter() - t0) / n_prof
    events = prof.key_averages()
    kernel = sum(e.self_device_time_total for e in events) / n_prof / 1e3 if device.type == "cuda" else float("nan")
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC",
                                                         "cuLaunchKernelEx")) / n_prof
    out["host ms per step (profiled)"] = 1e3 * wall
    out["device kernel ms per step"] = kernel
    out["kernel launches per step"] = launches
    for mode in modes:
        try:
            out[f"step img/s, compile mode={mode}"] = timed(build(arch, recipe, batch, device, mode), iter(batches),
                                                            warmup, device)
        except Exception as e:  # a mode that fails on this stack is a finding, not the end of the breakdown
            out[f"step img/s, compile mode={mode}"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
    fresh = iter(loader)  # a generator that raised is finished: each probe gets its own iterator
    out["sync: a fresh loader's first batch"] = first_sync(lambda: next(fresh), device)
    mid = iter(loader)
    next(mid)
    out["sync: a mid-epoch batch"] = first_sync(lambda: next(mid), device)
    x, y = next(mid)
    out["sync: one step"] = first_sync(lambda: run(x, y), device)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="preact_resnet18")
    ap.add_argument("--recipes", default="standard,sam,pgd_at")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--modes", default="reduce-overhead", help="extra torch.compile modes to time ('' for none)")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    modes = [m for m in a.modes.split(",") if m] if device.type == "cuda" else []
    for recipe in a.recipes.split(","):
        print(f"## {a.arch} {recipe}, batch {a.batch}, {device}", flush=True)
        for k, v in breakdown(a.arch, recipe, a.batch, a.steps, a.warmup, device, modes).items():
            print(f"- {k}: {v:.1f}" if isinstance(v, float) else f"- {k}: {v}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
