"""References (rally_gh.git.refs): reading them, listing branches, the
compare-and-swap move. Real repositories."""

from __future__ import annotations

from pathlib import Path

from rally_gh import git as rgit
from rally_gh.testing import commit, git, init_repo


def test_a_ref_to_something_that_is_not_a_commit_exists_but_has_no_commit(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    tree = git(path, "rev-parse", "HEAD^{tree}").strip()
    git(path, "update-ref", "refs/rally/odd", tree)
    repo = rgit.open_repo(path)
    assert rgit.ref_exists(repo, "refs/rally/odd") and rgit.ref_sha(repo, "refs/rally/odd") is None
    assert rgit.ref_target(repo, "refs/rally/odd") == rgit.RefTarget(rgit.Sha(tree), "tree")
    assert not rgit.ref_exists(repo, "refs/heads/nope") and rgit.ref_target(repo, "refs/heads/nope") is None


def test_ref_names_leave_a_remotes_default_branch_out(tmp_path: Path) -> None:
    upstream = init_repo(tmp_path / "upstream", {"README": "r\n"})
    git(tmp_path, "clone", "-q", str(upstream), "clone")
    path = tmp_path / "clone"
    git(path, "tag", "v1")
    repo = rgit.open_repo(path)
    assert rgit.ref_names(repo, "refs/heads", "refs/remotes", "refs/tags") == \
        ["refs/heads/main", "refs/remotes/origin/main", "refs/tags/v1"]


def test_run_branches_are_listed_with_their_tip_times_and_deleted_merged_or_not(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    git(path, "checkout", "-q", "-b", "rally/r1/api")
    commit(path, {"api.txt": "a\n"}, "work that is nowhere else")
    git(path, "checkout", "-q", "main")
    git(path, "branch", "rally/r1/web")
    git(path, "branch", "other/r1/db")
    repo = rgit.open_repo(path)
    assert rgit.branches_with_times(repo, ["rally"]) == [("rally/r1/api", 1767225600.0), ("rally/r1/web", 1767225600.0)]
    rgit.delete_branches(repo, ["rally/r1/api", "rally/r1/web"])
    assert rgit.branches_with_times(repo, ["rally"]) == []
    assert rgit.branch_names(rgit.open_repo(path)) == ["main", "other/r1/db"]


def test_a_ref_moves_only_from_where_the_caller_saw_it(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    first = git(path, "rev-parse", "HEAD").strip()
    second = commit(path, {"a": "1\n"}, "second")
    repo = rgit.open_repo(path)
    assert rgit.update_ref_if(repo, "refs/rally/x", first, None)
    assert not rgit.update_ref_if(repo, "refs/rally/x", second, None)  # it exists now
    assert not rgit.update_ref_if(repo, "refs/rally/x", second, second)
    assert rgit.update_ref_if(repo, "refs/rally/x", second, first)
    assert rgit.ref_sha(repo, "refs/rally/x") == second
