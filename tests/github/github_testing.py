"""Helpers shared by the GitHub tests (importable; fixtures stay in conftest)."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rally_gh.commands import admit as admit_cmd
from rally_gh.commands import publish as publish_cmd
from rally_gh.commands import run as run_cmd
from rally_gh.commands.admit import AdmitOptions
from rally_gh.commands.publish import PublishOptions
from rally_gh.commands.run import RunOptions
from rally_gh.github.actions import read
from rally_gh.github.conversation import reply_marker
from rally_gh.github.endpoint import CommentId, RequestLimits
from rally_gh.github.fake import FakeGitHubServer
from rally_gh.publish import outputs_file_values
from rally_gh.run.published import Again, published_ref
from rally_gh.testing import git, init_repo

TEST_LIMITS = RequestLimits(write_interval_s=0.01, max_attempts=4, backoff_s=0.01, max_wait_s=5.0, timeout_s=1)
"""Waits shrunk for tests; ``timeout_s`` is PyGithub's minimum (whole seconds)."""


# --- The shop: a run on GitHub that ended with web failed, for the conversation's scenarios -----

# web needs api's work: run beside api from the base it fails; run again on the integration it succeeds.
# A follow-up round answers what the review asked, which reaches it only through its prompt file.
SHOP_AGENT = """\
import os, pathlib, sys
name = os.environ["RALLY_TEAMMATE"]
prompt = pathlib.Path(os.environ["RALLY_PROMPT_FILE"]).read_text()
if name == "web" and not pathlib.Path("src/api/work.txt").exists():
    sys.exit("web needs the api first: src/api/work.txt is missing")
pathlib.Path(f"src/{name}").mkdir(parents=True, exist_ok=True)
work = pathlib.Path(f"src/{name}/work.txt")
if "## Review comments" in prompt:
    work.write_text(work.read_text() + f"{name}: logging, as the review asked\\n")
else:
    work.write_text(f"{name} v1\\n")
"""

SHOP_RUN = "issue-1-4242"


