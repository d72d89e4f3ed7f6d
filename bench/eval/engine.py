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
import re
import sys
import time
import traceback
from dataclasses import dataclass, field, fields, replace

import torch
from tqdm import tqdm

from bench.attacks.predict import EvaluationError
from bench.attacks.evaluation import Evaluation
from bench.attacks.registry import ATTACKS, make_attack
from bench.corruptions.generator import CORRUPTIONS, GENERATOR_VERSION, SEVERITIES
from bench.data import IMAGENET, load_points
from bench.defaults import DEFAULT_EPS, MAX_FAILURES, MAX_LOAD_FAILURES, OUT, measures_path, rows_path
from bench.eval.accuracy import evaluate_attack, evaluate_corruptions
from bench.eval.forward import eager, precision_note, prepare_for_eval
from bench.eval.loading import (LOAD_ERRORS, LoadedModel, ModelOptions, data_of_models, missing_model,
                                rb_dataset, source_of)
from bench.eval.measures import MEASURES, measure, measures_config, measures_spec, unkeyed_row
from bench.store.adversarial import save_images
from bench.store.batches import BatchBoard, BoardClosed
from bench.store.leases import claim_first, owner_of
from bench.store.rows import RowStore, append_row, locked, row_key
from bench.store.schema import check_measure_row, short_name
from zoo import distributed as dist
from zoo.checkpoint import MAX_BYTES, is_file_hash, versions
from zoo.pgd import THREAT_NORMS, check_norm, parse_eps
from zoo.distributed import resolve_device
from zoo.errors import error_line, first_line, typed_line

KNOWN = (*ATTACKS, "corruptions", MEASURES)


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation run is asked to do; bench.run's flags, one field each (the same names)."""
    attacks: str = "clean,pgd"  # comma list of KNOWN
    norm: str = "Linf"  # Linf | L2 | L1, or several as Linf,L2
    eps: str | None = None  # comma list, fractions allowed; None = the norm's RobustBench radius
    data: str | None = None  # None: bench.run takes the checkpoints' own (with_training_data); evaluate needs it
    data_dir: str = "data"
    image_size: int | None = None  # folder:DIR whose images differ in size: pixels a side; None = their own
    n_examples: int = 10000  # the first N test points, in order
    # None = 1000 on CUDA, 250 on CPU. PGD's and the corruptions' rows do not depend on it; an attack that draws
    # its random starts per batch (AutoAttack) puts a batch other than 250 in its key
    batch_size: int | None = None
    compile: str | None = None  # torch.compile backend for the bucketed forward
    # AutoAttack's search: fp32 (RobustBench's), or bf16 autocast, every flag still decided in fp32 (own key, never
    # RobustBench's number); the other attacks run in fp32 either way
    precision: str = "fp32"
    device: str = "auto"
    out: str = OUT
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
    max_failures: int = MAX_FAILURES  # failed this often on the same file and settings: refused without running
    save_adversarial: bool = False  # each attack row's images beside the rows (bench.store.adversarial)
    imported: str | None = None  # --attacks imported:FILE: the file of another tool's adversarial images
    imported_name: str = "imported"  # --name: that tool's attack
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

    @classmethod
    def of(cls, model_spec: str, spec: dict, status: str, reason: str = "", key: str = "",
           model_failed: bool = False) -> "Outcome":
        """The outcome of one planned evaluation (plan's spec), or of a model's load (LOAD)."""
        return cls(model_spec, spec["attack"], spec["norm"], spec["eps_str"], status, reason, key, model_failed)

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(self.attack, self.norm, self.eps_str)

    @property
    def label(self) -> str:
        """'MODEL autoattack Linf 8/255', 'MODEL clean': how an evaluation is named in every message."""
        return f"{self.model} {self.evaluation.label}"


LOAD = {"attack": "load", "norm": None, "eps_str": "0"}  # a model's load, as Outcome.of takes it


