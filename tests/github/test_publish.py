"""A run's edges on GitHub (rally_gh.publish), with the real PyGithub client against the fake."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from rally_gh import publish
from rally_gh.config import Location
from rally_gh.errors import RallyError
from rally_gh.github.actions import ActionsContext, read
from rally_gh.github.endpoint import BODY_LIMIT, IssueNumber, run_marker
from rally_gh.github.events import Trigger, parse_event
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.github.real import RealGitHub
from rally_gh.ownership.enforce import Violation
from rally_gh.report import build_report
from rally_gh.state import RunState, TeammateRecord
from rally_gh.testing import commit, git, init_repo


def _publish(gh: RealGitHub, state: RunState, trigger: Trigger, actions: ActionsContext) -> dict[str, str]:
    return publish.publish_run(gh, state, build_report(state), trigger, actions)

RUN = "issue-1-77-1"


@dataclass(frozen=True)
class Pushed:
    """Branches of one run, pushed to the fake as the run's publish step would."""

    base: str
    heads: dict[str, str]
    integration: str


def _push(work: Path, fake: FakeGitHubServer, branch: str) -> str:
    git(work, "push", "-q", fake.authenticated_git_url, branch)
    return git(work, "rev-parse", branch).strip()


@pytest.fixture
def pushed(fake_github: FakeGitHubServer, tmp_path: Path) -> Pushed:
    work = init_repo(tmp_path / "work", {"README.md": "hello\n"})
    base = _push(work, fake_github, "main")
    heads = {}
    for name in ("api", "web"):
        git(work, "checkout", "-q", "-b", f"rally/{RUN}/{name}", "main")
        commit(work, {f"src/{name}/main.py": f"# {name}\n"}, f"rally({name}): work")
        heads[name] = _push(work, fake_github, f"rally/{RUN}/{name}")
    git(work, "checkout", "-q", "-b", f"rally/{RUN}/_integration", "main")
    commit(work, {"src/api/main.py": "# api\n", "src/web/main.py": "# web\n"}, "rally: integrated")
    return Pushed(base, heads, _push(work, fake_github, f"rally/{RUN}/_integration"))


def run_state(pushed: Pushed, *, outcomes: dict[str, str] | None = None,
              violations: dict[str, tuple[Violation, ...]] | None = None, dry_run: bool = False) -> RunState:
    outcomes = outcomes or {"api": "done", "web": "done"}
    violations = violations or {}
    teammates = tuple(
        TeammateRecord(name=name, role=f"{name} work", agent="command", branch=f"rally/{RUN}/{name}",
                       start_sha=pushed.base, head_sha=pushed.heads[name], outcome=outcome,  # type: ignore[arg-type]
                       attempts=1, duration_s=3.0, files_changed=(f"src/{name}/main.py",),
                       reason="" if outcome == "done" else "the agent exited 1",
                       violations=violations.get(name, ()), integrated=outcome == "done")
        for name, outcome in outcomes.items())
    integrated = tuple(t.name for t in teammates if t.integrated)
    return RunState(run_id=RUN, team="checkout", base_ref="main", base_sha=pushed.base, config_digest="0" * 16,
                    status="planned" if dry_run else "finished", dry_run=dry_run, started_at=0.0, finished_at=9.0,
                    max_parallel=2, teammates=teammates, phases={"run": 3.0},
                    integration_branch=f"rally/{RUN}/_integration" if integrated else None,
                    integration_sha=pushed.integration if integrated else None, integrated=integrated)


def _sender(login: str) -> dict[str, str]:
    return {"login": login, "type": "User"}


def labeled(issue: int, sender: str = "alice") -> Trigger:
    return parse_event("issues", {"action": "labeled", "label": {"name": "rally:parallel"},
                                  "issue": {"number": issue}, "sender": _sender(sender)})


def actions_env(tmp_path: Path) -> ActionsContext:
    return read({"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
                 "GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "owner/repo",
                 "GITHUB_RUN_ID": "77"})


