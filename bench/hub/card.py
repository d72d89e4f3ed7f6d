"""A model card for the Hugging Face Hub: pure functions of the checkpoint's record and its rows.

The front matter's `model-index` holds one result per evaluation of these weights (each ok row, and each worst
case over attacks), every value copied from a row: accuracies as fractions in 0..1, exactly as the rows hold
them, `verified: false` (the Hub's verified flag is for evaluations it ran itself). Strings from files reach the
YAML through yaml.safe_dump (quoted as YAML needs) and the markdown body through bench.report.escape, with the
Unicode format characters (bidi controls) removed first, so a row's text shows as text in both.
"""
from __future__ import annotations

import os
import re

import yaml

from bench.report.escape import each_string, md, neutral, one_line, public_record, public_spec, sh
from bench.attacks.evaluation import Evaluation, eps_key
from bench.attacks.registry import counts_for_robustbench
from bench.report.worst_case import attack_label, worst_cases

TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet (RobustBench's 5000 points)",
          "digits": "scikit-learn digits", "synthetic": "synthetic"}
HUB_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagenet-1k"}
RECIPE_TAGS = {"pgd_at": "adversarial-training", "trades": "adversarial-training", "fgsm_rs": "adversarial-training",
               "awp": "adversarial-training", "sam": "sam", "sam_at": "sam", "looksam": "sam", "esam": "sam",
               "gsam": "sam", "msam": "sam", "rwp": "sam"}
# the training settings every recipe reads; a recipe's own are its Recipe's (zoo.recipes)
COMMON_SETTINGS = ("arch", "data", "n_train", "image_size", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                   "schedule", "seed", "amp", "channels_last", "compile", "compile_step", "drop_last", "device")


def dataset_entry(spec: str) -> dict:
    """The Hub's {type, name, split} for a --data spec."""
    if spec.startswith("folder:"):
        return {"type": "imagefolder", "name": os.path.basename(os.path.normpath(spec[7:])) or spec, "split": "test"}
    if spec.startswith("npz:"):
        return {"type": "npz", "name": os.path.basename(spec[4:]), "split": "test"}
    return {"type": HUB_DATASETS.get(spec, spec), "name": TITLES.get(spec, spec), "split": "test"}


def evaluation_name(row: dict) -> str:
    """'clean', 'corruptions', 'PGD-10 Linf 8/255': the attack with what makes it stronger, in its ball."""
    evaluation = Evaluation.of(row)
    return f"{attack_label(row)} {evaluation.ball}" if evaluation.has_ball else evaluation.attack


def _metric(kind: str, value: float, name: str, args: dict) -> dict:
    return {"type": kind, "value": value, "name": name, "args": args, "verified": False}


def row_result(row: dict) -> dict:
    """One model-index result: the row's evaluation, clean accuracy and (for attacks and corruptions) its robust
    accuracy, with the threat model, eps and n in each metric's name and args."""
    n, label = row["n"], evaluation_name(row)
    base = {"evaluation": label, "n": n, "row_key": row["key"]}
    metrics = [_metric("accuracy", row["clean_acc"], f"clean accuracy (n={n})",
                       {**base, "ci95": row.get("clean_ci95")})]
    if row["attack"] == "corruptions":
        metrics.append(_metric("corruption_accuracy", row["robust_acc"], f"mean accuracy over corruptions (n={n})",
                               {**base, "source": row.get("corruption_source"),
                                "corruptions": (row.get("attack_config") or {}).get("names")}))
    elif row["attack"] != "clean":
        metrics.append(_metric("robust_accuracy", row["robust_acc"], f"{label} robust accuracy (n={n})",
                               {**base, "attack": row["attack"], "threat_model": row["norm"], "eps": row["eps"],
                                "eps_str": row["eps_str"], "ci95": row.get("robust_ci95"),
                                "rb_standard": row.get("rb_standard", counts_for_robustbench(row["attack"]))}))
    return {"task": {"type": "image-classification"}, "dataset": dataset_entry(row["data"]), "metrics": metrics}


