"""A fake GitHub that the real PyGithub client talks to over real HTTP.

``FakeGitHubServer`` serves the REST operations rally-gh uses for one
repository, with in-memory records under GitHub's field names, and a real bare
git repository served by ``git http-backend`` under ``/git/<owner>/<repo>.git``
so that clones and pushes authenticate with the token and pull request heads
and bases are real commits.

Numbering is chosen to be easy to spot in output. GitHub gives issues and pull
requests numbers from one sequence (a pull request is also an issue: labels and
comments on it go through the issues API). The fake keeps that single space but
splits it: issues are numbered from 1 and pull requests from 500, so ``#3`` is
always an issue and ``#501`` a pull request. Comments start at 100001, labels
at 300001, check runs at 700001, statuses at 800001, reactions at 900001.

Anything not modelled answers 501 ``<METHOD> <path> not implemented in
FakeGitHub`` so a test that strays fails loudly. Faults are scripted with
``inject`` (an error response, or "performed, then too slow to answer").
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from rally_gh import process

JSON = dict[str, Any]

API_PREFIX = "/api/v3"
GIT_PREFIX = "/git/"
ISSUE_NUMBERS_START = 1
PULL_NUMBERS_START = 500
# GitHub's limits, restated rather than imported from endpoint.py: the fake checks
# the client, so it must not share the client's mistakes.
BODY_LIMIT = 65_536
CHECK_OUTPUT_LIMIT = 65_535
ROLES = ("admin", "maintain", "write", "triage", "read", "none")
# The coarse ``permission`` field GitHub reports next to the finer ``role_name``.
COARSE_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write",
                     "triage": "read", "read": "read", "none": "none"}


class FakeGitHubError(Exception):
    """A test drove the fake somewhere it refuses to go (e.g. issue numbers past 499)."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    body: Any
    status: int
    response: Any
    at: float


@dataclass
class Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int
    times: int
    headers: Mapping[str, str]
    body: JSON | None
    mode: Literal["respond", "perform-then-stall"]
    stall_s: float


@dataclass
class _Http(Exception):
    status: int
    message: str
    errors: list[JSON] = field(default_factory=list)


