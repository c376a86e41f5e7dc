"""The git package is the boundary: only it imports pygit2, and it hands out no
pygit2 object but the repository handle (callers ask it questions instead of
reaching into ``.index``, ``.references``, ``.workdir`` or ``.path``)."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import rally_gh
from rally_gh import git

PACKAGE = Path(rally_gh.__file__).parent


def test_only_the_git_package_imports_pygit2() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE)
        if where.parts[0] == "git":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] == "pygit2" for name in names):
                found.append(f"rally_gh/{where.as_posix()}:{node.lineno}")
    assert found == []


def _pygit2_types(hint: object) -> set[str]:
    found = set()
    if isinstance(hint, type) and hint.__module__.split(".")[0] in {"pygit2", "_pygit2"} and hint is not git.Repository:
        found.add(hint.__qualname__)
    for arg in typing.get_args(hint):
        found |= _pygit2_types(arg)
    return found


def _signatures(obj: object) -> list[tuple[str, object]]:
    """(where, annotation) for a function's parameters and result, a class's fields
    and methods, or an alias itself."""
    if inspect.isfunction(obj):
        return list(typing.get_type_hints(obj).items())
    if isinstance(obj, type):
        out = list(typing.get_type_hints(obj).items())
        for name, member in vars(obj).items():
            member = getattr(member, "__func__", getattr(member, "fget", member))
            if inspect.isfunction(member) and not name.startswith("__"):
                out += [(f"{name}.{k}", v) for k, v in typing.get_type_hints(member).items()]
        return out
    return [("", obj)]


def test_the_package_hands_out_no_pygit2_object_but_the_repository_handle() -> None:
    leaks = {}
    for name in git.__all__:
        if name == "Repository":
            continue
        for where, hint in _signatures(getattr(git, name)):
            if types := _pygit2_types(hint):
                leaks[f"git.{name} {where}".strip()] = sorted(types)
    assert leaks == {}