def plan(settings) -> list[dict]:
    """The ordered list of evaluation specs for one model (the same for every model)."""
    attacks = [a.strip() for a in settings.attacks.split(",") if a.strip()]
    attacks = ["imported" if a.startswith("imported:") else a for a in attacks]  # its file: settings.imported
    unknown = [a for a in attacks if a not in KNOWN]
    if unknown:
        raise ValueError(f"unknown attack {unknown[0]!r}; known attacks: {', '.join(KNOWN)}")
    norms = [check_norm(n.strip(), THREAT_NORMS) for n in settings.norm.split(",")]
    for name, norm in ((a, n) for a in attacks if Evaluation(a).has_ball for n in norms):
        if norm not in ATTACKS[name].norms:
            takes = [a for a, entry in ATTACKS.items() if Evaluation(a).has_ball and norm in entry.norms]
            raise ValueError(f"{name} at {norm} is not implemented (it attacks in {', '.join(ATTACKS[name].norms)});"
                             f" at {norm} use {', '.join(takes)}, or drop {norm} from --norm")
    typos = [c for c in (settings.corruptions or "").split(",") if c and c not in CORRUPTIONS]
    if typos:
        raise ValueError(f"unknown corruption {typos[0]!r}; known corruptions: {', '.join(CORRUPTIONS)}")
    specs, n = [], settings.n_examples  # each on the first n points
    for name in attacks:
        if name == MEASURES:  # the features perturbed at each norm's first radius
            specs.append(measures_spec({norm: (settings.eps or DEFAULT_EPS[norm]).split(",")[0].strip()
                                        for norm in norms}, n))
        elif not Evaluation(name).has_ball:
            specs.append({"attack": name, "norm": None, "eps": 0.0, "eps_str": "0", "n": n})
        else:
            for norm in norms:
                for e in (settings.eps or DEFAULT_EPS[norm]).split(","):
                    specs.append({"attack": name, "norm": norm, "eps": parse_eps(e), "eps_str": e.strip(), "n": n})
    return specs


def attack_config(spec: dict, settings, num_classes: int = 10, batch_size: int | None = None):
    """(attack object or None, the config that goes into the cache key). num_classes: the model's (AutoAttack's
    targeted stages target at most num_classes - 1 classes). batch_size is how the attack batches its work
    (default the settings'); an attack whose result depends on it puts it in its config."""
    if spec["attack"] == MEASURES:
        return None, measures_config(spec, settings.seed)
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
                         batch_size=batch_size or settings.batch_size, num_classes=num_classes,
                         imported=settings.imported, imported_name=settings.imported_name,
                         precision=settings.precision)
    return attack, attack.config


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


def is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


LONG_S = 60  # an evaluation expected to take longer than this on CPU is announced with its estimate


def warn_if_long(label: str, cfg: dict, lm, x, y, batch_size: int, rates: dict) -> float | None:
    """Before a CPU evaluation: its estimate, said on one line when over LONG_S, from the model's rate measured at
    the batch the attack will run, on the points it will attack (AutoAttack: those right on clean inputs, as it
    attacks no other). Returns the estimate in seconds (None for evaluations without an attack loop)."""
    from bench.attacks.budget import call_seconds, duration, seconds_if_all_survive
    from bench.attacks.predict import predict

    if not Evaluation(cfg["attack"]).has_ball:
        return None
    n = len(x)
    if ATTACKS[cfg["attack"]].correct_only:
        with torch.no_grad():
            n = int((predict(lm.model, x, batch_size) == y).sum())
    if n == 0:
        return 0.0
    b = min(n, batch_size)
    if (id(lm.model), b) not in rates:
        rates[(id(lm.model), b)] = call_seconds(lm.model, x, b)
    t_grad, t_fwd = rates[(id(lm.model), b)]
    seconds = seconds_if_all_survive(cfg, n, batch_size, t_grad, t_fwd)
    if seconds is not None and seconds > LONG_S:
        attacked = f"the {n} of {len(x)} points right on clean inputs" if n < len(x) else f"{n} points"
        say(f"estimate: {label} on {attacked}: about {duration(seconds)} on this CPU if every point survives, "
            f"less for those that fall (measured {1e3 * t_grad:.0f} ms per gradient call and {1e3 * t_fwd:.0f} ms "
            f"per forward at batch {b})")
    return seconds


