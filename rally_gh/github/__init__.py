"""GitHub: one interface (``endpoint``), the PyGithub client (``real``), a fake
server for tests and the demo (``fake``), the Actions event rules (``events``),
and the one reader of what Actions tells a job through its environment (``actions``).

``real`` is not imported here so that importing the interface never imports PyGithub.
"""

from __future__ import annotations

from rally_gh.github.endpoint import (
    Annotation,
    CheckPublication,
    ChecksForbiddenError,
    CommentId,
    CommitSha,
    GitHubEndpoint,
    GitHubPermissionError,
    Issue,
    IssueNumber,
    Permission,
    PullNumber,
    PullRequest,
    RequestLimits,
    cut_body,
    publish_check,
    run_marker,
)

__all__ = [
    "Annotation", "CheckPublication", "ChecksForbiddenError", "CommentId", "CommitSha", "GitHubEndpoint",
    "GitHubPermissionError", "Issue", "IssueNumber", "Permission", "PullNumber", "PullRequest", "RequestLimits",
    "cut_body", "publish_check", "run_marker",
]
