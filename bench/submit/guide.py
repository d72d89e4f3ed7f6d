"""The two texts an author takes to RobustBench: the "New Model(s)" issue, filled in exactly as RobustBench's
template (`.github/ISSUE_TEMPLATE/new-model.md`) lays it out, and the steps of the Model Zoo pull request.

The issue's answers hold no local paths (they are read by people who do not have the author's disk): the
evaluation method names the dataset, not the file it was read from. Every value is escaped for markdown
(bench.report.escape.md), and every command in the steps quotes its paths.
"""
from __future__ import annotations

from bench.report.escape import md, md_code, sh
from bench.submit.fields import readable_arch
from bench.submit.source import ZOO_DICT, class_name, module_name

FILL = "FILL IN"
THREAT_WORDS = {"Linf": "Linf", "L2": "L2", "corruptions": "Common Corruptions"}  # the template's {L2,Linf,Common Corruptions}
DATASET_WORDS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
TEMPLATE_ARCH_URL = "https://github.com/RobustBench/robustbench/tree/master/robustbench/model_zoo/architectures"


def evaluation_method(row: dict, threat: str, dataset: str) -> str:
    """Markdown: the row's values escaped, our own words and commands as they are."""
    cfg = row.get("attack_config", {})
    where = f"the first {int(row['n'])} points of the {DATASET_WORDS.get(dataset, md(dataset))} test set, in order"
    if threat == "corruptions":
        return (f"mean accuracy over {len(cfg.get('names', []))} corruptions x {len(cfg.get('severities', []))} "
                f"severities of the {md(row.get('corruption_source'))} {DATASET_WORDS.get(dataset, md(dataset))}-C "
                f"files, on {where}; sharpbench (`python -m bench.run --attacks corruptions`)")
    aa = md(row.get("pyautoattack") or "(version not recorded)")
    stages = md(", ".join(map(str, cfg.get("stages", []))))
    return (f"AutoAttack {md(cfg.get('version'))} ({stages}), pyautoattack {aa}, {md(row['norm'])} eps "
            f"{md(row['eps_str'])}, seed {md(cfg.get('seed'))}, on {where}; run stage by stage on the points still "
            "robust by sharpbench (`python -m bench.run --attacks autoattack`), fp32 model")


def _box(checked: bool) -> str:
    return "[x]" if checked else "[ ]"


def issue_md(*, name: str, dataset: str, threat: str, info: dict, row: dict, arch: str, known_arch: bool,
             license_: str) -> str:
    """The "New Model(s)" issue: its title line, then its body with the template's headings, in its order."""
    acc_key = "corruptions_acc" if threat == "corruptions" else "autoattack_acc"
    mit = license_.strip().upper() in ("MIT", "")
    custom = "" if mit else f" {md(license_)}"
    lines = [
        f"[New Model] {md(name)}",
        "",
        "# Paper Information",
        "",
        f"- **Paper Title**: {md(info['name']) or FILL}",
        f"- **Paper URL**: {md(info['link']) or FILL}",
        f"- **Paper authors**: {md(info['authors']) or FILL}",
        "",
        "# Leaderboard Claim(s)",
        "",
        "## Model 1",
        "",
        f"- **Architecture**: {md(readable_arch(arch))}",
        f"- **Threat Model**: {THREAT_WORDS[threat]}",
        f"- **eps**: {'N/A' if threat == 'corruptions' else md(info['eps'])}",
        f"- **Clean accuracy**: {info['clean_acc']}%",
        f"- **Robust accuracy**: {info[acc_key]}%",
        f"- **Additional data**: {'true' if info['additional_data'] else 'false'}",
        f"- **Evaluation method**: {evaluation_method(row, threat, dataset)}",
        f"- **Checkpoint and code**: {FILL} (the URL of the checkpoint and of the code)",
        "",
        "# Model Zoo:",
        "",
        f"- {_box(True)} I want to add my models to the Model Zoo (check if true)",
        f"- {_box(known_arch)} I use an architecture that is included among",
        f"  those [here]({TEMPLATE_ARCH_URL}) or in `timm`. If not, I added the link to the architecture "
        "implementation so that it can be added.",
        f"- {_box(bool(license_.strip()))} I agree to release my model(s) under MIT license (check if true) **OR** "
        f"under a custom license, located here:{custom if not mit else ''}",
        "",
    ]
    return "\n".join(lines)


