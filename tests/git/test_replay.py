"""The in-memory replay engine (rally_gh.git.replay): one commit's change written
onto another tip, in the object database only.

What ``replay_commit`` promises: the three-way merge of the commit's parent, the
tip and the commit, as git's own rebase makes it; the message, author and author
date kept; an empty commit kept, a commit whose change is on the tip already
dropped; a conflict or a hostile path returned as a value naming the files, with
nothing written that anything points at. Real repositories, pinned identities
and dates; the results are compared with what `git rebase` makes.
"""

from __future__ import annotations

import os
import subprocess
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from rally_gh import git as rgit
from rally_gh.errors import GitError
from rally_gh.git import Identity, ReplayedCommit, Sha
from rally_gh.testing import commit, git, git_env, init_repo

COMMITTER = Identity("rally-gh", "rally-gh@users.noreply.github.com", 1767225600, 0)
TEXT = "".join(f"line {i}\n" for i in range(12))

Files = Mapping[str, "str | bytes | None"]


def repo_with(tmp_path: Path, files: Files) -> tuple[Path, str]:
    """A repository whose main holds ``files`` in one commit, and that commit."""
    path = init_repo(tmp_path / "repo", files)
    return path, git(path, "rev-parse", "HEAD").strip()


def branch(path: Path, name: str, start: str, commits: Sequence[Files],
           env: Mapping[str, str] | None = None) -> list[str]:
    """Commits on a new branch ``name`` from ``start``, oldest first; main stays checked out."""
    git(path, "checkout", "-q", "-B", name, start)
    shas = [commit(path, files, f"{name}: step {i}\n\nwhy {name} {i}\n", env=env) for i, files in enumerate(commits)]
    git(path, "checkout", "-q", "main")
    return shas


def replay(path: Path, sha: str, onto: str) -> ReplayedCommit:
    with rgit.replay_session() as cache:
        return rgit.replay_commit(rgit.open_repo(path), sha, onto, COMMITTER, cache)


def replay_all(path: Path, shas: Sequence[str], onto: str) -> str:
    """Each commit onto the previous one's replay, as integration does; the last tip."""
    repo = rgit.open_repo(path)
    tip = onto
    with rgit.replay_session() as cache:
        for sha in shas:
            done = rgit.replay_commit(repo, sha, tip, COMMITTER, cache)
            assert done.new_sha is not None, done
            tip = done.new_sha
    return tip


def rebased_tree(path: Path, onto: str, start: str, head: str) -> str:
    """The tree `git rebase --onto` makes of ``start..head``, in a scratch worktree."""
    scratch = path.parent / "rebase-wt"
    git(path, "worktree", "add", "-q", "--detach", str(scratch), onto)
    try:
        git(scratch, "rebase", "-q", "--onto", onto, start, head)
        return tree(scratch, "HEAD")
    finally:
        git(path, "worktree", "remove", "--force", str(scratch))


def tree(path: Path, rev: str) -> str:
    return git(path, "rev-parse", f"{rev}^{{tree}}").strip()


def raw_commit(path: Path, sha: str) -> bytes:
    return subprocess.run(["git", "cat-file", "commit", sha], cwd=path, env=git_env(), stdout=subprocess.PIPE,
                          check=True).stdout


def untouched(path: Path) -> str:
    """What a replay must leave alone: refs, HEAD, the index and the work tree."""
    return git(path, "for-each-ref", "--format=%(refname) %(objectname)") + git(path, "status", "--porcelain") \
        + (path / ".git" / "HEAD").read_text()


# --- Replaying ---------------------------------------------------------------------


def test_a_commit_replayed_onto_a_moved_base_is_what_git_rebase_makes(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"a.txt": TEXT, "lib/core.py": "x = 1\n"})
    tip = commit(path, {"a.txt": TEXT.replace("line 1\n", "line 1 tip\n"), "tip.txt": "t\n"}, "the base moves")
    (topic,) = branch(path, "topic", base, [{"a.txt": TEXT.replace("line 10\n", "line 10 topic\n"), "lib/new.py": "n\n"}])
    before = untouched(path)
    done = replay(path, topic, tip)
    assert done.new_sha is not None and not done.conflicts and not done.hostile and not done.became_empty
    assert untouched(path) == before  # the object database only
    assert tree(path, done.new_sha) == rebased_tree(path, tip, base, topic)
    assert git(path, "rev-parse", f"{done.new_sha}^").strip() == tip
    assert replay(path, topic, tip).new_sha == done.new_sha  # a pinned committer: the same id again


