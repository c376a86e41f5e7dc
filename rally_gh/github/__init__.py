"""GitHub: one interface (``endpoint``), the PyGithub client (``real``), a fake
server for tests and the demo (``fake``), and the Actions event rules (``events``).

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
