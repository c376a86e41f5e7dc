"""The layout keeps its promises (STYLE.md): what may import or read what."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import rally_gh

PACKAGE = Path(rally_gh.__file__).parent


def _imports(module: Path) -> Iterator[tuple[int, str]]:
    """Every module ``module`` imports, by absolute name, with its line."""
    package = ".".join(module.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, base
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def test_no_command_imports_another_command() -> None:
    """Commands share helpers through library modules, never through each other."""
    commands = PACKAGE / "commands"
    names = {f"rally_gh.commands.{p.stem}" for p in commands.glob("*.py") if p.stem != "__init__"}
    found = [f"{module.relative_to(PACKAGE.parent)}:{line}: imports {name}"
             for module in sorted(commands.glob("*.py"))
             for line, name in _imports(module)
             if name in names and name != f"rally_gh.commands.{module.stem}"]
    assert not found, "\n".join(found)
