"""The results a run's agents' job hands to the publish job, taken as untrusted input (rally_gh/results.py).

Each test runs the agents' side for real (``rally-gh run --results``, scripted agents, web blocked
by api) in one repository, then plays a hostile agents' job on what it left, and publishes in a
clone of its own, as the publish job does: the map of the base commit decides.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from rally_gh import git as rgit
from rally_gh.commands import publish as publish_cmd
from rally_gh.commands import run as run_cmd
from rally_gh.commands.publish import PublishOptions
from rally_gh.commands.run import RunOptions
from rally_gh.errors import RallyError
from rally_gh.github.actions import read
from rally_gh.results import BUNDLE_FILE, RECORD_FILE, ResultLimits, write_results
from rally_gh.state import RunState, load_state
from rally_gh.testing import commit, git, init_repo, write_agent_scripts

AGENTS = {
    "api": """
        import pathlib
        pathlib.Path("src/api").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/api/orders.py").write_text("ORDERS = []\\n")
    """,
    "web": """
        import pathlib, sys
        if not pathlib.Path("src/api/orders.py").exists():
            sys.exit("api's work is missing from web's checkout")
        pathlib.Path("src/web").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/web/app.js").write_text("fetch('/orders')\\n")
    """,
}


def _map(scripts: dict[str, Path]) -> str:
    lines = ["version: 1", "team: shop", "defaults: {timeout: 30s, retries: 0}", "teammates:"]
    for name, blocked in (("api", ""), ("web", "    blocked_by: [api]\n")):
        owns = f"src/{name}/**" + (", .github/workflows/ci.yml" if name == "api" else "")
        lines += [f"  - name: {name}", f"    exclusive_write: [{owns}]",
                  f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, "
                  f"{json.dumps(str(scripts[name]))}]}}" + ("\n" + blocked.rstrip() if blocked else "")]
    return "\n".join(lines) + "\n"


@pytest.fixture
def ran(tmp_path: Path) -> tuple[Path, Path]:
    """The agents' job done: its repository, and the results folder it wrote."""
    scripts = write_agent_scripts(tmp_path / "agents", AGENTS)
    repo = init_repo(tmp_path / "repo", {"README.md": "# shop\n", "rally.yml": _map(scripts)})
    results = tmp_path / "results"
    out = io.StringIO()
    code = run_cmd.run(repo, read({"PATH": os.environ["PATH"]}), out, options=RunOptions(run_id="r1", results=results),
                       progress_stream=io.StringIO())
    assert code == 0, out.getvalue()[-3000:]
    return repo, results


def _publish(tmp_path: Path, repo: Path, results: Path, **options: object) -> tuple[int, RunState, str]:
    """The publish job in a clone of its own (no token: nothing leaves it); its exit, state and report."""
    clone = tmp_path / f"publish-{len(list(tmp_path.glob('publish-*')))}"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    code = publish_cmd.publish(clone, read({"PATH": os.environ["PATH"]}), io.StringIO(),
                               options=PublishOptions(results=results, run_id="r1", **options))  # type: ignore[arg-type]
    state = load_state(clone / ".git", "r1")
    return code, state, (clone / ".git" / "rally" / "runs" / "r1" / "report.md").read_text()


def _record(results: Path) -> RunState:
    return RunState.model_validate_json((results / RECORD_FILE).read_text())


def _api_also_commits(repo: Path, results: Path, files: dict[str, str], message: str) -> None:
    """The agents' job's results, with one more commit of ``files`` on api's branch (its record moved to it)."""
    record = _record(results)
    api = record.teammate("api")
    git(repo, "checkout", "-q", api.branch)
    commit(repo, files, message)
    git(repo, "checkout", "-q", "main")
    head = git(repo, "rev-parse", api.branch).strip()
    write_results(repo, record.with_teammate(api.model_copy(update={"head_sha": head})), results)


def test_an_honest_run_is_published_as_verified_blocked_teammate_included(ran: tuple[Path, Path],
                                                                            tmp_path: Path) -> None:
    repo, results = ran
    code, state, report = _publish(tmp_path, repo, results)
    assert code == 0
    assert state.integrated == ("api", "web")
    assert [t.outcome for t in state.teammates] == ["done", "done"]
    assert "unverified" not in report


def test_a_commit_of_another_teammate_slipped_under_a_blocked_teammates_start_is_refused(
        ran: tuple[Path, Path], tmp_path: Path) -> None:
    """web starts from api's work: a commit that claims to be part of that start, but is no commit of
    api's, is someone's own work hidden from the ownership check."""
    repo, results = ran
    record = _record(results)
    web = record.teammate("web")
    git(repo, "checkout", "-q", "-b", "forged", record.base_sha)
    commit(repo, {"src/api/orders.py": "ORDERS = ['forged']\n"}, "rally(api): orders")
    start = git(repo, "rev-parse", "HEAD").strip()
    commit(repo, {"src/web/app.js": "fetch('/orders')\n"}, "rally(web): app")
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-f", web.branch, head)
    write_results(repo, record.with_teammate(web.model_copy(update={"start_sha": start, "head_sha": head})), results)
    code, state, report = _publish(tmp_path, repo, results)
    assert code == 1
    assert state.teammate("web").outcome == "skipped" and "not the work of an accepted blocker" in state.teammate(
        "web").reason
    assert state.integrated == ("api",)
    assert "unverified" in report  # the tree published is not the one verified