def test_a_stack_replays_commit_by_commit_like_git_rebase(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"a.txt": TEXT, "old/f.py": "body\n", "keep/k": "k\n"})
    tip = commit(path, {"a.txt": TEXT.replace("line 0\n", "line 0 tip\n"), "keep/other": "o\n"}, "the base moves")
    stack = branch(path, "topic", base, [
        {"src/x/y/z.py": "deep\n", "a.txt": TEXT.replace("line 11\n", "line 11 topic\n")},
        {"old/f.py": None, "new/f.py": "body\n"},  # a rename: a delete and an add
        {"src/x/y/z.py": "deeper\n", "keep/k": None},
    ])
    new_tip = replay_all(path, stack, tip)
    assert tree(path, new_tip) == rebased_tree(path, tip, base, stack[-1])
    assert git(path, "log", "--format=%s", f"{tip}..{new_tip}").split("\n")[:3] == \
        ["topic: step 2", "topic: step 1", "topic: step 0"]
    assert git(path, "rev-list", "--count", f"{tip}..{new_tip}").strip() == "3"


def test_directories_the_commit_does_not_touch_keep_their_tree_ids(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"big/a/1": "1\n", "big/b/2": "2\n", "mine/m": "m\n"})
    tip = commit(path, {"big/a/1": "1 moved on\n"}, "the base moves")
    (topic,) = branch(path, "topic", base, [{"mine/m": "mine\n"}])
    done = replay(path, topic, tip)
    assert done.new_sha is not None
    assert git(path, "rev-parse", f"{done.new_sha}:big").strip() == git(path, "rev-parse", f"{tip}:big").strip()


def test_the_message_author_and_author_date_are_kept_and_the_committer_is_the_replayer(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    tip = commit(path, {"base.txt": "b\n"}, "the base moves")
    git(path, "checkout", "-q", "-b", "topic", base)
    (path / "t.txt").write_text("t\n")
    (path.parent / "message").write_bytes("caf\xe9: a title\n\nbody line\n\n  indented\n".encode("latin-1"))
    git(path, "add", "-A")
    git(path, "-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "-F", str(path.parent / "message"),
        env={"GIT_AUTHOR_NAME": "Bob Agent", "GIT_AUTHOR_EMAIL": "bob@example.com",
             "GIT_AUTHOR_DATE": "2026-02-03T04:05:06+02:00"})
    topic = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "main")
    done = replay(path, topic, tip)
    assert done.new_sha is not None

    old_header, old_message = raw_commit(path, topic).split(b"\n\n", 1)
    new_header, new_message = raw_commit(path, done.new_sha).split(b"\n\n", 1)
    assert new_message == old_message == "caf\xe9: a title\n\nbody line\n\n  indented\n".encode("latin-1")

    def fields(header: bytes, name: bytes) -> list[bytes]:
        return [line for line in header.splitlines() if line.startswith(name + b" ")]

    assert fields(new_header, b"author") == fields(old_header, b"author") == \
        [b"author Bob Agent <bob@example.com> 1770084306 +0200"]
    assert fields(new_header, b"encoding") == fields(old_header, b"encoding") == [b"encoding ISO-8859-1"]
    assert fields(new_header, b"committer") == [b"committer rally-gh <rally-gh@users.noreply.github.com> 1767225600 +0000"]


def test_both_sides_changing_one_file_apart_merge_and_each_keeps_its_mode_change(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"doc.txt": TEXT, "run.sh": "echo\n"})
    os.chmod(path / "run.sh", 0o755)
    tip = commit(path, {"doc.txt": TEXT.replace("line 1\n", "line 1 tip\n")}, "run.sh runs")
    (topic,) = branch(path, "topic", base, [{"doc.txt": TEXT.replace("line 10\n", "line 10 topic\n"),
                                               "run.sh": "echo topic\n"}])
    done = replay(path, topic, tip)
    assert done.new_sha is not None
    assert tree(path, done.new_sha) == rebased_tree(path, tip, base, topic)
    assert git(path, "ls-tree", done.new_sha, "run.sh").split()[0] == "100755"


def test_a_file_becoming_a_directory_replays(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"src/x": "file\n", "other": "o\n"})
    tip = commit(path, {"other": "moved on\n"}, "the base moves")
    (topic,) = branch(path, "topic", base, [{"src/x": None, "src/x/y": "now a directory\n"}])
    done = replay(path, topic, tip)
    assert done.new_sha is not None and tree(path, done.new_sha) == rebased_tree(path, tip, base, topic)


# --- Empty commits -----------------------------------------------------------------


