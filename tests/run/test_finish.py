"""The end of a run (run/finish.py): what the report says about the commits it integrated."""

from __future__ import annotations

from pathlib import Path

from rally_gh import git as rgit
from rally_gh import publish
from rally_gh.run.finish import CLOSING_COMMITS, closing_commits_risk
from rally_gh.testing import commit, init_repo


def test_commits_whose_messages_close_issues_are_a_risk_and_lose_their_power_in_the_pull_request(
        tmp_path: Path) -> None:
    """A commit message's closing keyword closes what it names once the commit reaches the default
    branch: an agent (or a task from the issue's text) could close any issue through the pull request,
    whatever rally-gh's own `Closes` line says. The report names such commits, defused in the body."""
    repo_path = init_repo(tmp_path / "repo", {"README.md": "# r\n"})
    base = commit(repo_path, {"a.txt": "a\n"}, "plain work")
    commit(repo_path, {"b.txt": "b\n"}, "rally(api): add b\n\nThis also Fixes #12 and closes owner/other#3")
    commit(repo_path, {"c.txt": "c\n"}, "Resolves https://github.com/owner/repo/issues/7")
    tip = commit(repo_path, {"d.txt": "d\n"}, "prefix #4, a suffix #5, mail ada@example.com")
    repo = rgit.open_repo(repo_path)
    risk = closing_commits_risk(repo, base, tip)
    assert risk is not None and risk.startswith(CLOSING_COMMITS), risk
    assert "`Fixes #12`, `closes owner/other#3`" in risk and "`Resolves https://github.com/owner/repo/issues/7`" in risk
    assert "#4" not in risk and "#5" not in risk
    assert "Fixes #12" not in publish.defuse(risk) and "closes owner/other#3" not in publish.defuse(risk)
    assert closing_commits_risk(repo, tip, tip) is None