def test_a_path_outside_the_owner_is_refused_with_the_path(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    _api_also_commits(repo, results, {"README.md": "# taken\n"}, "rally(api): readme")
    code, state, _ = _publish(tmp_path, repo, results)
    assert code == 1
    refused = state.teammate("api")
    assert refused.outcome == "violated" and "README.md" in refused.reason and refused.head_sha is None
    # web built on api's refused work: it cannot be published either.
    assert state.teammate("web").outcome == "skipped" and not state.integrated


def test_an_oversized_bundle_is_refused_before_it_is_read(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    with pytest.raises(RallyError, match="more than the 100 a run's results may have"):
        _publish(tmp_path, repo, results, limits=ResultLimits(bundle_bytes=100))


def test_records_of_another_run_or_base_are_refused(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    record = _record(results)
    (results / RECORD_FILE).write_text(record.model_copy(update={"run_id": "r2"}).model_dump_json())
    with pytest.raises(RallyError, match="not of this run r1"):
        _publish(tmp_path, repo, results)
    (results / RECORD_FILE).write_text(record.model_copy(update={"base_sha": "0" * 40}).model_dump_json())
    with pytest.raises(RallyError, match="ran on 0000000000"):
        _publish(tmp_path, repo, results)


def test_a_record_that_is_a_link_is_refused(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    real = tmp_path / "elsewhere.json"
    (results / RECORD_FILE).rename(real)
    (results / RECORD_FILE).symlink_to(real)
    with pytest.raises(RallyError, match="not a regular file"):
        _publish(tmp_path, repo, results)


def test_a_bundle_that_is_not_one_is_refused(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    (results / BUNDLE_FILE).write_bytes(b"# v2 git bundle\nnot really\n")
    with pytest.raises(RallyError, match="not a git bundle"):
        _publish(tmp_path, repo, results)


HOSTILE = ("done.\n\n## rally-gh run `r1`: Done\n\n<img src=x onerror=alert(1)> [sign in](https://evil.example) "
           "![](https://evil.example/pixel.png) <details><summary>ok</summary>")


def test_record_text_reaches_the_report_as_plain_text_only(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    record = _record(results)
    web = record.teammate("web")
    tampered = record.model_copy(update={
        "problems": (HOSTILE,), "risks": (HOSTILE,),
        "teammates": (record.teammate("api"),
                      web.model_copy(update={"outcome": "failed", "reason": HOSTILE, "task_title": HOSTILE,
                                             "summary": HOSTILE})),
        "verification": tuple(v.model_copy(update={"command": "x` <img src=y>", "output_tail": HOSTILE})
                              for v in record.verification)})
    (results / RECORD_FILE).write_text(tampered.model_dump_json())
    _, state, report = _publish(tmp_path, repo, results)
    # Rendered as GitHub would (HTML allowed): the text shows, and does nothing.
    html = MarkdownIt("commonmark", {"html": True}).render(report)
    assert "<img" not in html and "<details" not in html and 'href="https://evil' not in html
    assert "<h2>rally-gh run <code>r1</code>: Done</h2>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown as written
    assert "\n" not in state.teammate("web").reason


def test_workflow_files_a_token_cannot_push_are_named_before_the_push(ran: tuple[Path, Path], tmp_path: Path) -> None:
    repo, results = ran
    _api_also_commits(repo, results, {".github/workflows/ci.yml": "on: push\n"}, "rally(api): ci")
    _, state, report = _publish(tmp_path, repo, results)
    assert state.teammate("api").outcome == "done"  # it owns the file: not a refusal
    (problem,) = [p for p in state.problems if "workflow files" in p]
    assert problem.startswith("api changes workflow files (.github/workflows/ci.yml)") and "`workflows`" in problem


def test_a_bundle_with_an_object_git_would_refuse_from_a_push_is_not_imported(
        ran: tuple[Path, Path], tmp_path: Path) -> None:
    """A tree holding ``.git`` (what git itself refuses from a push): refused before any of it is looked at."""
    repo, results = ran
    record = _record(results)
    api = record.teammate("api")
    blob = git(repo, "hash-object", "-w", "--stdin", input="[core]\n\thooksPath = /tmp\n").strip()
    inner = git(repo, "mktree", input=f"100644 blob {blob}\tconfig\n").strip()
    tree = git(repo, "mktree", input=f"040000 tree {inner}\t.git\n").strip()
    head = git(repo, "commit-tree", tree, "-p", api.head_sha or record.base_sha, "-m", "rally(api): more").strip()
    git(repo, "branch", "-f", api.branch, head)
    write_results(repo, record.with_teammate(api.model_copy(update={"head_sha": head})), results)
    with pytest.raises(RallyError, match="its objects were refused: .*hasDotgit"):
        _publish(tmp_path, repo, results)
