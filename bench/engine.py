"""The evaluation engine: plan, execute, outcomes. `python -m bench.run` and the study's grid both call it.

  settings = EvalSettings(attacks="clean,pgd", data="npz:...", n_examples=1000, out="results")
  outcomes = evaluate(["zoo/a.pt", "rb:Wong2020Fast"], settings)

Every (model, attack, norm, eps) is one evaluation: planned (`plan`), then run unless its row is already there
(same checkpoint hash and attack config). Each evaluation's row is appended to OUT/results.jsonl as soon as it
is computed (a killed run keeps what it finished), and each returns an `Outcome`: ok, cached, failed (with the
reason) or refused (it failed before on the same file and settings as often as the retry bound allows; the
reason is the earlier one). Several processes may share one OUT (two shells, torchrun ranks, the study's
workers): each evaluation is checked and claimed under a file lock, so none is run twice and no row is lost;
under torchrun the evaluations are sharded across ranks. Writing the leaderboard and the site from the rows is
the caller's (bench.report.outputs).
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, fields

import torch
from tqdm import tqdm

from bench.attacks.predict import EvaluationError
from bench.attacks.registry import ATTACKS, make_attack
from bench.corruptions.generator import CORRUPTIONS, GENERATOR_VERSION, SEVERITIES
from bench.data import IMAGENET, load_points
from bench.evaluate import evaluate_attack, evaluate_corruptions
from bench.fast_eval import precision_note, prepare_for_eval
from bench.loading import (LOAD_ERRORS, data_of_models, load_model_spec, missing_model, rb_dataset,
                           spec_content_id)
from bench.store.adversarial import save_images
from bench.store.claims import try_claim
from bench.store.rows import RowStore, append_row, locked, row_key
from bench.store.schema import short_name
from zoo import distributed as dist
from zoo.checkpoint import MAX_BYTES, versions
from zoo.pgd import THREAT_NORMS, check_norm, parse_eps
from zoo.train import resolve_device

KNOWN = (*ATTACKS, "corruptions")
# RobustBench's threat models; L1: Croce & Hein's "Mind the box" (ICML 2021) evaluates CIFAR-10 at L1 eps 12
DEFAULT_EPS = {"Linf": "8/255", "L2": "0.5", "L1": "12"}


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation run is asked to do; bench.run's flags, one field each (the same names)."""
    attacks: str = "clean,pgd"  # comma list of KNOWN
    norm: str = "Linf"  # Linf | L2 | L1, or several as Linf,L2
    eps: str | None = None  # comma list, fractions allowed; None = the norm's RobustBench radius
    data: str | None = None  # None = the data the checkpoints were trained on (their record; all alike)
    data_dir: str = "data"
    image_size: int | None = None  # folder:DIR whose images differ in size: pixels a side; None = their own
    n_examples: int = 10000  # the first N test points, in order
    batch_size: int | None = None  # None = 1000 on CUDA, 250 on CPU; rows do not depend on it
    compile: str | None = None  # torch.compile backend for the bucketed forward
    device: str = "auto"
    out: str = "runs/bench"  # the user's work, ignored by git; the repository's results/ holds committed figures
    arch: str | None = None  # architecture of plain state_dicts
    rb_model_dir: str = "models"
    rb_threat_model: str | None = None
    pgd_steps: int = 20
    pgd_alpha: str | None = None
    restarts: int = 1
    seed: int = 0
    corruptions_dir: str | None = None
    corruptions_source: str = "auto"  # auto | official | regenerated
    corruptions: str | None = None  # comma list; None = all 15
    cache_dir: str = ".cache/cifar10c"
    max_checkpoint_gb: float = MAX_BYTES / 2 ** 30
    retry_failed: bool = False  # run again what failed before, whatever the bound below
    # an evaluation (or a model load) that failed this many times on the same file and settings is refused
    # without running (a damaged checkpoint or a bad setting fails the same way every time)
    max_failures: int = 1
    save_adversarial: bool = False  # each attack row's images beside the rows (bench.store.adversarial)
    progress: bool = True

    @classmethod
    def from_namespace(cls, ns) -> "EvalSettings":
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})


