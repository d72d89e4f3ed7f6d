"""Export a checkpoint for submission to RobustBench (python -m bench.export CKPT --name NAME --out DIR), or as a
Hugging Face Hub folder (python -m bench.export CKPT --hf DIR [--repo-id ORG/NAME] [--push]; bench.hub).

Writes under DIR, mirroring RobustBench's repository (one set per dataset and threat model, so a Linf and a
corruptions export of one model into one DIR both survive):
  model_info/<dataset>/<threat>/<NAME>.json                 model-info fields, filled from measured rows
  model_info/<dataset>/corruptions/unaggregated_results.<NAME>.csv   (corruptions) the line to append
  models/<dataset>/<threat>/<NAME>.pt                       {'state_dict': ...} for a model taking [0,1] inputs
  robustbench/model_zoo/architectures/<module>.py           self-contained architecture module
  robustbench/model_zoo/<dataset>.<threat>.entry.<NAME>.py   the import and the zoo entry to paste
  ISSUE.<NAME>.<dataset>.<threat>.md                        the "New Model(s)" issue, filled in
  PULL_REQUEST.<NAME>.<dataset>.<threat>.md                 the steps of the Model Zoo pull request

It refuses a claim RobustBench would not accept (not the full test set, not AutoAttack standard at the
leaderboard's eps, not the official corruption files, no paper title, link, venue or reported number) with one
line per reason and the command that fixes it; --draft writes the files anyway, with <NAME>.DRAFT.txt beside
the JSON saying what is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from bench.eval.loading import TIMM
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
    spec = ckpt.get("dataset", {}).get("spec", "")
    if spec in rules.LEADERBOARDS:
        return spec
    return "cifar100" if int(ckpt.get("num_classes", 10)) == 100 else "cifar10"


def timm_source(spec: str) -> tuple[dict, object, str]:
    """(checkpoint-like description, the bare network, model_id) of `timm:NAME[@PATH]` with ImageNet's 1000
    classes: the weights RobustBench loads are the network's own (its ImageNet entries add the normalization in
    front, `normalize_model`), and the rows of the claim carry the same model_id as bench.run gave them."""
    from bench.eval.loading import load_timm

    lm = load_timm(spec, num_classes=1000)
    desc = {"arch": lm.meta["arch"], "num_classes": 1000, "recipe": "timm",
            "normalization": {"mean": lm.meta["mean"], "std": lm.meta["std"]},
            "dataset": {"spec": "unknown"}}  # timm does not say what a model was trained on beyond ImageNet
    return desc, lm.model.net, lm.meta["model_id"]


def claim_row(rows: list[dict], model_id: str, threat: str, eps: float, check) -> dict | None:
    """The row the claim comes from: the newest one RobustBench accepts, else the newest candidate (AutoAttack
    standard first), so that the refusal names what is wrong with it."""
    mine = sorted((r for r in rows if r.get("status") == "ok" and r.get("model_id") == model_id),
                  key=lambda r: r.get("time", ""), reverse=True)
    if threat == "corruptions":
        cands = [r for r in mine if r["attack"] == "corruptions"]
    else:
        cands = [r for r in mine if r["attack"] in ("autoattack", "autoattack-fast", "pgd") and r["norm"] == threat
                 and abs(r["eps"] - eps) < 1e-9]
    good = [r for r in cands if not check(r)]
    if good:
        return good[0]
    cands.sort(key=lambda r: r["attack"] != "autoattack")  # stable: newest AutoAttack standard row first
    return cands[0] if cands else None


def _source(ckpt_path: str, name: str, threat: str, dataset: str | None):
    """(checkpoint-like record, the network's weights as RobustBench loads them, model_id, dataset); what makes
    the export impossible whatever the rows say is refused here, before any row is read."""
    fatal = rules.unsafe_name(name)  # names files: refused before the checkpoint is read
    if fatal:
        raise ExportRefused(fatal)
    if ckpt_path.startswith(TIMM):  # a timm model for RobustBench's ImageNet leaderboards
        dataset = dataset or "imagenet"
        if dataset != "imagenet":
            raise ExportRefused([f"{ckpt_path}: timm models export to RobustBench's imagenet leaderboards "
                                 "(--dataset imagenet); CIFAR models export from sharpbench checkpoints"])
        ckpt, net, model_id = timm_source(ckpt_path)
    else:
        ckpt = load_checkpoint(ckpt_path)
        net = model_from_checkpoint(ckpt, ckpt_path)
        model_id = sha256_file(ckpt_path)
        dataset = dataset or benchmark_dataset(ckpt)
    fatal = rules.leaderboard_problems(dataset, threat)
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


def _bool(s: str) -> bool:
    if s.lower() in ("true", "yes", "1"):
        return True
    if s.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _hub_main(a) -> int:
    from bench.hub.folder import HubRefused, push, write_hf_folder

    try:
        paths = write_hf_folder(a.checkpoint, a.hf, results=a.results, repo_id=a.repo_id,
                                license_=a.license.lower() or "other", force=a.force)
        for k, v in paths.items():
            print(f"{k}: {v}")
        if a.push:
            print(f"pushed: {push(a.hf, a.repo_id)}")
    except HubRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a sharpbench checkpoint, or timm:NAME[@PATH] for the imagenet leaderboards")
    p.add_argument("--name", default=None,
                   help="RobustBench model name: <Surname><Year><FirstWordOfTitle>[_suffix], e.g. Smith2026Sharp "
                        "(required unless --hf)")
    hub = p.add_argument_group("Hugging Face Hub (instead of RobustBench's files)")
    hub.add_argument("--hf", default=None, metavar="DIR",
                     help="write a Hub folder: model.safetensors, timm's config.json, a model card whose model-index "
                          "is the rows, sharpbench.json")
    hub.add_argument("--repo-id", default=None, metavar="ORG/NAME", help="the Hub repository the card names")
    hub.add_argument("--force", action="store_true", help="write over a folder that holds another model")
    hub.add_argument("--push", action="store_true",
                     help="upload the folder with huggingface_hub (needs --repo-id and a token: `hf auth login`)")
    p.add_argument("--out", default="export")
    p.add_argument("--results", default="runs/bench/results.jsonl",
                   help="the rows the claim is read from (default: %(default)s, bench.run's default --out)")
    p.add_argument("--threat-model", default="Linf", choices=["Linf", "L2", "corruptions"])
    p.add_argument("--dataset", default=None, choices=sorted(rules.LEADERBOARDS),
                   help="default: the checkpoint's training data when it is cifar10/cifar100, else by class count; "
                        "imagenet for timm:NAME")
    p.add_argument("--eps", default=None,
                   help="default the leaderboard's: 8/255 (Linf), 0.5 (L2); ImageNet 4/255 (Linf)")
    p.add_argument("--draft", action="store_true",
                   help="write the files even when RobustBench would not accept the claim (<NAME>.DRAFT.txt says why)")
    p.add_argument("--reported", default=None, help="the robust accuracy the paper reports (RobustBench's `reported`)")
    p.add_argument("--footnote", default=None)
    p.add_argument("--additional-data", type=_bool, default=None,
                   help="true/false; needed when the training data is not the benchmark's own training set")
    p.add_argument("--title", default="", help="the paper's title (required unless --draft)")
    p.add_argument("--authors", default="")
    p.add_argument("--link", default="", help="the paper's URL (required unless --draft)")
    p.add_argument("--venue", default="", help="e.g. 'ICLR 2026' or 'arXiv, Nov 2026' (required unless --draft)")
    p.add_argument("--license", default="", help="MIT, or the URL of a custom licence (ticks the issue's box); "
                                                      "with --hf the card's license (default other)")
    a = p.parse_args(argv)
    if a.hf:
        return _hub_main(a)
    if not a.name:
        p.error("--name is required (or pass --hf DIR for a Hugging Face Hub folder)")
    try:
        paths = export(a.checkpoint, name=a.name, out=a.out, results=a.results, threat=a.threat_model, eps=a.eps,
                       dataset=a.dataset, draft=a.draft, title=a.title, authors=a.authors, link=a.link,
                       venue=a.venue, reported=a.reported, footnote=a.footnote, additional_data=a.additional_data,
                       license_=a.license)
    except ExportRefused as e:
        for problem in e.problems:
            print(f"refused: {problem}", file=sys.stderr)
        print("error: RobustBench would not accept this export; fix the above, or pass --draft to write it anyway",
              file=sys.stderr)
        return 2
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    for k, v in paths.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
