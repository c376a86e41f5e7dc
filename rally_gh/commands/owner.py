"""``rally-gh owner``: who owns each path, from rally.yml or from a CODEOWNERS file.

Paths are read as git reads pathspecs: relative to the current folder
(``utils.py`` asked in ``src/click`` is ``src/click/utils.py``), ``./`` and
``..`` resolved, an absolute path inside the repository taken as the
repository path it names; one outside the repository, or escaping it with
``..``, is a usage error naming it. They come as arguments or, for the argument
``-``, one a line on standard input (blank lines skipped; a ``\\r`` before the
newline dropped). Output keeps input order, each path as it was given:

- ``tsv``: ``PATH<TAB>OWNER`` a line; OWNER is the teammate (rally.yml) or the
  matching line's owners joined by one space (CODEOWNERS), ``-`` for none.
- ``json``: ``[{"path": "src/a.py", "owner": "api"}, ...]``, ``owner`` null for none.

With rally.yml a path claimed by two teammates has no owner (nobody may write
it). Built for hundreds of thousands of paths: standard input is read in large
blocks and each block is answered and written at once.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from rally_gh.errors import UsageError
from rally_gh.userfiles import read_codeowners_file, repository_root, under

OwnersOf = Callable[[Sequence[str]], list[str | None]]

_BLOCK = 1 << 20  # bytes of standard input answered at a time


def run(cwd: Path, paths: list[str], config_path: Path | None, codeowners_path: Path | None,
        fmt: str, stdin: TextIO, stdout: TextIO) -> int:
    if not paths:
        raise UsageError("no paths given", hint="name paths as arguments, or '-' to read them from standard input")
    if config_path is not None and codeowners_path is not None:
        raise UsageError("--config and --codeowners both given", hint="answer from one of them")
    owners_of = _codeowners(cwd, codeowners_path) if codeowners_path is not None else _rally(cwd, config_path)
    to_repository = RepositoryPaths(cwd, repository_root(cwd))
    writer = _Writer(_binary(stdout), fmt)
    for block in _blocks(paths, stdin):
        writer.block(block[0], owners_of(to_repository(block)))
    writer.close()
    return 0


def _codeowners(cwd: Path, path: Path) -> OwnersOf:
    from rally_gh.ownership.codeowners import CodeownersMatcher

    text = read_codeowners_file(cwd, path, f"--codeowners {path}")
    return CodeownersMatcher.from_text(text, str(path)).owners_of_many


def _rally(cwd: Path, config_path: Path | None) -> OwnersOf:
    from rally_gh.config import find_config, load_config
    from rally_gh.ownership.rules import Ownership

    explicit = None if config_path is None else under(cwd, config_path)
    ownership = Ownership.from_config(load_config(find_config(repository_root(cwd), explicit)).config)
    owner_of = ownership.owner_of
    return lambda block: [owner_of(p) for p in block]


# A `.` or `..` segment, with what frames it in a text of paths one a line.
_DOTS = tuple(f"{before}{dots}{after}" for before in "\n/" for dots in (".", "..") for after in "/\n")


def _plain(text: str) -> bool:
    """Whether no path of ``text`` (one a line) needs resolving: no doubled, leading or
    trailing slash, no `.` or `..` segment. Substring tests, each one fast scan of the
    text as it was read (a regular expression with `(?:^|/)` costs many times more);
    a segment of dots needs "./" or ".\n", which dotfiles, common, do not have."""
    if "//" in text or "\n/" in text or "/\n" in text or text.startswith("/") or text.endswith("/"):
        return False
    if "./" not in text and ".\n" not in text and not text.endswith("."):
        return True
    framed = f"\n{text}\n"
    return not any(mark in framed for mark in _DOTS)


Block = tuple[list[str], str]  # paths, and the text they were read from, one a line


class RepositoryPaths:
    """Command-line paths to repository paths, as git reads pathspecs. A block of
    plain paths asked at the root (``git ls-files | rally-gh owner -``) is
    returned as it is: a few scans of the text it was read from decide that."""

    def __init__(self, cwd: Path, root: Path) -> None:
        self.root = root
        self.prefix = "" if cwd == root else cwd.relative_to(root).as_posix() if cwd.is_relative_to(root) else ""

    def __call__(self, block: Block) -> list[str]:
        paths, text = block
        if not self.prefix and _plain(text):
            return paths
        return [self.one(p) for p in paths]

    def one(self, given: str) -> str:
        if given.startswith("/"):
            path = self._inside(given)
        else:
            path = posixpath.normpath(f"{self.prefix}/{given}" if self.prefix else given)
            if path == ".." or path.startswith("../"):
                raise UsageError(f"{given!r} escapes the repository ({self.root}) with '..'",
                                 hint="name a path inside the repository, relative to the current folder")
        if path == ".":
            raise UsageError(f"{given!r} is the repository's root folder, not a path in it",
                             hint="name files or folders inside the repository")
        return path

    def _inside(self, given: str) -> str:
        """The repository path an absolute path names (through symlinks if need be)."""
        for path, root in ((os.path.normpath(given), str(self.root)),
                           (os.path.realpath(given), os.path.realpath(self.root))):
            relative = posixpath.relpath(path, root)
            if relative != ".." and not relative.startswith("../"):
                return relative
        raise UsageError(f"{given!r} is outside the repository ({self.root})",
                         hint="name a path inside the repository, relative to the current folder")


def _blocks(arguments: list[str], stdin: TextIO) -> Iterator[Block]:
    """The paths, in order, a block at a time; ``-`` reads standard input there."""
    pending: list[str] = []
    for argument in arguments:
        if argument != "-":
            pending.append(argument)
            continue
        if pending:
            yield pending, "\n".join(pending)
            pending = []
        yield from _stdin_blocks(stdin)
    if pending:
        yield pending, "\n".join(pending)


def _stdin_blocks(stdin: TextIO) -> Iterator[Block]:
    raw: BinaryIO | None = getattr(stdin, "buffer", None)
    if raw is None:  # a text stream with no bytes under it (tests)
        lines = [line for line in (line.rstrip("\r\n") for line in stdin) if line]
        yield lines, "\n".join(lines)
        return
    carry = b""
    while True:
        data = raw.read(_BLOCK)
        if not data:
            break
        data = carry + data
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        block = _decode_lines(data[:cut])
        if block[0]:
            yield block
    if carry:
        block = _decode_lines(carry)
        if block[0]:
            yield block


def _decode_lines(data: bytes) -> Block:
    # Git paths are bytes; surrogateescape carries a non-UTF-8 name through unchanged.
    text = data.decode("utf-8", "surrogateescape").replace("\r\n", "\n")
    return [line for line in text.split("\n") if line], text


class _TextBytes:
    """Bytes written to a text stream that has no buffer under it (tests)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        self.stream.flush()


def _binary(stdout: TextIO) -> BinaryIO | _TextBytes:
    raw = getattr(stdout, "buffer", None)
    if raw is None:
        return _TextBytes(stdout)
    stdout.flush()  # anything already written as text goes first
    return raw  # type: ignore[no-any-return]


class _Writer:
    """Writes answers a block at a time, in the chosen format."""

    def __init__(self, out: BinaryIO | _TextBytes, fmt: str) -> None:
        self.out = out
        self.json = fmt == "json"
        self.written = 0

    def block(self, paths: list[str], owners: list[str | None]) -> None:
        if not paths:
            return
        if self.json:
            text = ",\n".join(json.dumps({"path": p, "owner": o}, ensure_ascii=False) for p, o in zip(paths, owners))
            text = ("[\n" if not self.written else ",\n") + text
        else:
            text = "".join([f"{p}\t{o or '-'}\n" for p, o in zip(paths, owners)])
        self.out.write(text.encode("utf-8", "surrogateescape"))
        self.written += len(paths)

    def close(self) -> None:
        if self.json:
            self.out.write(b"\n]\n" if self.written else b"[]\n")
        self.out.flush()