Exchange = Callable[[str, str, Any, int, Any], None]
"""Observer of every API exchange: method, path (under the API root), request body, status, response body."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHubServer:
    """One repository on a pretend GitHub, on 127.0.0.1 at a free port."""

    def __init__(self, repo_full_name: str = "owner/repo", token: str = "fake-token", *,
                 default_branch: str = "main", actor: str = "github-actions[bot]") -> None:
        self.owner, self.repo = repo_full_name.split("/")
        self.repo_full_name = repo_full_name
        self.token = token
        self.default_branch = default_branch
        self.actor = actor
        self._lock = threading.RLock()
        self._tmp = Path(tempfile.mkdtemp(prefix="fake-github-"))
        self.git_root = self._tmp / "git"
        self.bare_repo = self.git_root / self.owner / f"{self.repo}.git"
        self._git("init", "-q", "--bare", "-b", default_branch, str(self.bare_repo), cwd=self._tmp)
        self.users: dict[str, JSON] = {}
        self.roles: dict[str, str] = {}
        self.issues: dict[int, JSON] = {}
        self.pulls: dict[int, JSON] = {}
        self.comments: dict[int, JSON] = {}
        self.labels: dict[str, JSON] = {}
        self.check_runs: dict[int, JSON] = {}
        self.statuses: list[JSON] = []
        self.reactions: list[JSON] = []
        self.workflow_runs: dict[int, JSON] = {}
        self.reviews: dict[int, JSON] = {}
        self.review_comments: dict[int, JSON] = {}
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.observers: list[Exchange] = []
        self._next = {"issue": ISSUE_NUMBERS_START, "pull": PULL_NUMBERS_START, "comment": 100001,
                      "label": 300001, "review": 400001, "review_comment": 600001, "check": 700001, "status": 800001, "reaction": 900001,
                      "user": 1001}
        self._user(actor, "Bot")
        self._user(self.owner, "User")
        self.roles[self.owner] = "admin"
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.root_url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.root_url + API_PREFIX
        self.git_url = f"{self.root_url}{GIT_PREFIX}{self.owner}/{self.repo}.git"
        self.authenticated_git_url = (
            f"http://x-access-token:{token}@127.0.0.1:{self.port}{GIT_PREFIX}{self.owner}/{self.repo}.git")
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> FakeGitHubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> FakeGitHubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers ----------------------------------------------------
    def set_permission(self, user: str, level: str, *, user_type: str = "User") -> None:
        if level not in ROLES:
            raise FakeGitHubError(f"unknown permission level {level!r}; one of {ROLES}")
        with self._lock:
            self._user(user, user_type)
            self.roles[user] = level

    def create_issue(self, title: str, body: str = "", *, user: str | None = None,
                     labels: tuple[str, ...] = ()) -> int:
        with self._lock:
            number = self._next["issue"]
            if number >= PULL_NUMBERS_START:
                raise FakeGitHubError(f"issue numbers stop at {PULL_NUMBERS_START - 1}: pull requests start there")
            self._next["issue"] += 1
            author = user or self.owner
            self._user(author, "User")
            for name in labels:
                self._label(name)
            self.issues[number] = {"number": number, "title": title, "body": body, "state": "open",
                                   "labels": list(labels), "user": author, "created_at": _now(),
                                   "updated_at": _now(), "pull": False}
            return number

    def add_comment(self, issue: int, body: str, *, user: str | None = None) -> int:
        """A comment someone wrote on an issue or pull request (as an ``issue_comment`` event would carry)."""
        with self._lock:
            self._issue_record(str(issue))
            author = user or self.owner
            self._user(author, "Bot" if author.endswith("[bot]") else "User")
            comment_id = self._take("comment")
            self.comments[comment_id] = {"id": comment_id, "issue": issue, "body": body, "user": author,
                                         "created_at": _now(), "updated_at": _now()}
            return comment_id

    def add_review(self, pull: int, user: str, state: str, body: str = "",
                   comments: tuple[tuple[str, int, str], ...] = ()) -> int:
        """A review someone submitted on a pull request, with inline comments (path, line, text)."""
        with self._lock:
            self._pull_record(str(pull))
            self._user(user, "User")
            review = self._take("review")
            self.reviews[review] = {"id": review, "pull": pull, "user": user, "state": state, "body": body}
            for path, line, text in comments:
                self._new_review_comment(pull, review, user, path, line, text, None)
            return review

    def add_fork_pull(self, fork: str, branch: str, base: str, title: str, *, user: str,
                      head_sha: str | None = None) -> int:
        """A pull request someone opened from ``branch`` of their fork ``fork`` (``owner/name``; a fork in
        this repository's own organisation keeps its owner). Its head is the commit it was opened with
        (default: ``base``'s), never this repository's branch of the same name."""
        with self._lock:
            if "/" not in fork or fork == self.repo_full_name:
                raise FakeGitHubError(f"a fork is another repository, as owner/name: got {fork!r}")
            sha = head_sha or self._branch_sha(base)
            if sha is None:
                raise FakeGitHubError(f"no branch {base!r} to open a pull request into")
            self._user(user, "User")
            number = self._take("pull")
            self.issues[number] = {"number": number, "title": title, "body": "", "state": "open", "labels": [],
                                   "user": user, "created_at": _now(), "updated_at": _now(), "pull": True}
            self.pulls[number] = {"head": branch, "head_repo": fork, "base": base, "head_sha": sha, "draft": False}
            return number

    def _new_review_comment(self, pull: int, review: int, user: str, path: str, line: int | None, text: str,
                            in_reply_to: int | None) -> int:
        comment = self._take("review_comment")
        self.review_comments[comment] = {"id": comment, "pull": pull, "review": review, "user": user, "path": path,
                                         "line": line, "body": text, "in_reply_to": in_reply_to,
                                         "created_at": _now(), "updated_at": _now()}
        return comment

    def add_workflow_run(self, run_id: int, status: str = "in_progress", conclusion: str | None = None) -> None:
        """A run of the rally workflow, as the Actions API shows it."""
        with self._lock:
            self.workflow_runs[run_id] = {"id": run_id, "status": status, "conclusion": conclusion,
                                          "created_at": _now(), "updated_at": _now()}

    def inject(self, method: str, path_regex: str, status: int = 502, *, times: int = 1,
               headers: Mapping[str, str] | None = None, body: JSON | None = None) -> None:
        """The next ``times`` matching requests get ``status`` and are not performed."""
        self.faults.append(Fault(method.upper(), re.compile(path_regex), status, times, dict(headers or {}),
                                 body, "respond", 0.0))

    def inject_stall(self, method: str, path_regex: str, stall_s: float, *, times: int = 1) -> None:
        """The write is performed, then the answer waits ``stall_s`` (past the client's timeout)."""
        self.faults.append(Fault(method.upper(), re.compile(path_regex), 200, times, {}, None,
                                 "perform-then-stall", stall_s))

    def inject_rate_limit(self, method: str, path_regex: str, *, retry_after: float | None = 0.01,
                          reset_in: float | None = None, status: int = 429, times: int = 1) -> None:
        """A primary (``reset_in``) or secondary (``retry_after``) rate-limit answer."""
        headers = {"x-ratelimit-limit": "5000", "x-ratelimit-used": "5000"}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if reset_in is not None:
            headers["x-ratelimit-remaining"] = "0"
            headers["x-ratelimit-reset"] = str(int(time.time() + reset_in))
        message = ("API rate limit exceeded for installation." if reset_in is not None
                   else "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")
        self.inject(method, path_regex, status, times=times, headers=headers,
                    body={"message": message, "documentation_url": self._docs_url()})

    def count(self, method: str, path_regex: str = "") -> int:
        """How many requests (faulted ones included) matched."""
        pattern = re.compile(path_regex)
        return sum(1 for r in self.requests if r.method == method.upper() and pattern.search(r.path))

    def refs(self) -> dict[str, str]:
        """Every ref of the bare repository and the commit it points at."""
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)")
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def state(self) -> str:
        """The whole world as text, stable across runs, for comparing in tests."""
        with self._lock:
            lines: list[str] = [f"repository {self.repo_full_name} (default branch {self.default_branch})"]
            for name, label in sorted(self.labels.items()):
                lines.append(f"label {name} #{label['color']} {label['description'] or ''}".rstrip())
            for number, issue in sorted(self.issues.items()):
                kind = "pull" if issue["pull"] else "issue"
                lines.append(f"{kind} #{number} [{issue['state']}] {issue['title']!r} by {issue['user']}"
                             f" labels={sorted(issue['labels'])}")
                if issue["pull"]:
                    pull = self.pulls[number]
                    head = pull["head"] if self._ours(pull) else f"{pull['head_repo']}:{pull['head']}"
                    lines.append(f"  {head} -> {pull['base']} draft={pull['draft']}")
                    lines.extend("  | " + line for line in issue["body"].splitlines()[:3])
                for comment in sorted(self.comments.values(), key=lambda c: c["id"]):
                    if comment["issue"] == number:
                        lines.append(f"  comment {comment['id']} by {comment['user']}:")
                        lines.extend("    | " + line for line in comment["body"].splitlines())
                for reaction in self.reactions:
                    if reaction["issue"] == number:
                        lines.append(f"  reaction {reaction['content']} by {reaction['user']}")
                    elif self.comments.get(reaction.get("comment") or 0, {}).get("issue") == number:
                        lines.append(f"  reaction {reaction['content']} to comment {reaction['comment']} "
                                     f"by {reaction['user']}")
            for run in sorted(self.check_runs.values(), key=lambda r: r["id"]):
                lines.append(f"check-run {run['id']} {run['name']} on {run['head_sha'][:7]}"
                             f" {run['status']}/{run['conclusion']} external_id={run['external_id']!r}"
                             f" title={run['output'].get('title')!r} annotations={len(run['annotations'])}")
            for status in self.statuses:
                lines.append(f"status {status['context']} on {status['sha'][:7]} {status['state']}"
                             f" {status['description']!r}")
            for ref, sha in sorted(self.refs().items()):
                lines.append(f"ref {ref} {sha[:7]}")
            return "\n".join(lines) + "\n"

    # -- records ---------------------------------------------------------
    def _git(self, *args: str, cwd: Path | None = None) -> str:
        proc = process.run(["git", *args], cwd=cwd or self.bare_repo,
                           env={"PATH": "/usr/bin:/bin:/usr/local/bin", "GIT_CONFIG_NOSYSTEM": "1",
                                "HOME": str(self._tmp)})
        if proc.returncode != 0:
            raise FakeGitHubError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout.decode(errors="replace")

    def _branch_sha(self, branch: str) -> str | None:
        proc = process.run(["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}^{{commit}}"],
                           cwd=self.bare_repo)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def _user(self, login: str, user_type: str) -> JSON:
        if login not in self.users:
            self.users[login] = {"login": login, "id": self._take("user"), "type": user_type}
        return self.users[login]

    def _take(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] += 1
        return value

    def _label(self, name: str, color: str = "ededed", description: str | None = None) -> JSON:
        if name not in self.labels:
            self.labels[name] = {"id": self._take("label"), "name": name, "color": color,
                                 "description": description}
        return self.labels[name]

    # -- JSON shapes (GitHub's field names; see github-openapi-subset.json) --
    def _docs_url(self) -> str:
        # Even links nobody follows stay under our root: a stray github.com URL would hide a leak.
        return f"{self.root_url}/docs/rest"

    def _repo_url(self) -> str:
        return f"{self.api_url}/repos/{self.repo_full_name}"

    def _user_json(self, login: str) -> JSON:
        user = self.users.get(login) or self._user(login, "User")
        url = f"{self.api_url}/users/{login}"
        return {"login": login, "id": user["id"], "node_id": f"U_fake{user['id']}",
                "avatar_url": f"{self.root_url}/avatars/{login}", "gravatar_id": "", "url": url,
                "html_url": f"{self.root_url}/{login}", "followers_url": f"{url}/followers",
                "following_url": f"{url}/following{{/other_user}}", "gists_url": f"{url}/gists{{/gist_id}}",
                "starred_url": f"{url}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{url}/subscriptions",
                "organizations_url": f"{url}/orgs", "repos_url": f"{url}/repos",
                "events_url": f"{url}/events{{/privacy}}", "received_events_url": f"{url}/received_events",
                "type": user["type"], "site_admin": False}

    def _repo_json(self, full_name: str | None = None) -> JSON:
        """This repository, or (``full_name``) a fork of it."""
        fork = full_name is not None and full_name != self.repo_full_name
        full_name = full_name or self.repo_full_name
        owner, name = full_name.split("/")
        url = f"{self.api_url}/repos/{full_name}"
        git_url = f"{self.root_url}{GIT_PREFIX}{full_name}.git"
        templated = {
            "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}", "contributors_url": "/contributors",
            "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
            "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
            "languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags",
            "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
        }
        out: JSON = {key: url + suffix for key, suffix in templated.items()}
        out.update({
            "id": 4243 if fork else 4242, "node_id": f"R_fake{4243 if fork else 4242}", "name": name,
            "full_name": full_name, "owner": self._user_json(owner), "private": False, "description": None,
            "fork": fork, "url": url, "html_url": f"{self.root_url}/{full_name}", "clone_url": git_url,
            "git_url": git_url, "ssh_url": git_url, "svn_url": git_url, "mirror_url": None,
            "homepage": None, "language": None, "forks": 0, "forks_count": 0, "stargazers_count": 0,
            "watchers": 0, "watchers_count": 0, "size": 0, "default_branch": self.default_branch,
            "open_issues": 0, "open_issues_count": 0, "has_issues": True, "has_projects": False,
            "has_wiki": False, "has_pages": False, "has_downloads": False, "has_discussions": False,
            "archived": False, "disabled": False, "license": None, "pushed_at": _now(),
            "created_at": "2026-01-01T00:00:00Z", "updated_at": _now(), "network_count": 0,
            "subscribers_count": 0,
        })
        return out

    def _label_json(self, name: str) -> JSON:
        label = self.labels[name]
        return {"id": label["id"], "node_id": f"LA_fake{label['id']}",
                "url": f"{self._repo_url()}/labels/{urllib.parse.quote(name, safe='')}",
                "name": name, "description": label["description"], "color": label["color"], "default": False}

    def _issue_json(self, number: int) -> JSON:
        issue = self.issues[number]
        url = f"{self._repo_url()}/issues/{number}"
        out: JSON = {
            "id": 10_000 + number, "node_id": f"I_fake{number}", "url": url, "repository_url": self._repo_url(),
            "labels_url": f"{url}/labels{{/name}}", "comments_url": f"{url}/comments",
            "events_url": f"{url}/events", "html_url": f"{self.root_url}/{self.repo_full_name}/issues/{number}",
            "number": number, "state": issue["state"], "title": issue["title"], "body": issue["body"],
            "user": self._user_json(issue["user"]), "labels": [self._label_json(n) for n in issue["labels"]],
            "assignee": None, "assignees": [], "milestone": None, "locked": False,
            "comments": sum(1 for c in self.comments.values() if c["issue"] == number),
            "closed_at": None, "created_at": issue["created_at"], "updated_at": issue["updated_at"],
            "author_association": "OWNER" if issue["user"] == self.owner else "CONTRIBUTOR",
        }
        if issue["pull"]:
            pulls = f"{self._repo_url()}/pulls/{number}"
            html = f"{self.root_url}/{self.repo_full_name}/pull/{number}"
            out["pull_request"] = {"url": pulls, "html_url": html, "diff_url": html + ".diff",
                                   "patch_url": html + ".patch", "merged_at": None}
        return out

    def _comment_json(self, comment_id: int) -> JSON:
        comment = self.comments[comment_id]
        return {"id": comment_id, "node_id": f"IC_fake{comment_id}",
                "url": f"{self._repo_url()}/issues/comments/{comment_id}",
                "html_url": f"{self.root_url}/{self.repo_full_name}/issues/{comment['issue']}#issuecomment-{comment_id}",
                "issue_url": f"{self._repo_url()}/issues/{comment['issue']}", "body": comment["body"],
                "user": self._user_json(comment["user"]), "created_at": comment["created_at"],
                "updated_at": comment["updated_at"], "author_association": "NONE"}

    def _branch_json(self, branch: str, sha: str, repo: str | None = None) -> JSON:
        owner = (repo or self.repo_full_name).split("/")[0]
        return {"label": f"{owner}:{branch}", "ref": branch, "sha": sha, "repo": self._repo_json(repo),
                "user": self._user_json(owner)}

    def _ours(self, pull: JSON) -> bool:
        """Whether a pull request's head branch is in this repository (not in a fork)."""
        return bool(pull["head_repo"] == self.repo_full_name)

    def _pull_json(self, number: int) -> JSON:
        pull, issue = self.pulls[number], self.issues[number]
        url = f"{self._repo_url()}/pulls/{number}"
        html = f"{self.root_url}/{self.repo_full_name}/pull/{number}"
        # A fork's branch is not ours, even under the same name: its head is the commit it was opened with.
        head_sha = (self._branch_sha(pull["head"]) if self._ours(pull) else None) or pull["head_sha"]
        base_sha = self._branch_sha(pull["base"]) or ""
        issue_url = f"{self._repo_url()}/issues/{number}"
        links = {"self": url, "html": html, "issue": issue_url, "comments": f"{issue_url}/comments",
                 "review_comments": f"{url}/comments", "review_comment": f"{self._repo_url()}/pulls/comments{{/number}}",
                 "commits": f"{url}/commits", "statuses": f"{self._repo_url()}/statuses/{head_sha}"}
        return {
            "id": 20_000 + number, "node_id": f"PR_fake{number}", "url": url, "html_url": html,
            "diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": issue_url,
            "commits_url": links["commits"], "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"], "comments_url": links["comments"],
            "statuses_url": links["statuses"], "number": number, "state": issue["state"], "locked": False,
            "title": issue["title"], "user": self._user_json(issue["user"]), "body": issue["body"],
            "labels": [self._label_json(n) for n in issue["labels"]], "milestone": None,
            "active_lock_reason": None, "created_at": issue["created_at"], "updated_at": issue["updated_at"],
            "closed_at": None, "merged_at": None, "merge_commit_sha": None, "assignee": None,
            "assignees": [], "requested_reviewers": [], "requested_teams": [],
            "head": self._branch_json(pull["head"], head_sha, pull["head_repo"]), "base": self._branch_json(pull["base"], base_sha),
            "_links": {k: {"href": v} for k, v in links.items()}, "author_association": "NONE",
            "auto_merge": None, "draft": pull["draft"], "merged": False, "mergeable": None,
            "rebaseable": None, "mergeable_state": "unknown", "merged_by": None, "comments": 0,
            "review_comments": 0, "maintainer_can_modify": False, "commits": 1, "additions": 0,
            "deletions": 0, "changed_files": 0,
        }

    def _check_run_json(self, run_id: int) -> JSON:
        run = self.check_runs[run_id]
        url = f"{self._repo_url()}/check-runs/{run_id}"
        return {
            "id": run_id, "node_id": f"CR_fake{run_id}", "head_sha": run["head_sha"], "name": run["name"],
            "external_id": run["external_id"], "url": url,
            "html_url": f"{self.root_url}/{self.repo_full_name}/runs/{run_id}", "details_url": run["details_url"],
            "status": run["status"], "conclusion": run["conclusion"], "started_at": run["started_at"],
            "completed_at": run["completed_at"],
            "output": {"title": run["output"].get("title"), "summary": run["output"].get("summary"),
                       "text": run["output"].get("text"), "annotations_count": len(run["annotations"]),
                       "annotations_url": f"{url}/annotations"},
            "check_suite": {"id": 600_000 + run_id}, "app": None, "pull_requests": [],
        }

    def _status_json(self, status: JSON) -> JSON:
        return {"url": f"{self._repo_url()}/statuses/{status['sha']}", "avatar_url": None,
                "id": status["id"], "node_id": f"SC_fake{status['id']}", "state": status["state"],
                "description": status["description"], "target_url": status["target_url"],
                "context": status["context"], "created_at": status["created_at"],
                "updated_at": status["created_at"], "creator": self._user_json(self.actor)}

    # -- routes ------------------------------------------------------------
    def _routes(self) -> list[tuple[str, str, Callable[..., tuple[int, Any]]]]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        return [
            ("GET", r"/user", self._get_user),
            ("GET", repo, self._get_repo),
            ("GET", repo + r"/collaborators/(?P<user>[^/]+)/permission", self._get_permission),
            ("GET", repo + r"/issues/(?P<number>\d+)", self._get_issue),
            ("GET", repo + r"/issues/(?P<number>\d+)/comments", self._list_comments),
            ("POST", repo + r"/issues/(?P<number>\d+)/comments", self._create_comment),
            ("GET", repo + r"/issues/comments/(?P<id>\d+)", self._get_comment),
            ("PATCH", repo + r"/issues/comments/(?P<id>\d+)", self._update_comment),
            ("POST", repo + r"/issues/(?P<number>\d+)/reactions", self._create_reaction),
            ("POST", repo + r"/issues/comments/(?P<id>\d+)/reactions", self._create_comment_reaction),
            ("GET", repo + r"/actions/runs/(?P<id>\d+)", self._get_workflow_run),
            ("GET", repo + r"/pulls/(?P<number>\d+)/reviews/(?P<review>\d+)", self._get_review),
            ("GET", repo + r"/pulls/(?P<number>\d+)/reviews/(?P<review>\d+)/comments", self._list_review_comments),
            ("GET", repo + r"/pulls/(?P<number>\d+)/comments", self._list_pull_comments),
            ("GET", repo + r"/pulls/comments/(?P<id>\d+)", self._get_review_comment),
            ("POST", repo + r"/pulls/(?P<number>\d+)/comments/(?P<id>\d+)/replies", self._reply_review_comment),
            ("POST", repo + r"/actions/runs/(?P<id>\d+)/cancel", self._cancel_workflow_run),
            ("GET", repo + r"/issues/(?P<number>\d+)/labels", self._list_issue_labels),
            ("POST", repo + r"/issues/(?P<number>\d+)/labels", self._add_labels),
            ("PUT", repo + r"/issues/(?P<number>\d+)/labels", self._set_labels),
            ("DELETE", repo + r"/issues/(?P<number>\d+)/labels/(?P<name>[^/]+)", self._remove_label),
            ("GET", repo + r"/labels/(?P<name>[^/]+)", self._get_label),
            ("POST", repo + r"/labels", self._create_label),
            ("PATCH", repo + r"/labels/(?P<name>[^/]+)", self._update_label),
            ("POST", repo + r"/check-runs", self._create_check_run),
            ("GET", repo + r"/check-runs/(?P<id>\d+)", self._get_check_run),
            ("PATCH", repo + r"/check-runs/(?P<id>\d+)", self._update_check_run),
            ("GET", repo + r"/check-runs/(?P<id>\d+)/annotations", self._list_annotations),
            ("GET", repo + r"/commits/(?P<ref>[^/]+)/check-runs", self._list_check_runs_for_ref),
            ("POST", repo + r"/statuses/(?P<sha>[0-9a-f]{40})", self._create_status),
            ("GET", repo + r"/commits/(?P<ref>[^/]+)/statuses", self._list_statuses),
            ("GET", repo + r"/pulls", self._list_pulls),
            ("POST", repo + r"/pulls", self._create_pull),
            ("GET", repo + r"/pulls/(?P<number>\d+)", self._get_pull),
            ("PATCH", repo + r"/pulls/(?P<number>\d+)", self._update_pull),
            ("POST", r"/api/graphql", self._graphql),
        ]

    def _check_repo(self, owner: str, repo: str) -> None:
        if f"{owner}/{repo}" != self.repo_full_name:
            raise _Http(404, "Not Found")

    def _issue_record(self, number: str) -> JSON:
        if int(number) not in self.issues:
            raise _Http(404, "Not Found")
        return self.issues[int(number)]

    @staticmethod
    def _body_text(body: Any, key: str) -> str:
        text = body.get(key) if isinstance(body, dict) else None
        if text is not None and len(text) > BODY_LIMIT:
            raise _Http(422, "Validation Failed", [{"resource": "Issue", "field": key, "code": "custom",
                                                     "message": f"{key} is too long (maximum is {BODY_LIMIT} characters)"}])
        return text if isinstance(text, str) else ""

    def _get_user(self, body: Any, q: Mapping[str, str]) -> tuple[int, Any]:
        return 200, {**self._user_json(self.actor), "user_view_type": "public", "name": None, "company": None,
                     "blog": None, "location": None, "email": None, "hireable": None, "bio": None,
                     "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
                     "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}

    def _get_repo(self, body: Any, q: Mapping[str, str], owner: str, repo: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        return 200, {**self._repo_json(), "permissions": {"admin": False, "maintain": False, "push": True,
                                                           "triage": True, "pull": True}}

    def _get_permission(self, body: Any, q: Mapping[str, str], owner: str, repo: str, user: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        login = urllib.parse.unquote(user)
        if login not in self.users:
            raise _Http(404, "Not Found")
        role = self.roles.get(login, "read")
        return 200, {"permission": COARSE_PERMISSION[role], "role_name": role,
                     "user": {**self._user_json(login), "role_name": role}}

    def _get_issue(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._issue_record(number)
        return 200, self._issue_json(int(number))

    def _list_comments(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._issue_record(number)
        ids = sorted(i for i, c in self.comments.items() if c["issue"] == int(number))
        return 200, [self._comment_json(i) for i in ids]

    def _create_comment(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._issue_record(number)
        text = self._body_text(body, "body")
        comment_id = self._take("comment")
        self.comments[comment_id] = {"id": comment_id, "issue": int(number), "body": text, "user": self.actor,
                                     "created_at": _now(), "updated_at": _now()}
        return 201, self._comment_json(comment_id)

    def _get_comment(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        if int(id) not in self.comments:
            raise _Http(404, "Not Found")
        return 200, self._comment_json(int(id))

    def _update_comment(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        if int(id) not in self.comments:
            raise _Http(404, "Not Found")
        comment = self.comments[int(id)]
        comment["body"] = self._body_text(body, "body")
        comment["updated_at"] = _now()
        return 200, self._comment_json(int(id))

    def _create_reaction(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._issue_record(number)
        return self._react(body, issue=int(number), comment=None)

    def _create_comment_reaction(self, body: Any, q: Mapping[str, str], owner: str, repo: str,
                                 id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._found(self.comments, id)
        return self._react(body, issue=None, comment=int(id))

    def _react(self, body: Any, *, issue: int | None, comment: int | None) -> tuple[int, Any]:
        content = body.get("content") if isinstance(body, dict) else None
        if content not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
            raise _Http(422, "Validation Failed", [{"resource": "Reaction", "field": "content", "code": "invalid"}])
        for reaction in self.reactions:
            # GitHub answers 200 with the existing reaction: adding one is idempotent.
            if (reaction["issue"], reaction.get("comment"), reaction["content"], reaction["user"]) == \
                    (issue, comment, content, self.actor):
                return 200, self._reaction_json(reaction)
        reaction = {"id": self._take("reaction"), "issue": issue, "comment": comment, "content": content,
                    "user": self.actor, "created_at": _now()}
        self.reactions.append(reaction)
        return 201, self._reaction_json(reaction)

    @staticmethod
    def _found(table: Mapping[int, JSON], key: str) -> JSON:
        """The record ``key`` names in ``table``, or GitHub's 404."""
        if int(key) not in table:
            raise _Http(404, "Not Found")
        return table[int(key)]

    def _review_comment_json(self, comment_id: int) -> JSON:
        c = self.review_comments[comment_id]
        pull = self.pulls[c["pull"]]
        url = f"{self._repo_url()}/pulls/comments/{comment_id}"
        html = f"{self.root_url}/{self.repo_full_name}/pull/{c['pull']}#discussion_r{comment_id}"
        pull_url = f"{self._repo_url()}/pulls/{c['pull']}"
        out: JSON = {"id": comment_id, "node_id": f"PRRC_fake{comment_id}", "url": url, "body": c["body"],
                     "diff_hunk": f"@@ -{c['line'] or 1} +{c['line'] or 1} @@", "path": c["path"],
                     "position": c["line"], "original_position": c["line"], "line": c["line"],
                     "side": "RIGHT", "commit_id": pull["head_sha"], "original_commit_id": pull["head_sha"],
                     "user": self._user_json(c["user"]), "pull_request_review_id": c["review"],
                     "html_url": html, "pull_request_url": pull_url, "author_association": "NONE",
                     "created_at": c["created_at"], "updated_at": c["updated_at"],
                     "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull_url}}}
        if c["in_reply_to"] is not None:
            out["in_reply_to_id"] = c["in_reply_to"]
        return out

    def _list_review_comments(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str,
                              review: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._pull_record(number)
        if int(review) not in self.reviews or self.reviews[int(review)]["pull"] != int(number):
            raise _Http(404, "Not Found")
        ids = sorted(i for i, c in self.review_comments.items() if c["review"] == int(review))
        return 200, [self._review_comment_json(i) for i in ids]

    def _get_review(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str,
                    review: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._pull_record(number)
        found = self.reviews.get(int(review))
        if found is None or found["pull"] != int(number):
            raise _Http(404, "Not Found")
        pull_url = f"{self._repo_url()}/pulls/{number}"
        html = f"{self.root_url}/{self.repo_full_name}/pull/{number}#pullrequestreview-{review}"
        out: JSON = {"id": int(review), "node_id": f"PRR_fake{review}", "user": self._user_json(found["user"]),
                     "body": found["body"], "state": found["state"], "html_url": html, "pull_request_url": pull_url,
                     "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
                     "commit_id": self.pulls[int(number)]["head_sha"], "author_association": "NONE"}
        if found["state"] != "PENDING":
            out["submitted_at"] = _now()
        return 200, out

    def _get_review_comment(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._found(self.review_comments, id)
        return 200, self._review_comment_json(int(id))

    def _list_pull_comments(self, body: Any, q: Mapping[str, str], owner: str, repo: str,
                            number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._pull_record(number)
        ids = sorted(i for i, c in self.review_comments.items() if c["pull"] == int(number))
        return 200, [self._review_comment_json(i) for i in ids]

    def _reply_review_comment(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str,
                              id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._pull_record(number)
        replied = self.review_comments.get(int(id))
        if replied is None or replied["pull"] != int(number):
            raise _Http(404, "Not Found")
        text = self._body_text(body, "body")
        review = self._take("review")
        self.reviews[review] = {"id": review, "pull": int(number), "user": self.actor, "state": "COMMENTED", "body": ""}
        comment = self._new_review_comment(int(number), review, self.actor, replied["path"], replied["line"], text,
                                           int(id))
        return 201, self._review_comment_json(comment)

    def _workflow_run_json(self, run_id: int) -> JSON:
        run = self.workflow_runs[run_id]
        url = f"{self._repo_url()}/actions/runs/{run_id}"
        return {"id": run_id, "node_id": f"WFR_fake{run_id}", "name": "rally", "head_branch": self.default_branch,
                "head_sha": "0" * 40, "path": ".github/workflows/rally-issue.yml", "display_title": "rally",
                "run_number": run_id, "run_attempt": 1, "event": "issues", "status": run["status"],
                "conclusion": run["conclusion"], "workflow_id": 1, "url": url,
                "html_url": f"{self.root_url}/{self.repo_full_name}/actions/runs/{run_id}",
                "pull_requests": [], "created_at": run["created_at"], "updated_at": run["updated_at"],
                "jobs_url": f"{url}/jobs", "logs_url": f"{url}/logs", "check_suite_url": f"{url}/check-suite",
                "artifacts_url": f"{url}/artifacts", "cancel_url": f"{url}/cancel", "rerun_url": f"{url}/rerun",
                "workflow_url": f"{self._repo_url()}/actions/workflows/1", "head_commit": None,
                "repository": self._repo_json(), "head_repository": self._repo_json()}

    def _get_workflow_run(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._found(self.workflow_runs, id)
        return 200, self._workflow_run_json(int(id))

    def _cancel_workflow_run(self, body: Any, q: Mapping[str, str], owner: str, repo: str,
                             id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        run = self._found(self.workflow_runs, id)
        if run["status"] == "completed":
            raise _Http(409, "Cannot cancel a workflow run that is completed.")
        run.update(status="completed", conclusion="cancelled", updated_at=_now())
        return 202, {}

    def _reaction_json(self, reaction: JSON) -> JSON:
        return {"id": reaction["id"], "node_id": f"REA_fake{reaction['id']}", "user": self._user_json(reaction["user"]),
                "content": reaction["content"], "created_at": reaction["created_at"]}

    def _label_names(self, body: Any) -> list[str]:
        items = body.get("labels") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise _Http(422, "Validation Failed", [{"resource": "Label", "field": "labels", "code": "invalid"}])
        return [item["name"] if isinstance(item, dict) else str(item) for item in items]

    def _list_issue_labels(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        return 200, [self._label_json(n) for n in self._issue_record(number)["labels"]]

    def _add_labels(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        issue = self._issue_record(number)
        for name in self._label_names(body):
            self._label(name)  # GitHub creates unknown labels on the fly, in grey.
            if name not in issue["labels"]:
                issue["labels"].append(name)
        return 200, [self._label_json(n) for n in issue["labels"]]

    def _set_labels(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        issue = self._issue_record(number)
        names = list(dict.fromkeys(self._label_names(body)))
        for name in names:
            self._label(name)
        issue["labels"] = names
        return 200, [self._label_json(n) for n in names]

    def _remove_label(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str,
                      name: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        issue = self._issue_record(number)
        label = urllib.parse.unquote(name)
        if label not in issue["labels"]:
            raise _Http(404, "Label does not exist")
        issue["labels"].remove(label)
        return 200, [self._label_json(n) for n in issue["labels"]]

    def _get_label(self, body: Any, q: Mapping[str, str], owner: str, repo: str, name: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        label = urllib.parse.unquote(name)
        if label not in self.labels:
            raise _Http(404, "Not Found")
        return 200, self._label_json(label)

    def _create_label(self, body: Any, q: Mapping[str, str], owner: str, repo: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise _Http(422, "Validation Failed", [{"resource": "Label", "field": "name", "code": "missing_field"}])
        if name in self.labels:
            raise _Http(422, "Validation Failed", [{"resource": "Label", "field": "name", "code": "already_exists"}])
        self._label(name, str(body.get("color", "ededed")).lstrip("#"), body.get("description"))
        return 201, self._label_json(name)

    def _update_label(self, body: Any, q: Mapping[str, str], owner: str, repo: str, name: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        label_name = urllib.parse.unquote(name)
        if label_name not in self.labels:
            raise _Http(404, "Not Found")
        label = self.labels[label_name]
        if "color" in body:
            label["color"] = str(body["color"]).lstrip("#")
        if "description" in body:
            label["description"] = body["description"]
        return 200, self._label_json(label_name)

    def _apply_check_output(self, run: JSON, body: JSON) -> None:
        output = body.get("output")
        if not isinstance(output, dict):
            return
        annotations = output.get("annotations") or []
        if len(annotations) > 50:
            raise _Http(422, "Validation Failed", [{"resource": "CheckRun", "field": "annotations", "code": "custom",
                                                     "message": "Only 50 annotations are allowed per request"}])
        for key in ("summary", "text"):
            if len(output.get(key) or "") > CHECK_OUTPUT_LIMIT:
                raise _Http(422, "Invalid request.", [{"resource": "CheckRun", "field": f"output.{key}",
                                                        "code": "custom",
                                                        "message": f"is too long (maximum is {CHECK_OUTPUT_LIMIT} characters)"}])
        for key in ("title", "summary", "text"):
            if key in output:
                run["output"][key] = output[key]
        # The checks API appends annotations on every update; it never replaces them.
        run["annotations"].extend(annotations)

    def _create_check_run(self, body: Any, q: Mapping[str, str], owner: str, repo: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        if not isinstance(body, dict) or not body.get("name") or not body.get("head_sha"):
            raise _Http(422, "Validation Failed", [{"resource": "CheckRun", "field": "head_sha", "code": "missing_field"}])
        if not self._commit_exists(body["head_sha"]):
            raise _Http(422, "No commit found for SHA: " + str(body["head_sha"]))
        run_id = self._take("check")
        conclusion = body.get("conclusion")
        run: JSON = {"id": run_id, "name": body["name"], "head_sha": body["head_sha"],
                     "external_id": body.get("external_id", ""), "details_url": body.get("details_url"),
                     "status": "completed" if conclusion else body.get("status", "queued"),
                     "conclusion": conclusion, "started_at": body.get("started_at", _now()),
                     "completed_at": body.get("completed_at", _now() if conclusion else None),
                     "output": {}, "annotations": []}
        self._apply_check_output(run, body)
        self.check_runs[run_id] = run
        return 201, self._check_run_json(run_id)

    def _check_run(self, run_id: str) -> JSON:
        if int(run_id) not in self.check_runs:
            raise _Http(404, "Not Found")
        return self.check_runs[int(run_id)]

    def _get_check_run(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        self._check_run(id)
        return 200, self._check_run_json(int(id))

    def _update_check_run(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        run = self._check_run(id)
        for key in ("name", "details_url", "external_id", "status", "completed_at"):
            if key in body:
                run[key] = body[key]
        if body.get("conclusion"):
            run["conclusion"], run["status"] = body["conclusion"], "completed"
            run["completed_at"] = run["completed_at"] or _now()
        self._apply_check_output(run, body)
        return 200, self._check_run_json(int(id))

    def _list_annotations(self, body: Any, q: Mapping[str, str], owner: str, repo: str, id: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        run = self._check_run(id)
        return 200, [{"path": a["path"], "start_line": a["start_line"], "end_line": a["end_line"],
                      "start_column": a.get("start_column"), "end_column": a.get("end_column"),
                      "annotation_level": a.get("annotation_level"), "title": a.get("title"),
                      "message": a.get("message"), "raw_details": a.get("raw_details"),
                      "blob_href": f"{self.root_url}/{self.repo_full_name}/blob/{run['head_sha']}/{a['path']}"}
                     for a in run["annotations"]]

    def _resolve(self, ref: str) -> str:
        ref = urllib.parse.unquote(ref)
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            return ref
        sha = self._branch_sha(ref)
        if sha is None:
            raise _Http(422, f"No commit found for SHA: {ref}")
        return sha

    def _commit_exists(self, sha: str) -> bool:
        proc = process.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=self.bare_repo)
        return proc.returncode == 0

    def _list_check_runs_for_ref(self, body: Any, q: Mapping[str, str], owner: str, repo: str,
                                 ref: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        sha = self._resolve(ref)
        runs = [r for r in self.check_runs.values() if r["head_sha"] == sha
                and ("check_name" not in q or r["name"] == q["check_name"])]
        if q.get("filter", "latest") == "latest":
            latest: dict[str, JSON] = {}
            for run in runs:
                latest[run["name"]] = run
            runs = list(latest.values())
        return 200, {"total_count": len(runs), "check_runs": [self._check_run_json(r["id"]) for r in runs]}

    def _create_status(self, body: Any, q: Mapping[str, str], owner: str, repo: str, sha: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        if body.get("state") not in ("error", "failure", "pending", "success"):
            raise _Http(422, "Validation Failed", [{"resource": "Status", "field": "state", "code": "invalid"}])
        if not self._commit_exists(sha):
            raise _Http(422, f"No commit found for SHA: {sha}")
        status = {"id": self._take("status"), "sha": sha, "state": body["state"],
                  "context": body.get("context", "default"), "description": body.get("description"),
                  "target_url": body.get("target_url"), "created_at": _now()}
        self.statuses.append(status)
        return 201, self._status_json(status)

    def _list_statuses(self, body: Any, q: Mapping[str, str], owner: str, repo: str, ref: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        sha = self._resolve(ref)
        return 200, [self._status_json(s) for s in reversed(self.statuses) if s["sha"] == sha]

    def _open_pulls(self, head: str | None, base: str | None) -> list[int]:
        found = []
        for number, pull in sorted(self.pulls.items()):
            if self.issues[number]["state"] != "open":
                continue
            if head is not None and f"{pull['head_repo'].split('/')[0]}:{pull['head']}" != head:
                continue
            if base is not None and pull["base"] != base:
                continue
            found.append(number)
        return found

    def _list_pulls(self, body: Any, q: Mapping[str, str], owner: str, repo: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        if q.get("state", "open") not in ("open", "all"):
            return 200, []
        head = q.get("head")
        if head is not None and ":" not in head:
            head = f"{self.owner}:{head}"
        return 200, [self._pull_json(n) for n in self._open_pulls(head, q.get("base"))]

    def _create_pull(self, body: Any, q: Mapping[str, str], owner: str, repo: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        head, base = str(body.get("head", "")), str(body.get("base", ""))
        head_branch = head.split(":", 1)[1] if ":" in head else head
        errors = []
        head_sha, base_sha = self._branch_sha(head_branch), self._branch_sha(base)
        if head_sha is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if base_sha is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if errors:
            raise _Http(422, "Validation Failed", errors)
        if any(self._ours(self.pulls[n]) for n in self._open_pulls(f"{self.owner}:{head_branch}", base)):
            raise _Http(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom",
                                                     "message": f"A pull request already exists for {self.owner}:{head_branch}."}])
        if head_sha == base_sha:
            raise _Http(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom",
                                                     "message": f"No commits between {base} and {head_branch}"}])
        text = self._body_text(body, "body")
        number = self._take("pull")
        self.issues[number] = {"number": number, "title": body.get("title", ""), "body": text, "state": "open",
                               "labels": [], "user": self.actor, "created_at": _now(), "updated_at": _now(),
                               "pull": True}
        self.pulls[number] = {"head": head_branch, "head_repo": self.repo_full_name, "base": base,
                              "head_sha": head_sha, "draft": bool(body.get("draft", False))}
        return 201, self._pull_json(number)

    def _pull_record(self, number: str) -> int:
        if int(number) not in self.pulls:
            raise _Http(404, "Not Found")
        return int(number)

    def _get_pull(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        return 200, self._pull_json(self._pull_record(number))

    # The two GraphQL mutations REST lacks: a draft pull request is made ready
    # (or turned back into a draft) only through GraphQL. GitHub answers 200 with
    # an "errors" list for a node it cannot resolve.
    _MUTATION = re.compile(r"^\s*mutation\b[^{]*\{\s*(markPullRequestReadyForReview|convertPullRequestToDraft)"
                           r"\(input:\s*\$input\)")

    def _graphql(self, body: Any, q: Mapping[str, str]) -> tuple[int, Any]:
        query = body.get("query") if isinstance(body, dict) else None
        match = self._MUTATION.match(query) if isinstance(query, str) else None
        if match is None:
            raise _Http(501, "only markPullRequestReadyForReview and convertPullRequestToDraft are implemented "
                             "in FakeGitHub's GraphQL")
        name = match.group(1)
        node_id = ((body.get("variables") or {}).get("input") or {}).get("pullRequestId")
        number = next((n for n in self.pulls if f"PR_fake{n}" == node_id), None)
        if number is None:
            return 200, {"data": {name: None}, "errors": [{
                "type": "NOT_FOUND", "path": [name], "locations": [{"line": 1, "column": 1}],
                "message": f"Could not resolve to a node with the global id of '{node_id}'."}]}
        self.pulls[number]["draft"] = name == "convertPullRequestToDraft"
        self.issues[number]["updated_at"] = _now()
        return 200, {"data": {name: {"clientMutationId": None,
                                     "pullRequest": {"isDraft": self.pulls[number]["draft"]}}}}

    def _update_pull(self, body: Any, q: Mapping[str, str], owner: str, repo: str, number: str) -> tuple[int, Any]:
        self._check_repo(owner, repo)
        pull_number = self._pull_record(number)
        issue = self.issues[pull_number]
        if "title" in body:
            issue["title"] = body["title"]
        if "body" in body:
            issue["body"] = self._body_text(body, "body")
        if "base" in body:
            self.pulls[pull_number]["base"] = body["base"]
        if body.get("state") in ("open", "closed"):
            issue["state"] = body["state"]
        issue["updated_at"] = _now()
        return 200, self._pull_json(pull_number)

    # -- dispatch ------------------------------------------------------------
    def handle_api(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                   body: Any) -> tuple[int, dict[str, str], Any, float]:
        """Answer one API request: status, headers, JSON body, and how long to stall first."""
        extra: dict[str, str] = {}
        stall = 0.0
        payload: Any
        try:
            auth = headers.get("authorization", "")
            if auth not in (f"token {self.token}", f"Bearer {self.token}", f"bearer {self.token}"):
                raise _Http(401, "Bad credentials")
            fault = self._take_fault(method, path)
            if fault is not None and fault.mode == "respond":
                extra.update(fault.headers)
                status, payload = fault.status, fault.body or {
                    "message": "Server Error" if fault.status >= 500 else "Injected fault",
                    "documentation_url": self._docs_url()}
                return self._finish(method, path, query, body, status, extra, payload, stall)
            if fault is not None:
                stall = fault.stall_s
            for route_method, pattern, handler in self._routes():
                match = re.fullmatch(pattern, path)
                if match and route_method == method:
                    with self._lock:
                        status, payload = handler(body, query, **match.groupdict())
                    if isinstance(payload, list):
                        payload, link = self._paginate(path, query, payload)
                        if link:
                            extra["link"] = link
                    return self._finish(method, path, query, body, status, extra, payload, stall)
            raise _Http(501, f"{method} {path} not implemented in FakeGitHub")
        except _Http as err:
            payload = {"message": err.message, "documentation_url": self._docs_url()}
            if err.errors:
                payload["errors"] = err.errors
            return self._finish(method, path, query, body, err.status, extra, payload, stall)

    def _finish(self, method: str, path: str, query: Mapping[str, str], body: Any,
                status: int, headers: dict[str, str], payload: Any,
                stall: float) -> tuple[int, dict[str, str], Any, float]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, dict(query), body, status, payload, time.monotonic()))
        for observe in self.observers:
            observe(method, path, body, status, payload)
        return status, headers, payload, stall

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_regex.search(path):
                    fault.times -= 1
                    return fault
        return None

    def _paginate(self, path: str, query: Mapping[str, str], items: list[Any]) -> tuple[list[Any], str]:
        per_page = min(int(query.get("per_page", "30")), 100)
        page = int(query.get("page", "1"))
        chunk = items[(page - 1) * per_page: page * per_page]
        if page * per_page >= len(items):
            return chunk, ""
        next_query = urllib.parse.urlencode({**query, "page": str(page + 1), "per_page": str(per_page)})
        return chunk, f'<{self.api_url}{path}?{next_query}>; rel="next"'

    def handle_git(self, handler: BaseHTTPRequestHandler, method: str, path: str, query: str,
                   body: bytes) -> None:
        """Serve a smart-HTTP git request with ``git http-backend``, behind the token."""
        auth = handler.headers.get("Authorization", "")
        password = None
        if auth.startswith("Basic "):
            try:
                password = base64.b64decode(auth[6:]).decode().split(":", 1)[1]
            except (ValueError, IndexError):
                password = None
        if password != self.token:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="FakeGitHub"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        env = {
            "PATH": "/usr/bin:/bin:/usr/local/bin", "GIT_PROJECT_ROOT": str(self.git_root),
            "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path[len(GIT_PREFIX) - 1:], "QUERY_STRING": query,
            "REQUEST_METHOD": method, "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            # http-backend takes pushes only from an authenticated REMOTE_USER: the token check above.
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""), "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self._tmp), "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
        }
        with self._lock:  # one ref update at a time, like a real server's ref locks
            proc = process.run(["git", "http-backend"], input=body, env=env)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        cgi_headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                cgi_headers.append((name, value.strip()))
        handler.send_response(status)
        for name, value in cgi_headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


def _handler_for(server: FakeGitHubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return b"".join(self._chunks())
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _chunks(self) -> Iterator[bytes]:
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return
                yield self.rfile.read(size)
                self.rfile.readline()

        def _serve(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            raw = self._read_body()
            if parsed.path.startswith(GIT_PREFIX):
                server.handle_git(self, self.command, parsed.path, parsed.query, raw)
                return
            path = parsed.path
            if path.startswith(API_PREFIX):
                path = path[len(API_PREFIX):] or "/"
            query = dict(urllib.parse.parse_qsl(parsed.query))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload, stall = server.handle_api(self.command, path, query, headers, body)
            if stall:
                time.sleep(stall)
            data = b"" if status == 204 else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting: the write happened all the same

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Handler
