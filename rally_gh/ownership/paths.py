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
        if is_dotgit_elsewhere(seg):
            return f"has a segment that is '.git' on Windows or macOS ({seg!r})"
    return None


# What macOS's HFS+ leaves out of a name when it compares two (git's
# next_hfs_char in utf8.c): zero-width joiners, direction marks and the BOM.
HFS_IGNORED = frozenset("\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                        "\u206a\u206b\u206c\u206d\u206e\u206f\ufeff")


def is_dotgit_elsewhere(segment: str) -> bool:
    """True when a path segment other than '.git' itself names the git directory
    on a filesystem git runs on, as `git fsck` judges it (``hasDotgit``):

    - NTFS (git's is_ntfs_dotgit in path.c): '.git' or its 8.3 short name
      'git~1', in any case, then only spaces and dots (which Windows drops),
      up to the end or a ':' (an alternate data stream); a '\\' separates
      directories there, so what follows each one counts too;
    - HFS+ (git's is_hfs_dotgit in utf8.c): '.git' in any case once the code
      points HFS+ ignores are taken out ('.g\u200cit', '\ufeff.git').
    """
    if "g" not in segment and "G" not in segment:
        return False  # most names: every form below has a 'g'
    for part in segment.split("\\"):
        folded = part.lower()
        for name in (".git", "git~1"):
            if folded.startswith(name) and not folded[len(name):].partition(":")[0].strip(" ."):
                return True
    return segment.translate(_HFS_DROP).lower() == ".git"


_HFS_DROP = dict.fromkeys(map(ord, HFS_IGNORED))
