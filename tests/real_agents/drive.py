"""One real agent CLI run through the runner, against the model stub, in one process tree.

``netns.run_scenario`` starts this under ``unshare -n``: the stub and the CLI
share a network namespace where only loopback exists, so a CLI that tried any
other host would fail instead of quietly succeeding. It reads a JSON job on
standard input and prints one JSON result on standard output::

    job: {"preset", "model", "args", "env": {NAME: VALUE}, "scenario": [...], "workdir", "home",
          "run_dir", "timeout_s", "netns": bool, "bwrap": bool, "external_sandbox": bool}
    result: {"attempt": {...}, "run": {...}, "requests": [...]}

With ``bwrap`` the agent runs inside rally-gh's own bubblewrap sandbox
(``in_rally_sandbox``); ``external_sandbox`` is the preset's argument of that
name (``agent_command``).

``{url}`` in ``args`` and ``env`` values is replaced by the stub's address.
Every name in ``env`` is passed to the agent the way a map's ``env`` list
passes it, so the preset's own passthrough is exercised, not bypassed.

A job with ``rally_yml`` is a whole run instead (``pipeline.run``, as
``rally-gh run`` does it) in the git repository ``repo``::

    job: {"repo", "rally_yml", "run_id", "env": {NAME: VALUE}, "scenario", "model", "netns": bool}
    result: {"report": report_json(state), "logs": {teammate: its logs}, "requests": [...],
             "usage_served": [input, output]}

``{url}`` in ``rally_yml`` and ``env`` values is the stub's address; ``env``
is set in this process's environment (``RALLY_WORKTREES`` too), the one the
run hands its agents.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for modelstub

from modelstub import ModelStub  # noqa: E402

from rally_gh import git, process  # noqa: E402
from rally_gh.run import pipeline  # noqa: E402
from rally_gh.agents import AgentCommand, agent_command, agent_environment  # noqa: E402
from rally_gh.config import AgentSpec, Teammate, load_config_text  # noqa: E402
from rally_gh.report import report_json  # noqa: E402
from rally_gh.process import CancelToken  # noqa: E402
from rally_gh.run.scheduler import agent_attempt  # noqa: E402
from rally_gh.sandbox import SandboxSpec  # noqa: E402
from rally_gh.state import runs_dir  # noqa: E402

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def bring_loopback_up() -> None:
    """A new network namespace starts with ``lo`` down; an ioctl spares us needing iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def drive(job: dict[str, Any]) -> dict[str, Any]:
    workdir, home, run_dir = Path(job["workdir"]), Path(job["home"]), Path(job["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    prompt_file, report_file = run_dir / "prompt.md", run_dir / "report.json"
    prompt_file.write_text(job.get("prompt", "Do the task."), encoding="utf-8")
    with ModelStub(job["scenario"], model=job.get("model") or "stub-model") as stub:
        fill = _filler(stub.url)
        spec = AgentSpec(preset=job["preset"], model=job.get("model"), args=tuple(fill(a) for a in job["args"]),
                         env=tuple(job["env"]))
        cmd = agent_command(spec, prompt_file, workdir, home, external_sandbox=bool(job.get("external_sandbox")))
        if job.get("bwrap"):
            cmd = in_rally_sandbox(cmd, workdir, home, run_dir)
        base_env = {**os.environ, **{name: fill(value) for name, value in job["env"].items()}}
        teammate = Teammate(name="api", exclusive_write=("src/**",))
        env = agent_environment(base_env, teammate, "run1", "team", "0" * 40, prompt_file, report_file,
                                ["src/**"], (*spec.env, *cmd.passthrough), home)
        attempt = agent_attempt(cmd, workdir, env, prompt_file, report_file, job["timeout_s"], run_dir,
                                grace_s=1, model=spec.model)(1, CancelToken())
        run = attempt.run
        return {
            "argv": list(cmd.argv),
            "attempt": {"status": attempt.status, "message": attempt.message, "cost_usd": attempt.cost_usd,
                        "tokens": attempt.tokens, "agent_status": attempt.agent_status},
            "run": None if run is None else {
                "exit_code": run.exit_code, "timed_out": run.timed_out, "duration_s": run.duration_s,
                "stdout": run.stdout_tail, "stderr": run.stderr_tail, "log": str(run.log_path)},
            "requests": stub.as_json(),
            "usage_served": list(stub.usage_served()),
        }


def in_rally_sandbox(cmd: AgentCommand, workdir: Path, home: Path, run_dir: Path) -> AgentCommand:
    """``cmd`` inside rally-gh's bubblewrap sandbox: writable are the worktree (its git directory
    is in it), the home and the run folder. The worktree's folder is shown read-only, as a run
    shows the user's checkout; under the sandbox's private /tmp it would be a scratch folder
    whose writes vanish, where these tests want the refusal the model is told."""
    found = process.sandbox_probe(os.environ.get("PATH"))
    assert found.ok and found.bwrap is not None, found.problem
    workdir, home, run_dir = workdir.resolve(), home.resolve(), run_dir.resolve()
    spec = SandboxSpec(checkout=workdir, git_dir=workdir / ".git", home=home, writable=(run_dir,),
                       read_only=(workdir.parent,))
    # Its environment is the runner's to give, as to any agent: bwrap hands it on.
    return process.sandboxed(cmd, found.bwrap, spec)


def drive_run(job: dict[str, Any]) -> dict[str, Any]:
    repo = Path(job["repo"])
    with ModelStub(job["scenario"], model=job.get("model") or "stub-model") as stub:
        fill = _filler(stub.url)
        os.environ.update({name: fill(value) for name, value in job["env"].items()})
        loaded = load_config_text(fill(job["rally_yml"]), "rally.yml")
        state = pipeline.run(repo, loaded, job["run_id"], None, time.time, dict(os.environ))
        teammates = runs_dir(git.common_dir(git.open_repo(repo))) / job["run_id"] / "teammates"
        logs = {folder.name: {log.name: log.read_text(errors="replace")[-20000:]
                              for log in sorted((folder / "logs").glob("*")) if log.is_file()}
                for folder in sorted(teammates.iterdir())} if teammates.is_dir() else {}
        return {"report": report_json(state), "logs": logs, "requests": stub.as_json(),
                "usage_served": list(stub.usage_served())}


def _filler(url: str) -> Callable[[str], str]:
    return lambda value: value.replace("{url}", url)


def main() -> None:
    job = json.loads(sys.stdin.read())
    if job.get("netns"):
        bring_loopback_up()
    json.dump(drive_run(job) if "rally_yml" in job else drive(job), sys.stdout)


if __name__ == "__main__":
    main()
