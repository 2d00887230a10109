"""The layers hold (#24): no import cycles in the core or the pages — counting imports inside functions too, since
a deferred import is still a dependency —, `jobs/` is the framework only (it imports no domain package), and the
lower layers (platform < model < data < actcache) import only what lies below them (docs/ARCHITECTURE.md)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DOMAINS = ("sae", "features", "labeling", "interop", "steering", "circuits", "benchsuite")
# package → the packages of mistudio_core it may import (besides itself)
LOWER_LAYERS = {
    "platform": set(),
    "model": {"platform"},
    "data": {"platform", "model"},
    "actcache": {"platform", "model", "data"},
    "jobs": {"platform"},
}


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _graph(package: str) -> dict[str, set[str]]:
    mods = _modules(package)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for target in targets:
                found = known(target)
                if found and found != module and not module.startswith(found + "."):
                    graph[module].add(found)  # a module importing its own package's __init__ is no cycle
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_the_core_and_the_pages_have_no_import_cycles():
    for package in ("mistudio_core", "pages"):
        cycles = _cycles(_graph(package))
        assert not cycles, f"import cycles in {package}: {cycles}"


def test_the_jobs_framework_imports_no_domain_package():
    graph = _graph("mistudio_core")
    bad = {m: sorted(t for t in targets if t.split(".")[1:2] and t.split(".")[1] in DOMAINS)
           for m, targets in graph.items() if m.startswith("mistudio_core.jobs")}
    assert not {m: t for m, t in bad.items() if t}, bad


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_the_lower_layers_import_only_what_lies_below_them():
    graph = _graph("mistudio_core")
    bad = {m: sorted(t for t in targets if _package(t) not in LOWER_LAYERS[_package(m)] | {_package(m)})
           for m, targets in graph.items() if _package(m) in LOWER_LAYERS}
    assert not {m: t for m, t in bad.items() if t}, bad


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
