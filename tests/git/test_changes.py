"""What commits, ranges and the index write (rally_gh.git.changes), on real repositories."""

from __future__ import annotations

from pathlib import Path

from rally_gh import git as rgit
from rally_gh.testing import commit, git, init_repo


def test_commits_between_are_shas_oldest_first_without_the_hidden_ones(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    base = git(path, "rev-parse", "HEAD").strip()
    shas = [commit(path, {f"f{i}": f"{i}\n"}, f"step {i}") for i in range(3)]
    repo = rgit.open_repo(path)
    assert rgit.commits_between(repo, base, shas[-1]) == shas
    assert rgit.commits_between(repo, base, shas[-1], also_hide=(shas[0],)) == shas[1:]
    assert rgit.commits_between(repo, None, shas[0]) == [base, shas[0]]


def test_a_merge_writes_only_what_differs_from_every_parent(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n", "shared": "a\nb\nc\n"})
    base = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "-b", "side", base)
    commit(path, {"side.txt": "s\n", "shared": "a\nb\nc side\n"}, "side")
    git(path, "checkout", "-q", "main")
    commit(path, {"main.txt": "m\n", "shared": "a main\nb\nc\n"}, "main")
    git(path, "merge", "-q", "--no-ff", "--no-commit", "side")  # shared merges to "a main, b, c side"
    commit(path, {"extra.txt": "made in the merge\n"}, "merge")
    merge = git(path, "rev-parse", "HEAD").strip()
    changes = rgit.commit_changes(rgit.open_repo(path), merge)
    assert [(c.path, c.status) for c in changes] == [("extra.txt", "added"), ("shared", "modified")]
    assert git(path, "rev-list", "--parents", "-n1", merge).count(" ") == 2


def test_patch_ids_are_equal_for_the_same_change_and_absent_for_an_empty_commit(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    base = git(path, "rev-parse", "HEAD").strip()
    fix = commit(path, {"fix.txt": "the fix\n"}, "a fix")
    empty = commit(path, {}, "nothing")
    git(path, "checkout", "-q", "-b", "other", base)
    commit(path, {"other.txt": "o\n"}, "something else first")
    git(path, "cherry-pick", fix)
    picked = git(path, "rev-parse", "HEAD").strip()
    repo = rgit.open_repo(path)
    ids = rgit.patch_ids(repo, [fix, empty, picked])
    assert set(ids) == {fix, picked} and ids[fix] == ids[picked]


def test_non_merge_commits_leave_merges_and_excluded_history_out(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    base = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "-b", "side", base)
    side = commit(path, {"side.txt": "s\n"}, "side")
    git(path, "checkout", "-q", "main")
    main = commit(path, {"main.txt": "m\n"}, "main")
    git(path, "merge", "-q", "--no-ff", "-m", "merge", "side")
    repo = rgit.open_repo(path)
    assert sorted(rgit.non_merge_commits(repo, ["refs/heads/main"], [base])) == sorted([side, main])
    assert rgit.non_merge_commits(repo, ["refs/heads/main"], ["refs/heads/side"]) == [main]


def test_index_paths_list_what_is_staged_before_the_first_commit(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo")
    (path / "src").mkdir()
    (path / "src" / "a.py").write_text("a\n")
    (path / "untracked").write_text("u\n")
    git(path, "add", "src")
    assert rgit.index_paths(rgit.open_repo(path)) == ["src/a.py"]