def test_a_complete_run_and_its_rerun_leave_one_comment_and_one_pull_request(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed, tmp_path: Path) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders", "Build /orders", user="alice",
                                                 labels=("rally:parallel",)))
    trigger = labeled(issue)
    state = run_state(pushed)
    env = actions_env(tmp_path)

    publish.announce(gh, issue, RUN)
    publish.progress(gh, issue, RUN, state.model_copy(update={"status": "running"}))
    outputs = _publish(gh, state, trigger, env)

    assert outputs["status"] == "done"
    assert (outputs["pr-number"], outputs["pr-url"]) == ("500", f"{fake_github.root_url}/owner/repo/pull/500")
    assert json.loads(outputs["report-json"])["run_id"] == RUN
    assert publish.outputs_file_values(tmp_path / "output.txt") == outputs
    assert (tmp_path / "summary.md").read_text().startswith(run_marker(RUN))

    world = fake_github.state()
    issue_line = next(line for line in world.splitlines() if line.startswith("issue #1"))
    assert issue_line == "issue #1 [open] 'Add orders' by alice labels=['rally:done', 'rally:parallel']"
    pull = fake_github.issues[500]
    assert pull["title"] == "rally: Add orders (#1)"
    assert pull["body"].startswith("Closes #1\n\n" + run_marker(RUN))
    assert pull["labels"] == ["rally"]
    assert fake_github.pulls[500] == {"head": f"rally/{RUN}/_integration", "head_repo": "owner/repo",
                                      "base": "main", "head_sha": pushed.integration, "draft": False}
    comment = next(iter(fake_github.comments.values()))
    assert comment["body"].startswith(run_marker(RUN) + f"\n## rally-gh run `{RUN}`: done")
    assert "Pull request: #500" in comment["body"]
    assert "[job summary](https://github.example/owner/repo/actions/runs/77)" in comment["body"]
    assert "| api | api work | done | 1 | 1 |  |" in comment["body"]
    assert [(r["name"], r["head_sha"], r["conclusion"], r["external_id"]) for r in fake_github.check_runs.values()] == [
        ("rally-gh/ownership", pushed.heads["api"], "success", f"{RUN}:api"),
        ("rally-gh/ownership", pushed.heads["web"], "success", f"{RUN}:web"),
        ("rally-gh/ownership", pushed.integration, "success", f"{RUN}:integration")]
    assert ("reaction eyes by github-actions[bot]") in world

    # The job is re-run: it announces again and publishes the same run again.
    publish.announce(gh, issue, RUN)
    again = _publish(gh, state, trigger, env)
    assert again["pr-number"] == "500"
    assert (fake_github.count("POST", r"/comments$"), fake_github.count("POST", r"/pulls$")) == (1, 1)
    assert len(fake_github.comments) == 1 and len(fake_github.pulls) == 1
    assert fake_github.issues[1]["labels"] == ["rally:parallel", "rally:done"]
    assert sum(r["content"] == "eyes" for r in fake_github.reactions) == 1


def test_a_failed_teammate_makes_a_draft_without_closes_and_a_partial_label(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed, tmp_path: Path) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders", user="alice"))
    state = run_state(pushed, outcomes={"api": "done", "web": "failed"})
    publish.announce(gh, issue, RUN)
    outputs = _publish(gh, state, labeled(issue), actions_env(tmp_path))
    assert outputs["status"] == "partial"
    assert fake_github.pulls[500]["draft"] is True
    assert "Closes #1" not in fake_github.issues[500]["body"]
    assert fake_github.issues[1]["labels"] == ["rally:partial"]
    comment = next(iter(fake_github.comments.values()))["body"]
    assert "| web | web work | failed | 1 | 1 | the agent exited 1 |" in comment
    assert "Pull request: #500 (draft)" in comment

    # A re-run in which every teammate succeeds: the same pull request, ready for review.
    outputs = _publish(gh, run_state(pushed), labeled(issue), actions_env(tmp_path))
    assert (outputs["status"], outputs["pr-number"]) == ("done", "500")
    assert fake_github.pulls[500]["draft"] is False and len(fake_github.pulls) == 1
    assert fake_github.issues[500]["body"].startswith("Closes #1")
    assert "Pull request: #500\n" in next(iter(fake_github.comments.values()))["body"] + "\n"


def test_nothing_integrated_opens_no_pull_request(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed, tmp_path: Path) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders", user="alice"))
    state = run_state(pushed, outcomes={"api": "failed", "web": "timed_out"})
    outputs = _publish(gh, state, labeled(issue), actions_env(tmp_path))
    assert (outputs["status"], outputs["pr-number"], outputs["pr-url"]) == ("failed", "", "")
    assert not fake_github.pulls
    assert fake_github.issues[1]["labels"] == ["rally:failed"]
    assert "No pull request: nothing was integrated." in next(iter(fake_github.comments.values()))["body"]
    # The teammate branches still get their check: their work is kept and reviewable.
    assert len(fake_github.check_runs) == 2


