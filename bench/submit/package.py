"""A checkpoint as RobustBench's files (what `python -m bench.export` writes; its docstring lists them): the
claim read from the rows, RobustBench's rules applied, the files written, or ExportRefused with one line per
reason.
"""
from __future__ import annotations

import json
import os

from bench.attacks.registry import counts_for_robustbench, decides_rank
from bench.eval.loading import HUB_KINDS, rb_dataset, source_kind
from bench.report.escape import one_line, sh
from bench.store.rows import read_rows
from bench.submit import fields, guide, rules, source
from zoo.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, sha256_file
from zoo.files import save_atomic, write_text_atomic
from zoo.pgd import parse_eps


class ExportRefused(ValueError):
    """RobustBench would not accept the claim; .problems holds one line per reason."""

    def __init__(self, problems: list[str]):
        super().__init__(problems[0])
        self.problems = problems


def benchmark_dataset(ckpt: dict) -> str:
    """The RobustBench leaderboard a checkpoint's claim goes to: its training data's, else by its class count."""
    return rb_dataset((ckpt.get("dataset") or {}).get("spec", ""), int(ckpt.get("num_classes", 10)))


def timm_source(spec: str) -> tuple[dict, object, str]:
    """(checkpoint-like description, the bare network, model_id) of `timm:NAME[@PATH]` with ImageNet's 1000
    classes: the weights RobustBench loads are the network's own (its ImageNet entries add the normalization in
    front, `normalize_model`), and the rows of the claim carry the same model_id as bench.run gave them."""
    from bench.eval.loading import load_timm

    lm = load_timm(spec, num_classes=1000)
    desc = {"arch": lm.meta.arch, "num_classes": 1000, "recipe": "timm",
            "normalization": {"mean": lm.meta.mean, "std": lm.meta.std},
            "dataset": {"spec": "unknown"}}  # timm does not say what a model was trained on beyond ImageNet
    return desc, lm.model.net, lm.meta.model_id


def hub_source(spec: str) -> tuple[dict, object, str]:
    """(checkpoint-like description, the model RobustBench loads, model_id) of `hf-hub:ORG/NAME[@REV]` or of a
    Hub folder on disk (`hf-dir:DIR`, or DIR): the folder's weights with its normalization in front (a [0,1]
    model, as a checkpoint's), described by the training record its sharpbench.json ships; model_id is the
    weights' hash, as its rows carry it."""
    from bench.eval.loading import load_model_spec

    lm = load_model_spec(spec, num_classes=None)  # the class count the folder's config says
    record = lm.meta.training_record
    desc = {"arch": record.get("arch") or lm.meta.arch, "num_classes": lm.meta.num_classes,
            "recipe": lm.meta.recipe, "normalization": {"mean": lm.meta.mean, "std": lm.meta.std},
            "dataset": record.get("dataset") or {"spec": "unknown"}}
    return desc, lm.model, lm.meta.model_id


def claim_row(rows: list[dict], model_id: str, threat: str, eps: float, check) -> dict | None:
    """The row the claim comes from: the newest one RobustBench accepts, else the newest candidate (AutoAttack
    standard first), so that the refusal names what is wrong with it."""
    mine = sorted((r for r in rows if r.get("status") == "ok" and r.get("model_id") == model_id),
                  key=lambda r: r.get("time", ""), reverse=True)
    if threat == "corruptions":
        cands = [r for r in mine if r["attack"] == "corruptions"]
    else:
        cands = [r for r in mine if decides_rank(r["attack"]) and r["norm"] == threat
                 and abs(r["eps"] - eps) < 1e-9]
    good = [r for r in cands if not check(r)]
    if good:
        return good[0]
    cands.sort(key=lambda r: not counts_for_robustbench(r["attack"]))  # stable: the newest AutoAttack row first
    return cands[0] if cands else None


def _source(ckpt_path: str, name: str, threat: str, dataset: str | None):
    """(checkpoint-like record, the network's weights as RobustBench loads them, model_id, dataset); what makes
    the export impossible whatever the rows say is refused here, before any row is read."""
    fatal = rules.unsafe_name(name)  # names files: refused before the checkpoint is read
    if fatal:
        raise ExportRefused(fatal)
    kind = source_kind(ckpt_path)
    if kind == "timm":  # a timm model for RobustBench's ImageNet leaderboards
        dataset = dataset or "imagenet"
        if dataset != "imagenet":
            raise ExportRefused([f"{ckpt_path}: timm models export to RobustBench's imagenet leaderboards "
                                 "(--dataset imagenet); CIFAR models export from sharpbench checkpoints"])
        ckpt, net, model_id = timm_source(ckpt_path)
    elif kind in HUB_KINDS:  # a sharpbench Hub folder
        ckpt, net, model_id = hub_source(ckpt_path)
        dataset = dataset or benchmark_dataset(ckpt)
    else:
        ckpt = load_checkpoint(ckpt_path)
        net = model_from_checkpoint(ckpt, ckpt_path)
        model_id = sha256_file(ckpt_path)
        dataset = dataset or benchmark_dataset(ckpt)
    fatal = rules.leaderboard_problems(dataset, threat, ckpt.get("num_classes"),
                                       train_data=(ckpt.get("dataset") or {}).get("spec"))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    mangled = [k for k in state if any(s in k for s in source.MANGLED_BY_ROBUSTBENCH)]
    if mangled:
        fatal.append(f"weight name {mangled[0]!r} contains 'module.' or 'model.', which robustbench's loader strips "
                     "wherever it occurs; this architecture cannot be loaded by RobustBench as it is")
    if fatal:
        raise ExportRefused(fatal)
    return ckpt, state, model_id, dataset


