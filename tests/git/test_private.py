"""A teammate's own repository (rally_gh.git.private): made, committed in, exported, and read
back by rally-gh without running or honouring anything its agent planted, on real repositories."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from rally_gh import git
from rally_gh.errors import GitError
from rally_gh.testing import git as run_git
from rally_gh.testing import init_repo, tree_files

FILES: dict[str, str | bytes | None] = {
    "README.md": "# shop\n",
    "src/api/a.py": "a\n",
    "src/api/b.py": "b\n",
    "src/web/w.js": "w\n",
    "docs/guide.md": "guide\n",
    "docs/deep/more.md": "more\n",
}
WHO = ("rally-gh", "r@example.com")
BRANCH = "rally/r/api"


def teammate_repo(repo: Path, path: Path, sparse: Sequence[str] | None = None) -> tuple[git.Repository, git.Sha]:
    """The user's repository's handle and HEAD, with a teammate repository at ``path`` on BRANCH there."""
    handle = git.open_repo(repo)
    start = git.resolve(handle, "HEAD")
    git.create_private_repo(handle, path, BRANCH, start)
    git.populate_worktree(path, sparse)
    return handle, start


def exported(handle: git.Repository, path: Path, head: str | None) -> git.Sha:
    assert head is not None
    git.export_result(handle, path, head, BRANCH)
    return git.Sha(head)


# --- what it is ------------------------------------------------------------------------------


def test_a_teammate_repository_has_its_own_refs_config_and_hooks_and_borrows_the_users_objects(
        tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    assert run_git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == BRANCH
    assert run_git(wt, "rev-parse", "HEAD").strip() == start
    assert run_git(wt, "rev-parse", "--path-format=absolute", "--git-common-dir").strip() == str(wt / ".git")
    assert run_git(wt, "for-each-ref", "--format=%(refname)").split() == [f"refs/heads/{BRANCH}"]
    assert run_git(wt, "status", "--porcelain") == ""
    assert not list((wt / ".git" / "objects").glob("??/*"))  # nothing copied: every object is borrowed
    assert (wt / ".git/objects/info/alternates").read_text() == f"{(repo / '.git' / 'objects').resolve()}\n"
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1  # the user's repo knows nothing
    assert git.ref_sha(handle, f"refs/heads/{BRANCH}") == start  # the run's branch is there from the start


def test_a_teammates_commit_is_exported_into_the_users_repository_with_exactly_its_objects(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    (wt / "src/api/a.py").write_text("a2\n")
    (wt / "src/api/new").mkdir()
    (wt / "src/api/new/n.py").write_text("n\n")
    run_git(wt, "add", "-A")
    run_git(wt, "commit", "-q", "-m", "api: work")
    head = run_git(wt, "rev-parse", "HEAD").strip()
    assert not git.object_exists(handle, head)
    # the commit, the root, src, src/api and src/api/new trees, two blobs: nothing the user had
    assert git.export_result(handle, wt, head, BRANCH) == 7
    assert git.ref_sha(handle, f"refs/heads/{BRANCH}") == head
    assert git.changed_files(handle, start, head) == ["src/api/a.py", "src/api/new/n.py"]
    run_git(repo, "fsck", "--strict", "--no-dangling")
    assert git.export_result(handle, wt, head, BRANCH) == 0  # again: nothing left to copy


def test_an_export_reads_only_the_teammates_own_object_files(tmp_path: Path) -> None:
    """Its alternates are the agent's to rewrite: an object found only through them is missing."""
    repo = init_repo(tmp_path / "repo", FILES)
    elsewhere = init_repo(tmp_path / "elsewhere", {"x.txt": "only elsewhere\n"})
    wt = tmp_path / "wt"
    handle, _ = teammate_repo(repo, wt)
    alternates = wt / ".git/objects/info/alternates"
    alternates.write_text(alternates.read_text() + f"{elsewhere / '.git' / 'objects'}\n")
    foreign = run_git(elsewhere, "rev-parse", "HEAD").strip()
    with pytest.raises(GitError, match="is missing"):
        git.export_result(handle, wt, foreign, BRANCH)
    assert not git.object_exists(handle, foreign)