def test_a_dry_run_publishes_no_checks_no_pull_request_and_no_outcome_label(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed, tmp_path: Path) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders", user="alice"))
    publish.announce(gh, issue, RUN)
    outputs = _publish(gh, run_state(pushed, dry_run=True), labeled(issue), actions_env(tmp_path))
    assert outputs["status"] == "dry-run"
    assert not fake_github.pulls and not fake_github.check_runs
    assert fake_github.issues[1]["labels"] == []
    assert "dry run, nothing started" in next(iter(fake_github.comments.values()))["body"]


def test_a_dispatch_without_an_issue_titles_the_pull_request_with_the_team(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed, tmp_path: Path) -> None:
    trigger = parse_event("workflow_dispatch", {"inputs": {"issue": ""}, "sender": {"login": "alice"}})
    outputs = _publish(gh, run_state(pushed), trigger, actions_env(tmp_path))
    assert outputs["pr-number"] == "500"
    assert fake_github.issues[500]["title"] == "rally: checkout"
    assert "Closes" not in fake_github.issues[500]["body"]
    assert not fake_github.comments


def test_a_report_over_the_body_limit_is_cut_with_a_pointer_to_the_job_summary(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    issue = gh.issue(IssueNumber(fake_github.create_issue("Add orders")))
    report = "## report\n\n" + "".join(f"| row {i} | {'x' * 80} |\n" for i in range(2000))
    assert len(report) > BODY_LIMIT
    pull = publish.open_pull(gh, run_state(pushed), issue, report, "https://github.example/owner/repo/actions/runs/77")
    assert pull is not None
    body = fake_github.issues[pull.number]["body"]
    assert len(body) <= BODY_LIMIT
    assert body.startswith("Closes #1\n\n## report\n")
    assert body.rstrip().endswith("the full report is in the [job summary]"
                                  "(https://github.example/owner/repo/actions/runs/77).**")


def test_untrusted_text_is_data_and_loses_its_power(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    title = "Orders $(touch /tmp/pwned) `id`\n@everyone ${{ github.token }}"
    issue = gh.issue(IssueNumber(fake_github.create_issue(title)))
    report = "Fixes #7, closes owner/other#3, see @octocat; mail ada@example.com; fixture #2\n"
    state = run_state(pushed, outcomes={"api": "done", "web": "failed"})
    pull = publish.open_pull(gh, state, issue, report)
    assert pull is not None
    assert pull.title == "rally: Orders $(touch /tmp/pwned) `id` @everyone ${{ github.token }} (#1)"
    body = fake_github.issues[pull.number]["body"]
    assert body == ("Fix\u2060es #7, clos\u2060es owner/other#3, see @\u2060octocat; mail ada@example.com;"
                    " fixture #2\n")
    closing = publish.pull_title(state, dataclasses.replace(issue, title="Fixes #3: orders"))
    assert closing == "rally: Fix\u2060es #3: orders (#1)"
    long_title = publish.pull_title(state, dataclasses.replace(issue, title="x" * 300))
    assert long_title.endswith("… (#1)") and len(long_title) == 256



@pytest.mark.parametrize("text", ["x.@octocat", "x-@octocat", "x+@octocat", "é@octocat", "中@octocat",
                                  "&#64;octocat", "&#x40;octocat", "&commat;octocat", "\\@octocat"])
def test_no_mention_pings_whatever_stands_before_the_at(text: str) -> None:
    """GitHub starts a mention after any character but an ASCII letter, digit or _ (its word characters),
    and renders an ``@`` written as an entity as one: agent-written text cannot ping through either."""
    assert "@\u2060octocat" in publish.defuse(text) and "@octocat" not in publish.defuse(text)


@pytest.mark.parametrize("text", ["éfixes #3", "_x_ closes: #3", "Resolves https://github.com/owner/repo/issues/3",
                                  "fixed http://github.example/o/r/pull/3"])
def test_no_closing_keyword_closes_an_issue(text: str) -> None:
    defused = publish.defuse(text)
    assert defused != text and "\u2060" in defused
    assert publish.defuse("mail ada@example.com, prefix #3, a suffix #4") == "mail ada@example.com, prefix #3, a suffix #4"


def violation(teammate: str, path: str, owner: str | None = "web", commit: str = "c" * 40) -> Violation:
    return Violation(teammate=teammate, path=path, owner=owner, kind="modified", commit=commit)


def test_120_violating_files_make_one_check_run_with_annotations_sent_50_50_20(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    bad = tuple(violation("api", f"src/web/f{i:03}.py") for i in range(120))
    # The same file in two commits is one annotation.
    bad += (violation("api", "src/web/f000.py", commit="d" * 40),)
    state = run_state(pushed, outcomes={"api": "violated", "web": "done"}, violations={"api": bad})
    published = publish.publish_checks(gh, state)
    assert {who: p.kind for who, p in published.items()} == {
        "api": "check-run", "web": "check-run", "integration": "check-run"}
    api_run = fake_github.check_runs[published["api"].check_run_id or 0]
    assert (api_run["conclusion"], len(api_run["annotations"])) == ("failure", 120)
    assert api_run["output"]["title"] == "api: 120 files written outside its ownership"
    first = api_run["annotations"][0]
    assert (first["path"], first["message"]) == (
        "src/web/f000.py", f"modified by api; owned by web (commits {'c' * 10}, {'d' * 10})")
    assert api_run["annotations"][1]["message"] == f"modified by api; owned by web (commit {'c' * 10})"
    sent = [len(r.body["output"]["annotations"]) for r in fake_github.requests
            if r.path.startswith("/repos/owner/repo/check-runs") and r.method in ("POST", "PATCH")
            and r.body["output"]["annotations"]]
    assert sent == [50, 50, 20]
    # The violating work was not integrated: the integration head is clean.
    integration = fake_github.check_runs[published["integration"].check_run_id or 0]
    assert (integration["conclusion"], integration["annotations"]) == ("success", [])


def test_an_annotation_says_why_and_names_the_rule_that_owns_the_file(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    bad = (Violation(teammate="api", path="src/web/main.py", owner="web", kind="modified", commit="c" * 40,
                     reason="api modified it, but it is owned by web", rule=Location("rally.yml", 12, 5)),)
    state = run_state(pushed, outcomes={"api": "violated", "web": "done"}, violations={"api": bad})
    published = publish.publish_checks(gh, state)
    api_run = fake_github.check_runs[published["api"].check_run_id or 0]
    [annotation] = api_run["annotations"]
    assert annotation["message"] == (
        f"api modified it, but it is owned by web, rule at rally.yml:12:5 (commit {'c' * 10})")
    assert ("| `src/web/main.py` | api | web | modified | `cccccccccc` | api modified it, but it is owned by web "
            "| `rally.yml:12:5` |") in api_run["output"]["summary"]


def test_a_token_that_cannot_write_checks_gets_commit_statuses(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    fake_github.inject("POST", r"/check-runs$", 403, times=5,
                       body={"message": "Resource not accessible by integration",
                             "documentation_url": f"{fake_github.root_url}/docs/rest"})
    bad = (violation("api", "src/web/main.py"),)
    state = run_state(pushed, outcomes={"api": "violated", "web": "done"}, violations={"api": bad})
    published = publish.publish_checks(gh, state, details_url="https://github.example/run/77")
    assert {p.kind for p in published.values()} == {"status"}
    # The first refusal is enough: the others go straight to statuses.
    assert fake_github.count("POST", r"/check-runs$") == 1
    assert [(s["sha"], s["context"], s["state"], s["description"]) for s in fake_github.statuses] == [
        (pushed.heads["api"], "rally-gh/ownership", "failure", "api: 1 file written outside its ownership"),
        (pushed.heads["web"], "rally-gh/ownership", "success", "web: every file written is owned"),
        (pushed.integration, "rally-gh/ownership", "success", "integration: every file written is owned")]
    assert not fake_github.check_runs


def test_a_refused_sender_gets_one_comment_and_nothing_else(
        fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.set_permission("mallory", "read")
    issue = fake_github.create_issue("Add orders", user="mallory")
    trigger = labeled(issue, sender="mallory")
    for _ in range(2):  # the job is re-run: still one comment
        decision = publish.admit(gh, trigger, run_id="issue-1-5")
        assert not decision.allowed
    assert len(fake_github.comments) == 1
    body = next(iter(fake_github.comments.values()))["body"]
    assert body.startswith(run_marker("issue-1-5") + "\n### rally-gh: no run\n\n@\u2060mallory has read permission")
    assert not fake_github.labels.get("rally:running") and not fake_github.reactions and not fake_github.pulls


def test_an_allowed_sender_gets_no_refusal(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.set_permission("alice", "write")
    issue = fake_github.create_issue("Add orders", user="alice")
    assert publish.admit(gh, labeled(issue)).allowed
    assert not fake_github.comments


def test_outputs_use_a_fresh_random_delimiter_for_multiline_values(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tricky = "line one\nghadelimiter_x\nEOF\nstatus=done\n"
    assert publish.write_outputs(out, {"run-id": "r1", "report-json": tricky, "pr-url": ""})
    assert publish.write_outputs(out, {"status": "partial", "pr-number": "a\nb"})
    lines = (tmp_path / "out").read_text().splitlines()
    assert lines[0] == "run-id=r1"
    header = "report-json<<ghadelimiter_"
    assert lines[1].startswith(header) and len(lines[1]) == len(header) + 32
    # The value's own lines (its final newline is an empty line), then the delimiter alone.
    assert lines[2:7] == [*tricky.split("\n")] and lines[7] == lines[1].split("<<")[1]
    assert lines[8] == "pr-url="
    first, second = (line.split("<<")[1] for line in lines if "<<" in line)
    assert first != second
    # Read back as the runner reads it.
    assert publish.outputs_file_values(tmp_path / "out") == {
        "run-id": "r1", "report-json": tricky, "pr-url": "", "status": "partial", "pr-number": "a\nb"}
    assert not publish.write_outputs(None, {"run-id": "r1"})


def test_an_output_value_holding_the_delimiter_is_refused() -> None:
    with pytest.raises(ValueError, match="contains the delimiter"):
        publish.format_outputs({"report-json": "a\nEOF\nb"}, delimiter=lambda: "EOF")
    with pytest.raises(ValueError, match="not an output name"):
        publish.format_outputs({"bad name": "x"})


def test_the_step_summary_is_appended_and_cut_under_a_mebibyte(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    assert publish.write_step_summary(summary, "## first\n")
    assert publish.write_step_summary(summary, "é" * (publish.STEP_SUMMARY_LIMIT // 2 + 10))
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("## first\n")
    assert len(text.encode()) <= publish.STEP_SUMMARY_LIMIT
    assert "rally-gh report --format md" in text
    assert not publish.write_step_summary(None, "x")


def test_progress_comment_is_throttled_and_never_stops_the_run(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders"))
    now = [100.0]
    state = run_state(pushed).model_copy(update={"status": "running"})
    warnings: list[str] = []
    sink = publish.ProgressComment(gh, issue, RUN, lambda: state, lambda: now[0], min_interval_s=10.0,
                                   warn=warnings.append)
    sink("api", "running", "")
    sink("web", "running", "")  # same instant: skipped
    now[0] += 11
    fake_github.inject("GET", r"/issues/1/comments$", 404, times=10)
    sink("api", "done", "")
    now[0] += 11
    sink("web", "done", "")  # broken once: quiet from then on
    assert fake_github.count("POST", r"/comments$") == 1
    assert fake_github.count("GET", r"/issues/1/comments$") == 2
    assert len(warnings) == 1 and "the run goes on" in warnings[0]


def test_progress_waits_for_the_state_file_without_giving_up(
        fake_github: FakeGitHubServer, gh: RealGitHub, pushed: Pushed) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders"))
    saved: list[RunState] = []

    def load() -> RunState:
        if not saved:
            raise RallyError("no run 'r1': run.json does not exist")
        return saved[0]

    sink = publish.ProgressComment(gh, issue, RUN, load, lambda: 0.0, min_interval_s=10.0)
    sink("", "phase", "assess")
    assert not fake_github.comments
    saved.append(run_state(pushed))
    sink("", "phase", "plan")  # the same instant, but nothing was posted yet
    assert len(fake_github.comments) == 1


def test_a_refused_dispatch_without_an_issue_has_nowhere_to_comment(
        fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    fake_github.set_permission("mallory", "triage")
    trigger = parse_event("workflow_dispatch", {"inputs": {}, "sender": _sender("mallory")})
    decision = publish.admit(gh, trigger)
    assert not decision.allowed and "triage" in decision.reason
    assert not fake_github.comments


def test_refusals_without_a_run_id_share_one_comment(fake_github: FakeGitHubServer, gh: RealGitHub) -> None:
    issue = IssueNumber(fake_github.create_issue("Add orders"))
    publish.refuse(gh, issue, "the rally block names `nobody`, who is not a teammate")
    publish.refuse(gh, issue, "the rally block names `ghost`, who is not a teammate")
    (comment,) = fake_github.comments.values()
    assert comment["body"].startswith(publish.REFUSAL_MARKER) and "`ghost`" in comment["body"]


def test_outputs_carry_the_step_complete_block_and_the_handoff_for_agent_pipelines(pushed: Pushed) -> None:
    from rally_gh.publish import run_outputs

    outputs = run_outputs(build_report(run_state(pushed, outcomes={"api": "done", "web": "failed"})), None)
    assert "_STEP_COMPLETE\nAgent: rally-gh" in outputs["step-complete"] and "Status: PARTIAL" in outputs["step-complete"]
    assert "NEXUS_HANDOFF" in outputs["handoff"]
