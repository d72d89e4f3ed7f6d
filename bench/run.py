"""Evaluate checkpoints: python -m bench.run --models zoo/*.pt --attacks clean,pgd,autoattack,corruptions

Every (model, attack, norm, eps) is one evaluation and one row in OUT/results.jsonl. Rows already computed for
the same checkpoint hash and attack config are skipped, so reruns only do new work. Several processes may share
one OUT (two shells, torchrun ranks, nodes on a shared filesystem): each evaluation is checked and claimed under
a file lock, so none is run twice and no row is lost; under torchrun the evaluations are sharded across ranks.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections import deque

import torch
from tqdm import tqdm

from bench.attacks.registry import ATTACKS, make_attack
from bench.corruptions.generator import CORRUPTIONS, GENERATOR_VERSION, SEVERITIES
from bench.evaluate import EvaluationError, evaluate_attack, evaluate_corruptions
from bench.fast_eval import precision_note, prepare_for_eval
from bench.loading import LOAD_ERRORS, load_model_spec, rb_dataset, spec_content_id
from bench.store.claims import try_claim
from bench.store.rows import RowStore, append_row, locked, row_key
from zoo import distributed as dist
from zoo.checkpoint import MAX_BYTES, versions
from zoo.data import DataError, load_dataset
from zoo.pgd import check_norm, parse_eps
from zoo.train import resolve_device

KNOWN = (*ATTACKS, "corruptions")
DEFAULT_EPS = {"Linf": "8/255", "L2": "0.5"}  # RobustBench's threat models


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", required=True, help="checkpoints, state_dicts (with --arch) or rb:NAME")
    p.add_argument("--attacks", default="clean,pgd", help=f"comma list of {', '.join(KNOWN)}")
    p.add_argument("--norm", default="Linf", help="Linf | L2, or both as Linf,L2")
    p.add_argument("--eps", default=None, help="comma list, fractions allowed (default: Linf 8/255, L2 0.5)")
    p.add_argument("--data", default="cifar10", help="cifar10 | cifar100 | npz:PATH | digits | synthetic")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--n-examples", type=int, default=10000, help="first N test points, in order")
    p.add_argument("--batch-size", type=int, default=None,
                   help="evaluation batch (default 1000 on CUDA, 250 on CPU); AutoAttack's batches too")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the model, padding batches to a few fixed sizes (default backend inductor)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="results")
    p.add_argument("--arch", default=None, help="architecture for plain state_dicts (timm/zoo name or mod:fn)")
    p.add_argument("--rb-model-dir", default="models",
                   help="where rb:NAME models live (<dir>/<dataset>/<threat>/<NAME>.pt); an existing file needs "
                        "no network")
    p.add_argument("--rb-threat-model", default=None, choices=["Linf", "L2", "corruptions"],
                   help="the RobustBench leaderboard rb:NAME comes from (default: the first --norm)")
    p.add_argument("--pgd-steps", type=int, default=20)
    p.add_argument("--pgd-alpha", default=None, help="PGD step size (default 2.5*eps/steps)")
    p.add_argument("--restarts", type=int, default=1, help="PGD restarts")
    p.add_argument("--seed", type=int, default=0, help="attack seed (random starts, AutoAttack)")
    p.add_argument("--corruptions-dir", default=None,
                   help="folder with the official CIFAR-10-C .npy files (default with --corruptions-source official: "
                        "DATA_DIR/CIFAR-10-C, or CIFAR-100-C for --data cifar100)")
    p.add_argument("--corruptions-source", default="auto", choices=["auto", "official", "regenerated"],
                   help="official: the official files, fetched once into --corruptions-dir when missing (needs a "
                        "network once); regenerated: the generator, seeded; auto: official files when "
                        "--corruptions-dir holds them, else regenerated")
    p.add_argument("--corruptions", default=None, help="comma list of corruptions (default: all 15)")
    p.add_argument("--cache-dir", default=".cache/cifar10c", help="where regenerated corruption sets are kept")
    p.add_argument("--max-checkpoint-gb", type=float, default=MAX_BYTES / 2 ** 30,
                   help="refuse model files larger than this without reading them (default %(default)g)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again what failed before on the same file and settings (skipped otherwise)")
    p.add_argument("--no-leaderboard", action="store_true", help="write neither leaderboard.md nor the site")
    p.add_argument("--no-site", action="store_true", help="write leaderboard.md but not the site (OUT/site/)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p.parse_args(argv)


def plan_evaluations(args) -> list[dict]:
    """The ordered list of evaluation specs for one model (same for every model)."""
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in KNOWN]
    if unknown:
        raise ValueError(f"unknown attack {unknown[0]!r}; known attacks: {', '.join(KNOWN)}")
    norms = [check_norm(n.strip()) for n in args.norm.split(",")]
    typos = [c for c in (args.corruptions or "").split(",") if c and c not in CORRUPTIONS]
    if typos:
        raise ValueError(f"unknown corruption {typos[0]!r}; known corruptions: {', '.join(CORRUPTIONS)}")
    specs = []
    for name in attacks:
        if name == "clean":
            specs.append({"attack": "clean", "norm": None, "eps": 0.0, "eps_str": "0"})
        elif name == "corruptions":
            specs.append({"attack": "corruptions", "norm": None, "eps": 0.0, "eps_str": "0"})
        else:
            for norm in norms:
                for e in (args.eps or DEFAULT_EPS[norm]).split(","):
                    specs.append({"attack": name, "norm": norm, "eps": parse_eps(e), "eps_str": e.strip()})
    return specs


def attack_config(spec: dict, args, data_spec: str):
    """(attack object or None, the config that goes into the cache key)."""
    if spec["attack"] == "corruptions":
        names = args.corruptions.split(",") if args.corruptions else list(CORRUPTIONS)
        source = args.corruptions_source
        if source == "auto":
            source = "official" if args.corruptions_dir and os.path.exists(os.path.join(args.corruptions_dir,
                                                                                       "labels.npy")) else "regenerated"
        cfg = {"attack": "corruptions", "names": names, "severities": list(SEVERITIES), "source": source,
               "seed": args.seed}
        if source == "regenerated":  # a new generator version makes new images, so new rows
            cfg["generator_version"] = GENERATOR_VERSION
        return None, cfg
    attack = make_attack(spec["attack"], norm=spec["norm"] or "Linf", eps=spec["eps"], pgd_steps=args.pgd_steps,
                         pgd_alpha=parse_eps(args.pgd_alpha) if args.pgd_alpha else None,
                         restarts=args.restarts, seed=args.seed, batch_size=args.batch_size)
    return attack, attack.config


def _model_fields(meta: dict) -> dict:
    keep = ("name", "model_id", "verified", "path", "arch", "recipe", "hparams", "train_data", "n_train", "seed")
    out = {k: meta.get(k) for k in keep}
    out["model"] = out.pop("name")
    out["train_seed"] = out.pop("seed")
    return out


def check_out(out: str) -> None:
    """--out must be a folder we can write to: refused before any data is loaded or model evaluated."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder; pass a folder for results.jsonl")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--out {out} is not writable ({e.strerror or type(e).__name__}); pass a folder you can "
                         "write to") from None


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def _first_line(e: BaseException) -> str:
    return _one_line(str(e)) or type(e).__name__