def test_a_packed_teammate_repository_exports_too(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    (wt / "src/api/a.py").write_text("a2\n")
    run_git(wt, "commit", "-q", "-a", "-m", "api: work")
    run_git(wt, "gc", "-q")
    head = run_git(wt, "rev-parse", "HEAD").strip()
    assert exported(handle, wt, head) == head
    assert git.changed_files(handle, start, head) == ["src/api/a.py"]


# --- committing what an agent left ----------------------------------------------------------------


def test_commit_all_takes_staged_untracked_and_deleted_files_but_not_ignored_ones(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"keep.txt": "k", "gone.txt": "g", ".gitignore": "*.log\n"})
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    (wt / "gone.txt").unlink()
    (wt / "new.txt").write_text("n")
    (wt / "staged.txt").write_text("s")
    run_git(wt, "add", "staged.txt")
    (wt / "debug.log").write_text("noise")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert git.private_head(git.private_git_dir(wt)) == head
    assert git.changed_files(handle, start, head) == ["gone.txt", "new.txt", "staged.txt"]
    assert run_git(repo, "log", "-1", "--format=%an %s", head) == "rally-gh rally(api): work\n"
    assert git.commit_all(handle, wt, "again", WHO) is None  # nothing left
    git.remove_worktree(handle, wt)
    assert not wt.exists() and run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_commit_all_from_a_sparse_checkout_never_touches_the_paths_outside_it(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt, ["src/api"])
    assert not (wt / "docs").exists() and not (wt / "src/web").exists()
    (wt / "src/api/a.py").write_text("a2\n")
    (wt / "src/api/b.py").unlink()
    (wt / "src/api/new.py").write_text("new\n")
    (wt / "docs").mkdir()
    (wt / "docs/stray.md").write_text("written outside the checkout\n")  # kept: nothing produced is lost
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert git.changed_files(handle, start, head) == ["docs/stray.md", "src/api/a.py", "src/api/b.py", "src/api/new.py"]
    before, after = tree_files(repo, start), tree_files(repo, head)
    assert {p: after[p] for p in ("README.md", "src/web/w.js", "docs/guide.md", "docs/deep/more.md")} == \
        {p: before[p] for p in ("README.md", "src/web/w.js", "docs/guide.md", "docs/deep/more.md")}
    assert run_git(wt, "status", "--porcelain") == ""  # the index agrees with the commit
    assert not (wt / "src/web").exists()  # and the checkout is still sparse
    assert git.commit_all(handle, wt, "again", WHO) is None