@dataclass(frozen=True)
class Outcome:
    """What became of one planned evaluation (or of a model that could not be loaded: attack 'load')."""
    model: str  # the --models entry
    attack: str
    norm: str | None
    eps_str: str
    status: str  # ok | cached | failed | refused
    reason: str = ""  # why it failed or was refused
    key: str = ""  # its row's key ("" when the model never loaded)
    model_failed: bool = False  # not run because the model did not load (the load's own outcome says why)

    @property
    def label(self) -> str:
        return " ".join(p for p in (self.model, self.attack, self.norm or "", self.eps_str if self.norm else "") if p)


def plan(settings) -> list[dict]:
    """The ordered list of evaluation specs for one model (the same for every model)."""
    attacks = [a.strip() for a in settings.attacks.split(",") if a.strip()]
    unknown = [a for a in attacks if a not in KNOWN]
    if unknown:
        raise ValueError(f"unknown attack {unknown[0]!r}; known attacks: {', '.join(KNOWN)}")
    norms = [check_norm(n.strip(), THREAT_NORMS) for n in settings.norm.split(",")]
    if "pgd" in attacks and "L1" in norms:
        raise ValueError("pgd at L1 is not implemented (its steps are Linf's and L2's); at L1 use autoattack or "
                         "autoattack-fast, which run APGD-L1, or drop L1 from --norm")
    typos = [c for c in (settings.corruptions or "").split(",") if c and c not in CORRUPTIONS]
    if typos:
        raise ValueError(f"unknown corruption {typos[0]!r}; known corruptions: {', '.join(CORRUPTIONS)}")
    specs = []
    for name in attacks:
        if name in ("clean", "corruptions"):
            specs.append({"attack": name, "norm": None, "eps": 0.0, "eps_str": "0"})
        else:
            for norm in norms:
                for e in (settings.eps or DEFAULT_EPS[norm]).split(","):
                    specs.append({"attack": name, "norm": norm, "eps": parse_eps(e), "eps_str": e.strip()})
    return specs


def attack_config(spec: dict, settings, num_classes: int = 10, batch_size: int | None = None):
    """(attack object or None, the config that goes into the cache key). num_classes: the model's (AutoAttack's
    targeted stages target at most num_classes - 1 classes). batch_size is how the attack batches its work
    (default the settings'); it is not in the config, since no result depends on it."""
    if spec["attack"] == "corruptions":
        names = settings.corruptions.split(",") if settings.corruptions else list(CORRUPTIONS)
        source = settings.corruptions_source
        if source == "auto":
            official = settings.corruptions_dir and os.path.exists(os.path.join(settings.corruptions_dir, "labels.npy"))
            source = "official" if official else "regenerated"
        cfg = {"attack": "corruptions", "names": names, "severities": list(SEVERITIES), "source": source,
               "seed": settings.seed}
        if source == "regenerated":  # a new generator version makes new images, so new rows
            cfg["generator_version"] = GENERATOR_VERSION
        return None, cfg
    attack = make_attack(spec["attack"], norm=spec["norm"] or "Linf", eps=spec["eps"], pgd_steps=settings.pgd_steps,
                         pgd_alpha=parse_eps(settings.pgd_alpha) if settings.pgd_alpha else None,
                         restarts=settings.restarts, seed=settings.seed,
                         batch_size=batch_size or settings.batch_size, num_classes=num_classes)
    return attack, attack.config


def model_fields(meta: dict) -> dict:
    keep = ("name", "model_id", "verified", "path", "arch", "recipe", "hparams", "train_data", "n_train", "seed")
    out = {k: meta.get(k) for k in keep}
    # the weights' own hash beside the file's (a sealed checkpoint's, timm's, a Hub folder's), and a Hub model's
    # repo, revision and weights file
    for k in ("weights_sha256", "hf_repo", "hf_revision", "hf_weights_file_sha256"):
        if meta.get(k) is not None:
            out[k] = meta[k]
    out["model"] = out.pop("name")
    out["train_seed"] = out.pop("seed")
    return out


def data_fields(points, image_size: int | None) -> dict:
    """What a row says of its data besides its name: a folder's content fingerprint, class names and size."""
    out = {}
    if points.fingerprint:
        out["data_fingerprint"] = points.fingerprint
    if points.classes:
        out["classes"] = list(points.classes)
    if image_size is not None:
        out["image_size"] = image_size
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


