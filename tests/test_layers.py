"""The library's layers, read from its imports with `ast` (docs/design.md): every
import counts, those under `if TYPE_CHECKING:` and inside functions too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "queuetopia"

# The store layer, and the migrations, which keep their own driver calls (DDL in
# transactions of their own).
DRIVER_MODULES = {
    "queuetopia.db.rows",
    "queuetopia.db.steps",
    "queuetopia.db.store",
    "queuetopia.db.connections",
    "queuetopia.db.translate",
    "queuetopia.migrations",
}
DRIVERS = {"psycopg", "psycopg_pool"}
TERMINAL = {"typer", "rich", "click"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(path: Path) -> Iterator[str]:
    """Every module `path` imports, absolute, as written (not its parents)."""
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield submodule if is_module(submodule) else source


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports."""
    return {
        module_name(path): {m for m in imports(path) if m.split(".")[0] == "queuetopia"}
        for path in library_files()
    }


def test_only_the_store_layer_calls_the_driver() -> None:
    offenders = {
        module_name(path): sorted(m for m in imports(path) if m.split(".")[0] in DRIVERS)
        for path in library_files()
        if module_name(path) not in DRIVER_MODULES
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_library_does_not_import_the_terminal_libraries() -> None:
    offenders = {
        module_name(path): sorted(m for m in imports(path) if m.split(".")[0] in TERMINAL)
        for path in library_files()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_only_the_package_and_the_command_line_import_the_facade() -> None:
    importers = {
        module_name(path)
        for path in [*library_files(), *sorted((ROOT / "queuetopia_cli").rglob("*.py"))]
        if "queuetopia.app" in set(imports(path))
    }
    assert {m for m in importers if not m.startswith("queuetopia_cli")} == {"queuetopia"}


def test_the_import_graph_has_no_cycle() -> None:
    edges = graph()
    assert find_cycle(edges) is None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `edges` as a list of modules (first == last), or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from .db import store\nfrom .app import Queuetopia\n",
            {"queuetopia.db.store", "queuetopia.app"},
        ),
        ("if TYPE_CHECKING:\n    from .worker import Worker\n", {"queuetopia.worker"}),
        ("def f():\n    import psycopg\n", {"psycopg"}),
    ],
)
def test_the_reader_sees_every_kind_of_import(
    tmp_path: Path, source: str, expected: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module inside the real package, so relative imports resolve against it.
    probe = LIBRARY / "_layers_probe.py"
    probe.write_text(source)
    try:
        assert set(imports(probe)) == expected
    finally:
        probe.unlink()


def test_a_cycle_is_found() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
