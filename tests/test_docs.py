"""The docs match the product: every map they show validates."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from rally_gh.commands import validate

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

# A fenced ```yaml block, at any indentation (a block inside a list item is indented).
YAML_FENCE = re.compile(r"^(?P<indent>[ \t]*)```ya?ml[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


def yaml_maps() -> list[tuple[str, str]]:
    """Every ```yaml block of README.md and docs/*.md that is a map (has ``teammates:``),
    as (``file:line``, its text)."""
    maps = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in YAML_FENCE.finditer(text):
            body = "".join(line[len(m["indent"]):] + "\n" for line in m["body"].splitlines())
            if re.search(r"^teammates:", body, re.M):
                line = text.count("\n", 0, m.start()) + 2
                maps.append((f"{doc.relative_to(REPO_ROOT)}:{line}", body))
    return maps


def test_the_docs_show_maps() -> None:
    where = [w for w, _ in yaml_maps()]
    # the README's map, docs/rally-yml.md's complete example, docs/agents.md's agents
    assert any(w.startswith("README.md:") for w in where)
    assert any(w.startswith("docs/rally-yml.md:") for w in where)
    assert any(w.startswith("docs/agents.md:") for w in where)


@pytest.mark.parametrize(("where", "text"), yaml_maps(), ids=[w for w, _ in yaml_maps()])
def test_every_map_in_the_docs_validates(tmp_path: Path, where: str, text: str) -> None:
    path = tmp_path / "rally.yml"
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    code = validate.run(tmp_path, path, "text", out)
    assert code == 0, f"the map at {where} does not validate:\n{out.getvalue()}"
    assert "valid (0 errors" in out.getvalue(), out.getvalue()
