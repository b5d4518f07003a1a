"""The layering of docs/architecture.md, checked on the source: every import statement of every
module (module level or inside a function, TYPE_CHECKING ones included) read with `ast`, so a
new import that breaks a layer fails here rather than in a reviewer's head."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "index", "service", "bench", "xmr")
Graph = dict[str, set[str]]


def imports() -> dict[str, set[str]]:
    """Module name -> the absolute module names it imports."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
            found[module] = names
    return found


def collapse(found: dict[str, set[str]], unit: Callable[[str], str | None]) -> Graph:
    graph: Graph = defaultdict(set)
    for module, names in found.items():
        source = unit(module)
        for name in names:
            target = unit(name)
            if source and target and source != target:
                graph[source].add(target)
    return graph


def cycle(graph: Graph) -> list[str] | None:
    """One cycle of the graph (as a path), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package(name: str) -> str | None:
    top = name.split(".")[0]
    return top if top in PACKAGES else None


def models_part(name: str) -> str | None:
    """models' sub-packages and top-level modules (models.methods, models.inference, ...)."""
    parts = name.split(".")
    if parts[0] != "models" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def module_of(found: dict[str, set[str]]) -> Callable[[str], str | None]:
    """A name -> the project module it is (`from index.engines import X` is index.engines)."""
    def unit(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None
    return unit


FOUND = imports()


@pytest.mark.parametrize(("what", "unit"), [
    ("packages", package),
    ("models' sub-packages", models_part),
    ("modules", module_of(FOUND)),
])
def test_no_import_cycle(what: str, unit: Callable[[str], str | None]) -> None:
    graph = collapse(FOUND, unit)
    assert graph, f"no {what} found"
    assert cycle(graph) is None, f"import cycle between {what}: {' -> '.join(cycle(graph) or [])}"


def test_layers_point_down() -> None:
    """bench -> service -> index -> models; xmr (the entry point) may call any of them."""
    below = {"models": set(), "index": {"models"}, "service": {"index", "models"},
             "bench": {"service", "index", "models"}}
    graph = collapse(FOUND, package)
    for layer, allowed in below.items():
        assert graph.get(layer, set()) <= allowed, f"{layer} imports {graph[layer] - allowed}"


def test_index_imports_torch_at_most_in_its_cli() -> None:
    users = {m for m, names in FOUND.items() if m.startswith("index.")
             and any(n == "torch" or n.startswith("torch.") for n in names)}
    assert users <= {"index.cli"}


def test_service_imports_from_models_only_the_encoder_module() -> None:
    used = {n for m, names in FOUND.items() if m.startswith("service.") for n in names
            if n.split(".")[0] == "models"}
    assert {module_of(FOUND)(n) for n in used} <= {"models.inference"}


def test_checker_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}}) is None