def run(args) -> int:
    specs = plan_evaluations(args)
    check_out(args.out)
    max_bytes = int(args.max_checkpoint_gb * 2 ** 30)
    device = resolve_device(args.device)
    if args.batch_size is None:
        args.batch_size = 1000 if device.type == "cuda" else 250
    rank, world = dist.setup(device)
    ds = load_dataset(args.data, args.data_dir)
    n = min(args.n_examples, len(ds.y_test))
    x_u8, y = ds.x_test[:n], ds.y_test[:n].to(device)
    x = x_u8.float().div(255).to(device)
    data_spec = ds.name

    if args.corruptions_source == "official" and any(s["attack"] == "corruptions" for s in specs):
        from bench.corruptions.official import DIR_NAMES, fetch_official

        args.corruptions_dir = args.corruptions_dir or os.path.join(args.data_dir, DIR_NAMES.get(ds.name, "CIFAR-10-C"))
        fetch_official(args.corruptions_dir, ds.name if ds.name in DIR_NAMES else "cifar10")
    main_path = os.path.join(args.out, "results.jsonl")
    store = RowStore(main_path)
    with locked(main_path):
        store.refresh()
    store.warn()  # torn lines left by a killed process, rows that cannot be trusted
    state_dir = os.path.join(args.out, ".attack_state")
    claim_dir = os.path.join(args.out, ".claims")
    common = {"data": data_spec, "n": n, "device": str(device), "versions": versions(),
              "precision": precision_note(device), "batch_size": args.batch_size, "compile": args.compile}

    jobs = [(m, s) for m in args.models for s in specs]
    queue = deque(j for i, j in enumerate(jobs) if i % world == rank)  # torchrun: evaluation i on rank i mod world
    failures, added, skipped, skipped_failed, deferred_in_a_row = 0, 0, 0, 0, 0
    loaded: dict[str, object] = {}
    bar = tqdm(total=len(queue), desc="bench", disable=not args.progress or rank != 0, file=sys.stderr)

    def failed_before(key: str) -> bool:
        with locked(main_path):
            store.refresh()
        return key in store.failed and not args.retry_failed

    while queue:
        model_spec, spec = queue.popleft()
        if model_spec not in loaded:
            # a file that failed to load is recorded once per (content, settings): an unchanged file is not
            # retried on a rerun, a changed one is
            rb_norm = args.rb_threat_model or args.norm.split(",")[0].strip()
            rb_ds = rb_dataset(ds.name, ds.num_classes)
            cid = spec_content_id(model_spec, norm=rb_norm, rb_model_dir=args.rb_model_dir, dataset=rb_ds,
                                  max_bytes=max_bytes)
            load_key = row_key(cid, {"stage": "load", "arch": args.arch, "rb_threat_model": args.rb_threat_model,
                                     "sharpbench": common["versions"]["sharpbench"]}, data_spec, n)
            if failed_before(load_key):
                loaded[model_spec] = "skipped"
                print(f"skipped {model_spec}: it failed to load before and is unchanged "
                      f"({_one_line(str(store.failed[load_key].get('error', '')))}); "
                      "pass --retry-failed to try again", file=sys.stderr)
            else:
                try:
                    lm = load_model_spec(model_spec, arch=args.arch, num_classes=ds.num_classes, norm=rb_norm,
                                         rb_model_dir=args.rb_model_dir, dataset=rb_ds, max_bytes=max_bytes,
                                         model_id=None if cid.startswith(("unreadable:", "rb:")) else cid)
                    lm.model = prepare_for_eval(lm.model, device, compile_backend=args.compile,
                                                batch_size=args.batch_size)
                    loaded[model_spec] = lm
                except Exception as e:  # noqa: BLE001 - whatever one file does, the other models still run
                    loaded[model_spec] = e
                    msg = _first_line(e) if isinstance(e, LOAD_ERRORS) else f"{type(e).__name__}: {_first_line(e)}"
                    print(f"error: {msg}", file=sys.stderr)
                    append_row(main_path, {"key": load_key, "status": "failed", "stage": "load", "model": model_spec,
                                           "path": model_spec, "error": msg,
                                           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **common})
                    failures += 1
        lm = loaded[model_spec]
        if lm == "skipped":
            skipped_failed += 1
            bar.update()
            continue
        if isinstance(lm, Exception):
            bar.update()
            continue
        attack, cfg = attack_config(spec, args, data_spec)
        key = row_key(lm.meta["model_id"], cfg, data_spec, n)
        with locked(main_path):  # check and claim in one step: another process may share this folder
            store.refresh()
            done = key in store.done
            retry_blocked = key in store.failed and not args.retry_failed
            claim = None if done or retry_blocked else try_claim(claim_dir, key)
        if done or retry_blocked:
            skipped += done
            skipped_failed += retry_blocked
            bar.update()
            continue
        if claim is None:  # a live process is evaluating it: do other work, then look again
            queue.append((model_spec, spec))
            deferred_in_a_row += 1
            if deferred_in_a_row >= len(queue):
                time.sleep(1.0)  # everything left is in other processes' hands
            continue
        deferred_in_a_row = 0
        label = f"{lm.meta['name']} {spec['attack']} {spec['norm'] or ''} {spec['eps_str']}"
        bar.set_description(label[:60])
        row = {"key": key, **_model_fields(lm.meta), "attack": spec["attack"], "norm": spec["norm"],
               "eps": spec["eps"], "eps_str": spec["eps_str"], "attack_config": cfg, **common,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            if spec["attack"] == "corruptions":
                with tqdm(total=len(cfg["names"]) * len(SEVERITIES), desc=f"{lm.meta['name'][:40]} corruptions",
                          leave=False, disable=not args.progress or rank != 0, file=sys.stderr) as inner:
                    result = evaluate_corruptions(
                        lm.model, x_u8, y, device=device, batch_size=args.batch_size,
                        corruptions_dir=args.corruptions_dir if cfg["source"] == "official" else None,
                        cache_dir=args.cache_dir, seed=args.seed, names=cfg["names"], progress=inner.update,
                        require_official=cfg["source"] == "official")
            else:
                attack.state_path = os.path.join(state_dir, f"{key}.pt")
                result = evaluate_attack(lm.model, attack, x, y, norm=spec["norm"] or "Linf", eps=spec["eps"],
                                         batch_size=args.batch_size)
        except Exception as e:  # noqa: BLE001 - one model's failure is its row, never the others'
            msg = _first_line(e)
            print(f"error: {label}: {msg}", file=sys.stderr)
            if not isinstance(e, EvaluationError):
                traceback.print_exc(limit=3)
            append_row(main_path, {**row, "status": "failed", "error": msg})
            failures += 1
        else:
            append_row(main_path, {**row, **result, "status": "ok"})
            added += 1
            for check, msg in (result.get("aa_checks") or {}).items():
                if msg:
                    print(f"warning: {label}: AutoAttack check {check}: {msg}", file=sys.stderr)
            if attack is not None and attack.state_path and os.path.exists(attack.state_path):
                os.remove(attack.state_path)
        finally:  # the row is written (or the process is going down): let others see the key is free or done
            claim.release()
            bar.update()
    bar.close()

    dist.barrier()
    if rank == 0:
        with locked(main_path):
            store.refresh()
        rows = store.rows
        for w in attack_sanity_warnings(rows):
            print(f"warning: {w}", file=sys.stderr)
        if not args.no_leaderboard:
            try:
                from bench.report.leaderboard import write_leaderboard

                md = write_leaderboard(rows, args.out)
                print(f"leaderboard: {md}", file=sys.stderr)
                if not args.no_site:
                    from bench.site import write_site

                    print(f"site: {write_site(main_path, rows=rows)}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001 - the rows are safe; say what failed and still summarise
                print(f"error: the leaderboard could not be written ({_first_line(e)}); the rows are in {main_path}; "
                      "rebuild it with `python -m bench.leaderboard`", file=sys.stderr)
                failures += 1
        retry = (f", {skipped_failed} skipped (failed before on the same file and settings; --retry-failed runs them "
                 "again)") if skipped_failed else ""
        print(f"{added} rows added, {skipped} already computed, {failures} failed{retry} -> {main_path}")
    failed_all = dist.all_reduce_sum(torch.tensor([failures]))
    return 1 if int(failed_all.item()) else 0


def attack_sanity_warnings(rows: list[dict]) -> list[str]:
    """AutoAttack should never leave more points robust than PGD on the same model and ball."""
    best = {}
    for r in rows:
        if r.get("status") == "ok" and r["attack"] in ("pgd", "autoattack"):
            best[(r["model_id"], r["norm"], round(r["eps"], 8), r["data"], r["n"], r["attack"])] = r["robust_acc"]
    out = []
    for (mid, norm, eps, data, n, attack), acc in best.items():
        pgd_acc = best.get((mid, norm, eps, data, n, "pgd"))
        if attack == "autoattack" and pgd_acc is not None and acc > pgd_acc + 1e-9:
            out.append(f"AutoAttack ({acc:.4f}) is more accurate than PGD ({pgd_acc:.4f}) on {mid[:12]} "
                       f"{norm} eps={eps:.4g}: an attack may be broken")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (DataError, ValueError, OSError) as e:
        print(f"error: {_first_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
