"""Plan mode (``mode: plan``): before a run that needs approval goes on, each teammate in plan mode
runs its agent once, read-only, and writes a plan; a person reads the plans and approves the run,
and each teammate then runs for real with its plan in its prompt.

The plan step runs on a throwaway checkout of the teammate's start (a repository of its own, the
user's objects borrowed, as ``merge.verify``'s): in the sandbox that checkout and its git directory
are read-only, and only the teammate's folder of the run is writable, where ``RALLY_PLAN_FILE`` is.
Where the agent CLI has a read-only mode of its own it is used too (``agents.PLAN_ARGS``). Without a
sandbox (``--no-sandbox``) nothing stops the agent from writing, but what it writes is thrown away
with the checkout. The plan is the file it wrote, else its answer; it is untrusted text: shown as
text, and given back only to the teammate that wrote it, as data.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

from rally_gh import agents, egress, git, plan, process
from rally_gh.config import Config, Teammate
from rally_gh.errors import RallyError
from rally_gh.run.context import RunContext
from rally_gh.run.ledger import Ledger
from rally_gh.run.teammate import sandbox_spec, teammate_dir

PLAN_LIMIT = 60_000
"""Characters of a plan kept: a plan is for a person to read."""


def planners(config: Config, selected: Collection[str] | None) -> list[str]:
    """The teammates of the run in plan mode."""
    return [t.name for t in config.teammates if t.mode == "plan" and (selected is None or t.name in selected)]


def write_plans(ctx: RunContext, ledger: Ledger, names: Collection[str], cancel: process.CancelToken) -> None:
    """The plan of each of ``names`` that has none yet, in its record (one at a time)."""
    for name in names:
        if cancel.cancelled or ledger.record(name).plan:
            continue
        ctx.emit(name, "planning", "")
        planned = plan_of(ctx, ctx.config.teammate(name), ledger.state.base_sha, cancel)
        record = ledger.record(name)
        ledger.update(name, plan=planned.text, plan_cost_usd=record.plan_cost_usd + planned.cost_usd,
                      plan_tokens=record.plan_tokens + planned.tokens)
        ctx.emit(name, "planned", f"{len(planned.text):,} characters")


@dataclass(frozen=True)
class Planned:
    """A plan step: the plan (or why there is none), and what it cost as the agent told it (0 when unknown)."""

    text: str
    cost_usd: float = 0.0
    tokens: int = 0


def plan_of(ctx: RunContext, t: Teammate, start: str, cancel: process.CancelToken) -> Planned:
    """Run ``t``'s agent read-only on a throwaway checkout of ``start``: the plan it wrote, or why there is none."""
    files = teammate_dir(ctx, t.name) / "plan"
    files.mkdir(parents=True, exist_ok=True)
    home = files / "home"
    home.mkdir(exist_ok=True)
    prompt_file, plan_file, report_file = files / "prompt.md", files / "plan.md", files / "report.json"
    plan_file.unlink(missing_ok=True)
    prompt_file.write_text(plan.prompt_for(ctx.config, t, ctx.issue_text, ctx.run_id, planning=True),
                           encoding="utf-8")
    repo = ctx.repo()
    checkout = git.rally_worktrees_root(repo) / ctx.run_id / "_plans" / t.name
    if checkout.exists():
        git.dematerialize(repo, checkout)
    git.materialize(repo, start, checkout)
    try:
        spec = ctx.config.agent_of(t)
        try:
            cmd = agents.agent_command(spec, prompt_file, checkout, home, search_path=ctx.environ.get("PATH"),
                                       external_sandbox=ctx.sandbox is not None, planning=True)
        except RallyError as err:
            return Planned(f"(no plan: {err})")
        env = agents.agent_environment(ctx.environ, t, ctx.run_id, ctx.config.team, start, prompt_file, report_file,
                                       t.exclusive_write, (*spec.env, *cmd.passthrough), home)
        env.update({"RALLY_MODE": "plan", "RALLY_PLAN_FILE": str(plan_file)})
        if ctx.sandbox is not None:
            proxy = ctx.egress.get(t.name)
            if proxy is not None:  # network: [hosts], as when it works
                cmd = replace(cmd, argv=egress.forwarded(cmd.argv, proxy))
            box = replace(sandbox_spec(ctx, checkout, files, cmd.argv, env.get("PATH"),
                                       network=ctx.config.network_of(t) is True), read_only_checkout=True)
            cmd = process.sandboxed(cmd, ctx.sandbox, box)
        ran = process.run_agent(cmd, checkout, env, prompt_file, ctx.config.timeout_of(t),
                                log_path=files / "plan.log", cancel=cancel)
    finally:
        git.dematerialize(repo, checkout)
    output = agents.parse_outcome(cmd.preset, ran.exit_code, ran.stdout_tail, ran.stderr_tail,
                                  model=spec.model, report_file=report_file)
    spent = (output.cost_usd or 0.0, output.tokens or 0)
    written = _read(plan_file)
    text = written if written.strip() else agents.plan_text(cmd.preset, ran.stdout_tail)
    if not text.strip():
        why = "it was stopped" if ran.timed_out or ran.cancelled else f"it exited with {ran.exit_code}"
        return Planned(f"(no plan: the agent wrote none; {why}; its output is in {files / 'plan.log'})", *spent)
    text = text.strip()
    return Planned(text if len(text) <= PLAN_LIMIT else text[:PLAN_LIMIT] + f"\n... (cut: {len(text) - PLAN_LIMIT:,} more)",
                   *spent)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[: PLAN_LIMIT * 2] if path.is_file() else ""
    except OSError:
        return ""
