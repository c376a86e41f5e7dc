"""The docs match the product: every map they show validates, the README names every doc,
no doc points at the spec (not part of the product), and hints point at pages a pip user can open."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest

from rally_gh import PROJECT_URL, __version__, config, docs_url, tasks
from rally_gh.commands import validate
from rally_gh.errors import RallyError

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
    code = validate.run(tmp_path, out, config_path=path)
    assert code == 0, f"the map at {where} does not validate:\n{out.getvalue()}"
    assert "valid (0 errors" in out.getvalue(), out.getvalue()


def test_the_readme_names_every_doc() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    listed = readme.split("## Documentation", 1)[1]
    named = set(re.findall(r"\]\((docs/[^)#]+\.md)\)", listed))
    assert named == {f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md")}


def test_no_doc_cites_the_spec() -> None:
    # The spec is the project's own contract, not something a user has: docs say what they mean.
    files = [*DOCS, *sorted((REPO_ROOT / "docs").rglob("*.yml"))]
    cites = [f"{f.relative_to(REPO_ROOT)}:{n}" for f in files
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if re.search(r"\bSPEC\b", line)]
    assert cites == []


def test_hints_point_at_the_project_s_pages_not_at_files_of_a_checkout() -> None:
    assert docs_url("rally-yml.md") == f"{PROJECT_URL}/blob/v{__version__}/docs/rally-yml.md"
    assert config.DOCS == docs_url("rally-yml.md") and tasks.DOCS == docs_url("plans.md")
    # No string in the package names one of our docs by its place in a checkout.
    ours = "|".join(re.escape(p.name) for p in (REPO_ROOT / "docs").glob("*.md"))
    found = []
    for module in sorted((REPO_ROOT / "rally_gh").rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for m in re.finditer(rf"(?<![/\w])docs/({ours})", node.value):
                    found.append(f"{module.relative_to(REPO_ROOT)}:{node.lineno}: {m.group()}")
    assert found == []


def test_a_missing_map_points_at_the_docs_on_the_web(tmp_path: Path) -> None:
    with pytest.raises(RallyError) as err:
        config.find_config(tmp_path)
    assert f"({PROJECT_URL}/blob/v{__version__}/docs/rally-yml.md)" in str(err.value)
    assert "`rally-gh init`" in str(err.value)
