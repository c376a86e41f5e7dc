"""Repository paths that must never be written: the hostile-path rules of SPEC section 1.

Used for patterns in ``rally.yml`` and for every path in a commit or tree.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

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
    """True for the files that steer git, CI or agents (never writable through a wildcard)."""
    return (
        path in _CONTROL_EXACT
        or path.startswith(".github/")
        or path.startswith(".claude/")
    )


_CONTROL_EXACT = frozenset(p for p in CONTROL_FILES if not p.endswith("/**"))


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


@dataclass(frozen=True)
class Collision:
    path: str
    other: str
    kind: str  # "case" | "unicode"


def collisions(paths: Iterable[str]) -> list[Collision]:
    """Pairs of paths that are distinct bytes but the same file on a case-insensitive or
    normalizing filesystem (macOS, Windows). Every prefix directory is compared too, so
    ``Src/a`` collides with ``src/b``'s directory."""
    seen: dict[str, str] = {}
    out: list[Collision] = []
    reported: set[tuple[str, str]] = set()
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            key = unicodedata.normalize("NFC", prefix).casefold()
            other = seen.setdefault(key, prefix)
            if other != prefix and (other, prefix) not in reported:
                reported.add((other, prefix))
                same_nfc = unicodedata.normalize("NFC", other) == unicodedata.normalize("NFC", prefix)
                out.append(Collision(prefix, other, "unicode" if same_nfc else "case"))
    return out