def external_evaluation_md(*, name: str, dataset: str, threat: str, row: dict, authors: str, images: str,
                           sha256: str) -> str:
    """RobustBench's "New external evaluation(s)" issue (`.github/ISSUE_TEMPLATE/new-external-evaluation.md`):
    the model, its leaderboard, the adversarial images (a .pt tensor the size of the test set: the file beside
    this text), the robust accuracy they support, the authors and the method, with the command that replays them."""
    acc = 100 * row["robust_acc"]
    leaderboard = f"{DATASET_WORDS.get(dataset, md(dataset))}, {THREAT_WORDS[threat]}" + (
        "" if threat == "corruptions" else f" (eps {md(row['eps_str'])})")
    lines = [
        f"[New evaluation] {md(name)}",
        "",
        "## Target model",
        f"+ **Model identifier(s):** {md(name)}",
        f"+ **Leaderboard(s):** {leaderboard}",
        "",
        "## New evaluation",
        f"+ **Link to adversarial images:** {FILL} (the URL where `{md(images)}` is shared: a float32 tensor of "
        f"shape {md(' x '.join(map(str, row['adversarial']['shape'])))} in [0,1], one image per test point in "
        f"order; sha256 `{sha256}`)",
        f"+ **Robust accuracy:** {acc:.2f}%",
        f"+ **Author(s):** {md(authors) or FILL}",
        f"+ **Description of the method used:** {evaluation_method(row, threat, dataset)}. Anyone holding the "
        f"model can replay the images with no attack code: `python -m bench.verify --models CHECKPOINT "
        f"--adversarial {md(images)} --data {md(dataset)} --norm {md(row['norm'])} --eps {md(row['eps_str'])}` "
        "(sharpbench) prints the robust accuracy they support.",
        "",
    ]
    return "\n".join(lines)


def pull_request_md(*, name: str, dataset: str, threat: str, paths: dict, problems: list[str]) -> str:
    """The author's steps for the Model Zoo pull request, naming the files this export wrote."""
    lines = [f"# Model Zoo pull request for {md(name)} ({DATASET_WORDS.get(dataset, dataset)}, "
             f"{THREAT_WORDS[threat]})", ""]
    if problems:
        lines += ["**Draft.** RobustBench would not accept this claim yet:", ""]
        lines += [f"- {md(p)}" for p in problems] + [""]
    lines += [
        f"1. Open the issue: paste the first line of {md_code(paths['issue'])} as the title of a \"New Model(s)\" "
        "issue at https://github.com/RobustBench/robustbench/issues/new/choose and the rest as its body.",
        "2. In a clone of https://github.com/RobustBench/robustbench:",
        f"   - copy {md_code(paths['info'])} to `model_info/{dataset}/{threat}/{name}.json`;",
        f"   - copy {md_code(paths['architecture'])} to "
        f"`robustbench/model_zoo/architectures/{module_name(name)}.py`;",
        f"   - from {md_code(paths['entry'])}, put the import at the top of `robustbench/model_zoo/{dataset}.py` and "
        f"the entry into its `{ZOO_DICT[threat]}` OrderedDict (class `{class_name(name)}`); if the entry just above "
        "yours ends in `})` with no comma (the last entry of some of these dictionaries does), add the comma.",
        f"3. Upload {md_code(paths['weights'])} to Google Drive (anyone with the link can view) and put its id in "
        "place of `FILL_IN_GDRIVE_ID`.",
    ]
    if "unaggregated" in paths:
        lines.append(f"4. Append the last line of {md_code(paths['unaggregated'])} to "
                     f"`model_info/{dataset}/corruptions/unaggregated_results.csv` (its columns are that file's, in "
                     "its order).")
    lines += [
        "",
        f"Check before opening it: with the weights at `models/{dataset}/{threat}/{name}.pt` in the clone, "
        "robustbench loads the model without a network:",
        "",
        "```python",
        "from robustbench.utils import load_model",
        f"model = load_model({name!r}, model_dir='models', dataset={dataset!r}, threat_model={threat!r})",
        "```",
        "",
        f"From this checkout: {md_code('python -m bench.export ' + sh(paths['checkpoint']) + ' --name ' + sh(name))} "
        "rewrites these files.",
        "",
    ]
    return "\n".join(lines)
