"""The one training loop, and its CLI: python -m zoo.train --arch preact_resnet18 --recipe sam ...

Runs on CUDA or CPU (bf16 autocast, channels_last and torch.compile on either, defaults on CUDA only), and
under torchrun (data parallel: the step averages its gradients over the ranks). State is written atomically after every epoch so `--resume` continues a killed run.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from contextlib import nullcontext
from functools import partial

import torch
from tqdm import tqdm

from zoo import distributed as dist
from zoo.cli import add_progress, parser, progress_wanted
from zoo.checkpoint import CheckpointError, load_checkpoint, seal, versions
from zoo.files import save_atomic
from zoo.config import TrainConfig
from zoo.data import DATA_SPECS, DataError, DeviceLoader, load_dataset
from zoo.models import ArchError, create_model, known_archs
from zoo.optim import SGD
from zoo.recipes import RECIPES, get_recipe


class TrainingDiverged(RuntimeError):
    pass


def lr_at(cfg: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    if cfg.schedule == "cosine":
        t = (epoch + step / max(steps_per_epoch, 1)) / cfg.epochs
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    frac = epoch / cfg.epochs  # the paper's piecewise schedule, per epoch
    return cfg.lr * (1.0 if frac < 0.75 else 0.1 if frac < 0.9 else 0.01)


def checkpoint_name(cfg: TrainConfig) -> str:
    tag = get_recipe(cfg.recipe).tag(cfg)
    return f"{cfg.arch}-{cfg.recipe}{'-' + tag if tag else ''}-s{cfg.seed}.pt"


def resume_path(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail[:-3]}.resume.pt")


def bf16_autocast(device: torch.device, enabled: bool = True):
    """The autocast context factory training steps run under: bf16 autocast on the device's type (CUDA or CPU)
    when enabled, nothing (fp32) otherwise."""
    return partial(torch.autocast, device.type, dtype=torch.bfloat16) if enabled else nullcontext


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500, autocast=nullcontext) -> float:
    """Clean accuracy of a model on uint8 images (eval mode)."""
    was = model.training
    model.eval()
    correct = 0
    for xb, yb in DeviceLoader(x, y, batch_size, next(model.parameters()).device, train=False):
        with autocast():
            correct += (model(xb).argmax(1) == yb).sum().item()
    model.train(was)
    return correct / max(len(y), 1)


def config_mismatch(saved: dict, cfg: TrainConfig) -> list[str]:
    ignore = {"device", "compile", "compile_step", "out"}  # may change between a run and its resumption
    now, default = cfg.to_dict(), TrainConfig().to_dict()
    # a field added after the run was saved counts as its default (e.g. TRADES' beta for a SAM checkpoint)
    return [k for k in now if k not in ignore and saved.get(k, default[k]) != now[k]]


def make_optimizer(model, cfg: TrainConfig) -> SGD:
    """SGD with momentum and weight decay (zoo.optim): the learning rate lives in a tensor on the model's
    device, so a schedule changes its value without recompiling a compiled step or baking a number into it."""
    return SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
               state=get_recipe(cfg.recipe).state)


def compiled_step(recipe, cfg: TrainConfig, step=None):
    """The recipe's whole step (attack, forwards, gradients, the recipe's second pass, the SGD update) as ONE
    graph: torch.compile with fullgraph=True, so a graph break is an error naming its reason, never a silent
    split. With mode reduce-overhead the graph is replayed as one CUDA graph per step. The outputs (loss,
    logits) are read into the epoch's statistics before the next step replays over them. step: one of the
    recipe's step functions (a recipe whose steps alternate has several, each its own graph); default its step."""
    mode = None if cfg.compile_step == "default" else cfg.compile_step
    return torch.compile(step or recipe.step, backend=cfg.compile or "inductor", mode=mode, fullgraph=True)


def _resume(cfg: TrainConfig, path: str, state_path: str, model, opt, rank: int):
    """(first epoch, history) to go on from, or None when the checkpoint is already finished with these
    settings; a mismatch of settings is a one-line ValueError."""
    if os.path.exists(path) and not os.path.exists(state_path):
        bad = config_mismatch(load_checkpoint(path)["config"], cfg)
        if bad:
            raise ValueError(f"--resume: {path} is finished but was trained with different {', '.join(bad)}; "
                             "rerun without --resume to overwrite it, or change --out")
        dist.log(rank, f"already finished: {path}")
        return None
    if not os.path.exists(state_path):
        return 0, []
    state = load_checkpoint(state_path)
    bad = config_mismatch(state["config"], cfg)
    if bad:
        raise ValueError(f"--resume: {state_path} was written with different {', '.join(bad)}; "
                         "rerun with the same settings or without --resume")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    dist.log(rank, f"resuming {path} after epoch {state['epoch']}")
    return state["epoch"], state["history"]


