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
import sys

from bench.defaults import IMAGENET_EPS, OUT, RB_EPS, RB_LEADERBOARDS, rows_path
from bench.report.escape import one_line
from bench.submit.package import ExportRefused, export
from zoo.checkpoint import CheckpointError
from zoo.cli import parser

__all__ = ["ExportRefused", "export", "main"]


def _bool(s: str) -> bool:
    if s.lower() in ("true", "yes", "1"):
        return True
    if s.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def default_results(checkpoint: str) -> str:
    """The rows of the checkpoint's study when it lies in a study's zoo folder (bench.study's claim says which
    study), else bench.run's default rows."""
    import os

    from bench.grid.owner import claimed_out

    out = claimed_out(os.path.dirname(os.path.abspath(checkpoint)))
    if out and os.path.isfile(rows_path(out)):
        return rows_path(out)
    return rows_path(OUT)


def _hub_main(a) -> int:
    from bench.hub.folder import HubRefused, push, write_hf_folder

    try:
        paths = write_hf_folder(a.checkpoint, a.hf, results=a.results, repo_id=a.repo_id,
                                license_=a.license, force=a.force)
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
    p = parser("python -m bench.export",
               "Export a checkpoint as RobustBench's submission files, or as a Hugging Face Hub folder (--hf DIR).")
    p.add_argument("checkpoint", help="a sharpbench checkpoint, hf-hub:ORG/NAME[@REV] (one read back from the Hub), or timm:NAME[@PATH] for the imagenet leaderboards")
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
    p.add_argument("--out", default="export", help="where RobustBench's files are written")
    p.add_argument("--results", default=None,
                   help="the rows the claim is read from (default: the results.jsonl of the study whose zoo folder "
                        "holds the checkpoint, else bench.run's default rows, %s)" % rows_path(OUT))
    p.add_argument("--threat-model", default="Linf", choices=["Linf", "L2", "corruptions"],
                   help="the leaderboard the claim is for")
    p.add_argument("--dataset", default=None, choices=sorted(RB_LEADERBOARDS),
                   help="default: the checkpoint's training data when it is cifar10/cifar100, else by class count; "
                        "imagenet for timm:NAME")
    p.add_argument("--eps", default=None,
                   help="default the leaderboard's: " + ", ".join(f"{e} ({t})" for t, e in RB_EPS.items())
                        + "; ImageNet " + ", ".join(f"{e} ({t})" for t, e in IMAGENET_EPS.items()))
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
    p.add_argument("--license", default="",
                   help="the weights' licence: a licence id (mit, apache-2.0) or the URL of a custom one. RobustBench's "
                        "issue ticks its MIT box for mit and names any other; a Hub card carries the id, or `other` "
                        "with the URL's link (default: none, the card's `other`)")
    a = p.parse_args(argv)
    a.results = a.results or default_results(a.checkpoint)
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
