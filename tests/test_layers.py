"""The code's structure: layers import downward only, no import cycle, no module imports another's private name.

Layers, lowest first: zoo (training, checkpoints); store, attacks, data and small shared helpers; the engine
and the writers of reports and submissions; the entry points (python -m ...) and the study's grid, which
orchestrates them. Imports inside functions count too.
"""
import ast
import os
from conftest import ROOT


LAYERS = [  # (layer, module prefixes), the most specific prefix decides
    (0, ("zoo",)),
    (1, ("bench.stats", "bench.deps", "bench.defaults", "bench.store", "bench.attacks", "bench.corruptions", "bench.eval",
         "bench.eval.forward",
         "bench.eval.loading", "bench.eval.measures", "bench.data")),
    (2, ("bench.eval.accuracy", "bench.eval.engine", "bench.eval.replay", "bench.report", "bench.submit",
         "bench.hub")),
    (3, ("bench.run", "bench.site", "bench.leaderboard", "bench.export", "bench.study", "bench.grid", "bench.verify",
         "bench.data.__main__")),
]


def layer(module: str) -> int | None:
    best = None
    for level, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (level, p)
    return None if best is None else best[0]


def modules() -> dict[str, str]:
    out = {}
    for pkg in ("zoo", "bench"):
        for folder, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = os.path.join(folder, f)
    return out


def imports(mods: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported module, name or '')} for the project's own modules."""
    graph = {}
    for name, path in mods.items():
        found = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    node.module.split(".")[0] in ("zoo", "bench"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    found.add((sub, "") if sub in mods else (node.module, a.name))
            elif isinstance(node, ast.Import):
                found |= {(a.name, "") for a in node.names if a.name.split(".")[0] in ("zoo", "bench")}
        graph[name] = {(m, n) for m, n in found if m != name}
    return graph


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_layers():
    mods = modules()
    unplaced = [m for m in mods if m not in ("zoo", "bench") and layer(m) is None]
    assert not unplaced, f"modules without a layer: {unplaced}"
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})" for m, targets in imports(mods).items()
              for t, _ in targets if layer(m) is not None and layer(t) is not None and layer(t) > layer(m)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    mods = modules()
    graph = {m: {t for t, _ in targets if t in mods and t not in ("zoo", "bench")}
             for m, targets in imports(mods).items()}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(path[path.index(t):] + [t]) if t in path else f"{m} -> {t}")
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_no_module_imports_another_modules_private_name():
    private = [f"{m} imports {n} from {t}" for m, targets in imports(modules()).items() for t, n in targets
               if n.startswith("_")]
    assert not private, "\n".join(private)


def test_the_checker_sees_a_violation(tmp_path):
    """The rules above catch what they look for: an upward import and a private name, inside a function too."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from bench.run import _private, main\n")
    (targets,) = imports({"zoo.fake": str(fake)}).values()
    assert targets == {("bench.run", "_private"), ("bench.run", "main")}
    assert layer("zoo.fake") == 0 < layer("bench.run") == 3
    assert layer("bench.report.escape") == 2 and layer("bench.store.rows") == 1 and layer("bench.grid.queue") == 3


ENTRY_POINTS = {"run", "study", "export", "leaderboard", "site", "verify"}  # python -m bench.X


def test_bench_top_level_holds_entry_points_and_three_shared_helpers():
    top = {f[:-3] for f in os.listdir(os.path.join(ROOT, "bench")) if f.endswith(".py")}
    assert top - ENTRY_POINTS - {"__init__"} <= {"stats", "deps", "defaults"}, sorted(top - ENTRY_POINTS)


def test_no_two_modules_under_bench_share_a_base_name():
    seen: dict = {}
    for name in modules():
        if name.startswith("bench."):
            base = name.rsplit(".", 1)[-1]
            if base != "__main__":
                seen.setdefault(base, []).append(name)
    assert not {b: m for b, m in seen.items() if len(m) > 1}
