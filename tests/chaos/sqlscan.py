"""A static check that no SQL in a package is built by string formatting.

It reads the source with `ast` and reports:

* a call of `execute`, `executemany`, `copy` or `stream` (or of a helper that passes
  its first argument on to them, like store._rows) whose SQL argument is an f-string,
  a `%` formatting, a `.format()` call, a `.join()`, or a `+` concatenation with
  anything but string constants;
* any f-string, `%` formatting or `.format()` whose literal text looks like SQL
  (a keyword such as SELECT, INSERT, UPDATE, DELETE, LISTEN in capitals), wherever it
  is: SQL built in one place and executed in another is caught too;
* in the module of statements (queries.py), any top-level value that is not a string
  constant or a concatenation of string constants.

A value that is a name, an attribute or a call result is allowed as SQL: those are the
constants of queries.py, the shipped migration files, or a parameter that a checked
caller passed on. psycopg.sql composition (`sql.SQL(...).format(sql.Identifier(...))`)
is the safe way to build identifiers and is allowed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

EXECUTORS = {"execute", "executemany", "copy", "stream"}
SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|WITH|LISTEN|NOTIFY|CREATE|DROP|ALTER|GRANT|TRUNCATE)\b"
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_sql_composition(node: ast.AST) -> bool:
    """`sql.SQL("...").format(...)` or `SQL("...").format(...)`: psycopg's safe way."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    if node.func.attr not in ("format", "join"):
        return False
    inner = node.func.value
    if isinstance(inner, ast.Call):
        func = inner.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in ("SQL", "Composed")
    return False


def _constant_text(node: ast.AST, constants: set[str]) -> bool:
    """A string constant, a known constant name, or a `+` of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return True
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "queries"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _constant_text(node.left, constants) and _constant_text(node.right, constants)
    return False


def _formatting(node: ast.AST, constants: set[str]) -> str | None:
    """How `node` builds a string by formatting, if it does."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mod)
        and isinstance(node.left, ast.Constant | ast.JoinedStr | ast.BinOp)
    ):
        return "% formatting"
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
        and not _is_sql_composition(node)
    ):
        return f".{node.func.attr}()"
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Add)
        and not _constant_text(node, constants)
    ):
        return "a + concatenation with a non-constant"
    return None


def _literal_text(node: ast.AST) -> str:
    """The literal parts of a formatting expression."""
    parts: list[str] = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            parts.append(sub.value)
    return " ".join(parts)


def _module_constants(tree: ast.Module, imported_constants: set[str]) -> set[str]:
    constants = set(imported_constants)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith("queries"):
            constants |= {alias.asname or alias.name for alias in node.names}
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if value is not None and _constant_text(value, constants):
            constants |= {t.id for t in targets if isinstance(t, ast.Name)}
    return constants


def _helpers(tree: ast.Module) -> set[str]:
    """Functions that pass their SQL parameter straight to an executor."""
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        params = [a.arg for a in node.args.args]
        for call in ast.walk(node):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in EXECUTORS
                and call.args
                and isinstance(call.args[0], ast.Name)
                and call.args[0].id in params
            ):
                found.add((node.name, params.index(call.args[0].id)))
    return {f"{name}:{index}" for name, index in found}


def scan_source(source: str, path: str, *, statements_module: bool = False) -> list[Finding]:
    tree = ast.parse(source)
    constants = _module_constants(tree, set())
    helpers = _helpers(tree)
    findings: list[Finding] = []
    if statements_module:
        for node in tree.body:
            if (
                isinstance(node, ast.Assign | ast.AnnAssign)
                and node.value is not None
                and not _constant_text(node.value, constants)
            ):
                findings.append(Finding(path, node.lineno, "a statement that is not constant"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            positions = [0] if name in EXECUTORS else []
            positions += [int(h.split(":")[1]) for h in helpers if h.split(":")[0] == name]
            for position in positions:
                if len(node.args) > position:
                    how = _formatting(node.args[position], constants)
                    if how:
                        findings.append(Finding(path, node.lineno, f"SQL built by {how}"))
        how = _formatting(node, constants)
        if (
            how
            and how != "a + concatenation with a non-constant"
            and SQL_WORDS.search(_literal_text(node))
        ):
            findings.append(Finding(path, node.lineno, f"SQL-looking text built by {how}"))
    return sorted(set(findings), key=lambda f: (f.path, f.line, f.what))


def scan_package(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for path in sorted(root.rglob("*.py")):
        findings += scan_source(
            path.read_text("utf-8"),
            str(path.relative_to(root.parent)),
            statements_module=path.name == "queries.py",
        )
    return findings
