"""Integration engine: plan, in-memory replay, verify and bisect, publish.

Every repository is real (git CLI, pinned identities and dates). Results are
compared with what `git rebase` produces for the same input.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rally_gh import git as rgit
from rally_gh.agents import verify_environment
from rally_gh.errors import ConflictError
from rally_gh.git import Identity, Repository, Sha
from rally_gh.integrate import (
    IntegrationPlan,
    PlanError,
    TeammateBranch,
    check_plan,
    conflict_causes,
    conflict_error,
    integrate,
    plan_integration,
    publish,
    verify_and_bisect,
    verify_commit,
)
from rally_gh.process import Cancelled, CommandRun
from rally_gh.testing import commit, git, init_repo

PINNED = Identity("rally-gh", "rally-gh@users.noreply.github.com", 1767225600, 0)

Files = Mapping[str, "str | bytes | None"]


# --- helpers ---------------------------------------------------------------



def resolve_teammate_branches(repo: Repository, branches: list[tuple[str, str, Sha]]) -> list[TeammateBranch]:
    """(teammate, full ref name, start) -> TeammateBranch, each head read exactly once (as the run's
    records hold them), so that a branch moved or deleted later does not change the plan."""
    return [TeammateBranch(name, rgit.ref_sha(repo, ref), start, ref) for name, ref, start in branches]


def make_branch(path: Path, name: str, start: str, commits: Sequence[Files], *, env: Mapping[str, str] | None = None) -> str:
    git(path, "checkout", "-q", "-B", name, start)
    for i, files in enumerate(commits):
        commit(path, files, f"{name}: step {i}\n\nbody of {name} {i}", env=env)
    head = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "main")
    return head


def setup(tmp_path: Path, base_files: Files, teammates: Mapping[str, Sequence[Files]]) -> tuple[Path, str, list[TeammateBranch]]:
    path = init_repo(tmp_path / "repo", dict(base_files))
    base = git(path, "rev-parse", "HEAD").strip()
    branches = []
    for name, commits in teammates.items():
        head = make_branch(path, f"rally/r1/{name}", base, commits)
        branches.append(TeammateBranch(name, Sha(head), Sha(base), f"refs/heads/rally/r1/{name}"))
    return path, base, branches


def run(path: Path, base: str, order: Sequence[TeammateBranch], on_conflict: str = "skip"):
    repo = rgit.open_repo(path)
    plan = plan_integration(repo, Sha(base), order)
    return repo, plan, integrate(repo, plan, on_conflict, PINNED)  # type: ignore[arg-type]


def tree_of(path: Path, rev: str) -> str:
    return git(path, "rev-parse", f"{rev}^{{tree}}").strip()


def files_at(path: Path, rev: str) -> dict[str, bytes]:
    repo = rgit.open_repo(path)
    return {p: rgit.read_blob(repo, rev, p) or b"" for p in rgit.tracked_paths(repo, rev)}


def rebase_chain(path: Path, base: str, branches: Sequence[tuple[str, str]]) -> str:
    """The tree `git rebase --onto` gives, branch after branch, in a scratch worktree."""
    wt = path.parent / "rebase-wt"
    git(path, "worktree", "add", "-q", "--detach", str(wt), base)
    try:
        tip = base
        for start, head in branches:
            git(wt, "rebase", "-q", "--onto", tip, start, head)
            tip = git(wt, "rev-parse", "HEAD").strip()
        return tree_of(path, tip)
    finally:
        git(path, "worktree", "remove", "--force", str(wt))


def snapshot(path: Path) -> dict[str, object]:
    """Everything integration must not touch: the work tree, the index, the refs."""
    state: dict[str, object] = {}
    for p in sorted(path.rglob("*")):
        if ".git" in p.relative_to(path).parts or not p.is_file():
            continue
        st_ = p.stat()
        state[str(p.relative_to(path))] = (st_.st_mtime_ns, p.read_bytes())
    index = path / ".git" / "index"
    state[".git/index"] = (index.stat().st_mtime_ns, hashlib.sha1(index.read_bytes()).hexdigest())
    state["refs"] = git(path, "for-each-ref", "--format=%(refname) %(objectname)")
    state["HEAD"] = (path / ".git" / "HEAD").read_text()
    return state


# --- plan ------------------------------------------------------------------


def test_plan_lists_each_teammates_commits_oldest_first(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "hi\n"}, {
        "api": [{"api/a.py": "1\n"}, {"api/b.py": "2\n"}],
        "web": [{"web/x.js": "3\n"}],
    })
    repo = rgit.open_repo(path)
    plan = plan_integration(repo, Sha(base), order)
    assert [t.teammate for t in plan.teammates] == ["api", "web"]
    api_log = git(path, "rev-list", "--reverse", f"{base}..rally/r1/api").split()
    assert list(plan.teammates[0].commits) == api_log
    assert len(plan.steps) == 3
    with pytest.raises(PlanError):
        check_plan(repo, IntegrationPlan(plan.base, (plan.teammates[0], plan.teammates[0])))


def test_merge_commits_missing_and_force_moved_branches_are_refused(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "hi\n"}, {
        "api": [{"api/a.py": "1\n"}], "web": [{"web/x.js": "1\n"}], "db": [{"db/s.sql": "1\n"}],
    })
    # api merges a side branch of its own: refused, not flattened.
    git(path, "checkout", "-q", "-b", "side", base)
    commit(path, {"api/side.py": "s\n"}, "side")
    git(path, "checkout", "-q", "rally/r1/api")
    git(path, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    git(path, "checkout", "-q", "main")
    # web's branch is deleted; db's is rewritten from scratch (no longer contains its start).
    git(path, "branch", "-D", "rally/r1/web")
    git(path, "checkout", "-q", "--orphan", "tmp")
    git(path, "rm", "-rqf", ".")
    orphan = commit(path, {"db/s.sql": "2\n"}, "orphan")
    git(path, "checkout", "-q", "-f", "main")
    git(path, "update-ref", "refs/heads/rally/r1/db", orphan)
    repo = rgit.open_repo(path)
    resolved = resolve_teammate_branches(repo, [(t.teammate, t.branch or "", t.start) for t in order])
    _, plan, result = run(path, base, resolved)
    assert {t.teammate: t.refusal for t in plan.teammates} == {"api": "merge-commit", "web": "missing", "db": "force-moved"}
    assert [o.status for o in result.outcomes] == ["refused"] * 3
    assert "merge commit" in (result.outcome("api").detail or "")
    assert result.tip == base


def test_heads_are_read_once_at_plan_time(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "hi\n"}, {"api": [{"api/a.py": "1\n"}]})
    repo = rgit.open_repo(path)
    plan = plan_integration(repo, Sha(base), resolve_teammate_branches(
        repo, [("api", "refs/heads/rally/r1/api", Sha(base))]))
    make_branch(path, "rally/r1/api", "rally/r1/api", [{"api/late.py": "late\n"}])  # moves after planning
    result = integrate(repo, plan, "skip", PINNED)
    assert "api/late.py" not in files_at(path, result.tip)
    assert "api/a.py" in files_at(path, result.tip)


# --- execute ---------------------------------------------------------------


def test_replay_matches_git_rebase_and_keeps_authorship(tmp_path: Path) -> None:
    base_files = {"README": "line1\nline2\nline3\nline4\nline5\nline6\nline7\n", "lib/core.py": "x = 1\n"}
    path = init_repo(tmp_path / "repo", base_files)
    base = git(path, "rev-parse", "HEAD").strip()
    other_author = {"GIT_AUTHOR_NAME": "Bob Agent", "GIT_AUTHOR_EMAIL": "bob@example.com",
                    "GIT_AUTHOR_DATE": "2026-02-03T04:05:06+02:00"}
    api = make_branch(path, "rally/r1/api", base, [
        {"api/a.py": "1\n", "README": "line1 api\nline2\nline3\nline4\nline5\nline6\nline7\n"},
        {"api/a.py": None, "api/b.py": "moved\n"},
    ], env=other_author)
    web = make_branch(path, "rally/r1/web", base, [
        {"web/x.js": "x\n", "README": "line1\nline2\nline3\nline4\nline5\nline6\nline7 web\n"},
        {"web/deep/er/y.js": "y\n"},
    ])
    order = [TeammateBranch("api", Sha(api), Sha(base)), TeammateBranch("web", Sha(web), Sha(base))]
    before = snapshot(path)
    repo, plan, result = run(path, base, order)
    assert snapshot(path) == before  # no work tree, index or ref touched
    assert [o.status for o in result.outcomes] == ["integrated", "integrated"]
    assert tree_of(path, result.tip) == rebase_chain(path, base, [(base, api), (base, web)])
    mapping = result.commit_map
    assert len(mapping) == 4 and result.applied[-1].tip == result.tip
    for old, new in mapping.items():
        fmt = "%an|%ae|%ad|%B"
        assert git(path, "show", "-s", f"--format={fmt}", "--date=raw", new) == \
            git(path, "show", "-s", f"--format={fmt}", "--date=raw", old)
        assert git(path, "show", "-s", "--format=%cn|%ce|%ct", new).strip() == \
            "rally-gh|rally-gh@users.noreply.github.com|1767225600"
    assert git(path, "rev-list", "--count", f"{base}..{result.tip}").strip() == "4"
    assert git(path, "show", "-s", "--format=%an %ad", "--date=iso-strict", mapping[Sha(api)]).strip() == \
        "Bob Agent 2026-02-03T04:05:06+02:00"


def test_content_conflict_skip_rolls_back_and_goes_on(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"shared.txt": "a\nb\nc\n"}, {
        "api": [{"api/1": "1\n"}, {"shared.txt": "a\nAPI\nc\n"}],
        "web": [{"web/1": "1\n"}, {"web/2": "2\n", "shared.txt": "a\nWEB\nc\n"}],
        "db": [{"db/1": "1\n"}],
    })
    refs_before = git(path, "for-each-ref")
    _, _, result = run(path, base, order)
    assert git(path, "for-each-ref") == refs_before
    web = result.outcome("web")
    assert web.status == "conflicted" and web.conflict is not None
    assert web.conflict.paths == ("shared.txt",) and web.conflict.commit == order[1].head
    assert web.conflict.details[0].kind == "content"
    files = files_at(path, result.tip)
    assert "web/1" not in files  # web's first commit, which applied, is rolled back too
    assert files["shared.txt"] == b"a\nAPI\nc\n" and "db/1" in files
    assert [a.teammate for a in result.applied] == ["api", "db"]
    assert result.stopped_by is None


def test_stop_on_conflict_returns_a_value_and_the_boundary_raises(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"shared.txt": "a\n"}, {
        "api": [{"shared.txt": "api\n"}], "web": [{"shared.txt": "web\n"}], "db": [{"db/1": "1\n"}],
    })
    _, _, result = run(path, base, order, on_conflict="stop")
    assert [o.status for o in result.outcomes] == ["integrated", "conflicted", "skipped"]
    assert result.stopped_by is not None and result.stopped_by.teammate == "web"
    assert result.tip == result.applied[0].tip
    with pytest.raises(ConflictError, match="web: commit .* conflicts in shared.txt"):
        raise conflict_error(result.stopped_by)


def test_both_sides_editing_one_file_apart_merge_like_git(tmp_path: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(20))
    path, base, order = setup(tmp_path, {"doc.txt": text, "run.sh": "echo\n"}, {
        "api": [{"doc.txt": text.replace("line 2\n", "line 2 api\n")}],
        "web": [{"doc.txt": text.replace("line 17\n", "line 17 web\n")}],
    })
    git(path, "checkout", "-q", "rally/r1/web")
    os.chmod(path / "run.sh", 0o755)
    commit(path, {}, "web: make run.sh executable")
    order[1] = TeammateBranch("web", Sha(git(path, "rev-parse", "HEAD").strip()), Sha(base))
    git(path, "checkout", "-q", "main")
    _, _, result = run(path, base, order)
    assert [o.status for o in result.outcomes] == ["integrated", "integrated"]
    assert tree_of(path, result.tip) == rebase_chain(path, base, [(base, order[0].head or ""), (base, order[1].head or "")])
    assert "line 2 api" in files_at(path, result.tip)["doc.txt"].decode()
    assert "100755" in git(path, "ls-tree", result.tip, "run.sh")


@pytest.mark.parametrize("first,second", [("file", "dir"), ("dir", "file")])
def test_directory_file_conflict(tmp_path: Path, first: str, second: str) -> None:
    shapes: dict[str, Files] = {"file": {"src/x": "file\n"}, "dir": {"src/x/y": "inside\n"}}
    path, base, order = setup(tmp_path, {"README": "r\n"}, {"api": [shapes[first]], "web": [shapes[second]]})
    _, _, result = run(path, base, order)
    web = result.outcome("web")
    assert web.status == "conflicted" and web.conflict is not None
    assert any(p.startswith("src/x") for p in web.conflict.paths)
    assert {d.kind for d in web.conflict.details} == {"directory/file"}


def test_file_turned_into_directory_on_one_side_integrates(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"src/x": "file\n", "other": "o\n"}, {
        "api": [{"src/x": None, "src/x/y": "now a dir\n"}],
        "web": [{"other": "changed\n"}],
    })
    _, _, result = run(path, base, order)
    assert [o.status for o in result.outcomes] == ["integrated", "integrated"]
    assert tree_of(path, result.tip) == rebase_chain(path, base, [(base, order[0].head or ""), (base, order[1].head or "")])


def test_symlink_file_swap_conflicts(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"cfg": "value\n", "target": "t\n"}, {"web": [{"cfg": "value 2\n"}]})
    git(path, "checkout", "-q", "-b", "rally/r1/api", base)
    (path / "cfg").unlink()
    (path / "cfg").symlink_to("target")
    api = commit(path, {}, "api: cfg becomes a link")
    git(path, "checkout", "-q", "main")
    order.insert(0, TeammateBranch("api", Sha(api), Sha(base)))
    _, _, result = run(path, base, order)
    web = result.outcome("web")
    assert result.outcome("api").status == "integrated"
    assert web.status == "conflicted" and web.conflict is not None
    assert web.conflict.details[0].kind == "symlink/file"


def test_binary_files_never_merge_textually(tmp_path: Path) -> None:
    blob = bytes(range(256)) * 4
    path, base, order = setup(tmp_path, {"logo.png": blob}, {
        "api": [{"logo.png": blob[:100] + b"\x00API" + blob[104:]}],
        "web": [{"logo.png": blob[:900] + b"\x00WEB" + blob[904:]}],
    })
    _, _, result = run(path, base, order)
    web = result.outcome("web")
    assert web.status == "conflicted" and web.conflict is not None
    assert web.conflict.details[0].kind == "binary"


def test_empty_commits_are_kept_and_commits_already_on_the_tip_dropped(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "r\n"}, {
        "api": [{"api/a": "1\n"}, {}, {"fix.txt": "same fix\n"}],
        "web": [{"fix.txt": "same fix\n"}, {"web/w": "w\n"}],
    })
    _, _, result = run(path, base, order)
    api, web = result.outcome("api"), result.outcome("web")
    assert api.status == web.status == "integrated"
    assert len(api.commit_map) == 3 and not api.dropped_empty  # the empty commit is kept
    assert web.dropped_empty == (git(path, "rev-parse", "rally/r1/web~1").strip(),)
    assert git(path, "rev-list", "--count", f"{base}..{result.tip}").strip() == "4"
    assert tree_of(path, result.tip) == rebase_chain(path, base, [(base, order[0].head or ""), (base, order[1].head or "")])


def test_a_rename_is_a_delete_and_an_add(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"old/f.py": "body\n", "keep.py": "k\n"}, {
        "api": [{"old/f.py": None, "new/f.py": "body\n"}],
        "web": [{"old/f.py": "body changed\n"}],
        "db": [{"keep.py": None, "kept.py": "k\n"}],
    })
    _, _, result = run(path, base, order)
    web = result.outcome("web")
    assert web.status == "conflicted" and web.conflict is not None
    assert web.conflict.details[0].kind == "modify/delete"
    assert result.outcome("db").status == "integrated"
    files = files_at(path, result.tip)
    assert "new/f.py" in files and "old/f.py" not in files and "kept.py" in files


def test_hostile_paths_are_refused(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"docs/README": "r\n"}, {
        "api": [{"api/ok": "1\n"}, {"api/bad\x01name": "x\n"}],
        "web": [{"docs/readme": "clash\n"}],
        "db": [{"db/fine": "1\n"}],
    })
    _, _, result = run(path, base, order)
    api, web = result.outcome("api"), result.outcome("web")
    assert (api.status, api.reason) == ("refused", "hostile-path") and "control character" in (api.detail or "")
    assert (web.status, web.reason) == ("refused", "hostile-path") and "case" in (web.detail or "")
    assert [a.teammate for a in result.applied] == ["db"]


def test_a_conflict_with_work_that_landed_on_the_base_during_the_run(tmp_path: Path) -> None:
    path, start, order = setup(tmp_path, {"app.cfg": "mode=a\n", "x": "x\n"}, {
        "api": [{"app.cfg": "mode=api\n"}], "web": [{"web/w": "w\n"}],
    })
    git(path, "checkout", "-q", "main")
    latest = commit(path, {"app.cfg": "mode=hotfix\n", "landed.txt": "l\n"}, "hotfix on main")
    _, _, result = run(path, latest, order)
    assert result.outcome("api").status == "conflicted"
    assert result.outcome("api").conflict.paths == ("app.cfg",)  # type: ignore[union-attr]
    assert result.outcome("web").status == "integrated"
    assert git(path, "rev-parse", f"{result.tip}~1").strip() == latest


def test_a_conflict_is_blamed_on_the_base_commit_and_the_teammate_that_wrote_its_paths(tmp_path: Path) -> None:
    path, start, order = setup(tmp_path, {"app.cfg": "mode=a\n", "x": "x\n"}, {
        "api": [{"lib/shared.py": "api\n"}],
        "web": [{"app.cfg": "mode=web\n", "lib/shared.py": "web\n", "lib/old": "o\n"}],
    })
    git(path, "checkout", "-q", "main")
    hotfix = commit(path, {"app.cfg": "mode=hotfix\n"}, "hotfix on main")
    latest = commit(path, {"docs.md": "d\n"}, "docs on main")  # newer, but touches nothing of web's
    repo, _, result = run(path, latest, order)
    conflict = result.outcome("web").conflict
    assert conflict is not None and conflict.paths == ("app.cfg", "lib/shared.py")
    causes = conflict_causes(repo, result, conflict, Sha(start))
    assert [(c.teammate, c.base_commit, c.paths) for c in causes] == [
        ("api", None, ("lib/shared.py",)), (None, hotfix, ("app.cfg",))]
    # Without a moving base only the teammate is blamed.
    repo, _, result = run(path, start, order)
    conflict = result.outcome("web").conflict
    assert conflict is not None and conflict.paths == ("lib/shared.py",)
    assert [(c.teammate, c.paths) for c in conflict_causes(repo, result, conflict, Sha(start))] == [
        ("api", ("lib/shared.py",))]


# --- property: disjoint ownership never conflicts --------------------------

edit = st.tuples(st.integers(0, 4), st.one_of(st.none(), st.text("ab\n", max_size=6)))
teammate_commits = st.lists(st.lists(edit, min_size=0, max_size=4), min_size=1, max_size=4)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(teammate_commits, min_size=1, max_size=4))
def test_disjoint_edits_integrate_to_all_edits_applied(team: list[list[list[tuple[int, str | None]]]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_files: dict[str, str | bytes | None] = {f"t{i}/f0": "seed\n" for i in range(len(team))}
        expected = {k: str(v).encode() for k, v in base_files.items()}
        path = init_repo(Path(tmp) / "repo", base_files)
        base = git(path, "rev-parse", "HEAD").strip()
        order = []
        for i, commits in enumerate(team):
            git(path, "checkout", "-q", "-B", f"t{i}", base)
            for j, edits in enumerate(commits):
                files = {f"t{i}/f{n}" if n % 2 else f"t{i}/d/f{n}": content for n, content in edits}
                for p, c in files.items():
                    if c is None:
                        expected.pop(p, None)
                    else:
                        expected[p] = c.encode()
                commit(path, files, f"t{i} {j}")
            order.append(TeammateBranch(f"t{i}", Sha(git(path, "rev-parse", "HEAD").strip()), Sha(base)))
        git(path, "checkout", "-q", "main")
        _, _, result = run(path, base, order)
        assert all(o.status == "integrated" for o in result.outcomes)
        assert files_at(path, result.tip) == expected


# --- verify and bisect -----------------------------------------------------


def _team(tmp_path: Path, n: int, broken: Sequence[int]) -> tuple[Path, str, list[TeammateBranch]]:
    return setup(tmp_path, {"README": "r\n"}, {
        f"t{i}": [{f"t{i}/a": "a\n"}, {f"t{i}/b": "broken\n" if i in broken else "fine\n"}] for i in range(n)
    })


def _verifier(path: Path, calls: list[str]):
    def run_verify(sha: Sha) -> bool:
        calls.append(sha)
        return not any(v == b"broken\n" for v in files_at(path, sha).values())
    return run_verify


@pytest.mark.parametrize("culprit", [0, 3, 7])
def test_bisection_finds_the_teammate_that_breaks_verify(tmp_path: Path, culprit: int) -> None:
    path, base, order = _team(tmp_path, 8, [culprit])
    repo, plan, result = run(path, base, order)
    calls: list[str] = []
    verdict = verify_and_bisect(repo, plan, result, _verifier(path, calls), committer=PINNED)
    assert verdict.passed and verdict.culprits == (f"t{culprit}",)
    assert len(verdict.runs) == len(calls) <= 3 + 3  # log2(8) + a few
    final = verdict.result
    assert final.outcome(f"t{culprit}").status == "refused" and final.outcome(f"t{culprit}").reason == "verify"
    assert [a.teammate for a in final.applied] == [f"t{i}" for i in range(8) if i != culprit]
    files = files_at(path, final.tip)
    assert f"t{culprit}/a" not in files and all(f"t{i}/b" in files for i in range(8) if i != culprit)
    assert verdict.runs[0].passed is False and verdict.runs[-1].passed is True
    assert verdict.runs[-1].sha == final.tip and len(verdict.runs[-1].teammates) == 7


def test_a_teammate_that_conflicted_only_with_a_dropped_culprit_is_integrated_after_all(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"shared.cfg": "x\n"}, {
        "t0": [{"t0/a": "a\n"}],
        "t1": [{"shared.cfg": "t1\n", "t1/b": "broken\n"}],  # breaks verify
        "t2": [{"shared.cfg": "t2\n"}],  # meets t1's change to shared.cfg
        "t3": [{"shared.cfg": "t3\n"}],  # and so does t3, until t2's is integrated in t1's place
    })
    repo, plan, result = run(path, base, order)
    assert [o.status for o in result.outcomes] == ["integrated", "integrated", "conflicted", "conflicted"]
    verdict = verify_and_bisect(repo, plan, result, _verifier(path, []), committer=PINNED)
    assert verdict.passed and verdict.culprits == ("t1",)
    final = verdict.result
    assert [a.teammate for a in final.applied] == ["t0", "t2"]
    assert final.outcome("t3").status == "conflicted"
    causes = conflict_causes(repo, final, final.outcome("t3").conflict, Sha(base))  # type: ignore[arg-type]
    assert [(c.teammate, c.paths) for c in causes] == [("t2", ("shared.cfg",))]
    assert files_at(path, final.tip)["shared.cfg"] == b"t2\n" and final.tip == verdict.runs[-1].sha


def test_two_culprits_and_a_clean_pass(tmp_path: Path) -> None:
    path, base, order = _team(tmp_path, 6, [1, 4])
    repo, plan, result = run(path, base, order)
    verdict = verify_and_bisect(repo, plan, result, _verifier(path, []), committer=PINNED)
    assert verdict.passed and set(verdict.culprits) == {"t1", "t4"}
    assert len(verdict.result.applied) == 4
    clean = verify_and_bisect(repo, plan, integrate(repo, plan_integration(repo, Sha(base), order[:1]), "skip", PINNED),
                              _verifier(path, []), committer=PINNED)
    assert clean.passed and len(clean.runs) == 1 and not clean.culprits


def test_a_failing_base_blames_nobody(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "broken\n"}, {"t0": [{"t0/a": "a\n"}], "t1": [{"t1/a": "a\n"}]})
    repo, plan, result = run(path, base, order)
    verdict = verify_and_bisect(repo, plan, result, _verifier(path, []), committer=PINNED)
    assert not verdict.passed and verdict.base_fails and not verdict.culprits
    assert verdict.result.tip == result.tip


def test_running_out_of_verify_runs_falls_back_to_the_last_passing_prefix(tmp_path: Path) -> None:
    path, base, order = _team(tmp_path, 8, [5])
    repo, plan, result = run(path, base, order)
    verdict = verify_and_bisect(repo, plan, result, _verifier(path, []), max_runs=2, committer=PINNED)
    assert verdict.exhausted and len(verdict.runs) == 2
    good = verdict.result.applied
    assert verdict.result.tip == (good[-1].tip if good else base)
    assert all(verdict.result.outcome(t).reason == "verify" for t in verdict.culprits)


def test_a_verify_run_that_cancellation_cut_short_blames_nobody(tmp_path: Path) -> None:
    path, base, order = _team(tmp_path, 4, [2])
    repo, plan, result = run(path, base, order)
    calls: list[str] = []

    def interrupted(sha: Sha) -> list[CommandRun]:
        calls.append(sha)
        return [CommandRun("make test", False, "[rally-gh] stopped: the run was interrupted", cancelled=True)]

    with pytest.raises(Cancelled, match="merge.verify of .* was stopped: the run was interrupted"):
        verify_and_bisect(repo, plan, result, interrupted, committer=PINNED)
    assert calls == [result.tip]  # no bisection on a run without a verdict


def test_verify_commit_runs_in_a_scratch_checkout_and_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "secret-value")
    path, base, order = setup(tmp_path, {"check.sh": "test -f api/a && test -z \"$GITHUB_TOKEN\"\n"}, {"api": [{"api/a": "1\n"}]})
    repo, _, result = run(path, base, order)
    before = snapshot(path)

    def place(checkout: Path, home: Path) -> tuple[dict[str, str], None]:
        assert checkout.parent == home.parent and checkout.is_dir() and not home.exists()
        return verify_environment(os.environ, (), home), None

    assert [r.passed for r in verify_commit(repo, result.tip, ["sh check.sh"], 30, place=place)] == [True]
    assert [r.passed for r in verify_commit(repo, Sha(base), ["sh check.sh"], 30, place=place)] == [False]
    assert snapshot(path) == before
    assert len(git(path, "worktree", "list").splitlines()) == 1


# --- publish ---------------------------------------------------------------


def _published(tmp_path: Path):
    path, base, order = setup(tmp_path, {"README": "r\n"}, {"api": [{"api/a": "1\n"}], "web": [{"web/w": "1\n"}]})
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(path, "remote", "add", "origin", str(remote))
    git(path, "push", "-q", "origin", "main")
    repo, _, result = run(path, base, order)
    teammates = [(t.branch or "", t.head or Sha("")) for t in order]
    return path, base, remote, repo, result, teammates


def test_publish_creates_branches_and_moves_the_integration_branch_last(tmp_path: Path) -> None:
    path, base, remote, repo, result, teammates = _published(tmp_path)
    git(path, "branch", "-D", "rally/r1/web")  # deleted during the run: recreated, nothing lost
    out = publish(repo, "integration/r1", result.tip, None, teammates, remote=rgit.Remote("origin"))
    assert out.ok and out.local_moved, out.problems
    assert git(path, "rev-parse", "integration/r1").strip() == result.tip
    assert git(path, "rev-parse", "rally/r1/web").strip() == teammates[1][1]
    assert git(remote, "rev-parse", "integration/r1").strip() == result.tip
    assert git(remote, "rev-parse", "rally/r1/api").strip() == teammates[0][1]
    # Publishing again is idempotent when nothing moved.
    again = publish(repo, "integration/r1", result.tip, result.tip, teammates, remote=rgit.Remote("origin"), remote_expected_old=result.tip)
    assert again.ok, again.problems


def test_publish_refuses_a_local_branch_that_moved(tmp_path: Path) -> None:
    path, base, remote, repo, result, teammates = _published(tmp_path)
    git(path, "branch", "integration/r1", base)
    out = publish(repo, "integration/r1", result.tip, None, teammates, remote=rgit.Remote("origin"))
    assert not out.ok and not out.local_moved and "moved during the run" in out.problems[0]
    assert git(path, "rev-parse", "integration/r1").strip() == base
    assert git(remote, "branch", "--list", "integration/r1").strip() == ""


def test_publish_never_overwrites_someone_elses_push(tmp_path: Path) -> None:
    path, base, remote, repo, result, teammates = _published(tmp_path)
    other = make_branch(path, "someone", base, [{"human.txt": "fix\n"}])
    git(path, "push", "-q", "origin", f"{other}:refs/heads/integration/r1")
    out = publish(repo, "integration/r1", result.tip, None, teammates, remote=rgit.Remote("origin"))
    assert not out.ok and out.local_moved
    assert "not part of this integration" in out.problems[-1]
    assert git(remote, "rev-parse", "integration/r1").strip() == other


def test_publish_retries_over_an_earlier_attempt_of_its_own(tmp_path: Path) -> None:
    path, base, remote, repo, result, teammates = _published(tmp_path)
    git(path, "push", "-q", "origin", f"{result.applied[0].tip}:refs/heads/integration/r1")  # a retried job got this far
    out = publish(repo, "integration/r1", result.tip, None, teammates, remote=rgit.Remote("origin"))
    assert out.ok and out.attempts == 2, out.problems
    assert git(remote, "rev-parse", "integration/r1").strip() == result.tip


def test_a_rejected_push_is_reported_per_ref(tmp_path: Path) -> None:
    path, base, remote, repo, result, teammates = _published(tmp_path)
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'denied by policy' >&2\nexit 1\n")
    hook.chmod(0o755)
    out = publish(repo, "integration/r1", result.tip, None, teammates, remote=rgit.Remote("origin"), max_attempts=2)
    assert not out.ok and all(not p.ok for p in out.pushed)
    assert subprocess.run(["git", "-C", str(remote), "rev-parse", "--verify", "-q", "integration/r1"],
                          capture_output=True).returncode != 0


def test_an_integration_branch_above_teammate_branches_is_reported(tmp_path: Path) -> None:
    path, base, remote, repo, result, teammates = _published(tmp_path)
    out = publish(repo, "rally/r1", result.tip, None, teammates)
    assert not out.ok and "git refs are paths" in out.problems[0]


def test_a_teammate_started_from_an_earlier_integration_tip(tmp_path: Path) -> None:
    """blocked_by: web started from the tip that held api's work; at the end both
    are replayed onto the newest base, web's own commits only."""
    path, base, order = setup(tmp_path, {"README": "r\n"}, {"api": [{"api/a": "1\n"}]})
    repo, _, first = run(path, base, order)
    web = make_branch(path, "rally/r1/web", first.tip, [{"web/w": "uses api\n"}])
    git(path, "checkout", "-q", "main")
    latest = commit(path, {"landed": "l\n"}, "landed on main")
    order.append(TeammateBranch("web", Sha(web), first.tip))
    _, plan, result = run(path, latest, order)
    assert [len(t.commits) for t in plan.teammates] == [1, 1]
    assert [o.status for o in result.outcomes] == ["integrated", "integrated"]
    assert set(files_at(path, result.tip)) == {"README", "landed", "api/a", "web/w"}


def test_a_teammate_branched_from_another_teammate_is_refused(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "r\n"}, {"api": [{"api/a": "1\n"}]})
    web = make_branch(path, "rally/r1/web", "rally/r1/api", [{"web/w": "1\n"}])
    order.append(TeammateBranch("web", Sha(web), Sha(base)))
    _, plan, result = run(path, base, order)
    assert plan.teammates[1].refusal == "shared-commits"
    assert result.outcome("web").status == "refused"


def test_a_dropped_teammate_whose_name_ends_in_s_reads_as_plain_english(tmp_path: Path) -> None:
    path, base, order = setup(tmp_path, {"README": "r\n"}, {"models": [{"m/a": "broken\n"}], "api": [{"a/a": "a\n"}]})
    repo, plan, result = run(path, base, order)
    verdict = verify_and_bisect(repo, plan, result, _verifier(path, []), committer=PINNED)
    assert verdict.result.outcome("models").detail == "verify fails once models' work is added"
