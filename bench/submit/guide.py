"""SUBMISSION.md: RobustBench's "New Model(s)" issue template filled from the checkpoint and the rows, then the
steps of the Model Zoo pull request, naming the files this export wrote."""
from __future__ import annotations

from bench.submit.fields import readable_arch
from bench.submit.source import ZOO_DICT, module_name

FILL = "FILL IN"


def evaluation_method(row: dict, threat: str) -> str:
    cfg = row.get("attack_config", {})
    where = f"the first {row['n']} test points of {row['data']} in order"
    if threat == "corruptions":
        return (f"mean accuracy over {len(cfg.get('names', []))} corruptions x {len(cfg.get('severities', []))} "
                f"severities ({row.get('corruption_source')} CIFAR-C files), {where}; sharpbench "
                f"(`python -m bench.run --attacks corruptions`)")
    aa = row.get("pyautoattack") or "(version not recorded)"
    return (f"AutoAttack {cfg.get('version')} ({', '.join(cfg.get('stages', []))}), pyautoattack {aa}, "
            f"{row['norm']} eps {row['eps_str']}, seed {cfg.get('seed')}, on {where}; run stage by stage on the "
            "points still robust by sharpbench (`python -m bench.run --attacks autoattack`), fp32 model")


def submission_md(*, name: str, dataset: str, threat: str, info: dict, row: dict, ckpt: dict, paths: dict,
                  problems: list[str], license_: str) -> str:
    acc_key = "corruptions_acc" if threat == "corruptions" else "autoattack_acc"
    lines = [f"# Submitting {name} to RobustBench ({dataset}, {threat})", ""]
    if problems:
        lines += ["**Draft.** RobustBench would not accept this claim yet:", ""]
        lines += [f"- {p}" for p in problems] + [""]
    lines += [
        "## 1. Open a \"New Model(s)\" issue",
        "",
        "At https://github.com/RobustBench/robustbench/issues/new/choose, with these answers:",
        "",
        f"- **Paper title**: {info['name'] or FILL}",
        f"- **Paper URL**: {info['link'] or FILL}",
        f"- **Authors**: {info['authors'] or FILL}",
        f"- **Venue**: {info['venue'] or FILL}",
        f"- **Model name**: {name}",
        f"- **Architecture**: {readable_arch(ckpt['arch'])}",
        f"- **Threat model**: {threat}",
        f"- **eps**: {info['eps'] if info['eps'] is not None else 'n/a (standard training)'}",
        f"- **Clean accuracy**: {info['clean_acc']}%",
        f"- **{'Corruptions' if threat == 'corruptions' else 'Robust'} accuracy**: {info[acc_key]}%",
        f"- **Reported in the paper**: {info.get('reported', FILL + ' (the paper' + chr(39) + 's own number)')}",
        f"- **Additional data**: {'yes' if info['additional_data'] else 'no'} (trained on "
        f"{ckpt.get('dataset', {}).get('spec', '?')} with the {ckpt.get('recipe')} recipe)",
        f"- **Evaluation method**: {evaluation_method(row, threat)}",
        f"- **Checkpoint URL**: {FILL} (upload `{paths['weights']}`)",
        f"- **Code URL**: {FILL}",
        "- **Add to the Model Zoo**: yes",
        f"- **License**: {license_ or FILL}",
        "",
        "## 2. Open the Model Zoo pull request",
        "",
        "In a clone of https://github.com/RobustBench/robustbench:",
        "",
        f"1. Copy `{paths['info']}` to the same path in the clone.",
        f"2. Copy `{paths['architecture']}` to `robustbench/model_zoo/architectures/{module_name(name)}.py`.",
        f"3. Open `{paths['entry']}`: put its import at the top of `robustbench/model_zoo/{dataset}.py` and its "
        f"`ENTRY` tuple into the `{ZOO_DICT[threat]}` OrderedDict.",
        f"4. Upload `{paths['weights']}` to Google Drive (anyone with the link can view) and put the file's id in "
        "place of `FILL_IN_GDRIVE_ID`.",
    ]
    if "unaggregated" in paths:
        lines.append(f"5. Append the last line of `{paths['unaggregated']}` to "
                     f"`model_info/{dataset}/corruptions/unaggregated_results.csv` (same columns, as robustbench's "
                     "corruptions evaluation writes them).")
    lines += [
        "",
        "Check before opening it: with the weights at `models/"
        f"{dataset}/{threat}/{name}.pt` in the clone, robustbench loads the model without a network:",
        "",
        "```python",
        "from robustbench.utils import load_model",
        f"model = load_model('{name}', model_dir='models', dataset='{dataset}', threat_model='{threat}')",
        "```",
        "",
    ]
    return "\n".join(lines)