def test_a_commit_empty_from_the_start_is_kept(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    tip = commit(path, {"base.txt": "b\n"}, "the base moves")
    (empty,) = branch(path, "topic", base, [{}])
    done = replay(path, empty, tip)
    assert done.new_sha is not None and not done.became_empty
    assert tree(path, done.new_sha) == tree(path, tip)
    assert git(path, "log", "-1", "--format=%B", done.new_sha) == git(path, "log", "-1", "--format=%B", empty)


@pytest.mark.parametrize("tip_files", [{"fix.txt": "the fix\n"}, {"fix.txt": "the fix\n", "more.txt": "m\n"}])
def test_a_commit_whose_change_is_on_the_tip_already_is_dropped(tmp_path: Path, tip_files: Files) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    tip = commit(path, tip_files, "someone landed the same fix")
    (same,) = branch(path, "topic", base, [{"fix.txt": "the fix\n"}])
    before = untouched(path)
    assert replay(path, same, tip) == ReplayedCommit(None, became_empty=True)
    assert untouched(path) == before


# --- Conflicts, as values naming the files ----------------------------------------


def _link(path: Path, name: str, target: str) -> None:
    if (path / name).is_symlink() or (path / name).exists():
        (path / name).unlink()
    (path / name).symlink_to(target)


CONFLICTS: dict[str, tuple[Files, Files, Files, str, str]] = {
    # name: (base, tip, topic, the path named, its kind)
    "content": ({"a.txt": TEXT}, {"a.txt": TEXT.replace("line 5\n", "tip\n")},
                {"a.txt": TEXT.replace("line 5\n", "topic\n")}, "a.txt", "content"),
    "add/add": ({"README": "r\n"}, {"new.txt": "tip\n"}, {"new.txt": "topic\n"}, "new.txt", "add/add"),
    "modify/delete": ({"a.txt": TEXT}, {"a.txt": None}, {"a.txt": TEXT + "more\n"}, "a.txt", "modify/delete"),
    "delete/modify": ({"a.txt": TEXT}, {"a.txt": TEXT + "more\n"}, {"a.txt": None}, "a.txt", "modify/delete"),
    "binary": ({"logo.png": bytes(range(256)) * 4}, {"logo.png": b"\x00tip" + bytes(range(256)) * 4},
               {"logo.png": bytes(range(256)) * 4 + b"\x00topic"}, "logo.png", "binary"),
    "not utf-8": ({"latin.txt": TEXT.encode("latin-1")}, {"latin.txt": "caf\xe9\n".encode("latin-1") + TEXT.encode()},
                  {"latin.txt": TEXT.encode() + "th\xe9\n".encode("latin-1")}, "latin.txt", "content"),
    "file/directory": ({"README": "r\n"}, {"src/x": "a file\n"}, {"src/x/y": "in a directory\n"}, "src/x/y",
                       "directory/file"),
    "directory/file": ({"README": "r\n"}, {"src/x/y": "in a directory\n"}, {"src/x": "a file\n"}, "src/x",
                       "directory/file"),
}


@pytest.mark.parametrize("case", list(CONFLICTS))
def test_a_conflict_is_a_value_naming_the_file_and_nothing_moves(tmp_path: Path, case: str) -> None:
    base_files, tip_files, topic_files, where, kind = CONFLICTS[case]
    path, base = repo_with(tmp_path, base_files)
    tip = commit(path, tip_files, "the tip's side")
    (topic,) = branch(path, "topic", base, [topic_files])
    before = untouched(path)
    done = replay(path, topic, tip)
    assert done.new_sha is None and not done.became_empty and not done.hostile
    assert [(c.path, c.kind) for c in done.conflicts] == [(where, kind)]
    assert untouched(path) == before


def test_every_conflicting_file_is_named_and_the_clean_ones_are_not(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"a.txt": TEXT, "b.txt": TEXT, "c.txt": TEXT})
    tip = commit(path, {"a.txt": "tip\n", "b.txt": "tip\n"}, "the tip's side")
    (topic,) = branch(path, "topic", base, [{"a.txt": "topic\n", "b.txt": "topic\n", "c.txt": "topic\n"}])
    done = replay(path, topic, tip)
    assert done.new_sha is None
    assert sorted((c.path, c.kind) for c in done.conflicts) == [("a.txt", "content"), ("b.txt", "content")]


def test_a_symlink_against_a_file_conflicts(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"cfg": "value\n", "target": "t\n"})
    _link(path, "cfg", "target")
    tip = commit(path, {}, "cfg becomes a link")
    (topic,) = branch(path, "topic", base, [{"cfg": "value 2\n"}])
    assert [(c.path, c.kind) for c in replay(path, topic, tip).conflicts] == [("cfg", "symlink/file")]


def test_two_symlinks_to_different_targets_conflict(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"a": "a\n", "b": "b\n", "c": "c\n"})
    _link(path, "link", "a")
    base = commit(path, {}, "a link")
    _link(path, "link", "b")
    tip = commit(path, {}, "the link moves to b")
    git(path, "checkout", "-q", "-b", "topic", base)
    _link(path, "link", "c")
    topic = commit(path, {}, "the link moves to c")
    git(path, "checkout", "-q", "main")
    assert [(c.path, c.kind) for c in replay(path, topic, tip).conflicts] == [("link", "symlink")]