def say(message: str) -> None:
    """A message on its own line on stderr, never on a progress bar's line (tqdm clears and redraws bars)."""
    tqdm.write(message, file=sys.stderr)


def one_line(text: str) -> str:
    """The first non-empty line of a message, at most 300 characters."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def first_line(e: BaseException) -> str:
    return one_line(str(e)) or type(e).__name__


def is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


LONG_S = 60  # an evaluation expected to take longer than this on CPU is announced with its estimate


def warn_if_long(label: str, cfg: dict, lm, x, batch_size: int, rates: dict) -> None:
    """Before a long CPU evaluation: its estimate from the model's measured rate at this batch."""
    from bench.attacks.cost import call_seconds, duration, seconds_if_all_survive

    if cfg["attack"] in ("clean", "corruptions"):
        return
    if id(lm.model) not in rates:
        rates[id(lm.model)] = call_seconds(lm.model, x, batch_size)
    t_grad, t_fwd = rates[id(lm.model)]
    n, b = len(x), min(len(x), batch_size)
    seconds = seconds_if_all_survive(cfg, n, batch_size, t_grad, t_fwd)
    if seconds is not None and seconds > LONG_S:
        say(f"estimate: {label} on {n} points: about {duration(seconds)} on this CPU if every point survives, "
            f"less for those that fall (measured {1e3 * t_grad:.0f} ms per gradient call and {1e3 * t_fwd:.0f} ms "
            f"per forward at batch {b})")


def _run_one(spec, cfg, attack, lm, x, x_u8, y, settings, device, state_path, progress, batch_size,
             official_set=None):
    if spec["attack"] == "corruptions":
        read = {"official_set": official_set} if official_set else {}
        with tqdm(total=len(cfg["names"]) * len(SEVERITIES), desc=f"{lm.meta['name'][:40]} corruptions",
                  leave=False, disable=not progress, file=sys.stderr) as inner:
            return evaluate_corruptions(
                lm.model, x_u8, y, device=device, batch_size=batch_size,
                corruptions_dir=settings.corruptions_dir if cfg["source"] == "official" else None,
                cache_dir=settings.cache_dir, seed=settings.seed, names=cfg["names"], progress=inner.update,
                require_official=cfg["source"] == "official", **read)
    attack.state_path = state_path
    staged = spec["attack"].startswith("autoattack")
    with tqdm(total=0, desc=f"{lm.meta['name'][:40]} {spec['attack']}", unit=" calls", leave=False,
              disable=not (progress and staged), file=sys.stderr) as bar:
        attack.bar = bar if staged and progress else None
        return evaluate_attack(lm.model, attack, x, y, norm=spec["norm"] or "Linf", eps=spec["eps"],
                               batch_size=batch_size, keep_adversarial=settings.save_adversarial)