def worst_results(rows: list[dict]) -> list[dict]:
    """One result per worst case over more than one attack (a point counts only if it survived all of them)."""
    out = []
    for (mid, data, n, norm, ek), wc in sorted(worst_cases(rows).items(), key=lambda kv: str(kv[0])):
        if len(wc.attacks) < 2:
            continue
        eps_str = next(r["eps_str"] for r in rows if r.get("norm") == norm and r["data"] == data
                       and eps_key(r["eps"]) == ek)
        name = f"worst case {norm} {eps_str} over {', '.join(wc.attacks)}"
        args = {"evaluation": f"Worst {norm} {eps_str}", "n": wc.n, "threat_model": norm, "eps": ek,
                "eps_str": eps_str, "attacks": list(wc.attacks)}
        out.append({"task": {"type": "image-classification"}, "dataset": dataset_entry(data),
                    "metrics": [_metric("robust_accuracy", float(wc.acc), f"{name} (n={wc.n})", args)]})
    return out


def index_results(rows: list[dict]) -> list[dict]:
    """The model-index's results: one per (task, dataset, metric, threat model, eps). Clean accuracy from the row
    on the most points; robust accuracy at a threat model and eps from the worst case over the attacks run there
    (a point counts only if it survived every one) when more than one ran, else from the one attack's row, on its
    most points; the corruptions' mean from its row on the most points. The card's tables list every row."""
    results: dict = {}

    def keep(key, n, entry):
        if key not in results or n > results[key][0]:
            results[key] = (n, entry)

    for r in sorted(rows, key=lambda r: r.get("time", "")):
        res = row_result(r)
        for m in res["metrics"]:
            args = m["args"]
            key = (res["dataset"]["name"], m["type"], args.get("threat_model"), args.get("eps"))
            keep(key, r["n"], {**res, "metrics": [m]})
    for res in worst_results(rows):
        m = res["metrics"][0]
        key = (res["dataset"]["name"], m["type"], m["args"]["threat_model"], m["args"]["eps"])
        n = m["args"]["n"]
        if key not in results or n >= results[key][0]:  # over the attacks beats any one of them on as many points
            results[key] = (n, res)
    return [entry for _, entry in results.values()]


LICENSE_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")  # the Hub's licence ids: mit, apache-2.0, cc-by-4.0


def license_fields(licence: str) -> dict:
    """The card's licence fields for `--license` (the weights' licence, as RobustBench's issue also takes it): a
    licence id as it is (lower case); the URL of a custom licence as the Hub's `other` with its link; none: other."""
    value = licence.strip()
    if value.lower().startswith(("https://", "http://")) and not any(c.isspace() for c in value):
        return {"license": "other", "license_name": "custom", "license_link": value}
    if value and not LICENSE_ID.match(value.lower()):
        raise ValueError(f"--license {value[:60]!r} is neither a licence id (mit, apache-2.0, cc-by-4.0) nor the "
                         "URL of a custom licence; pass one of those")
    return {"license": value.lower() or "other"}


def front_matter(*, name: str, ckpt: dict, rows: list[dict], license_: str, library: str | None) -> dict:
    recipe = str(ckpt.get("recipe", ""))
    tags = ["image-classification", "adversarial-robustness", "robustness", "sharpbench", f"recipe-{recipe}"]
    if recipe in RECIPE_TAGS:
        tags.append(RECIPE_TAGS[recipe])
    train = str((ckpt.get("dataset") or {}).get("spec", ""))
    meta = {**license_fields(license_), "tags": tags, "pipeline_tag": "image-classification"}
    if library:
        meta = {"library_name": library, **meta}
    if train in HUB_DATASETS:
        meta["datasets"] = [HUB_DATASETS[train]]
    meta["model-index"] = [{"name": name, "results": index_results(public_record(rows))}]
    # every string on one line, bidi controls gone: a line of a string can never be the `---` that ends the front
    # matter (the Hub's parser looks for it at the start of a line)
    return each_string(one_line, meta)


