"""The layout keeps its promises (STYLE.md): what may import or read what."""

from __future__ import annotations

import ast
import re
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


def test_only_the_real_github_module_imports_pygithub() -> None:
    """PyGithub stays behind the endpoint interface: everything else talks to ``GitHubEndpoint``."""
    real = PACKAGE / "github" / "real.py"
    found = [f"{module.relative_to(PACKAGE.parent)}:{line}: imports {name}"
             for module in sorted(PACKAGE.rglob("*.py")) if module != real
             for line, name in _imports(module) if name == "github" or name.startswith("github.")]
    assert not found, "\n".join(found)
    assert any(name == "github" or name.startswith("github.") for _, name in _imports(real))


# Only the actions module names GitHub Actions' variables (the hook's fast path leaves a detached
# HEAD, whose teammate only the job's environment can say, to the full path).
# The action's inputs (RALLY_TEAMMATES, ...) come through the environment too: they are read there as well.
_ACTIONS_VARIABLE = re.compile(r"(GITHUB_|ACTIONS_)[A-Z_]*|RALLY_(REMOTE|TEAMMATES|MAX_PARALLEL|BOT_ALLOWLIST|BOT_LOGIN"
                               r"|GITHUB_WRITE_INTERVAL|AGENTS|ISSUE_TEXT|APPROVAL|PLANS)")
_ACTIONS_MODULE = PACKAGE / "github" / "actions.py"


def _names_of_variables(module: Path) -> Iterator[tuple[int, str]]:
    """String constants naming an Actions variable, docstrings aside."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                and _ACTIONS_VARIABLE.fullmatch(node.value)):
            yield node.lineno, node.value


def test_only_the_actions_module_reads_github_actions_environment() -> None:
    """Everything GitHub Actions tells a job is read once, in rally_gh/github/actions.py;
    others get the ActionsContext (or ``actions.is_workflow_variable``)."""
    found = [f"{module.relative_to(PACKAGE.parent)}:{line}: {name}"
             for module in sorted(PACKAGE.rglob("*.py")) if module != _ACTIONS_MODULE
             for line, name in _names_of_variables(module)]
    assert not found, "read these through rally_gh.github.actions:\n" + "\n".join(found)
    read_there = {name for _, name in _names_of_variables(_ACTIONS_MODULE)}
    assert {"GITHUB_HEAD_REF", "RALLY_BOT_LOGIN", "RALLY_GITHUB_WRITE_INTERVAL"} <= read_there  # the pattern finds them


def test_only_the_process_module_starts_child_processes() -> None:
    """rally_gh.process supervises every child; the hook's fast path alone spawns git itself
    (``os.posix_spawnp``: importing subprocess would cost it more than git's own work)."""
    spawners = {"subprocess", "os.fork", "os.posix_spawn", "os.posix_spawnp", "os.system", "os.popen",
                "multiprocessing", "pty"}
    allowed = {PACKAGE / "process.py", PACKAGE / "fasthook.py"}
    found = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if module in allowed:
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        names = {name for _, name in _imports(module)}
        calls = {f"{n.value.id}.{n.attr}" for n in ast.walk(tree)
                 if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
        found += [f"{module.relative_to(PACKAGE.parent)}: {name}" for name in sorted((names | calls) & spawners)]
    assert not found, "\n".join(found)