def test_both_sides_moving_a_submodule_conflict(tmp_path: Path) -> None:
    path = init_repo(tmp_path / "repo", {"README": "r\n"})
    one, two, three = ("1" * 40, "2" * 40, "3" * 40)

    def gitlink_commit(sha: str, message: str) -> str:
        git(path, "update-index", "--add", "--cacheinfo", f"160000,{sha},vendor/lib")
        git(path, "commit", "-q", "--no-verify", "-m", message)
        return git(path, "rev-parse", "HEAD").strip()

    base = gitlink_commit(one, "a submodule")
    tip = gitlink_commit(two, "the submodule moves on main")
    git(path, "checkout", "-q", "-b", "topic", base)
    topic = gitlink_commit(three, "the submodule moves on topic")
    git(path, "checkout", "-q", "main")
    assert [(c.path, c.kind) for c in replay(path, topic, tip).conflicts] == [("vendor/lib", "submodule")]


def test_adding_one_file_with_two_modes_conflicts(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    tip = commit(path, {"tool": "#!/bin/sh\n"}, "a tool")
    git(path, "checkout", "-q", "-b", "topic", base)
    (path / "tool").write_text("#!/bin/sh\n")
    os.chmod(path / "tool", 0o755)
    topic = commit(path, {}, "the same tool, executable")
    git(path, "checkout", "-q", "main")
    assert [(c.path, c.kind) for c in replay(path, topic, tip).conflicts] == [("tool", "mode")]


# --- What cannot or must not be replayed ------------------------------------------


def test_hostile_paths_are_refused_and_named(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    (topic,) = branch(path, "topic", base, [{"ok.txt": "1\n", "bad\x01name": "x\n"}])
    done = replay(path, topic, base)
    assert done.new_sha is None and [p for p, _ in done.hostile] == ["bad\x01name"]
    assert "control character" in done.hostile[0][1]


@pytest.mark.parametrize("ours,theirs", [
    ("docs/README", "docs/readme"),
    (unicodedata.normalize("NFC", "caf\xe9.txt"), unicodedata.normalize("NFD", "caf\xe9.txt")),
])
def test_a_name_that_is_the_same_file_on_macos_or_windows_is_refused(tmp_path: Path, ours: str, theirs: str) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    tip = commit(path, {ours: "ours\n"}, "the tip has one")
    (topic,) = branch(path, "topic", base, [{theirs: "theirs\n"}])
    done = replay(path, topic, tip)
    assert done.new_sha is None and [p for p, _ in done.hostile] == [theirs]
    assert done.hostile[0][1] == f"differs only by case or Unicode normalization from {ours!r}"


def test_only_commits_with_one_parent_replay(tmp_path: Path) -> None:
    path, root = repo_with(tmp_path, {"README": "r\n"})
    (side,) = branch(path, "side", root, [{"side.txt": "s\n"}])
    commit(path, {"main.txt": "m\n"}, "main moves")
    git(path, "merge", "-q", "--no-edit", "--no-ff", "side")
    merge = git(path, "rev-parse", "HEAD").strip()
    for sha in (merge, root):
        with pytest.raises(GitError, match="only commits with one parent can be replayed"):
            replay(path, sha, side)


# --- Reading a stack ---------------------------------------------------------------


def test_commit_summaries_list_a_stack_oldest_first_with_parents_and_titles(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    stack = branch(path, "topic", base, [{"a": "1\n"}, {"b": "2\n"}, {"c": "3\n"}])
    summaries = rgit.commit_summaries(rgit.open_repo(path), base, stack[-1])
    assert [s.sha for s in summaries] == stack
    assert [s.parents for s in summaries] == [(Sha(base),), (Sha(stack[0]),), (Sha(stack[1]),)]
    assert [s.title for s in summaries] == ["topic: step 0", "topic: step 1", "topic: step 2"]


def test_a_commit_and_its_replay_have_one_replay_key_and_another_message_another(tmp_path: Path) -> None:
    path, base = repo_with(tmp_path, {"README": "r\n"})
    tip = commit(path, {"base.txt": "b\n"}, "the base moves")
    (topic,) = branch(path, "topic", base, [{"t.txt": "t\n"}])
    (reworded,) = branch(path, "reworded", base, [{"t.txt": "t\n"}])  # the same change, its own message
    replayed = replay(path, topic, tip).new_sha
    assert replayed is not None
    repo, cache = rgit.open_repo(path), rgit.new_tree_cache()
    assert rgit.replay_key(repo, replayed, cache) == rgit.replay_key(repo, topic, cache)
    assert rgit.replay_key(repo, reworded, cache) != rgit.replay_key(repo, topic, cache)