def job_env(fake: FakeGitHubServer, event_name: str, event: Path, workflow_run: int | str, *, token: bool = True,
            outputs: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of one job of a workflow run against the fake, with or without the token."""
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "owner/repo", "GITHUB_API_URL": fake.api_url,
           "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event), "GITHUB_RUN_ID": str(workflow_run),
           "PATH": os.environ["PATH"], **extra}
    if outputs is not None:
        env["GITHUB_OUTPUT"] = str(outputs)
    return {**env, "GITHUB_TOKEN": fake.token} if token else env


@dataclass
class Shop:
    """The fake GitHub with the shop's repository, and the issue its run is for."""

    fake: FakeGitHubServer
    tmp: Path
    issue: int
    jobs: int = 0

    def _fresh(self, payload: dict[str, Any]) -> tuple[Path, Path]:
        """A fresh runner: a new clone, and the event's file."""
        self.jobs += 1
        clone = self.tmp / f"job{self.jobs}"
        git(self.tmp, "clone", "-q", self.fake.authenticated_git_url, str(clone))
        event = self.tmp / f"event{self.jobs}.json"
        event.write_text(json.dumps(payload))
        return clone, event

    def job(self, event_name: str, payload: dict[str, Any], workflow_run: int, **extra_env: str) -> tuple[int, str]:
        """One job of a workflow run, on a fresh runner: `rally-gh run` with the event (the one-job way)."""
        clone, event = self._fresh(payload)
        out = io.StringIO()
        code = run_cmd.run(clone, read(job_env(self.fake, event_name, event, workflow_run, **extra_env)), out,
                           progress_stream=io.StringIO())
        return code, out.getvalue()

    def split(self, event_name: str, payload: dict[str, Any], workflow_run: int) -> SplitJobs:
        """rally-comment.yml's three jobs for the event, each on a fresh runner, sharing what the workflow
        passes between them (the command job's outputs, the two artifacts); see ``SplitJobs``."""
        folder = self.tmp / f"workflow{workflow_run}-{self.jobs}"
        folder.mkdir()
        jobs = SplitJobs(self, event_name, payload, workflow_run, folder)
        jobs.command()
        return jobs

    def comment(self, body: str, user: str, on: int | None = None) -> tuple[int, dict[str, Any]]:
        """A comment on the run's issue, or ``on`` another (the run's pull request)."""
        where = on or self.issue
        said = self.fake.add_comment(where, body, user=user)
        return said, {"action": "created", "sender": {"login": user, "type": "User"},
                      "issue": {"number": where, "title": "Shop", "body": "Both halves.", "labels": []},
                      "comment": {"id": said, "body": body, "user": {"login": user}},
                      "repository": {"default_branch": "main", "full_name": "owner/repo"}}

    def review(self, pull: int, review: int, body: str, state: str = "changes_requested") -> dict[str, Any]:
        """The event of review ``review`` submitted on the run's pull request."""
        return {"action": "submitted", "sender": {"login": "alice", "type": "User"},
                "review": {"id": review, "state": state, "body": body, "user": {"login": "alice"}},
                "pull_request": {"number": pull, "head": {"ref": f"rally/{SHOP_RUN}/_integration", "sha": "0" * 40,
                                                          "repo": {"full_name": "owner/repo"}},
                                 "base": {"ref": "main", "sha": "1" * 40}},
                "repository": {"default_branch": "main", "full_name": "owner/repo"}}

    def two_teammates_reviewed(self) -> tuple[int, int, tuple[int, int, int]]:
        """A review that requests changes on the run's pull request, with inline comments on a file of api's,
        one of web's and the README nobody owns: the pull request, the review, and the three comments."""
        (pull,) = self.fake.pulls
        review = self.fake.add_review(pull, "alice", "CHANGES_REQUESTED", body="Please use logging everywhere.",
                                      comments=(("src/api/work.txt", 1, "print is not logging"),
                                                ("src/web/work.txt", 1, "nor is this"),
                                                ("README.md", 1, "say what the shop sells")))
        api, web, readme = sorted(c for c, v in self.fake.review_comments.items() if v["review"] == review)
        return pull, review, (api, web, readme)

    def threads_answered(self, pull: int, comments: tuple[int, int, int]) -> str:
        """Each thread of ``two_teammates_reviewed`` answered: api's and web's with a commit on the pull
        request's branch that changes the owner's file as asked, the README's with who may change it; the
        one pull request updated. The review's comment on the pull request, which says how it went."""
        fake = self.fake
        api, web, readme = comments
        replies = {c["in_reply_to"]: c["body"] for c in fake.review_comments.values() if c["in_reply_to"]}
        integration = f"rally/{SHOP_RUN}/_integration"
        for comment, owner in ((api, "api"), (web, "web")):
            reply = replies[comment]
            assert f"**{owner}**'s follow-up round" in reply, reply
            named = reply.split("Addressed by `", 1)[1].split("`", 1)[0]
            git(fake.bare_repo, "merge-base", "--is-ancestor", named, integration)
            assert git(fake.bare_repo, "diff-tree", "--no-commit-id", "--name-only", "-r", named).split() == [
                f"src/{owner}/work.txt"]
            assert "logging, as the review asked" in git(fake.bare_repo, "show", f"{integration}:src/{owner}/work.txt")
        assert "No teammate owns `README.md`" in replies[readme]
        assert len(fake.pulls) == 1
        (taken,) = [c["body"] for c in fake.comments.values() if c["issue"] == pull]
        return str(taken)

    def reply(self, comment: int) -> str:
        (found,) = [c["body"] for c in self.fake.comments.values()
                    if c["body"].startswith(reply_marker(CommentId(comment)))]
        return str(found)

    def web_retried(self, said: int, api_before: str) -> None:
        """`/rally retry web` (comment ``said``) fixed the run: the reply says so; the same pull request, ready
        now, holds both halves; api's work is as it was; the issue says done."""
        reply = self.reply(said)
        assert f"Run `{SHOP_RUN}`, integrated and verified again" in reply and "**web**: done, in the pull request" in reply
        (pull,) = self.fake.pulls.values()
        assert not pull["draft"] and pull["head"] == f"rally/{SHOP_RUN}/_integration"
        assert {"src/api/work.txt", "src/web/work.txt"} <= set(self.files("_integration").split())
        assert self.head("api") == api_before
        assert "rally:done" in self.fake.issues[self.issue]["labels"]

    def head(self, branch: str) -> str:
        return self.fake.refs()[f"refs/heads/rally/{SHOP_RUN}/{branch}"]

    def files(self, branch: str) -> str:
        return git(self.fake.bare_repo, "ls-tree", "-r", "--name-only", f"rally/{SHOP_RUN}/{branch}")


@dataclass
class SplitJobs:
    """One workflow run of rally-comment.yml: ``command`` (``rally-gh admit --again``, the token, no agent),
    ``agents`` (``rally-gh run --again --results``, no token: it must ask GitHub nothing) and ``publish``
    (``rally-gh publish --again``, the token), each in its own clone. The taken-up run reaches the agents'
    job as the command job's artifact; what to do again reaches the publish job as its output."""

    shop: Shop
    event_name: str
    payload: dict[str, Any]
    workflow_run: int
    folder: Path
    code: int = 0
    out: str = ""
    outputs: dict[str, str] | None = None

    @property
    def handed(self) -> Path:
        return self.folder / "rally-again"

    @property
    def results(self) -> Path:
        return self.folder / "rally-results"

    def command(self) -> None:
        clone, event = self.shop._fresh(self.payload)
        outputs = self.folder / "outputs"
        outputs.touch()
        out = io.StringIO()
        env = job_env(self.shop.fake, self.event_name, event, self.workflow_run, outputs=outputs)
        self.code = admit_cmd.admit(clone, read(env), out, options=AdmitOptions(again=self.handed))
        self.out, self.outputs = out.getvalue(), outputs_file_values(outputs)

    @property
    def admitted(self) -> bool:
        return self.outputs is not None and self.outputs.get("admitted") == "true"

    def agents(self) -> tuple[int, str]:
        clone, event = self.shop._fresh(self.payload)
        assert self.outputs is not None
        asked = len(self.shop.fake.requests)
        out = io.StringIO()
        env = job_env(self.shop.fake, self.event_name, event, self.workflow_run, token=False)
        code = run_cmd.run(clone, read(env), out, progress_stream=io.StringIO(), options=RunOptions(
            run_id=self.outputs["run-id"], results=self.results, again=self.handed))
        assert len(self.shop.fake.requests) == asked, "the agents' job asked GitHub something"
        return code, out.getvalue()

    def publish(self) -> tuple[int, str]:
        clone, event = self.shop._fresh(self.payload)
        assert self.outputs is not None
        out = io.StringIO()
        env = job_env(self.shop.fake, self.event_name, event, self.workflow_run)
        code = publish_cmd.publish(clone, read(env), out, options=PublishOptions(
            results=self.results, run_id=self.outputs["run-id"],
            again=Again.model_validate_json(self.outputs["again"])))
        return code, out.getvalue()

    def through(self) -> tuple[int, str]:
        """The agents' job, then the publish job, as the workflow runs them after an admitted command."""
        assert self.admitted, self.out
        code, out = self.agents()
        assert code in (0, 1), out
        return self.publish()


def push_shop(fake: FakeGitHubServer, tmp: Path, agent_script: str, names: Sequence[str], *,
              head: Sequence[str] = (), extra: Mapping[str, Sequence[str]] | None = None) -> None:
    """The shop's repository on the fake's main: a README and a map of scripted teammates ``names``, each
    owning src/<name>/**, their agent ``agent_script`` (with ``head``'s lines before the teammates, and
    ``extra``'s lines for some of them)."""
    agent = tmp / "agent.py"
    agent.write_text(agent_script)
    command = f"[{json.dumps(sys.executable)}, {json.dumps(str(agent))}]"
    team = ["version: 1", "team: shop", "defaults: {timeout: 30s, retries: 0}", *head, "teammates:"]
    for name in names:
        team += [f"  - name: {name}", f"    exclusive_write: [src/{name}/**]",
                 f"    agent: {{preset: command, command: {command}}}", *(extra or {}).get(name, ())]
    origin = init_repo(tmp / "origin", {"README.md": "# shop\n", "rally.yml": "\n".join(team) + "\n"})
    git(origin, "push", "-q", fake.authenticated_git_url, "main")


def open_shop(fake: FakeGitHubServer, tmp: Path) -> Shop:
    """The run of issue 1 in workflow run 4242 has ended: api done and in a draft pull request, web failed."""
    fake.set_permission("alice", "write")
    fake.set_permission("bob", "read")
    issue = fake.create_issue("Shop", "Both halves.", user="alice", labels=("rally:parallel",))
    push_shop(fake, tmp, SHOP_AGENT, ("api", "web"))
    shop = Shop(fake, tmp, issue)
    code, out = shop.job("issues", {
        "action": "labeled", "label": {"name": "rally:parallel"}, "sender": {"login": "alice", "type": "User"},
        "issue": {"number": issue, "title": "Shop", "body": "Both halves.", "labels": [{"name": "rally:parallel"}]},
        "repository": {"default_branch": "main", "full_name": "owner/repo"}}, 4242)
    assert code == 1 and "web needs the api first" in out, out
    (pull,) = fake.pulls.values()
    assert pull["draft"] and published_ref(SHOP_RUN) in fake.refs()
    assert "src/web/work.txt" not in shop.files("_integration")
    return shop
