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
    def module(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None
    return module


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


def test_service_imports_from_models_only_the_encoder_and_device_modules() -> None:
    used = {n for m, names in FOUND.items() if m.startswith("service.") for n in names
            if n.split(".")[0] == "models"}
    assert {module_of(FOUND)(n) for n in used} <= {"models.inference", "models.device"}


def test_checker_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}}) is None


# The served encoder's lifecycle has one owner: its state is written by the owner's classes only.
OWNERS = {"service.retriever": "Retriever", "service.lifecycle": "EncoderLifecycle",
          "service.pipeline": "SearchPipeline"}


def module_trees() -> dict[str, ast.Module]:
    trees = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            trees[module] = ast.parse(path.read_text(encoding="utf-8"))
    return trees


def attribute_writes(tree: ast.AST) -> list[tuple[str, str]]:
    """(object, attribute) of every assignment to, or deletion of, an attribute or an item of
    one (`x.a = v`, `x.a[k] = v`, `x.a += v`, `del x.a[k]`): `object` as source text."""
    targets: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets.extend(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets.append(node.target)
        elif isinstance(node, ast.Delete):
            targets.extend(node.targets)
    writes = []
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        elif isinstance(target, ast.Subscript):
            targets.append(target.value)
        elif isinstance(target, ast.Attribute):
            writes.append((ast.unparse(target.value), target.attr))
    return writes


def owned_attributes(tree: ast.Module, owner: str) -> set[str]:
    """The attributes the owner class sets on `self`."""
    (cls,) = (node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == owner)
    return {attr for obj, attr in attribute_writes(cls) if obj == "self"}


def foreign_writes(trees: dict[str, ast.Module]) -> list[str]:
    owned = set().union(*(owned_attributes(trees[m], c) for m, c in OWNERS.items()))
    found = []
    for module, tree in trees.items():
        if module in OWNERS:
            continue
        for obj, attr in attribute_writes(tree):
            if obj != "self" and (attr in owned or "retriever" in obj.lower()):
                found.append(f"{module}: {obj}.{attr}")
    return found


def test_only_the_owner_writes_the_retriever_and_encoder_state() -> None:
    assert foreign_writes(module_trees()) == []


def test_the_owner_check_finds_a_write_from_outside() -> None:
    trees = {**module_trees(), "service.elsewhere": ast.parse(
        "retriever.preloaded[wanted] = new\nself._retriever().checkpoint_path = path\n"
        "holder._encoder = None\n")}
    assert sorted(foreign_writes(trees)) == ["service.elsewhere: holder._encoder",
                                             "service.elsewhere: retriever.preloaded",
                                             "service.elsewhere: self._retriever().checkpoint_path"]