@dataclass
class Run:
    """One run's state, which every stage reads: its settings and plan, the device and batch, this process's rank,
    the points, the rows (and where they go). Nothing in it depends on the models evaluated."""
    settings: EvalSettings
    specs: list[dict]
    device: torch.device
    batch_size: int
    rank: int
    world: int
    points: object  # bench.data.Points
    x: torch.Tensor  # the points in [0,1], on the device
    y: torch.Tensor
    store: RowStore
    measure_store: RowStore  # the measures' rows (OUT/measures.jsonl)
    common: dict  # what every row of this run holds
    official_set: object = None  # the reader of official corruption sets (ImageNet-C's); None: CIFAR-10-C's
    bar: object = None  # the run's progress bar (tqdm)
    rates: dict = field(default_factory=dict)  # (id(model), batch) -> measured seconds per gradient, forward call

    @property
    def progress(self) -> bool:
        return self.settings.progress and self.rank == 0

    @property
    def rows_path(self) -> str:
        return self.store.path

    def store_of(self, spec: dict) -> RowStore:
        """The rows an evaluation's row goes to and is cached in: the measures' own, or results.jsonl."""
        return self.measure_store if spec["attack"] == MEASURES else self.store

    @property
    def claims_dir(self) -> str:
        """Where the evaluations' claims are (bench.store.leases), and the ranks' done files."""
        return os.path.join(self.settings.out, ".claims")

    @property
    def measures_planned(self) -> bool:
        return any(s["attack"] == MEASURES for s in self.specs)

    def refresh(self) -> None:
        """Read what other processes appended to either rows file (under the rows' lock)."""
        self.store.refresh()
        if self.measures_planned:
            self.measure_store.refresh()

    def n(self, spec: dict) -> int:
        """How many of the run's points the evaluation runs on: its own n (fewer when the data has fewer)."""
        return min(spec.get("n", len(self.points.y)), len(self.points.y))

    def points_of(self, spec: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(x in [0,1], y): the evaluation's first n points, on the device."""
        n = self.n(spec)
        return self.x[:n], self.y[:n]

    def key(self, model_id: str, config: dict, spec: dict | None = None) -> str:
        """The row key of this config on the evaluation's points (a model's load: on all the run's points)."""
        return row_key(model_id, config, self.points.identity, len(self.points.y) if spec is None else self.n(spec))

    def refused(self, key: str, bound: int | None = None, store: RowStore | None = None) -> dict | None:
        """The earlier failed row when this key has failed as often as the bound (default: the evaluations') allows
        (and is not done) in its rows (default results.jsonl's)."""
        s, store = self.settings, store or self.store
        if s.retry_failed or key in store.done or store.failures.get(key, 0) < (bound or s.max_failures):
            return None
        return store.failed[key]


def _corruption_source(settings, points, specs):
    """(settings, official_set): ImageNet's corruptions are the official ImageNet-C folders; official CIFAR
    files are fetched once into their folder."""
    if not any(s["attack"] == "corruptions" for s in specs):
        return settings, None
    if points.name == IMAGENET:
        from bench.data.imagenet import corruption_set

        if settings.corruptions_source == "regenerated":
            raise ValueError("--corruptions-source regenerated: the generator's parameters are CIFAR-10-C's; "
                             "ImageNet's corruptions are the official ImageNet-C files (--corruptions-dir DIR)")
        official = replace(settings, corruptions_source="official",
                           corruptions_dir=settings.corruptions_dir or os.path.join(points.root, "ImageNet-C"))
        return official, corruption_set
    if settings.corruptions_source == "official":
        from bench.corruptions.official import DIR_NAMES, fetch_official

        folder = settings.corruptions_dir or os.path.join(settings.data_dir, DIR_NAMES.get(points.name, "CIFAR-10-C"))
        fetch_official(folder, points.name if points.name in DIR_NAMES else "cifar10")
        return replace(settings, corruptions_dir=folder), None
    return settings, None


def with_training_data(settings: EvalSettings, models: list[str]) -> EvalSettings:
    """bench.run's --data default: the data (and image size) the checkpoints were trained on, all alike, or one
    line asking for --data. An unknown attack is refused first; files that are not there are left to `evaluate`,
    which names them."""
    if settings.data is not None:
        return settings
    plan(settings)
    present = [m for m in models if not missing_model(m)]
    if not present:
        return settings
    data, size = data_of_models(present, int(settings.max_checkpoint_gb * 2 ** 30))
    return replace(settings, data=data, image_size=settings.image_size or size)


def present_models(models: list[str]) -> tuple[list[str], list[Outcome]]:
    """(the entries there to load, a failed load Outcome for each file that is not there). The missing files are
    named now, before any data is loaded; none there at all stops the run."""
    absent = {m: why for m in models if (why := missing_model(m))}
    present = [m for m in models if m not in absent]
    if not present:
        raise ValueError(next(iter(absent.values())) if absent else "--models: nothing to evaluate")
    for why in absent.values():  # the other models still run
        say(f"error: {why}")
    return present, [Outcome.of(m, LOAD, "failed", why) for m, why in absent.items()]


def open_run(settings: EvalSettings, specs: list[dict]) -> Run:
    """The device, this rank, the points, the rows read and the corruption source. Raises for what stops the
    whole run before any model is touched."""
    if settings.data is None:
        raise ValueError("no data to evaluate on: pass --data (bench.run's default, the checkpoints' own data, is "
                         "bench.eval.engine.with_training_data)")
    device = resolve_device(settings.device)
    batch_size = settings.batch_size or (1000 if device.type == "cuda" else 250)
    rank, world = dist.setup(device)
    n = max([s.get("n", settings.n_examples) for s in specs] or [settings.n_examples])  # every evaluation's points
    points = load_points(settings.data, settings.data_dir, n,
                         progress=settings.progress and rank == 0, image_size=settings.image_size)
    settings, official = _corruption_source(settings, points, specs)
    store = RowStore(rows_path(settings.out))
    measure_store = RowStore(measures_path(settings.out), check=check_measure_row)
    common = {"data": points.name, "n": len(points.y), "device": str(device), "versions": versions(),
              "precision": precision_note(device), "batch_size": batch_size, "compile": settings.compile,
              **data_fields(points, settings.image_size)}
    run = Run(settings, specs, device, batch_size, rank, world, points, points.x.float().div(255).to(device),
              points.y.to(device), store, measure_store, common, official)
    with locked(store.path):
        run.refresh()
    store.warn()  # torn lines left by a killed process, rows that cannot be trusted
    measure_store.warn()
    return run


def load_model(run: Run, model_spec: str, record: bool = True):
    """The entry's model, prepared for evaluation, or the Outcome of its load: refused (it failed to load before
    and is unchanged) or failed (its failure is recorded once per content and settings, so an unchanged file is
    not retried on a rerun (MAX_LOAD_FAILURES); a changed one is). record=False: a failure is neither said nor
    recorded (a torchrun rank loading another rank's model to help: that rank records its own load)."""
    s, pts = run.settings, run.points
    rb_norm = s.rb_threat_model or s.norm.split(",")[0].strip()
    options = ModelOptions(arch=s.arch, num_classes=pts.num_classes, norm=rb_norm, rb_model_dir=s.rb_model_dir,
                           dataset=rb_dataset(pts.name, pts.num_classes),
                           max_bytes=int(s.max_checkpoint_gb * 2 ** 30), size=run.x.shape[-1])
    source = source_of(model_spec)
    cid = source.content_id(model_spec, options)
    key = run.key(cid, {"stage": "load", "arch": s.arch, "rb_threat_model": s.rb_threat_model,
                        "sharpbench": run.common["versions"]["sharpbench"]})
    with locked(run.rows_path):
        run.store.refresh()
    earlier = run.refused(key, MAX_LOAD_FAILURES)
    if earlier is not None:
        reason = first_line(str(earlier.get("error", "")))
        if record:
            say(f"skipped {model_spec}: it failed to load before and is unchanged ({reason}); "
                "pass --retry-failed to try again")
        return Outcome.of(model_spec, LOAD, "refused", reason, key)
    try:
        hashed = source.kind == "file" and is_file_hash(cid)  # cid is its sha256: not hashed twice
        lm = source.load(model_spec, replace(options, model_id=cid if hashed else None))
        lm.model = prepare_for_eval(lm.model, run.device, compile_backend=s.compile, batch_size=run.batch_size)
        return lm
    except Exception as e:  # noqa: BLE001 - whatever one file does, the other models still run
        msg = error_line(e) if isinstance(e, LOAD_ERRORS) else typed_line(e, 300)
    if not record:
        return Outcome.of(model_spec, LOAD, "failed", msg, key)
    say(f"error: {msg}")
    append_row(run.rows_path, {"key": key, "status": "failed", "stage": "load", "model": short_name(model_spec),
                               "path": model_spec, "error": msg, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               **run.common})
    return Outcome.of(model_spec, LOAD, "failed", msg, key)


@dataclass
class Job:
    """One planned evaluation of one loaded model."""
    model_spec: str
    spec: dict
    lm: LoadedModel
    attack: object  # the Attack, or None (corruptions)
    cfg: dict  # its config: the cache key's
    key: str
    cached: dict | None = None  # its row without images, when it runs again to keep them

    @property
    def label(self) -> str:
        return f"{self.lm.meta.name} {Evaluation.of(self.spec).label}"

    def outcome(self, status: str, reason: str = "") -> Outcome:
        return Outcome.of(self.model_spec, self.spec, status, reason, self.key)


def settled(run: Run, job: Job) -> Outcome | None:
    """The job's Outcome when the rows already settle it (cached: its row is there; refused: it failed as often as
    the bound allows), else None: it is to be run. Called under the rows' lock, after a refresh. A cached row
    whose images were not kept is run again (seeded) to keep them: job.cached holds it for the comparison."""
    store = run.store_of(job.spec)
    cached = store.ok.get(job.key) if job.key in store.done else None
    if cached is None and job.spec["attack"] == MEASURES:  # a row written before measures had keys
        cached = unkeyed_row(store.rows, job.lm.meta.model_id, job.cfg, run.n(job.spec))
    if cached is not None:
        if not (run.settings.save_adversarial and "adversarial" not in cached and Evaluation.of(job.spec).has_ball):
            return job.outcome("cached")
        job.cached = cached
        return None
    earlier = run.refused(job.key, store=store)
    return None if earlier is None else job.outcome("refused", first_line(str(earlier.get("error", ""))))


def _measure(run: Run, job: Job, batch_size: int) -> dict:
    """The evaluation's result at this batch (its attack or corruptions, with their progress bars)."""
    spec, lm, s = job.spec, job.lm, run.settings
    if spec["attack"] == MEASURES:  # they perturb the weights: the eager model, whatever forward evaluates
        return measure(eager(lm.model), *run.points_of(spec), job.cfg)
    if spec["attack"] == "corruptions":
        read = {"official_set": run.official_set} if run.official_set else {}
        with tqdm(total=len(job.cfg["names"]) * len(SEVERITIES), desc=f"{lm.meta.name[:40]} corruptions",
                  leave=False, disable=not run.progress, file=sys.stderr) as inner:
            n = run.n(spec)
            return evaluate_corruptions(
                lm.model, run.points.x[:n], run.y[:n], device=run.device, batch_size=batch_size,
                corruptions_dir=s.corruptions_dir if job.cfg["source"] == "official" else None,
                cache_dir=s.cache_dir, seed=s.seed, names=job.cfg["names"], progress=inner.update,
                require_official=job.cfg["source"] == "official", **read)
    job.attack.state_path = state_path(run, job.key)
    if ATTACKS[spec["attack"]].shared:  # other processes on this folder may join it (help_job)
        job.attack.board = BatchBoard(board_path(run, job.key), run.rows_path).open()
    staged = ATTACKS[spec["attack"]].staged and run.progress
    with tqdm(total=0, desc=f"{lm.meta.name[:40]} {spec['attack']}", unit=" calls", leave=False,
              disable=not staged, file=sys.stderr) as bar:
        job.attack.bar = bar if staged else None
        job.attack.say = say if not staged and run.rank == 0 else None  # a log gets one line per stage
        return evaluate_attack(lm.model, job.attack, *run.points_of(spec), norm=spec["norm"] or "Linf", eps=spec["eps"],
                               batch_size=batch_size,
                               keep_adversarial=s.save_adversarial or ATTACKS[spec["attack"]].keep_images)


def state_path(run: Run, key: str) -> str:
    """Where a resumable attack keeps its progress between kills."""
    return os.path.join(run.settings.out, ".attack_state", f"{key}.pt")


def board_path(run: Run, key: str) -> str:
    """Where a shared attack's batches are claimed and their results kept until its row is written."""
    return os.path.join(run.settings.out, ".attack_state", f"{key}.batches")


def _close_board(job: Job) -> None:
    if job.attack is not None and job.attack.board is not None:
        job.attack.board.close()


def help_job(run: Run, job: Job) -> bool:
    """Join a shared evaluation another live process holds: take its open batches, stage after stage, as they
    come, then wait until its holder has written the row (or died, leaving the row to whoever claims it next).
    False, at once, when it is not shared or its holder has not opened its board yet. The row is the holder's;
    what fails here is the holder's to compute, and this process goes on with its own work."""
    if not ATTACKS[job.spec["attack"]].shared:
        return False
    board = BatchBoard(board_path(run, job.key), run.rows_path, helper=True)
    if not board.is_open() or owner_of(run.claims_dir, job.key) is None:
        return False
    attack, _ = attack_config(job.spec, run.settings, run.points.num_classes, run.batch_size)
    attack.board = board
    try:
        attack(job.lm.model, *run.points_of(job.spec))
        while board.is_open() and owner_of(run.claims_dir, job.key) is not None:
            time.sleep(board.poll)
    except BoardClosed:
        pass
    except Exception as e:  # noqa: BLE001 - the holder computes any batch this process could not
        say(f"warning: {job.label}: this process stopped helping ({typed_line(e, 200)})")
    return True


def execute(run: Run, job: Job) -> dict:
    """The result; out of memory, once more at half the batch (rows do not depend on it), then it fails."""
    try:
        return _measure(run, job, run.batch_size)
    except Exception as e:  # noqa: BLE001
        if not is_out_of_memory(e) or run.batch_size < 2:
            raise
    _close_board(job)  # its batches are the full batch's: the halved run is another evaluation
    half = run.batch_size // 2
    say(f"warning: {job.label}: out of memory at batch {run.batch_size}; retrying at batch {half}")
    if run.device.type == "cuda":
        torch.cuda.empty_cache()
    attack, cfg = attack_config(job.spec, run.settings, run.points.num_classes, half)
    # an attack whose batch is part of its result is keyed on the batch it ran at, once it has run there; a
    # failure stays the asked evaluation's (a rerun with the memory free completes it)
    halved = replace(job, attack=attack, cfg=cfg, key=run.key(job.lm.meta.model_id, cfg, job.spec))
    result = _measure(run, halved, half)
    job.attack, job.cfg, job.key = halved.attack, halved.cfg, halved.key
    return {**result, "batch_size": half, "oom_retry": {"batch_size": run.batch_size, "retried_at": half}}


def record(run: Run, job: Job, result: dict | None, error: Exception | None) -> Outcome:
    """The row (ok with its images and AutoAttack's warnings, or failed with the reason), and the attack's resume
    state removed once its row is written; returns the evaluation's Outcome."""
    s = job.spec
    row = {"key": job.key, **job.lm.meta.row_fields(), "attack": s["attack"], "norm": s["norm"], "eps": s["eps"],
           "eps_str": s["eps_str"], "attack_config": job.cfg, **run.common, "n": run.n(s),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    path = run.store_of(s).path
    if s["attack"] == MEASURES:
        row["measure_n"] = run.n(s)
    if error is not None:
        msg = error_line(error)
        say(f"error: {job.label}: {msg}")
        if not isinstance(error, EvaluationError):
            traceback.print_exception(error, limit=3)
        append_row(path, {**row, "status": "failed", "error": msg})
        _close_board(job)
        return job.outcome("failed", msg)
    images = result.pop("adversarial_images", None)
    if images is not None:
        result["adversarial"] = save_images(run.settings.out, job.key, images)
        if job.cached is not None and ((job.cached["clean_correct"], job.cached["robust_correct"])
                                       != (result["clean_correct"], result["robust_correct"])):
            say(f"warning: {job.label}: the attack fooled other points than its cached row did (not "
                "deterministic on this machine); the new row, with its images, replaces it")
        draw_gallery(run, job, {**row, **result}, images)
    append_row(path, {**row, **result, "status": "ok"})
    if s["attack"] == MEASURES:
        say(f"measured {job.lm.meta.name}: sharpness {result['sharpness_worst']:.4f}")
    for check, msg in (result.get("aa_checks") or {}).items():
        if msg:
            say(f"warning: {job.label}: AutoAttack check {check}: {msg}")
    state = state_path(run, job.key)
    if job.attack is not None and os.path.exists(state):
        os.remove(state)
    _close_board(job)
    return job.outcome("ok")


def draw_gallery(run: Run, job: Job, row: dict, images: torch.Tensor) -> None:
    """A few of the row's fooled points as pictures beside its images, drawn now that the model and the points
    are at hand (the site only copies them); a picture that cannot be drawn costs the row nothing."""
    from bench.eval.gallery import write_gallery

    if "points" not in row:
        return
    try:
        write_gallery(run.settings.out, row, job.lm.model, *run.points_of(job.spec), images)
    except Exception as e:  # noqa: BLE001 - the row and its images are what count
        say(f"warning: {job.label}: its gallery could not be drawn ({typed_line(e, 120)})")


def run_job(run: Run, job: Job, lease) -> Outcome:
    """Execute a claimed job and record it; the claim is released whatever happens."""
    run.bar.set_description(job.label[:60])
    if not run.progress and run.rank == 0:  # no bar: a log gets one line per evaluation
        say(job.label)
    if run.rank == 0 and run.device.type == "cpu":
        try:
            warn_if_long(job.label, job.cfg, job.lm, *run.points_of(job.spec), run.batch_size, run.rates)
        except Exception:  # noqa: BLE001 - a model that cannot be timed fails in its evaluation, with its row
            pass
    try:
        try:
            result, error = execute(run, job), None
        except Exception as e:  # noqa: BLE001 - one model's failure is its row, never the others'
            result, error = None, e
        return record(run, job, result, error)
    finally:  # the row is written (or the process is going down): let others see the key is free or done
        lease.release()


def plan_jobs(run: Run, pending: list[tuple], record: bool = True) -> list:
    """Each pending (spec, --models entry) as a Job, in plan order, its model loaded once per run. An entry that
    did not load gives its load's Outcome (once) and, for each of its evaluations, an Outcome saying so, in their
    places. record: whether a failed load is said and recorded (load_model)."""
    planned, loaded = [], {}  # loaded: entry -> its LoadedModel, or its load's Outcome
    for spec, model_spec in pending:
        lm = loaded.get(model_spec)
        if lm is None:
            loaded[model_spec] = lm = load_model(run, model_spec, record)
            if isinstance(lm, Outcome) and lm.status == "failed":
                planned.append(lm)  # the load's own outcome, once per run
        if isinstance(lm, Outcome):  # the model is not there: each of its evaluations is missing for that reason
            planned.append(Outcome.of(model_spec, spec, lm.status, f"the model did not load: {lm.reason}",
                                      model_failed=True))
            continue
        attack, cfg = attack_config(spec, run.settings, run.points.num_classes, run.batch_size)
        planned.append(Job(model_spec, spec, lm, attack, cfg, run.key(lm.meta.model_id, cfg, spec)))
    return planned


def rank_done_path(run: Run, rank: int) -> str:
    """The file a torchrun rank leaves once its own jobs are done (per torchrun run id)."""
    run_id = re.sub(r"[^A-Za-z0-9_-]", "_", os.environ.get("TORCHELASTIC_RUN_ID", "none"))[:64]
    return os.path.join(run.claims_dir, "ranks", f"{run_id}-{rank}.done")


def help_ranks(run: Run, others: list[tuple]) -> None:
    """The other ranks' shared evaluations, helped as their holders open them, until the rows settle each one
    or every other rank has finished its own jobs (what is unsettled then is not coming)."""
    mine = rank_done_path(run, run.rank)
    os.makedirs(os.path.dirname(mine), exist_ok=True)
    open(mine, "w").close()
    others = [o for o in others if ATTACKS[o[0]["attack"]].shared]
    if not others:
        return
    # a model that does not load here is its own rank's to record
    jobs = [j for j in plan_jobs(run, others, record=False) if isinstance(j, Job)]
    ranks_done = [rank_done_path(run, r) for r in range(run.world) if r != run.rank]
    while jobs and not all(os.path.exists(p) for p in ranks_done):
        with locked(run.rows_path):
            run.refresh()
            jobs = [job for job in jobs if settled(run, job) is None]
        if jobs and not any(help_job(run, job) for job in jobs):
            time.sleep(1.0)


def evaluate(models: list[str], settings: EvalSettings, specs: list[dict] | None = None) -> list[Outcome]:
    """Run every planned evaluation of every model that has no row yet; one Outcome per (model, evaluation),
    in plan order for this rank. specs: the evaluations, each with its n (default plan(settings): every one on
    settings.n_examples points); the run opens once for all of them, on as many points as the largest asks for.
    Raises only for what stops the whole run before any model is touched (an unknown attack, a bad --out, no
    model file there, data that cannot be loaded)."""
    specs = plan(settings) if specs is None else specs
    check_out(settings.out)
    models, missing = present_models(models)
    run = open_run(settings, specs)
    if settings.imported:  # another tool's images: refused in one line, before any row, unless they fit the points
        from bench.attacks.imported import check_images, read_tool_images

        images = read_tool_images(settings.imported)
        for spec in (s for s in specs if s["attack"] == "imported"):
            check_images(images, run.points_of(spec)[0].cpu(), spec["norm"], spec["eps"], settings.imported)
    jobs = [(spec, m) for m in models for spec in specs]
    pending = jobs[run.rank::run.world]  # torchrun: job i on rank i mod world
    run.bar = tqdm(total=len(pending), desc="bench", disable=not run.progress, file=sys.stderr)
    planned = plan_jobs(run, pending)
    run.bar.update(sum(isinstance(p, Outcome) and p.model_failed for p in planned))
    done: dict[int, Outcome] = {}  # id(job) -> its Outcome
    open_jobs = [p for p in planned if isinstance(p, Job)]

    def wanted() -> list[tuple[str, Job]]:  # under the rows' lock: what no row settles yet
        for job in open_jobs:
            outcome = settled(run, job)
            if outcome is not None:
                done[id(job)] = outcome
                run.bar.update()
        open_jobs[:] = [job for job in open_jobs if id(job) not in done]
        return [(job.key, job) for job in open_jobs]

    def help_one(held: list[Job]) -> bool:  # others hold every job left: join one that shares its batches
        return any(help_job(run, job) for job in held)

    # the first job no live process holds, claimed; while others hold every one left, help one of them or look
    # again each second
    while (claimed := claim_first(run.rows_path, run.refresh, wanted, run.claims_dir,
                                  poll=1.0, idle=help_one)) is not None:
        job, lease = claimed
        open_jobs.remove(job)
        done[id(job)] = run_job(run, job, lease)
        run.bar.update()
    if run.world > 1:  # torchrun: this rank's jobs are done; help the other ranks' shared ones until they are
        help_ranks(run, [j for j in jobs if j not in pending])
    run.bar.close()
    outcomes = missing if run.rank == 0 else []  # rank 0 reports the missing files
    return outcomes + [done[id(p)] if isinstance(p, Job) else p for p in planned]
