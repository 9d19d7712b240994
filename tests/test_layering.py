"""The import graph: one namespace, layers that only import downwards, no cycles (lazy imports included).

Bottom up: core (errors, config, files, hashing, plugins) -> formats (the on-disk contract) and corpora (the
embedded sources) -> the stages: curation, training, evaluation (which may use training's callback interface),
audit (on-disk formats only) -> cli and demo on top. A stage reaches a higher or sibling one only through a
plugin path named in a config (core.plugins), never an import. FORBIDDEN below is the whole policy.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name -> folder: the stage folders the layout keeps at the top install under stablecpt.
PACKAGES = {"stablecpt": ROOT / "stablecpt", "stablecpt.curation": ROOT / "curation",
            "stablecpt.training": ROOT / "training", "stablecpt.evaluation": ROOT / "evaluation",
            "stablecpt.audit": ROOT / "audit", "experiments": ROOT / "experiments"}
TOP_LEVEL_STAGES = ("curation", "training", "evaluation", "audit")

# (importer prefix, imported prefixes it must never reach)
FORBIDDEN = [
    ("stablecpt.core", ("stablecpt.formats", "stablecpt.corpora", "stablecpt.curation", "stablecpt.training",
                        "stablecpt.evaluation", "stablecpt.audit", "stablecpt.cli", "stablecpt.demo")),
    ("stablecpt.formats", ("stablecpt.corpora", "stablecpt.curation", "stablecpt.training", "stablecpt.evaluation",
                           "stablecpt.audit", "stablecpt.cli", "stablecpt.demo")),
    ("stablecpt.corpora", ("stablecpt.formats", "stablecpt.curation", "stablecpt.training", "stablecpt.evaluation",
                           "stablecpt.audit", "stablecpt.cli", "stablecpt.demo")),
    ("stablecpt.training", ("stablecpt.curation", "stablecpt.evaluation", "stablecpt.audit", "stablecpt.cli",
                            "stablecpt.demo")),
    ("stablecpt.curation", ("stablecpt.training", "stablecpt.evaluation", "stablecpt.audit", "stablecpt.cli",
                            "stablecpt.demo")),
    ("stablecpt.evaluation", ("stablecpt.curation", "stablecpt.audit", "stablecpt.cli", "stablecpt.demo")),
    ("stablecpt.audit", ("stablecpt.curation", "stablecpt.training", "stablecpt.evaluation", "stablecpt.cli",
                         "stablecpt.demo")),
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "stablecpt" and parts and f"stablecpt.{parts[0]}" in PACKAGES:
                continue
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every stablecpt module `name` imports, at module level or inside functions."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets.add(module)
            targets.update(f"{module}.{alias.name}" for alias in node.names)
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_no_module_imports_a_stage_by_its_top_level_name():
    offenders = []
    for folder in [*PACKAGES.values(), ROOT / "tests", ROOT / "benchmarks", ROOT / "experiments"]:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in TOP_LEVEL_STAGES]
    assert not offenders, offenders


def test_layers_only_import_downwards():
    bad = [f"{src} imports {dst}" for src, deps in graph().items() for prefix, banned in FORBIDDEN
           if src == prefix or src.startswith(prefix + ".")
           for dst in deps if any(dst == b or dst.startswith(b + ".") for b in banned)]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    g = graph()
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_test_sees_the_whole_tree():
    found = modules()
    assert "stablecpt.curation.pipeline" in found and "stablecpt.training.loop" in found
    assert "stablecpt.core.errors" in found and "stablecpt.cli" in found
    assert "stablecpt.training.loop" in graph()["stablecpt.cli"] or any(
        d.startswith("stablecpt.training") for d in graph()["stablecpt.cli"])
