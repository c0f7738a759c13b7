"""No exception vanishes: every ``except Exception`` / ``except BaseException`` in
engine/, persistence/ and tui/ raises again, logs the traceback, hands the exception
object itself to a call (which then owns it, as ``Engine._switch_off`` logs it), or
says in a comment (from the ``except`` line to the first line of its body) why not;
every ``contextlib.suppress`` says why in a comment on its line or the one before."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "persistence", "reports", "tui")
BROAD = {"Exception", "BaseException"}


def _names(node: ast.expr | None) -> set[str]:
    if node is None:
        return {"BaseException"}  # a bare except
    if isinstance(node, ast.Tuple):
        return set().union(*(_names(e) for e in node.elts))
    if isinstance(node, ast.Name):
        return {node.id}
    if isinstance(node, ast.Attribute):
        return {node.attr}
    return set()


def _raises(handler: ast.ExceptHandler) -> bool:
    return any(isinstance(n, ast.Raise) for stmt in handler.body for n in ast.walk(stmt))


def _logs_traceback(handler: ast.ExceptHandler) -> bool:
    for stmt in handler.body:
        for n in ast.walk(stmt):
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
                continue
            if n.func.attr == "exception" or any(k.arg == "exc_info" for k in n.keywords):
                return True
    return False


def _hands_on(handler: ast.ExceptHandler) -> bool:
    if handler.name is None:
        return False
    for stmt in handler.body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Call):
                args = [*n.args, *(k.value for k in n.keywords)]
                for arg in args:
                    parts = arg.elts if isinstance(arg, ast.Tuple) else [arg]
                    if any(isinstance(p, ast.Name) and p.id == handler.name for p in parts):
                        return True
    return False


def _commented(lines: list[str], *numbers: int) -> bool:
    return any("#" in lines[n - 1] for n in numbers if 0 < n <= len(lines))


def problems() -> list[str]:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            where = path.relative_to(ROOT)
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ExceptHandler) and _names(node.type) & BROAD:
                    if _raises(node) or _logs_traceback(node) or _hands_on(node):
                        continue
                    if not _commented(lines, *range(node.lineno, node.body[0].lineno + 1)):
                        found.append(f"{where}:{node.lineno}: swallowed, not logged, no comment")
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "suppress"
                    and not _commented(lines, node.lineno, node.lineno - 1)
                ):
                    found.append(f"{where}:{node.lineno}: suppress() without a comment")
    return found


def test_every_swallowed_exception_is_logged_or_says_why_not() -> None:
    assert problems() == []