def _step_and_net(cfg: TrainConfig, recipe, model):
    """(step index -> the step function, the module it runs): compiled as the settings ask, each of the recipe's
    step functions once."""
    net = model
    if cfg.compile or cfg.compile_step:
        # dynamo's recompile limit counts the graphs of every model compiled in this process (a study trains
        # many): each run adds room for its own variants (BatchNorm momentum frozen or not, grad mode, shapes),
        # so a later model does not silently fall back to eager
        torch._dynamo.config.recompile_limit += 8
    compiled: dict = {}
    if cfg.compile and not cfg.compile_step:
        net = torch.compile(net, backend=cfg.compile)

    def step_at(index: int):
        fn = recipe.step_of(cfg, index)
        if not cfg.compile_step:
            return fn
        if fn not in compiled:
            compiled[fn] = compiled_step(recipe, cfg, fn)
        return compiled[fn]
    return step_at, net


def _epoch(cfg, epoch, loader, net, step_at, opt, autocast, device, world, progress, rank):
    """One pass over the training set: (loss sum, correct, count) summed over the ranks, and its seconds."""
    torch.manual_seed(cfg.seed * 1000 + epoch)  # attack random starts: a resumed epoch repeats exactly
    loader.set_epoch(epoch)
    net.train()
    stats = torch.zeros(3, device=device, dtype=torch.float64)  # loss sum, correct, count
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"{cfg.recipe} epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not progress or rank != 0, file=sys.stderr)
    lr = None
    for i, (x, y) in enumerate(bar):
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = lr_at(cfg, epoch, i, len(loader))
        opt.set_lr(lr)
        loss, logits = step_at(epoch * len(loader) + i)(net, opt, x, y, cfg, autocast)
        stats[:2] += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double()])
        stats[2] += len(y)  # a Python scalar: no host-to-device copy inside the step
        if i % 20 == 19:  # the only host sync inside the epoch
            s = stats.tolist()
            bar.set_postfix(loss=f"{s[0] / s[2]:.3f}", acc=f"{s[1] / s[2]:.3f}",
                            img_s=f"{s[2] * world / (time.perf_counter() - t0):.0f}")
    return dist.all_reduce_sum(stats).tolist(), time.perf_counter() - t0, lr


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True, on_epoch_end=None) -> str:
    cfg = cfg.resolved()
    recipe = get_recipe(cfg.recipe)
    device = dist.resolve_device(cfg.device)
    rank, world = dist.setup(device)
    autocast = bf16_autocast(device, cfg.amp == "bf16")

    if cfg.compile_step and world > 1:
        raise ValueError("--compile-step under torchrun is not supported yet: the step all-reduces its gradients "
                         "with torch.distributed.all_reduce, outside a compiled graph; drop --compile-step (or use "
                         "--compile for the model alone)")
    ds = load_dataset(cfg.data, cfg.data_dir, cfg.n_train, cfg.image_size)
    per_rank = (len(ds.y_train) - len(ds.y_train) % world) // world
    if cfg.drop_last and per_rank < cfg.batch_size:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {per_rank} training images each process "
                         f"has, and the short last batch is dropped; pass --batch-size {per_rank} or less")
    mean, std = ds.channel_stats()
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.arch, ds.num_classes, mean, std).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)

    path = os.path.join(cfg.out, checkpoint_name(cfg))
    state_path = resume_path(path)
    begun = _resume(cfg, path, state_path, model, opt, rank) if resume else (0, [])
    if begun is None:
        return path
    start, history = begun
    # the step averages its gradients over the ranks itself (zoo.distributed.average): no DDP wrapper, whose hooks
    # a functional step would bypass; every rank starts from rank 0's weights, as DDP would make them
    dist.broadcast_module(model)
    step_at, net = _step_and_net(cfg, recipe, model)
    loader = DeviceLoader(ds.x_train, ds.y_train, cfg.batch_size, device, train=True, seed=cfg.seed,
                          drop_last=cfg.drop_last, rank=rank, world=world, augment=ds.augment)
    for epoch in range(start, cfg.epochs):
        (loss_sum, correct, count), seconds, lr = _epoch(cfg, epoch, loader, net, step_at, opt, autocast, device,
                                                         world, progress, rank)
        if not math.isfinite(loss_sum):
            kept = state_path if os.path.exists(state_path) else "none (it diverged in the first epoch)"
            raise TrainingDiverged(f"loss became {loss_sum / count} in epoch {epoch + 1}; last good state: {kept}; "
                                   "lower --lr (or --rho/--eps) and rerun with --resume")
        test_acc = accuracy(model, ds.x_test, ds.y_test, autocast=autocast)
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / count, "train_acc": correct / count,
                        "test_acc": test_acc, "lr": lr, "seconds": seconds, "images_per_s": count / seconds})
        dist.log(rank, f"epoch {epoch + 1}/{cfg.epochs} loss {loss_sum / count:.4f} train_acc {correct / count:.4f} "
                       f"test_acc {test_acc:.4f} {count / seconds:.0f} img/s")
        if rank == 0:
            save_atomic(seal({"model": _cpu_state(model), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                              "history": history, "config": cfg.to_dict()}), state_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
    ckpt = _checkpoint(cfg, ds, model, mean, std, history, device, world, autocast)  # every rank: it compares them
    if rank == 0:
        save_atomic(seal(ckpt), path)
        if os.path.exists(state_path):
            os.remove(state_path)
    dist.barrier()
    return path


def _checkpoint(cfg, ds, model, mean, std, history, device, world, autocast) -> dict:
    """The finished checkpoint: the weights and everything that says what they are and what they cost."""
    ddp = {"world_size": world, "max_weight_diff_across_ranks": dist.max_param_diff(model)}
    cost = training_cost(history, device, world)
    # the stored metric is fp32: re-measure only when the epochs were evaluated under bf16
    final_acc = history[-1]["test_acc"] if autocast is nullcontext and history else accuracy(model, ds.x_test, ds.y_test)
    return {
        "model": _cpu_state(model), "arch": cfg.arch, "num_classes": ds.num_classes, "recipe": cfg.recipe,
        "config": cfg.to_dict(), "seed": cfg.seed,
        "dataset": dataset_record(cfg, ds),
        "normalization": {"mean": mean, "std": std}, "history": history,
        "metrics": {"clean_test_acc": final_acc, "n_test": len(ds.y_test)}, "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "distributed": ddp, "cost": cost,
        # what actually ran: training steps (and per-epoch test accuracies) under this precision and layout;
        # metrics.clean_test_acc is always measured in fp32
        "precision": {"train": "bf16 autocast" if cfg.amp == "bf16" else "fp32", "device": device.type,
                      "channels_last": cfg.channels_last, "compile": cfg.compile or None,
                      "compile_step": cfg.compile_step or None, "final_metric": "fp32"},
    }


def dataset_record(cfg: TrainConfig, ds) -> dict:
    """What the checkpoint says about its data; a folder's adds its class names, size and content fingerprint."""
    out = {"spec": cfg.data, "n_train": len(ds.y_train), "n_test": len(ds.y_test), "augment": ds.augment}
    if ds.classes is not None:
        out["classes"] = list(ds.classes)
    if ds.fingerprint is not None:
        out.update(fingerprint=ds.fingerprint, image_size=int(ds.x_train.shape[-1]))
    return out


def training_cost(history: list[dict], device: torch.device, world: int) -> dict:
    """What the training cost on what: device seconds over all epochs (those of this run and of the runs it
    resumed), images per second, peak memory (GPU memory allocated by torch on CUDA, the process's peak
    resident memory on CPU)."""
    import resource

    seconds = sum(e["seconds"] for e in history)
    images = sum(e["seconds"] * e["images_per_s"] for e in history)
    if device.type == "cuda":
        name, peak = torch.cuda.get_device_name(device), torch.cuda.max_memory_allocated(device)
    else:
        name, peak = "cpu", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"device": device.type, "device_name": name, "devices": world, "train_seconds": seconds,
            "images_per_s": images / seconds if seconds else None, "peak_memory_bytes": int(peak)}


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = parser("python -m zoo.train", "Train one model with one recipe and write its self-describing checkpoint.")
    p.add_argument("--list", action="store_true", help="print architectures and recipes, then exit")
    p.add_argument("--arch", default=d.arch, help="timm model name or a CIFAR classic (see --list)")
    p.add_argument("--recipe", default=d.recipe, help=f"one of {', '.join(RECIPES)}")
    p.add_argument("--data", default=d.data, help=" | ".join(DATA_SPECS))
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="folder:DIR whose images differ in size: shorter side resized to S, then the centre S x S")
    p.add_argument("--data-dir", default=d.data_dir, help="where cifar10 and cifar100 are downloaded")
    p.add_argument("--n-train", type=int, default=None, help="use the first N training images")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak SGD learning rate")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="L2 penalty added by SGD")
    p.add_argument("--schedule", default=d.schedule, choices=["piecewise", "cosine"],
                   help="piecewise: x0.1 at 75%% and x0.01 at 90%% of the epochs; cosine: to zero")
    p.add_argument("--rho", type=float, default=None,
                   help="weight-space radius of SAM and its variants (None: the recipe's paper's, 0.05 for SAM, "
                        "3 for MSAM; 0.5 with --adaptive)")
    p.add_argument("--adaptive", action="store_true", help="ASAM (Kwon et al. 2021): T_w = |w| + 0.01 on weights")
    p.add_argument("--looksam-k", type=int, default=d.looksam_k, help="LookSAM: a full SAM step every k steps")
    p.add_argument("--looksam-alpha", type=float, default=d.looksam_alpha,
                   help="LookSAM: weight of the reused orthogonal direction, relative to the gradient's norm")
    p.add_argument("--esam-beta", type=float, default=d.esam_beta,
                   help="ESAM: fraction of the weights the ascent perturbs")
    p.add_argument("--esam-gamma", type=float, default=d.esam_gamma,
                   help="ESAM: fraction of the batch the second gradient is taken on")
    p.add_argument("--gsam-alpha", type=float, default=d.gsam_alpha,
                   help="GSAM: weight of the plain gradient's part orthogonal to SAM's")
    p.add_argument("--rwp-sigma", type=float, default=d.rwp_sigma, help="m-RWP: noise std relative to each filter's norm")
    p.add_argument("--rwp-lambda", type=float, default=d.rwp_lambda, help="m-RWP: weight of the perturbed gradient")
    p.add_argument("--beta", type=float, default=d.beta, help="TRADES: weight of the KL term")
    p.add_argument("--gamma", type=float, default=d.gamma, help="AWP: relative weight perturbation")
    p.add_argument("--norm", default=d.norm, help="training attack's norm: Linf | L2")
    p.add_argument("--eps", default="", help="PGD-AT eps, e.g. 8/255 (default: Linf 8/255, L2 0.5)")
    p.add_argument("--alpha", default="", help="PGD-AT step size (default eps/4)")
    p.add_argument("--steps", type=int, default=0, help="PGD-AT steps (default 10)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds weights, data order, augmentation and attacks")
    p.add_argument("--device", default=d.device, help="auto: cuda when there is one, else cpu")
    p.add_argument("--amp", default="", choices=["bf16", "off"],
                   help="bf16 autocast on the training device (default: bf16 on CUDA, off on CPU)")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="NHWC memory format (default: on CUDA only)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="NCHW memory format")
    p.add_argument("--compile", nargs="?", const="inductor", default="", metavar="BACKEND",
                   help="torch.compile the model (default backend inductor; aot_eager for a cheap check)")
    p.add_argument("--compile-step", nargs="?", const="reduce-overhead", default="", metavar="MODE",
                   help="torch.compile the whole training step (forward, backward, attack, optimizer update) with "
                        "this mode (default reduce-overhead: CUDA graphs); the backend is --compile's (inductor)")
    p.add_argument("--out", default=d.out, help="folder the checkpoint is written to")
    p.add_argument("--resume", action="store_true", help="continue from the last finished epoch")
    add_progress(p)
    return p


def print_listing() -> None:
    from zoo.classics import CLASSICS

    print("recipes:")
    for r in RECIPES.values():
        print(f"  {r.name:10s} {r.summary}")
    print("CIFAR classics (registered into timm):")
    print("  " + ", ".join(CLASSICS))
    names = known_archs()
    print(f"timm architectures ({len(names)}), any of them by name, e.g.:")
    print("  " + ", ".join(n for n in ("resnet18", "resnet50", "vit_tiny_patch16_224", "convnext_atto",
                                        "efficientnet_b0", "mobilenetv3_small_100") if n in names))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        print_listing()
        return 0
    opts = {k: v for k, v in vars(args).items() if k not in ("list", "resume", "progress")}
    cfg = TrainConfig(**opts)
    try:
        path = train(cfg, resume=args.resume, progress=progress_wanted(args.progress))
    except (DataError, ArchError, CheckpointError, TrainingDiverged, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one process names the checkpoint
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
