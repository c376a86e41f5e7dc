"""Generated ``exclusive_write`` lists, shared by the property tests of rules and codeowners."""

from __future__ import annotations

from hypothesis import strategies as st

PIECES = st.sampled_from(["src", "docs", "a", "*.py", "*", "**", "x?"])


@st.composite
def pattern_lists(draw: st.DrawFn, pieces: st.SearchStrategy[str] = PIECES) -> list[str]:
    """One teammate's list: one to four patterns of ``pieces``, anchored or not, ``!`` or not,
    directory-only or not, with at least one pattern that grants."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        body = "/".join(draw(st.lists(pieces, min_size=1, max_size=3)))
        out.append(draw(st.sampled_from(["", "", "!", "/"])) + body + draw(st.sampled_from(["", "/"])))
    if all(p.startswith("!") for p in out):
        out[0] = out[0][1:]
    return out
