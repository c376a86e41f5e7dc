"""What every phase of a run reads: one frozen context, with the policy that says how it publishes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from rally_gh import git
from rally_gh.egress import Proxy
from rally_gh.sandbox import Bwrap
from rally_gh.config import Config, LoadedConfig
from rally_gh.run.scheduler import EventSink as EventSink  # (teammate or "", state, detail)
from rally_gh.state import Clock


def no_events(name: str, state: str, detail: str) -> None:
    pass


@dataclass(frozen=True)
class Lease:
    """Where the remote integration branch was (None: absent) when the run read it: a later round of
    a published run (``/rally retry``) publishes over exactly that, or not at all."""

    expected: git.Sha | None


@dataclass(frozen=True)
class Policy:
    """How a run publishes."""

    remote: git.Remote | None = None  # every branch is pushed there too (a run in CI); None: published locally only
    # A lease on the integration branch, taken when the run's state was read: a job that published
    # meanwhile makes ours fail instead of being overwritten. None: read from the remote when publishing.
    integration_lease: Lease | None = None


@dataclass(frozen=True)
class RunContext:
    """The run's inputs, fixed once assessed: every phase reads them, none changes them."""

    repo_path: Path
    common: Path  # the git common directory, which holds the runs' state and logs
    loaded: LoadedConfig  # the map as this run applies it (its tasks, teammates and max_parallel chosen)
    run_id: str
    issue_text: str | None
    clock: Clock
    environ: Mapping[str, str]
    emit: EventSink
    policy: Policy = Policy()
    # The bubblewrap every agent, verify and merge.verify runs in (docs/security.md); None: the run
    # was asked for none (--no-sandbox, the report's first risk) or runs none of them (a split run's
    # merge job without merge.verify).
    sandbox: Bwrap | None = None
    # While agents run: the egress proxy of each teammate whose map gives it a list of hosts
    # (``network: [...]``), its only way out of its sandbox (rally_gh/egress.py).
    egress: Mapping[str, Proxy] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def config(self) -> Config:
        return self.loaded.config

    def repo(self) -> git.Repository:
        # One Repository per call: pygit2 objects are not shared between threads.
        return git.open_repo(self.repo_path)
