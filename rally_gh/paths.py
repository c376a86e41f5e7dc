"""Repository paths that must never be written: the hostile-path rules of SPEC section 1.

Used for patterns in ``rally.yml`` and for every path in a commit or tree, and
by the hook's fast path, so it imports nothing.
"""

from __future__ import annotations

CONTROL_FILES: tuple[str, ...] = (
    "rally.yml",
    ".github/**",
    ".pre-commit-config.yaml",
    ".pre-commit-hooks.yaml",
    "CODEOWNERS",
    ".gitattributes",
    ".gitmodules",
    "AGENTS.md",
    "CLAUDE.md",
    ".claude/**",
    ".mcp.json",
)


def is_control_file(path: str) -> bool:
    """True for the files that steer git, CI or agents (never writable through a wildcard).

    Read as the patterns they are: a name without a slash counts at any depth
    (git applies ``src/.gitattributes``, GitHub reads ``docs/CODEOWNERS``, agents
    read ``src/AGENTS.md``), ``.github/**`` and ``.claude/**`` at the root.
    """
    return (
        path.rpartition("/")[2] in _CONTROL_NAMES
        or path.startswith(".github/")
        or path.startswith(".claude/")
    )


_CONTROL_NAMES = frozenset(p for p in CONTROL_FILES if not p.endswith("/**"))


def hostile_reason(path: str) -> str | None:
    """Why ``path`` may not appear in a repository we touch, or None when it is fine."""
    if not path:
        return "empty path"
    if "\x00" in path:
        return "contains a NUL byte"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "contains a control character"
    if path.startswith("/"):
        return "absolute path"
    for seg in path.split("/"):
        if seg == "..":
            return "has a '..' segment"
        if seg.casefold() == ".git":
            return "has a '.git' segment"
    return None
