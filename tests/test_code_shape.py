"""Files and functions sized for reading (design.md, principle 1): every module in src/ has at most 400 lines and
every function (methods and nested functions included) at most 80, decorators and docstring counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MODULES = sorted(SRC.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def long_functions(tree: ast.AST, limit: int) -> list[tuple[str, int, int]]:
    """(qualified name, first line, line count) of every function in `tree` longer than `limit` lines."""
    found = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{scope}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    count = child.end_lineno - first + 1
                    if count > limit:
                        found.append((name, first, count))
                visit(child, f"{name}.")
            else:
                visit(child, scope)

    visit(tree, "")
    return found


def test_sources_found():
    assert len(MODULES) > 50, f"expected the clearvla sources under {SRC}"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_module_and_function_size(path: Path):
    text = path.read_text()
    lines = len(text.splitlines())
    problems = []
    if lines > MAX_MODULE_LINES:
        problems.append(f"{_name(path)} has {lines} lines (at most {MAX_MODULE_LINES}): split it")
    for name, first, count in long_functions(ast.parse(text, str(path)), MAX_FUNCTION_LINES):
        problems.append(f"{_name(path)}:{first} function {name} has {count} lines (at most {MAX_FUNCTION_LINES})")
    assert not problems, "\n".join(problems)


def test_long_functions_are_found():
    nested = "class A:\n    def f(self):\n        def g():\n" + "            x = 1\n" * 5 + "        return g\n"
    assert long_functions(ast.parse(nested), 5) == [("A.f", 2, 8), ("A.f.g", 3, 6)]
    assert long_functions(ast.parse(nested), 8) == []