def _paths(ckpt_path: str, out: str, name: str, dataset: str, threat: str) -> dict:
    """Where each file of the export goes, mirroring RobustBench's repository."""
    claim = f"{name}.{dataset}.{threat}"
    paths = {
        "checkpoint": ckpt_path,
        "info": os.path.join(out, "model_info", dataset, threat, f"{name}.json"),
        "weights": os.path.join(out, "models", dataset, threat, f"{name}.pt"),
        "architecture": os.path.join(out, "robustbench", "model_zoo", "architectures", f"{source.module_name(name)}.py"),
        "entry": os.path.join(out, "robustbench", "model_zoo", f"{dataset}.{threat}.entry.{name}.py"),
        "issue": os.path.join(out, f"ISSUE.{claim}.md"),
        "pull_request": os.path.join(out, f"PULL_REQUEST.{claim}.md"),
    }
    if threat == "corruptions":
        paths["unaggregated"] = os.path.join(out, "model_info", dataset, "corruptions",
                                             f"unaggregated_results.{name}.csv")
    return paths


def export(ckpt_path: str, *, name: str, out: str, results: str, threat: str = "Linf", eps: str | None = None,
           dataset: str | None = None, draft: bool = False, title: str = "", authors: str = "", link: str = "",
           venue: str = "", reported: str | None = None, footnote: str | None = None,
           additional_data: bool | None = None, license_: str = "") -> dict:
    ckpt, state, model_id, dataset = _source(ckpt_path, name, threat, dataset)
    eps_str = eps or (rules.leaderboard_eps(dataset, threat)[0] if threat != "corruptions" else "0")
    eps_val = parse_eps(eps_str)

    def check(r):
        return rules.row_problems(r, ckpt=ckpt_path, dataset=dataset, threat=threat, eps_str=eps_str, eps=eps_val)
    row = claim_row(read_rows(results), model_id, threat, eps_val, check)
    if row is None:
        what = "corruptions" if threat == "corruptions" else f"AutoAttack {threat} eps {eps_str}"
        attacks = "clean,corruptions" if threat == "corruptions" else "clean,autoattack"
        norm = "" if threat == "corruptions" else f" --norm {threat} --eps {sh(eps_str)}"
        raise CheckpointError(f"no {what} row for {ckpt_path} in {results}; run `python -m bench.run --models "
                              f"{sh(ckpt_path)} --attacks {attacks}{norm} --data {dataset} "
                              f"--out {sh(os.path.dirname(results) or '.')}` first")
    add, add_problems = rules.additional_data(ckpt.get("dataset", {}).get("spec", "unknown"), dataset,
                                              additional_data)
    problems = (rules.name_problems(name, dataset, threat) + check(row) + add_problems +
                rules.paper_problems(title=title, link=link, venue=venue, reported=reported))
    if problems and not draft:
        raise ExportRefused(problems)

    info = fields.model_info(dataset=dataset, threat=threat, row=row, arch=ckpt["arch"], eps_str=eps_str,
                             additional_data=add, title=title, authors=authors, link=link, venue=venue,
                             reported=reported, footnote=footnote)
    claim = f"{name}.{dataset}.{threat}"
    paths = _paths(ckpt_path, out, name, dataset, threat)
    draft_path = os.path.join(out, "model_info", dataset, threat, f"{name}.DRAFT.txt")
    known_arch = ckpt["arch"] in source.ROBUSTBENCH_HAS or ckpt["arch"] not in source.CLASSIC_SOURCE
    texts = {"info": json.dumps(info, indent=2) + "\n",
             "architecture": source.architecture_module(ckpt, name, dataset),
             "entry": source.zoo_entry(name, dataset, threat),
             "issue": guide.issue_md(name=name, dataset=dataset, threat=threat, info=info, row=row, arch=ckpt["arch"],
                                     known_arch=known_arch, license_=license_),
             "pull_request": guide.pull_request_md(name=name, dataset=dataset, threat=threat, paths=paths,
                                                   problems=problems)}
    if "unaggregated" in paths:
        texts["unaggregated"] = fields.unaggregated_csv(name, row, dataset)
    if row.get("adversarial"):  # the images that earn the claim: RobustBench's external-evaluation file and text
        from bench.store.adversarial import load_images

        images = load_images(os.path.join(os.path.dirname(os.path.abspath(results)), row["adversarial"]["path"]),
                             sha256=row["adversarial"]["sha256"], shape=tuple(row["adversarial"]["shape"]))
        paths["adversarial"] = os.path.join(out, "adversarial", dataset, threat, f"{name}.pt")
        paths["external_evaluation"] = os.path.join(out, f"EXTERNAL_EVALUATION.{claim}.md")
        save_atomic(images, paths["adversarial"])
        texts["external_evaluation"] = guide.external_evaluation_md(
            name=name, dataset=dataset, threat=threat, row=row, authors=authors,
            images=os.path.basename(paths["adversarial"]), sha256=sha256_file(paths["adversarial"]))
    for key, text in texts.items():
        write_text_atomic(paths[key], text)
    save_atomic({"state_dict": state}, paths["weights"])
    if problems:
        write_text_atomic(draft_path, f"DRAFT: {name} is not yet a claim RobustBench accepts. What is missing:\n" +
                          "".join(f"- {one_line(p)}\n" for p in problems))
        paths["draft"] = draft_path
    elif os.path.exists(draft_path):  # an earlier draft export of the same name
        os.remove(draft_path)
    del paths["checkpoint"]
    return paths
