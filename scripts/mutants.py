"""Mutation run: realistic one-line bugs put into the production code, one at a time; each must make a test fail.

  python scripts/mutants.py                      all mutants; writes results/mutants.md
  python scripts/mutants.py --only 3,7           some of them (numbers as in the table); their rows of an
                                                 existing results/mutants.md are replaced
  python scripts/mutants.py --list               the mutants, nothing run

For each mutant it checks that the original text occurs exactly once in its file, writes the mutated file,
runs only the tests named for it (pytest -x, fresh process), restores the file (also on Ctrl-C), and records
whether a test failed (killed) or all passed (survived). Each test selection is first run on the unmutated code:
a selection that fails without the mutant proves nothing, and the run stops. Not part of CI (minutes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Mutant:
    path: str  # file, relative to the repository root
    old: str  # the exact original text (unique in the file)
    new: str
    why: str  # the plausible bug it stands for
    tests: tuple  # pytest arguments selecting the tests that should kill it


def T(*args):
    return tuple(args)


BEHAVIOUR = "tests/test_behaviour.py"
SAM_VARIANTS = "tests/test_sam_variants.py"
MUTANTS = [
    # ------------------------------------------------------------ training recipes
    Mutant("zoo/recipes/adversarial.py",
           "def pgd_at_step(model, opt, x, y, cfg, autocast):\n    x_adv = adversarial_batch(model, x, y, cfg, autocast)\n"
           "    return standard_step(model, opt, x_adv, y, cfg, autocast)",
           "def pgd_at_step(model, opt, x, y, cfg, autocast):\n    x_adv = adversarial_batch(model, x, y, cfg, autocast)\n"
           "    return standard_step(model, opt, x, y, cfg, autocast)",
           "PGD-AT silently trains on clean images", T(BEHAVIOUR, "-k", "adversarial")),
    Mutant("zoo/recipes/adversarial.py", "    return sam_step(model, opt, x_adv, y, cfg, autocast)",
           "    return sam_step(model, opt, x, y, cfg, autocast)",
           "SAM+AT silently runs SAM on clean images", T(BEHAVIOUR, "-k", "adversarial")),
    Mutant("zoo/recipes/adversarial.py", "adversarial=True, alpha_of_eps=1.25, attack_steps=1)(pgd_at_step)",
           "adversarial=True, alpha_of_eps=1.25)(pgd_at_step)",
           "FGSM-RS (PGD-AT's step with one attack step) runs PGD-10 instead",
           T("tests/test_recipes_literature.py", "-k", "fgsm_rs_is_one_step")),
    Mutant("zoo/recipes/functional.py", "                    out[f\"{name}.{stat}\" if name else stat] = None",
           "                    pass",
           "attack and SAM second-pass forwards update BatchNorm statistics",
           T("tests/test_zoo_parts.py", "-k", "bn or pgd_at_perturbation")),
    Mutant("zoo/recipes/clean.py", "    return [rho * g / (norm + 1e-12) for g in grads]", "    return [rho * g for g in grads]",
           "SAM's ascent step not normalised by the gradient norm", T("tests/test_zoo_parts.py", "-k", "sam_step")),
    Mutant("zoo/recipes/clean.py", "    moved = shifted(params, e)",
           "    moved = params", "SAM/AWP take the second gradient at w, not at w + e",
           T("tests/test_zoo_parts.py", "-k", "sam_step")),
    Mutant("zoo/recipes/clean.py", "    moved_grads, _, _ = value_and_grad(model, cross_entropy(x, y, autocast), moved, track_stats=False)",
           "    moved_grads, _, _ = value_and_grad(model, cross_entropy(x, y, autocast), moved)",
           "SAM/AWP's second pass moves BatchNorm's running statistics", T("tests/test_zoo_parts.py", "-k", "bn")),
    Mutant("zoo/recipes/clean.py", "ASAM_ETA = 0.01", "ASAM_ETA = 0.0", "ASAM without Kwon et al.'s eta",
           T("tests/test_fidelity.py", "-k", "asam")),
    Mutant("zoo/recipes/adversarial.py", "    return [gamma * torch.linalg.vector_norm(p.detach()) * g / (torch.linalg.vector_norm(g) + 1e-12)",
           "    return [gamma * g / (torch.linalg.vector_norm(g) + 1e-12)", "AWP's perturbation not relative to the layer's norm",
           T("tests/test_recipes_literature.py", "-k", "awp_perturbs")),
    Mutant("zoo/recipes/adversarial.py", 'F.softmax(logits_nat.float(), 1), reduction="batchmean")',
           'F.softmax(logits_nat.float(), 1), reduction="sum")', "TRADES' KL summed instead of averaged",
           T("tests/test_recipes_literature.py", "-k", "trades_loss")),
    # ------------------------------------------------------------ cheaper SAM variants
    Mutant("zoo/recipes/sam_variants.py", "        g_v = [a - along * b for a, b in zip(g_s, g)]",
           "        g_v = [a for a, b in zip(g_s, g)]",
           "LookSAM reuses the whole SAM gradient, not its part orthogonal to g",
           T(SAM_VARIANTS, "-k", "looksam_is_sam")),
    Mutant("zoo/recipes/sam_variants.py", "        chosen = torch.topk(rise, max(1, int(cfg.esam_gamma * len(y)))).indices",
           "        chosen = torch.topk(-rise, max(1, int(cfg.esam_gamma * len(y)))).indices",
           "ESAM takes its second gradient on the examples its perturbation sharpened least",
           T(SAM_VARIANTS, "-k", "esam_perturbs")),
    Mutant("zoo/recipes/sam_variants.py",
           "        direction = [a - cfg.gsam_alpha * (b - along * a) for a, b in zip(g_f, g)]",
           "        direction = [a + cfg.gsam_alpha * (b - along * a) for a, b in zip(g_f, g)]",
           "GSAM ascends the surrogate gap instead of descending it", T(SAM_VARIANTS, "-k", "gsam_subtracts")),
    Mutant("zoo/recipes/sam_variants.py", "        e = [-scale * v for v in opt.momentum_buffers]",
           "        e = [scale * v for v in opt.momentum_buffers]",
           "MSAM perturbs along the momentum instead of against it", T(SAM_VARIANTS, "-k", "msam_takes")),
    Mutant("zoo/recipes/sam_variants.py",
           "        mixed = [cfg.rwp_lambda * a + (1 - cfg.rwp_lambda) * b for a, b in zip(g_e, g)]",
           "        mixed = [cfg.rwp_lambda * b + (1 - cfg.rwp_lambda) * a for a, b in zip(g_e, g)]",
           "m-RWP gives lambda to the plain gradient instead of the perturbed one", T(SAM_VARIANTS, "-k", "rwp_mixes")),
    # ------------------------------------------------------------ PGD
    Mutant("zoo/pgd.py", "                delta = project(delta + alpha * step, norm, eps)",
           "                delta = project(delta - alpha * step, norm, eps)", "PGD descends the loss (a dropped sign)",
           T("tests/test_zoo_parts.py", "-k", "pgd_at_perturbation")),
    Mutant("zoo/pgd.py", "    return delta * (eps / _l2(delta)).clamp(max=1.0)",
           "    return delta * (eps / _l2(delta)).clamp(min=1.0)", "L2 projection never shrinks a perturbation",
           T("tests/test_zoo_parts.py", "-k", "pgd_at_perturbation")),
    Mutant("zoo/pgd.py", "        fooled |= now", "        pass", "PGD restarts forget which examples are fooled",
           T(BEHAVIOUR, "-k", "restarts")),
    # ------------------------------------------------------------ data and training loop
    Mutant("zoo/data.py", "    flip = flipped if flip else torch.zeros_like(flipped)",
           "    flip = torch.zeros_like(flipped)", "augmentation never flips",
           T(BEHAVIOUR, "-k", "augmentation")),
    Mutant("zoo/data.py", "    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=x.device)",
           "    dy = torch.randint(0, 2 * pad, (n,), generator=gen, device=x.device)",
           "crop offsets miss one end of their range", T(BEHAVIOUR, "-k", "augmentation")),
    Mutant("zoo/data.py", "        return perm[:usable][self.rank::self.world]", "        return perm[:usable]",
           "every DDP rank trains on the whole set", T(BEHAVIOUR, "-k", "distributed")),
    Mutant("zoo/train.py", "    return cfg.lr * (1.0 if frac < 0.75 else 0.1 if frac < 0.9 else 0.01)",
           "    return cfg.lr * (1.0 if frac < 0.5 else 0.1 if frac < 0.9 else 0.01)",
           "piecewise schedule decays at the wrong milestone", T(BEHAVIOUR, "-k", "schedules")),
    Mutant("zoo/train.py", "    return dist.all_reduce_sum(stats).tolist(), time.perf_counter() - t0, lr", "    return stats.tolist(), time.perf_counter() - t0, lr",
           "DDP epoch statistics count one rank's images only",
           T("tests/test_distributed.py", "-k", "ddp_training and standard")),
    Mutant("zoo/checkpoint.py", "        if not ok:\n            raise CheckpointError(f\"{path}: {DAMAGED}\")",
           "        if not ok:\n            pass", "a weights checksum mismatch is ignored",
           T("tests/test_faults.py", "-k", "checksum")),
    # ------------------------------------------------------------ evaluation
    Mutant("bench/eval/accuracy.py", "        robust_ok = clean_ok & (predict(model, x_adv, batch_size) == y)",
           "        robust_ok = predict(model, x_adv, batch_size) == y",
           "a point wrong on clean input counts as robust when the attack makes it right",
           T(BEHAVIOUR, "-k", "robust_only")),
    Mutant("bench/eval/accuracy.py", "    if worst > eps + BALL_TOLERANCE[norm]:", "    if worst > eps + 1.0 + BALL_TOLERANCE[norm]:",
           "an attack leaving its ball goes unnoticed", T(BEHAVIOUR, "-k", "leaving")),
    Mutant("bench/attacks/predict.py", "        if not torch.isfinite(logits).all():", "        if False:",
           "NaN logits are scored as predictions", T(BEHAVIOUR, "-k", "nan_logits")),
    Mutant("bench/eval/accuracy.py", "                yy = torch.from_numpy(labels.astype(np.int64)).to(device)",
           "                yy = y", "official CIFAR-10-C sets scored against the test labels, not the files'",
           T("tests/test_official_corruptions.py", "-k", "labels")),
    Mutant("bench/corruptions/generator.py", "    lo = (severity - 1) * per", "    lo = 0",
           "every official CIFAR-10-C severity reads severity 1",
           T("tests/test_official_corruptions.py", "-k", "labels or severity")),
    Mutant("bench/attacks/autoattack.py", "                flags[done] = False", "                pass",
           "AutoAttack stages never remove fooled points",
           T("tests/test_early_exit.py", "-k", "autoattack_with_the_exit and sam and Linf")),
    Mutant("bench/attacks/malt.py",
           "        margin = gap.detach() / grad.flatten(1).norm(p=DUAL[norm], dim=1).clamp_min(1e-12)",
           "        margin = gap.detach()",
           "MALT ranks targets by their logit gap alone, as AutoAttack does, not by the linearized margin",
           T("tests/test_malt.py")),
    Mutant("bench/attacks/imported.py", "    if float(size[worst]) > eps + BALL_TOLERANCE[norm]:", "    if False:",
           "another tool's images outside their ball make a row", T("tests/test_imported.py", "-k", "refused")),
    Mutant("zoo/checkpoint.py", "                    while f.read(1 << 20):\n                        pass",
           "                    pass", "the zip records' CRC-32 is never checked",
           T("tests/test_faults.py", "-k", "plain_state_dict")),
    Mutant("bench/corruptions/generator.py", '    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],',
           '    "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],',
           "CIFAR-10-C's gaussian noise at ImageNet-C's severities",
           T("tests/test_corruption_fidelity.py", "-k", "published")),
    Mutant("bench/stats.py", "    c = (p + z * z / (2 * n)) / d", "    c = p", "Wilson interval centred on p",
           T(BEHAVIOUR, "-k", "wilson")),
    Mutant("bench/store/rows.py",
           '    blob = json.dumps({"model": model_id, "attack": attack_config, "data": data, "n": n_examples}, sort_keys=True)',
           '    blob = json.dumps({"model": model_id, "data": data, "n": n_examples}, sort_keys=True)',
           "the cache key ignores the attack's settings", T(BEHAVIOUR, "-k", "key")),
    Mutant("bench/store/rows.py", '                line = b"\\n" + line  # the torn fragment becomes a line of its own, skipped by readers',
           "                pass", "a row appended after a torn line is glued to it and lost",
           T("tests/test_faults.py", "-k", "torn")),
    Mutant("bench/eval/loading.py", '    return {k.removeprefix("module."): v for k, v in sd.items()}', "    return dict(sd)",
           "DDP-saved state_dicts ('module.' keys) fail to load", T(BEHAVIOUR, "-k", "bare_network")),
    Mutant("bench/eval/loading.py",
           '    model_id = sha256_file(path) if os.path.isfile(path) else f"rb:{name}:{dataset}:{norm}"',
           '    model_id = f"rb:{name}:{dataset}:{norm}"',
           "a re-downloaded, different RobustBench file reuses the old rows",
           T("tests/test_export.py", "-k", "robustbench_zoo_model")),
    Mutant("bench/corruptions/official.py",
           '        with requests.get(url, stream=True, timeout=60, headers={"Range": f"bytes={have}-"} if have else {}) as r:',
           "        with requests.get(url, stream=True, timeout=60) as r:",
           "a broken download restarts from zero", T("tests/test_official_corruptions.py", "-k", "resumes")),
    Mutant("bench/eval/engine.py", "    cached = store.ok.get(job.key) if job.key in store.done else None",
           "    cached = None",
           "a rerun after a kill evaluates finished rows again and doubles them", T(BEHAVIOUR, "-k", "killed")),
    # ------------------------------------------------------------ study report
    Mutant("bench/report/claims.py", "    return HELD if (diff > threshold if side == \">\" else diff < threshold) else NOT_HELD",
           "    return HELD", "a verdict from group means always says held", T(BEHAVIOUR, "-k", "verdicts")),
    Mutant("bench/report/claims.py", '    Claim(_AT_LARGE, ("best at", "best sam"), "pgd large", "Linf", note=_BEST),',
           '    Claim(_AT_LARGE, ("best at", "standard"), "pgd large", "Linf", note=_BEST),',
           "large-eps verdict compares AT with standard instead of SAM", T(BEHAVIOUR, "-k", "verdicts")),
    Mutant("bench/report/claims.py",
           '    Claim("SAM keeps clean accuracy (within 1 point)", ("each sam", "standard"), "clean", threshold=-0.01),',
           '    Claim("SAM keeps clean accuracy (within 1 point)", ("each sam", "standard"), "clean", threshold=-0.1),',
           "SAM's clean-accuracy verdict allows 10 points", T(BEHAVIOUR, "-k", "verdicts")),
    Mutant("bench/report/claims.py", '    Claim("PGD-AT costs clean accuracy", ("each at", "standard"), "clean", side="<"),',
           '    Claim("PGD-AT costs clean accuracy", ("each at", "standard"), "clean", side=">"),',
           "PGD-AT's clean-accuracy verdict holds when AT gains accuracy", T(BEHAVIOUR, "-k", "verdicts")),
    Mutant("bench/report/claims.py", "    held = all(x >= y for x, y in zip(avg, avg[1:]))", "    held = True",
           "the feature-shift ordering always holds", T(BEHAVIOUR, "-k", "mixed")),
    Mutant("bench/report/study_report.py", '        out[(c, "std")] = g[c].std(ddof=1)', '        out[(c, "std")] = g[c].std(ddof=0)',
           "population instead of sample std over seeds", T(BEHAVIOUR, "-k", "summary")),
    # ------------------------------------------------------------ RobustBench export
    Mutant("bench/submit/rules.py", '    if row.get("data") != dataset or row.get("n") != full_n(dataset):',
           '    if row.get("data") != dataset:', "a claim on fewer than 10000 points is accepted",
           T("tests/test_export.py", "-k", "preferred")),
    Mutant("bench/submit/fields.py", '            "eps": None if threat == "corruptions" else eps_str,',
           '            "eps": eps_str,', "corruptions JSON carries an eps where RobustBench's leave it null",
           T("tests/test_export_as_robustbench.py", "-k", "corruptions_json")),
    Mutant("bench/submit/fields.py", "    order = UNAGGREGATED_ORDER[dataset]", '    order = UNAGGREGATED_ORDER["cifar10"]',
           "CIFAR-100's corruptions line written in CIFAR-10's column order",
           T("tests/test_export_as_robustbench.py", "-k", "columns_of_that")),
    Mutant("bench/submit/rules.py", "    if reported is None or not str(reported).strip():", "    if False:",
           "a submission without the paper's reported number is accepted",
           T("tests/test_export_as_robustbench.py", "-k", "needs_title")),
    # ------------------------------------------------------------ untrusted input
    Mutant("zoo/checkpoint.py", "                if info.compress_type != zipfile.ZIP_STORED:", "                if False:",
           "a deflated record (a zip bomb) is inflated", T("tests/test_hostile.py", "-k", "hostile_files")),
    Mutant("zoo/metadata.py", "    if CONTROL.search(value):", "    if False:",
           "a recipe that closes a docstring is accepted", T("tests/test_hostile.py", "-k", "hostile_files")),
    Mutant("bench/store/schema.py", '    robust = _int(row, "robust_correct", 0, clean)',
           '    robust = row.get("robust_correct")', "a row with robust_correct above clean_correct (or n) is trusted as done",
           T("tests/test_hostile.py", "-k", "untrusted_rows")),
    Mutant("bench/report/escape.py",
           '    text = one_line(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")',
           "    text = one_line(value)", "markup in a model's name renders as HTML in leaderboard.md",
           T("tests/test_hostile.py", "-k", "file_names")),
    Mutant("bench/eval/engine.py",
           "        if s.retry_failed or key in store.done or store.failures.get(key, 0) < (bound or s.max_failures):",
           "        if True:",
           "an unchanged broken file gets another failed row on every rerun",
           T("tests/test_hostile.py", "-k", "failed_loads")),
    Mutant("bench/grid/queue.py", "    if missing:\n        raise CellFailed(missing, result)", "    if False:\n        pass",
           "a cell whose evaluations failed is recorded done", T("tests/test_study.py", "-k", "failed_evaluations")),
    Mutant("bench/eval/engine.py", "        if not is_out_of_memory(e) or run.batch_size < 2:", "        if True:",
           "an out-of-memory evaluation fails without its retry at half the batch",
           T("tests/test_bench.py", "-k", "bounds_retries")),
    Mutant("bench/report/results.py", "    if has_worst(top[0][2]):", "    if False:",
           "the leaderboard ranks by AutoAttack where the worst case is lower", T("tests/test_evidence.py", "-k", "rank")),
    Mutant("bench/report/results.py", "    return sorted(items, key=key)", "    return list(items)",
           "a renderer shows models in the order the rows came", T("tests/test_evidence.py", "-k", "rank")),
    Mutant("bench/eval/replay.py", "        missing = (counted & ~fooled).nonzero()", "        missing = (counted & False).nonzero()",
           "bench.verify passes a row whose fooled points its images do not fool",
           T("tests/test_verify.py", "-k", "tampered")),
    Mutant("bench/eval/replay.py", "    outside = (dist > eps + BALL_TOLERANCE[norm]).nonzero()",
           "    outside = (dist > 2 * eps + BALL_TOLERANCE[norm]).nonzero()",
           "bench.verify accepts images outside the eps ball", T("tests/test_verify.py", "-k", "tampered")),
    Mutant("bench/report/escape.py", '    return "".join(c for c in text if unicodedata.category(c) != "Cf")',
           "    return text", "a right-to-left override in a name reverses what the site and leaderboard show",
           T("tests/test_hostile_rows.py", "-k", "payload")),
    Mutant("bench/store/schema.py", '    if attack is not None and (not isinstance(attack, str) or not ATTACK.match(attack)):',
           "    if False:", "a failed row whose attack is a number is trusted, and breaks the site build",
           T("tests/test_hostile_rows.py", "-k", "payload")),
    Mutant("bench/submit/rules.py", 'SAFE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")',
           'SAFE_NAME = re.compile(r"^.+$")', "--name __init__ or a/b names the export's files",
           T("tests/test_hostile.py", "-k", "cannot_name")),
    # ------------------------------------------------------------ per-point evidence
    Mutant("bench/report/worst_case.py", "            worst = np.logical_and.reduce(list(own.values()))",
           "            worst = np.logical_or.reduce(list(own.values()))",
           "the worst case over attacks is the best case", T("tests/test_evidence.py", "-k", "worst_case")),
    Mutant("bench/report/paired.py", "    if lo > 0:\n        return HELD", "    if hi > 0:\n        return HELD",
           "an interval straddling the threshold reads held", T("tests/test_evidence.py", "-k", "equal_models")),
    Mutant("bench/report/paired.py", "        pb = b @ w.T",
           "        pb = b @ rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64).T / n",
           "the two models are resampled on different points: the pairing is lost",
           T("tests/test_evidence.py", "-k", "covers")),
    Mutant("bench/store/schema.py", "        if int(clean_ok.sum()) != clean or int(robust_ok.sum()) != robust:",
           "        if False:", "a row whose counts disagree with its per-point flags is trusted",
           T("tests/test_evidence.py", "-k", "refused")),
    # ------------------------------------------------------------ site, grid, compiled step
    Mutant("bench/report/web/__init__.py", "loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,",
           "loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,",
           "a model named <script> runs in the site", T("tests/test_site.py", "-k", "self_contained")),
    Mutant("bench/grid/queue.py", "        pending[:] = [c for c in grid if c.key not in done and c.key not in failed]",
           "        pending[:] = [c for c in grid if c.key not in failed]",
           "finished cells are trained and evaluated again on a rerun",
           T("tests/test_grid.py", "-k", "three_local")),
    Mutant("zoo/optim.py", "        self.lr.fill_(lr)", "        pass", "the learning-rate schedule never reaches the update",
           T("tests/test_compiled_step.py", "-k", "match_eager and pgd_at or torch_optim")),
    Mutant("zoo/optim.py", "        torch._foreach_add_(self.momentum_buffers, d)", "        pass",
           "SGD's momentum buffer never takes the gradient", T("tests/test_compiled_step.py", "-k", "torch_optim")),
    Mutant("zoo/train.py", "    return torch.compile(step or recipe.step, backend=cfg.compile or \"inductor\", mode=mode, fullgraph=True)",
           "    return torch.compile(step or recipe.step, backend=cfg.compile or \"inductor\", mode=mode)",
           "a graph break in the whole step splits it silently", T("tests/test_compiled_step.py", "-k", "graph_break")),
    Mutant("bench/submit/rules.py",
           '        if cfg.get("source") != "official" or row.get("corruption_source") != "official":',
           "        if False:", "regenerated corruption sets accepted as RobustBench's number",
           T("tests/test_export.py", "-k", "all_official")),
    # ------------------------------------------------------------ one home per concept (issue 49)
    Mutant("bench/eval/gallery.py", "PNG.match(it[k]) and it[k].startswith(row[\"key\"])", "True",
           "a gallery index from a results folder names any file there, and the site copies it",
           T("tests/test_verify.py", "-k", "site_copies")),
    Mutant("bench/eval/engine.py", "        return min(spec.get(\"n\", len(self.points.y)), len(self.points.y))",
           "        return len(self.points.y)", "a study cell runs every evaluation on its largest n",
           T("tests/test_study.py", "-k", "one_run")),
    Mutant("bench/attacks/registry.py", "        if batch_size != AUTOATTACK_BATCH:", "        if False:",
           "AutoAttack's batch, which its random starts depend on, is left out of its key",
           T(BEHAVIOUR, "-k", "batch_size_device")),
    Mutant("bench/eval/engine.py",
           "        cached = unkeyed_row(store.rows, job.lm.meta.model_id, job.cfg, run.n(job.spec))",
           "        cached = None", "the measures rows written before they had keys are measured again",
           T("tests/test_bench.py", "-k", "measures_are_an_evaluation")),
    # ------------------------------------------------------------ AutoAttack with no wasted work (issue 51)
    Mutant("bench/attacks/apgd_exit.py",
           "out.settle(w, loss_steps, logits.detach().max(1)[1] != w[\"y\"], w[\"x_adv\"].detach())",
           "out.settle(w, loss_steps, (logits.detach().max(1)[1] != w[\"y\"]) | (y1 < w[\"loss_best\"]),"
           " w[\"x_adv\"])",
           "APGD's early exit drops points that are not yet fooled (their loss fell below their best)",
           T("tests/test_early_exit.py", "-k", "apgd_with_the_exit and Linf")),
    Mutant("bench/attacks/apgd_exit.py", 'PER_POINT = ("x", "y", "y_target", "x_adv",',
           'PER_POINT = ("x", "y", "x_adv",',
           "APGD-T's targets are not dropped with their points: the points left attack other points' targets",
           T("tests/test_early_exit.py", "-k", "apgd_with_the_exit and apgd-t and Linf")),
    Mutant("bench/store/batches.py", "and torch.equal(r[\"idx\"], idx.cpu()) ", "and True ",
           "a batch's result file is trusted without checking it holds these points (one left by another run)",
           T("tests/test_shared_batches.py", "-k", "killed_mid_batch")),
    Mutant("bench/attacks/autoattack.py", 'x_adv[done.to(device)] = r["adv"].to(device)', "pass",
           "a stage's results merged as flags only: the images another worker found are not kept",
           T("tests/test_shared_batches.py", "-k", "killed_mid_batch")),
    Mutant("bench/attacks/registry.py", "        if precision != \"fp32\":  # the search's arithmetic", "        if False:  #",
           "a bf16 search keeps the fp32 key: its row stands for (and caches as) RobustBench's",
           T("tests/test_bench.py", "-k", "bf16")),
    Mutant("bench/eval/forward.py", "if n < self.eager_below:", "if n <= self.eager_below:",
           "a CPU batch of exactly CPU_EAGER_BELOW images also skips the compiled graph (off by one)",
           T("tests/test_bench.py", "-k", "bucketed_forward")),
    Mutant("bench/attacks/autoattack.py", 'min(STANDARD_TARGETS["fab-t"], num_classes - 1)',
           'STANDARD_TARGETS["fab-t"]',
           "FAB-T's targets are not capped at the classes - 1 on a model with fewer than 10 classes",
           T("tests/test_own_data.py", "-k", "l2_autoattack")),
]


def run_tests(args: tuple, timeout: int) -> tuple[bool, float, str]:
    t0 = time.perf_counter()
    try:
        res = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, PYTHONWARNINGS="ignore", PYTHONDONTWRITEBYTECODE="1"))
        lines = res.stdout.strip().splitlines() or [""]
        errors = [ln for ln in lines if ln.startswith("E ")][:3]  # what failed, for a baseline that should not
        return res.returncode == 0, time.perf_counter() - t0, " / ".join([lines[-1], *errors])
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - t0, f"timed out after {timeout} s"


def line_of(text: str, old: str) -> int:
    return text[:text.index(old)].count("\n") + 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma list of mutant numbers (1-based)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test run")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "mutants.md"))
    a = ap.parse_args(argv)
    chosen = [(i, m) for i, m in enumerate(MUTANTS, 1) if not a.only or str(i) in a.only.split(",")]
    for i, m in chosen:  # every mutant must apply to the code as it is
        text = open(os.path.join(ROOT, m.path)).read()
        if text.count(m.old) != 1:
            print(f"error: mutant {i} ({m.path}): its original text occurs {text.count(m.old)} times; update it",
                  file=sys.stderr)
            return 2
    if a.list:
        for i, m in chosen:
            print(f"{i:2d} {m.path}:{line_of(open(os.path.join(ROOT, m.path)).read(), m.old)}  {m.why}")
        return 0
    baseline = {}
    for _, m in chosen:
        if m.tests not in baseline:
            ok, sec, tail = run_tests(m.tests, a.timeout)
            baseline[m.tests] = sec
            if not ok:
                print(f"error: tests {' '.join(m.tests)} fail without any mutant ({tail}); fix them first",
                      file=sys.stderr)
                return 2
    results = []
    t_all = time.perf_counter()
    for i, m in chosen:
        path = os.path.join(ROOT, m.path)
        original = open(path).read()
        line = line_of(original, m.old)
        try:
            with open(path, "w") as f:
                f.write(original.replace(m.old, m.new))
            passed, sec, tail = run_tests(m.tests, a.timeout)
        finally:
            with open(path, "w") as f:
                f.write(original)
        verdict = "survived" if passed else "killed"
        results.append((i, m, line, verdict, sec, tail))
        print(f"{i:2d} {verdict:8s} {m.path}:{line} {m.why} ({sec:.0f} s: {tail[:300]})", flush=True)
    killed = sum(r[3] == "killed" for r in results)
    lines = ["# Mutation run", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}; `python scripts/mutants.py`; {killed} of {len(results)} mutants "
             f"killed; {time.perf_counter() - t_all:.0f} s of mutated test runs (each test selection also passed "
             "on the unmutated code first).", "",
             "Each mutant is a one-line (or one-statement) change a plausible bug would make; a mutant is killed "
             "when the tests named for it fail with it in place.", "",
             "| # | where | change | the bug it stands for | tests | result |", "|---|---|---|---|---|---|"]
    def cell(text):  # a '|' inside code would split the markdown cell
        return text.replace("|", "\\|")

    for i, m, line, verdict, sec, tail in results:
        old = cell(m.old.strip().splitlines()[-1].strip())
        new = cell(m.new.strip().splitlines()[-1].strip())
        lines.append(f"| {i} | `{m.path}:{line}` | `{old[:70]}` → `{new[:70]}` | {m.why} | "
                     f"`{' '.join(m.tests)}` | {verdict} ({sec:.0f} s) |")
    text = "\n".join(lines) + "\n"
    if a.only and os.path.isfile(a.out):  # the table's rows of these mutants replaced, the others kept
        rerun = {f"| {i} |": line for (i, *_), line in zip(results, lines[-len(results):])}
        kept = [rerun.pop(ln[:ln.index("|", 1) + 1], ln) if ln.startswith("| ") and ln[2:3].isdigit() else ln
                for ln in open(a.out).read().splitlines()]
        last = max(i for i, ln in enumerate(kept) if ln.startswith("|"))
        kept[last + 1:last + 1] = list(rerun.values())  # mutants new since the last full run: their rows added
        note = (f"Rerun {time.strftime('%Y-%m-%d %H:%M')}: `python scripts/mutants.py --only {a.only}`; "
                f"{killed} of {len(results)} killed (those rows below).")
        text = "\n".join(kept[:3] + ["", note] + kept[3:]) + "\n"
    if not a.only or os.path.isfile(a.out):
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(text)
        print(f"written: {a.out}")
    survived = [r for r in results if r[3] == "survived"]
    for i, m, line, *_ in survived:
        print(f"SURVIVED: {i} {m.path}:{line} {m.why}", file=sys.stderr)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