def test_commit_all_takes_every_kind_of_change_in_a_full_checkout(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {**FILES, ".gitignore": "*.log\n"})
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    (wt / "src/web/w.js").unlink()
    (wt / "src/api/a.py").write_text("a2\n")
    (wt / "src/api/x.py").write_text("x\n")
    run_git(wt, "add", "src/api/x.py")
    (wt / "src/api/x.py").write_text("x, changed after staging\n")
    (wt / "debug.log").write_text("ignored\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert git.changed_files(handle, start, head) == ["src/api/a.py", "src/api/x.py", "src/web/w.js"]
    assert run_git(repo, "show", f"{head}:src/api/x.py") == "x, changed after staging\n"


def test_commit_all_leaves_the_agents_scratch_out_unless_head_tracks_it(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {**FILES, ".aider.conf.yml": "kept\n"})
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt, ["src/api"])
    (wt / ".aider.tags.cache.v4").mkdir()
    (wt / ".aider.tags.cache.v4/cache.db").write_text("scratch\n")
    (wt / ".aider.chat.history.md").write_text("scratch\n")
    run_git(wt, "add", ".aider.chat.history.md")  # even when the agent staged it
    (wt / ".aider.conf.yml").write_text("tracked at HEAD: the agent's change is work\n")
    (wt / "src/api/a.py").write_text("a2\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO, scratch=(".aider",)))
    assert git.changed_files(handle, start, head) == [".aider.conf.yml", "src/api/a.py"]


# --- nothing an agent planted runs in rally-gh's git, or changes what it reads ----------------------


def _planted(tmp_path: Path) -> tuple[Path, str]:
    """A program that leaves a mark when it runs, and the mark."""
    mark = tmp_path / "it-ran"
    program = tmp_path / "planted.sh"
    program.write_text(f"#!/bin/sh\necho ran >> {mark}\ncat\n")
    program.chmod(0o755)
    return mark, str(program)


def _config(wt: Path, text: str) -> None:
    with open(wt / ".git" / "config", "a") as config:
        config.write(text)


@pytest.mark.parametrize("plant", ["fsmonitor", "filter", "hook", "include", "include_if", "attributes",
                                   "worktree"])
def test_nothing_an_agent_configured_in_its_repository_runs_when_rally_gh_commits_its_leftovers(
        tmp_path: Path, plant: str) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    mark, program = _planted(tmp_path)
    included = tmp_path / "included.cfg"
    included.write_text(f"[core]\n\tfsmonitor = {program}\n[filter \"x\"]\n\tclean = {program}\n")
    if plant == "fsmonitor":
        _config(wt, f"[core]\n\tfsmonitor = {program}\n")
    elif plant == "filter":
        _config(wt, f"[filter \"x\"]\n\tclean = {program}\n\tsmudge = {program}\n\trequired = true\n")
        (wt / ".gitattributes").write_text("* filter=x\n")
    elif plant == "hook":
        for name in ("pre-commit", "post-commit", "post-index-change", "reference-transaction"):
            hook = wt / ".git" / "hooks" / name
            hook.parent.mkdir(exist_ok=True)
            hook.write_text(f"#!/bin/sh\necho ran >> {mark}\n")
            hook.chmod(0o755)
        _config(wt, f"[core]\n\thooksPath = {wt / '.git' / 'hooks'}\n")
    elif plant == "include":
        _config(wt, f"[include]\n\tpath = {included}\n")
        (wt / ".gitattributes").write_text("* filter=x\n")
    elif plant == "include_if":
        _config(wt, f"[includeIf \"gitdir:/\"]\n\tpath = {included}\n")
        (wt / ".gitattributes").write_text("* filter=x\n")
    elif plant == "attributes":
        (wt / ".git" / "info").mkdir(exist_ok=True)
        (wt / ".git" / "info" / "attributes").write_text("* filter=x\n")
        _config(wt, f"[filter \"x\"]\n\tclean = {program}\n")
    elif plant == "worktree":  # git would take another folder for the work tree
        elsewhere = init_repo(tmp_path / "elsewhere", {"other.txt": "another checkout\n"})
        _config(wt, f"[core]\n\tworktree = {elsewhere}\n")
    (wt / "src/api/a.py").write_text("a2\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert not mark.exists()
    assert git.changed_files(handle, start, head) == [".gitattributes", "src/api/a.py"][
        0 if (wt / ".gitattributes").exists() else 1:]
    assert git.read_blob(handle, head, "src/api/a.py") == b"a2\n"
    assert "[core]\n\trepositoryformatversion = 0" in (wt / ".git" / "config").read_text()
    assert "fsmonitor" not in (wt / ".git" / "config").read_text()


def test_a_replace_ref_in_a_teammate_repository_changes_nothing_rally_gh_commits_or_exports(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    original = run_git(wt, "rev-parse", "HEAD:src/web/w.js").strip()
    payload = run_git(wt, "hash-object", "-w", "--stdin", input="payload\n").strip()
    run_git(wt, "replace", "-f", original, payload)
    (wt / "src/api/a.py").write_text("a2\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert git.changed_files(handle, start, head) == ["src/api/a.py"]
    assert git.read_blob(handle, head, "src/web/w.js") == b"w\n"
    assert not git.object_exists(handle, payload)  # not reachable from the head: never copied


def test_rally_gh_git_and_libgit2_ignore_replace_refs_in_the_users_repository(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    original = run_git(repo, "rev-parse", "HEAD:src/web/w.js").strip()
    payload = run_git(repo, "hash-object", "-w", "--stdin", input="payload\n").strip()
    run_git(repo, "replace", "-f", original, payload)
    assert run_git(repo, "cat-file", "-p", original) == "payload\n"  # the user's own git honours it
    assert git.run_git(repo, "cat-file", "-p", original) == "w\n"  # rally-gh's does not
    handle = git.open_repo(repo)
    assert git.read_blob(handle, "HEAD", "src/web/w.js") == b"w\n"  # nor does libgit2
    wt = tmp_path / "wt"
    teammate_repo(repo, wt)  # a checkout made by rally-gh's git
    assert (wt / "src/web/w.js").read_text() == "w\n"


def test_a_link_the_agent_put_in_place_of_a_control_is_removed_never_written_through(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    users_config = (repo / ".git" / "config").read_bytes()
    (wt / ".git" / "config").unlink()
    (wt / ".git" / "config").symlink_to(repo / ".git" / "config")
    shutil.rmtree(wt / ".git" / "objects" / "info")
    (wt / ".git" / "objects" / "info").symlink_to(tmp_path / "victim-info", target_is_directory=True)
    (tmp_path / "victim-info").mkdir()
    (wt / ".git" / "commondir").write_text(f"{repo / '.git'}\n")  # its refs would be the user's
    (wt / "src/api/a.py").write_text("a2\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert (repo / ".git" / "config").read_bytes() == users_config
    assert list((tmp_path / "victim-info").iterdir()) == []
    assert not (wt / ".git" / "config").is_symlink() and not (wt / ".git" / "commondir").exists()
    assert stat.S_ISDIR((wt / ".git" / "objects" / "info").lstat().st_mode)
    assert run_git(repo, "for-each-ref", "--format=%(refname) %(objectname)").split("\n") == [
        f"refs/heads/main {start}", f"refs/heads/{BRANCH} {head}", ""]
    assert git.changed_files(handle, start, head) == ["src/api/a.py"]


def test_a_git_directory_replaced_by_a_pointer_to_the_users_is_refused(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, _ = teammate_repo(repo, wt)
    shutil.rmtree(wt / ".git")
    (wt / ".git").write_text(f"gitdir: {repo / '.git'}\n")
    (wt / "src/api/a.py").write_text("a2\n")
    before = run_git(repo, "for-each-ref") + run_git(repo, "status", "--porcelain")
    with pytest.raises(GitError, match="not the git directory rally-gh made"):
        git.commit_all(handle, wt, "rally(api): work", WHO)
    assert run_git(repo, "for-each-ref") + run_git(repo, "status", "--porcelain") == before


def test_a_teammate_repository_is_removed_without_following_its_links(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, _ = teammate_repo(repo, wt)
    (wt / "users-checkout").symlink_to(repo, target_is_directory=True)
    git.remove_worktree(handle, wt)
    assert not wt.exists() and (repo / "README.md").is_file()
    assert os.path.isdir(repo / ".git" / "objects")


def test_the_index_lock_of_an_agent_killed_while_it_ran_git_does_not_lose_its_leftovers(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", FILES)
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    (wt / ".git" / "index.lock").write_text("")
    (wt / "src/api/a.py").write_text("a2\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert git.changed_files(handle, start, head) == ["src/api/a.py"]


def test_a_teammate_repository_of_a_shallow_clone_reads_its_history_as_far_as_the_clone_goes(tmp_path: Path) -> None:
    origin = init_repo(tmp_path / "origin", FILES)
    run_git(origin, "commit", "-q", "--allow-empty", "-m", "second")
    repo = tmp_path / "repo"
    run_git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(repo))
    wt = tmp_path / "wt"
    handle, start = teammate_repo(repo, wt)
    assert run_git(wt, "log", "--format=%s").splitlines() == ["second"]
    (wt / "src/api/a.py").write_text("a2\n")
    head = exported(handle, wt, git.commit_all(handle, wt, "rally(api): work", WHO))
    assert run_git(wt, "log", "--format=%s").splitlines() == ["rally(api): work", "second"]
    assert git.changed_files(handle, start, head) == ["src/api/a.py"]
