"""English for counts and names in what a person reads: ``1 file``, ``2 files``,
``models' work``, ``api's work``. One place, so no message says ``path(s)``."""

from __future__ import annotations

import re
from collections.abc import Sized

# Nouns whose plural is not the singular plus "s"; everything else takes "s".
_IRREGULAR = {"was": "were", "is": "are", "has": "have", "entry": "entries", "dependency": "dependencies"}


def plural(count: int | Sized, noun: str, many: str | None = None) -> str:
    """``count`` and the noun that agrees with it: ``plural(1, "file")`` is ``1 file``,
    ``plural(["a", "b"], "path")`` is ``2 paths``; ``many`` spells an irregular plural."""
    n = count if isinstance(count, int) else len(count)
    return f"{n} {noun_for(n, noun, many)}"


def noun_for(count: int | Sized, noun: str, many: str | None = None) -> str:
    """The noun alone, agreeing with ``count`` (``noun_for(2, "was")`` is ``were``)."""
    n = count if isinstance(count, int) else len(count)
    if n == 1:
        return noun
    if many is not None:
        return many
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    return noun + "s"


def possessive(name: str) -> str:
    """``api's``, but ``models'``: a name that ends in s takes the apostrophe alone."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def aside(text: str) -> str:
    """``text`` added to what precedes it: `` (text)``, or ``: text`` when ``text`` has
    parentheses of its own (``twice its timeout (after 2 attempts))`` reads badly)."""
    if not text:
        return ""
    return f": {text}" if "(" in text or ")" in text else f" ({text})"


def code_fence(text: str, least: int = 3) -> str:
    """The backticks that fence ``text`` as code it cannot end early: one more than its longest run of
    them, and at least ``least`` (3 for a block, 1 for inline code). Text someone else wrote (an agent's
    plan or output, a review comment, a file name) is shown this way and never acts as Markdown."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(least, longest + 1)
