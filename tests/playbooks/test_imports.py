"""playbooks/ imports at module level, and nothing from incidents/."""

from __future__ import annotations

import ast
from pathlib import Path

import playbooks

ROOT = Path(playbooks.__file__).parent


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield node, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node, [node.module]


def test_no_module_in_playbooks_imports_inside_a_function():
    inner = []
    for path in ROOT.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node, names in _imports(func):
                inner.append(f"{path.name}:{node.lineno} {', '.join(names)}")
    assert inner == []


def test_playbooks_imports_nothing_from_incidents():
    found = []
    for path in ROOT.rglob("*.py"):
        for node, names in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            found += [f"{path.name}:{node.lineno} {n}" for n in names if n.startswith("incidents")]
    assert found == []