def evaluate(models: list[str], settings: EvalSettings) -> list[Outcome]:
    """Run every planned evaluation of every model that has no row yet; one Outcome per (model, evaluation),
    in plan order for this rank. Raises only for what stops the whole run before any model is touched (an
    unknown attack, a bad --out, data that cannot be loaded)."""
    specs = plan(settings)
    check_out(settings.out)
    max_bytes = int(settings.max_checkpoint_gb * 2 ** 30)
    outcomes: list[Outcome] = []
    absent = {m: why for m in models if (why := missing_model(m))}
    models = [m for m in models if m not in absent]
    if not models:
        raise ValueError(next(iter(absent.values())) if absent else "--models: nothing to evaluate")
    for m, why in absent.items():  # named before any data is touched; the other models still run
        say(f"error: {why}")
        outcomes.append(Outcome(m, "load", None, "0", "failed", why))
    if settings.data is None:
        from dataclasses import replace

        data, size = data_of_models(models, max_bytes)
        settings = replace(settings, data=data, image_size=settings.image_size or size)
    device = resolve_device(settings.device)
    batch_size = settings.batch_size or (1000 if device.type == "cuda" else 250)
    rank, world = dist.setup(device)
    ds = load_points(settings.data, settings.data_dir, settings.n_examples, progress=settings.progress and rank == 0,
                     image_size=settings.image_size)
    n = len(ds.y)
    x_u8, y = ds.x, ds.y.to(device)
    x = x_u8.float().div(255).to(device)
    data_spec = ds.identity  # what keys hold: a folder's content, else the data's name

    official_set = None  # the reader of official corruption sets: CIFAR-10-C's .npy files unless ImageNet's
    if ds.name == IMAGENET and any(s["attack"] == "corruptions" for s in specs):
        from dataclasses import replace

        from bench.data.imagenet import corruption_set

        if settings.corruptions_source == "regenerated":
            raise ValueError("--corruptions-source regenerated: the generator's parameters are CIFAR-10-C's; "
                             "ImageNet's corruptions are the official ImageNet-C files (--corruptions-dir DIR)")
        settings = replace(settings, corruptions_source="official",
                           corruptions_dir=settings.corruptions_dir or os.path.join(ds.root, "ImageNet-C"))
        official_set = corruption_set
    elif settings.corruptions_source == "official" and any(s["attack"] == "corruptions" for s in specs):
        from dataclasses import replace

        from bench.corruptions.official import DIR_NAMES, fetch_official

        folder = settings.corruptions_dir or os.path.join(settings.data_dir, DIR_NAMES.get(ds.name, "CIFAR-10-C"))
        settings = replace(settings, corruptions_dir=folder)
        fetch_official(folder, ds.name if ds.name in DIR_NAMES else "cifar10")
    main_path = os.path.join(settings.out, "results.jsonl")
    store = RowStore(main_path)
    with locked(main_path):
        store.refresh()
    store.warn()  # torn lines left by a killed process, rows that cannot be trusted
    state_dir = os.path.join(settings.out, ".attack_state")
    claim_dir = os.path.join(settings.out, ".claims")
    common = {"data": ds.name, "n": n, "device": str(device), "versions": versions(),
              "precision": precision_note(device), "batch_size": batch_size, "compile": settings.compile,
              **data_fields(ds, settings.image_size)}
    progress = settings.progress and rank == 0

    jobs = [(m, s) for m in models for s in specs]
    queue = deque(j for i, j in enumerate(jobs) if i % world == rank)  # torchrun: evaluation i on rank i mod world
    if rank:
        outcomes = []  # rank 0 reports the missing files
    loaded: dict[str, object] = {}
    rates: dict[int, tuple[float, float]] = {}  # id(model) -> its measured seconds per gradient and forward call
    deferred_in_a_row = 0
    bar = tqdm(total=len(queue), desc="bench", disable=not progress, file=sys.stderr)

    def refused(key: str) -> dict | None:
        """The earlier failed row when this key has failed as often as the bound allows (and is not done)."""
        if settings.retry_failed or key in store.done or store.failures.get(key, 0) < settings.max_failures:
            return None
        return store.failed[key]

    def outcome(model_spec, spec, status, reason="", key="", model_failed=False):
        outcomes.append(Outcome(model_spec, spec["attack"], spec["norm"], spec["eps_str"], status, reason, key,
                                model_failed))

    while queue:
        model_spec, spec = queue.popleft()
        if model_spec not in loaded:
            # a file that failed to load is recorded once per (content, settings): an unchanged file is not
            # retried on a rerun (up to the bound), a changed one is
            rb_norm = settings.rb_threat_model or settings.norm.split(",")[0].strip()
            rb_ds = rb_dataset(ds.name, ds.num_classes)
            cid = spec_content_id(model_spec, norm=rb_norm, rb_model_dir=settings.rb_model_dir, dataset=rb_ds,
                                  max_bytes=max_bytes)
            load_key = row_key(cid, {"stage": "load", "arch": settings.arch, "rb_threat_model": settings.rb_threat_model,
                                     "sharpbench": common["versions"]["sharpbench"]}, data_spec, n)
            with locked(main_path):
                store.refresh()
            earlier = refused(load_key)
            if earlier is not None:
                reason = one_line(str(earlier.get("error", "")))
                loaded[model_spec] = ("refused", reason)
                say(f"skipped {model_spec}: it failed to load before and is unchanged ({reason}); "
                    "pass --retry-failed to try again")
            else:
                try:
                    lm = load_model_spec(model_spec, arch=settings.arch, num_classes=ds.num_classes, norm=rb_norm,
                                         rb_model_dir=settings.rb_model_dir, dataset=rb_ds, max_bytes=max_bytes,
                                         model_id=None if cid.startswith(("unreadable:", "rb:", "timm:")) else cid,
                                         size=x.shape[-1])
                    lm.model = prepare_for_eval(lm.model, device, compile_backend=settings.compile,
                                                batch_size=batch_size)
                    loaded[model_spec] = lm
                except Exception as e:  # noqa: BLE001 - whatever one file does, the other models still run
                    msg = first_line(e) if isinstance(e, LOAD_ERRORS) else f"{type(e).__name__}: {first_line(e)}"
                    loaded[model_spec] = ("failed", msg)
                    say(f"error: {msg}")
                    append_row(main_path, {"key": load_key, "status": "failed", "stage": "load", "model": short_name(model_spec),
                                           "path": model_spec, "error": msg,
                                           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **common})
                    outcomes.append(Outcome(model_spec, "load", None, "0", "failed", msg, load_key))
        lm = loaded[model_spec]
        if isinstance(lm, tuple):  # the model is not there: each of its evaluations is missing for that reason
            status, reason = lm
            outcome(model_spec, spec, status, f"the model did not load: {reason}", model_failed=True)
            bar.update()
            continue
        attack, cfg = attack_config(spec, settings, ds.num_classes, batch_size)
        key = row_key(lm.meta["model_id"], cfg, data_spec, n)
        with locked(main_path):  # check and claim in one step: another process may share this folder
            store.refresh()
            done = key in store.done
            cached = store.ok.get(key) if done else None
            if done and settings.save_adversarial and spec["attack"] not in ("clean", "corruptions") \
                    and "adversarial" not in cached:
                done = False  # its images were not kept: the attack runs again (seeded) to store them
            earlier = None if done else refused(key)
            claim = None if done or earlier is not None else try_claim(claim_dir, key)
        if done or earlier is not None:
            if done:
                outcome(model_spec, spec, "cached", key=key)
            else:
                outcome(model_spec, spec, "refused", one_line(str(earlier.get("error", ""))), key)
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
        if progress and device.type == "cpu":
            warn_if_long(label, cfg, lm, x, batch_size, rates)
        row = {"key": key, **model_fields(lm.meta), "attack": spec["attack"], "norm": spec["norm"],
               "eps": spec["eps"], "eps_str": spec["eps_str"], "attack_config": cfg, **common,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        state_path = os.path.join(state_dir, f"{key}.pt")
        try:
            try:
                result = _run_one(spec, cfg, attack, lm, x, x_u8, y, settings, device, state_path, progress,
                                  batch_size, official_set)
            except Exception as e:  # noqa: BLE001 - out of memory: once more at half the batch (rows do not
                if not is_out_of_memory(e) or batch_size < 2:  # depend on the batch size), then it fails
                    raise
                half = batch_size // 2
                say(f"warning: {label}: out of memory at batch {batch_size}; retrying at batch {half}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                attack, _ = attack_config(spec, settings, ds.num_classes, half)
                result = _run_one(spec, cfg, attack, lm, x, x_u8, y, settings, device, state_path, progress, half,
                                  official_set)
                result = {**result, "batch_size": half, "oom_retry": {"batch_size": batch_size, "retried_at": half}}
        except Exception as e:  # noqa: BLE001 - one model's failure is its row, never the others'
            msg = first_line(e)
            say(f"error: {label}: {msg}")
            if not isinstance(e, EvaluationError):
                traceback.print_exc(limit=3)
            append_row(main_path, {**row, "status": "failed", "error": msg})
            outcome(model_spec, spec, "failed", msg, key)
        else:
            images = result.pop("adversarial_images", None)
            if images is not None:
                result["adversarial"] = save_images(settings.out, key, images)
                if cached is not None and (cached["clean_correct"], cached["robust_correct"]) != \
                        (result["clean_correct"], result["robust_correct"]):
                    say(f"warning: {label}: the attack fooled other points than its cached row did (not "
                        "deterministic on this machine); the new row, with its images, replaces it")
            append_row(main_path, {**row, **result, "status": "ok"})
            outcome(model_spec, spec, "ok", key=key)
            for check, msg in (result.get("aa_checks") or {}).items():
                if msg:
                    say(f"warning: {label}: AutoAttack check {check}: {msg}")
            if attack is not None and os.path.exists(state_path):
                os.remove(state_path)
        finally:  # the row is written (or the process is going down): let others see the key is free or done
            claim.release()
            bar.update()
    bar.close()
    return outcomes


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