def _fence(text: str) -> str:
    run = max((len(m) for m in __import__("re").findall(r"`+", text)), default=0)
    return "`" * max(3, run + 1)


def _code(text: str, lang: str = "") -> list[str]:
    fence = _fence(text)
    return [fence + lang, text, fence]


def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _ci(ci) -> str:
    return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}%" if isinstance(ci, list) and len(ci) == 2 else "—"


def _section(title: str, text: str, columns: tuple[str, ...]) -> list[str]:
    """A heading, a paragraph and a table's header."""
    return ["", f"## {title}", "", text, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def training_settings(ckpt: dict) -> dict:
    """The training config as the card shows it: the settings every recipe reads and the recipe's own (its
    Recipe's settings), never another recipe's (a SAM model shows no PGD eps) nor where it ran (out, data_dir)."""
    from zoo.recipes import RECIPES

    cfg = public_record(ckpt.get("config") or {})
    recipe = RECIPES.get(str(ckpt.get("recipe", "")))
    own = recipe.all_settings() if recipe is not None else tuple(cfg)
    return {k: v for k, v in cfg.items() if k in COMMON_SETTINGS or k in own}


def data_text(ckpt: dict) -> str:
    """The training data named by its kind (and a folder's by its content fingerprint), never by a path."""
    ds = ckpt.get("dataset") or {}
    spec = public_spec(str(ds.get("spec", "unknown")))
    return spec + (f" (content fingerprint {str(ds['fingerprint'])[:16]})" if ds.get("fingerprint") else "")


def load_snippets(architecture: str, needs_zoo: bool, repo_id: str, name: str) -> list[str]:
    """How to load the folder: offline from its files with timm alone (pretrained_cfg_overlay, timm's route to
    local weights), and from the Hub by name once pushed."""
    zoo_line = ["import zoo.models  # sharpbench: registers " + architecture + " into timm"] if needs_zoo else []
    local = [*zoo_line, "import json", "import timm", "import torch", "",
             f"folder = {name!r}  # this folder, on disk (as exported, or downloaded with `hf download`)",
             'cfg = json.load(open(f"{folder}/config.json"))',
             'net = timm.create_model(cfg["architecture"], num_classes=cfg["num_classes"], **cfg.get("model_args", {}),',
             '                        pretrained=True, pretrained_cfg_overlay=dict(cfg["pretrained_cfg"],',
             '                                                                     file=f"{folder}/model.safetensors")).eval()',
             "mean = torch.tensor(net.pretrained_cfg['mean']).view(1, -1, 1, 1)",
             "std = torch.tensor(net.pretrained_cfg['std']).view(1, -1, 1, 1)",
             "logits = net((images - mean) / std)  # images: N x 3 x H x W in [0,1]"]
    hub = [*zoo_line, "import timm", "",
           f"net = timm.create_model({('hf-hub:' + repo_id)!r}, pretrained=True).eval()  # then as above"]
    out = ["From the folder's files, offline (timm alone; the folder as written or downloaded):", "",
           *_code("\n".join(local), "python"), "", "Once pushed to the Hub, by its name:", "",
           *_code("\n".join(hub), "python")]
    if needs_zoo:
        out += ["", f"`{md(architecture)}` is not one of timm's own architectures: it is registered into timm's "
                "registry by sharpbench's `zoo` package (install sharpbench from its repository, `pip install -e .`),"
                " so `import zoo.models` comes first."]
    out += ["", "With sharpbench, the same model is evaluated by name, its data read from `sharpbench.json` (from the "
            "folder that holds this one, or from the Hub once pushed):", "",
            *_code(f"python -m bench.run --models hf-dir:{sh(name)} --attacks clean,pgd,autoattack\n"
                   f"python -m bench.run --models hf-hub:{repo_id} --attacks clean,pgd,autoattack", "bash")]
    return out


def body(*, name: str, ckpt: dict, rows: list[dict], repo_id: str, architecture: str, needs_zoo: bool,
         images: list[dict], folder: str | None = None) -> str:
    """The card's markdown: how to load it, how it was trained, how it was evaluated. Nothing in it names a path
    of the machine it was made on (bench.report.escape.public_record), and every file it names is in the folder."""
    from bench.report.web.pages import reproduce

    rows = neutral(public_record(rows))
    norm = ckpt.get("normalization") or {}
    out = [f"# {md(name)}", "",
           f"A `{md(ckpt.get('arch'))}` trained with sharpbench's **{md(ckpt.get('recipe'))}** recipe on "
           f"{md(data_text(ckpt))} ({ckpt.get('num_classes')} classes). It takes RGB images in [0,1] normalized with "
           f"the mean and std of `config.json` (timm's `pretrained_cfg`: mean {md(norm.get('mean'))}, std "
           f"{md(norm.get('std'))}); every number below was measured on images in [0,1] with that normalization "
           "inside the model.", "", "## Load it", "", *load_snippets(architecture, needs_zoo, repo_id, folder or name),
           "", "## Training", "", "| Setting | Value |", "|---|---|"]
    for k, v in sorted(neutral(training_settings(ckpt)).items()):
        out.append(f"| {md(k)} | {md(v)} |")
    cost = neutral(ckpt.get("cost") or {})
    if cost:
        out += ["", f"Cost: {cost.get('train_seconds', 0):.0f} s of training on {md(cost.get('device_name'))} "
                f"({cost.get('devices', 1)} device(s)), {cost.get('images_per_s') or 0:.0f} images/s."]
    out += _section("Evaluation", "Accuracies on the first n test points, in order; a point counts as robust only if "
                    "it is right clean and under the attack. 95% intervals are Wilson's. Every value is a row of "
                    "sharpbench's results (`sharpbench.json` holds them), and the card's `model-index` is built "
                    "from them alone: one entry per dataset, metric, threat model and eps (the worst case over the "
                    "attacks where more than one ran).",
                    ("Evaluation", "Data", "n", "Clean", "Robust", "95% interval", "AutoAttack checks"))
    for r in rows:
        fired = "; ".join(f"{k}: {v}" for k, v in (r.get("aa_checks") or {}).items() if v)
        checks = md(fired) if fired else ("passed" if r.get("aa_checks") else "—")
        robust = r.get("robust_acc") if r["attack"] != "clean" else None
        out.append(f"| {md(evaluation_name(r))} | {md(r['data'])} | {r['n']} | {_pct(r['clean_acc'])} | "
                   f"{_pct(robust)} | {_ci(r.get('robust_ci95') if robust is not None else r.get('clean_ci95'))} | "
                   f"{checks} |")
    out += ["", "The command that computed each row (from sharpbench's repository, with the checkpoint file and the "
            "data where they are on your machine):", ""]
    out += _code("\n".join(dict.fromkeys(reproduce(r, sh) for r in rows)), "bash")
    if images:
        out += ["", f"The attacks' images of {len(images)} evaluation(s) were kept where the rows were computed "
                "(`--save-adversarial`, replayed by `python -m bench.verify`); they are not part of this folder."]
    out += ["", "## Files", "",
            "- `model.safetensors`: the network's weights (no optimizer state, no pickle).",
            "- `config.json`: timm's configuration (architecture, classes, mean, std, input size, label names).",
            "- `sharpbench.json`: the checkpoint's training record and the rows this card was built from.",
            "- `README.md`: this card.", ""]
    return "\n".join(out)


def card_text(meta: dict, text: str) -> str:
    # never folded: a folded line could begin with `---`
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=False, width=float("inf")) + "---\n\n" + text
