"""End-to-end runs on real repositories with scripted teammates (preset: command)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from rally_gh.tasks import tasks_from_issue
from rally_gh import git
from rally_gh.run import pipeline, split
from rally_gh.config import load_config_text
from rally_gh.errors import RallyError
from rally_gh.github.actions import read
from rally_gh.report import report_json, run_status
from rally_gh.state import load_state
from rally_gh.testing import git as run_git
from rally_gh.testing import AGENT_SCRIPTS, init_repo, live_processes_with, write_agent_scripts

SCRIPTS = {
    "api": """
        import json, os, pathlib
        pathlib.Path("src/api").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/api/orders.py").write_text("def orders():\\n    return []\\n")
        pathlib.Path("tests/api").mkdir(parents=True, exist_ok=True)
        pathlib.Path("tests/api/test_orders.py").write_text("def test_orders():\\n    pass\\n")
        pathlib.Path(os.environ["RALLY_REPORT_FILE"]).write_text(json.dumps({"status": "done", "summary": "orders endpoint"}))
    """,
    **AGENT_SCRIPTS,
    "hang": """
        import time
        time.sleep(60)
    """,
    "crash": """
        import sys
        print("error: the model server refused the connection", file=sys.stderr)
        sys.exit(3)
    """,
    "idle": """
        print("nothing to do")
    """,
}


def _write_scripts(folder: Path) -> dict[str, Path]:
    return write_agent_scripts(folder, SCRIPTS)


def _map(scripts: dict[str, Path], names: list[str], **extra: str) -> str:
    owns = {"api": "[src/api/**, tests/api/]", "web": "[src/web/**]", "stray": "[src/stray/**]",
            "hang": "[src/hang/**]", "crash": "[src/crash/**]", "idle": "[src/idle/**]"}
    lines = ["version: 1", "team: scripted", "max_parallel: 6",
             "defaults: {timeout: 1s, retries: 0}", "teammates:"]
    for name in names:
        lines += [
            f"  - name: {name}",
            f"    role: {name} role",
            f"    task: Do the {name} work.",
            f"    exclusive_write: {owns[name]}",
            f"    agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(scripts[name]))}]}}",
        ]
        if name == "api":
            lines += ["    done_when: [tests/api/test_orders.py]", "    verify: [\"test -f src/api/orders.py\"]"]
        if name == "web":
            lines += ["    blocked_by: [api]"]
        for key, value in extra.items():
            if key.startswith(name + "_"):
                lines.append(f"    {key[len(name) + 1:]}: {value}")
    return "\n".join(lines) + "\n"


def _repo(tmp_path: Path, rally_yml: str) -> Path:
    return init_repo(tmp_path / "repo", {"README.md": "# sample\n", "rally.yml": rally_yml})


def _orchestrator(repo: Path, run_id: str, sandbox: bool = True, **popen: Any) -> subprocess.Popen[str]:
    """``pipeline.run`` in a process of its own (to signal or kill it); prints the final status."""
    code = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from pathlib import Path
        from rally_gh.run import pipeline
        from rally_gh.config import load_config_text
        loaded = load_config_text(Path("rally.yml").read_text(), "rally.yml")
        print(pipeline.run(Path("."), loaded, {run_id!r}, None, time.time, dict(os.environ), sandbox={sandbox!r}).status)
    """)
    return subprocess.Popen([sys.executable, "-c", code], cwd=repo, text=True, **popen)


def _run(repo: Path, rally_yml: str, run_id: str = "r1", **kwargs: object) -> object:
    loaded = load_config_text(rally_yml, "rally.yml")
    events: list[tuple[str, str, str]] = []
    state = pipeline.run(repo, loaded, run_id, None, time.time, dict(os.environ),
                         lambda *e: events.append(e), **kwargs)  # type: ignore[arg-type]
    return state


def test_a_full_run_gives_each_teammate_its_outcome(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "web", "stray", "hang", "crash", "idle"])
    repo = _repo(tmp_path, rally_yml)
    started = time.monotonic()
    state = _run(repo, rally_yml)
    assert time.monotonic() - started < 20
    outcomes = {t.name: t.outcome for t in state.teammates}  # type: ignore[attr-defined]
    assert outcomes == {"api": "done", "web": "done", "stray": "violated", "hang": "timed_out",
                        "crash": "failed", "idle": "no_changes"}
    api = state.teammate("api")  # type: ignore[attr-defined]
    assert api.files_changed == ("src/api/orders.py", "tests/api/test_orders.py")
    assert api.verify[0].passed and api.summary == "orders endpoint"
    stray = state.teammate("stray")  # type: ignore[attr-defined]
    assert {v.path for v in stray.violations} == {"README.md"}

    # Every teammate branch is kept, whatever its outcome; the integration branch holds api then web.
    branches = set(run_git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/rally").split())
    assert {f"rally/r1/{n}" for n in ("api", "web", "stray", "hang", "crash", "idle")} <= branches
    assert "rally/r1/_integration" in branches
    files = run_git(repo, "ls-tree", "-r", "--name-only", "rally/r1/_integration").split()
    assert "src/api/orders.py" in files and "src/web/app.js" in files and "src/stray/x.py" not in files
    assert run_git(repo, "show", "rally/r1/_integration:README.md") == "# sample\n"
    assert state.integrated == ("api", "web")  # type: ignore[attr-defined]

    # No worktree left behind, and the main checkout untouched.
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert run_git(repo, "status", "--porcelain") == ""
    saved = load_state(git.common_dir(git.open_repo(repo)), "r1")
    assert saved == state
    assert saved.status == "finished" and all(t.worktree is None for t in saved.teammates)
    assert run_status(saved) == "partial"
    data = report_json(saved)
    assert set(data["phases"]) >= {"assess", "plan", "spawn", "run", "reconcile", "integrate", "verify",
                                   "publish", "cleanup"}


def test_a_plan_with_one_teammate_is_refused(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api"])
    repo = _repo(tmp_path, rally_yml)
    with pytest.raises(RallyError, match="at least two"):
        _run(repo, rally_yml)


def test_a_branch_prefix_that_is_a_branch_refuses_the_run_before_anything_starts(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"]).replace("team: scripted\n", "team: scripted\nbranch_prefix: main\n")
    repo = _repo(tmp_path, rally_yml)
    with pytest.raises(RallyError, match="branch_prefix: 'main' collides with the existing branch main"):
        _run(repo, rally_yml)
    assert run_git(repo, "branch", "--list").split() == ["*", "main"]
    assert not (repo / ".git" / "rally" / "runs" / "r1").exists()


def test_dry_run_plans_and_touches_nothing(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "web"])
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml, dry_run=True)
    assert state.status == "planned" and state.waves == (("api",), ("web",))  # type: ignore[attr-defined]
    assert run_git(repo, "for-each-ref", "refs/heads/rally") == ""


def test_interrupt_then_resume_keeps_finished_teammates(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    slow = tmp_path / "scripts" / "slow.py"
    marker = tmp_path / "slow-started"
    slow.write_text(textwrap.dedent(f"""
        import pathlib, sys, time
        flag = pathlib.Path({str(tmp_path / 'slow-may-finish')!r})
        pathlib.Path({str(marker)!r}).write_text("started")
        if not flag.exists():
            time.sleep(60)
        pathlib.Path("src/idle").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/idle/done.txt").write_text("done\\n")
    """))
    scripts["idle"] = slow
    rally_yml = _map(scripts, ["api", "idle"], idle_timeout="30s")
    repo = _repo(tmp_path, rally_yml)
    # The agent and the test talk through files of the test's folder, out of a sandbox's sight.
    proc = _orchestrator(repo, "r2", sandbox=False, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 15
    common = git.common_dir(git.open_repo(repo))
    while time.monotonic() < deadline:
        if marker.exists():
            try:
                if load_state(common, "r2").teammate("api").outcome == "done":
                    break
            except RallyError:
                pass
        time.sleep(0.05)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert time.monotonic() - sent < 5
    assert out.strip() == "interrupted"
    interrupted = load_state(common, "r2")
    assert interrupted.teammate("api").outcome == "done"
    assert interrupted.teammate("idle").outcome == "pending"
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1

    api_head = interrupted.teammate("api").head_sha
    (tmp_path / "slow-may-finish").write_text("yes")
    state = _run(repo, rally_yml, run_id="r2", resume=True, sandbox=False)
    assert state.status == "finished"  # type: ignore[attr-defined]
    assert state.teammate("api").head_sha == api_head  # type: ignore[attr-defined]
    assert state.teammate("idle").outcome == "done"  # type: ignore[attr-defined]
    assert state.integrated == ("api", "idle")  # type: ignore[attr-defined]


def test_a_crashed_run_leaves_nothing_that_blocks_the_next(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"])
    repo = _repo(tmp_path, rally_yml)
    handle = git.open_repo(repo)
    leftover = git.rally_worktrees_root(handle) / "dead-run" / "api"
    # An earlier version's teammate: a linked worktree of the user's repository.
    run_git(repo, "worktree", "add", "-q", "-b", "rally/dead-run/api", str(leftover), "HEAD")
    (leftover / "junk.txt").write_text("uncommitted")
    state = _run(repo, rally_yml, run_id="r3")
    assert state.teammate("api").outcome == "done"  # type: ignore[attr-defined]
    assert not leftover.exists()
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_the_run_command_prints_the_report_and_exits_by_outcome(tmp_path: Path) -> None:
    from rally_gh.commands import run as run_cmd

    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"])
    repo = _repo(tmp_path, rally_yml)
    out, log = io.StringIO(), io.StringIO()
    code = run_cmd.run(repo, read(os.environ), out, options=run_cmd.RunOptions(run_id="r5"), progress_stream=log)
    assert code == 1  # idle changed nothing: the run is partial
    assert "## rally-gh run `r5`: Partial" in out.getvalue()
    assert "idle: no_changes" in log.getvalue()
    folder = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "r5"
    assert json.loads((folder / "report.json").read_text())["status"] == "partial"
    assert (folder / "report.md").read_text() == out.getvalue()
    with pytest.raises(RallyError, match="already exists"):
        run_cmd.run(repo, read(os.environ), out, options=run_cmd.RunOptions(run_id="r5"), progress_stream=log)


def test_a_run_takes_its_tasks_from_a_handoff(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "web", "idle"])
    repo = _repo(tmp_path, rally_yml)
    handoff = tmp_path / "handoff.yml"
    handoff.write_text(textwrap.dedent("""\
        tasks:
          - id: orders
            description: Build the orders endpoint
            files: [src/api/orders.py]
          - id: page
            description: Show the orders
            files: [src/web/app.js]
            depends_on: [orders]
        """))
    proc = subprocess.run([sys.executable, "-m", "rally_gh", "run", "--run-id", "h1", "--from-handoff", str(handoff)],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = load_state(git.common_dir(git.open_repo(repo)), "h1")
    assert [t.name for t in state.teammates] == ["api", "web"]  # idle has no task in the handoff
    prompt = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "h1" / "teammates" / "api" / "prompt.md"
    assert "Build the orders endpoint" in prompt.read_text()


# --- The orchestrator's git functions -------------------------------------------


def test_a_sparse_checkout_holds_only_the_teammates_directories(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"top.md": "t", "src/api/a.py": "a", "src/web/w.js": "w", "docs/d.md": "d"})
    handle = git.open_repo(repo)
    wt = tmp_path / "wt"
    git.create_private_repo(handle, wt, "b", git.resolve(handle, "HEAD"))
    git.populate_worktree(wt, ["src/api"])
    files = sorted(str(p.relative_to(wt)) for p in wt.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert files == ["src/api/a.py", "top.md"]
    assert run_git(wt, "status", "--porcelain") == ""


def test_a_teammates_checkout_never_runs_a_planted_hook(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo", {"a.txt": "a"})
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    handle = git.open_repo(repo)
    wt = tmp_path / "wt"
    git.create_private_repo(handle, wt, "b", git.resolve(handle, "HEAD"))
    git.populate_worktree(wt)
    git.remove_private_repo(wt)
    assert not marker.exists()


def test_progress_is_a_live_table_only_for_a_person_at_a_terminal() -> None:
    from rally_gh.progress import Progress, wants_live

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_live(Tty(), {}) and not wants_live(Tty(), {"CI": "true"}) and not wants_live(io.StringIO(), {})
    log = io.StringIO()
    with Progress(log, live=False) as progress:
        progress.event("", "phase", "run")
        progress.event("api", "running", "attempt 1")
        progress.event("api", "finished", "done")  # the scheduler's view; the reconciled outcome follows
        progress.event("api", "violated", "wrote README.md")
    lines = [line.split("] ", 1)[1] for line in log.getvalue().splitlines()]
    assert lines == ["-- run", "api: running (attempt 1)", "api: violated (wrote README.md)"]
    table = io.StringIO()
    with Progress(table, live=True) as progress:
        progress.event("api", "running", "")
    assert "teammate" in table.getvalue() and "api" in table.getvalue()


def test_a_teammate_that_breaks_merge_verify_is_dropped_from_the_integration(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    breaker = tmp_path / "scripts" / "breaker.py"
    breaker.write_text("import pathlib\npathlib.Path('src/idle').mkdir(parents=True)\n"
                       "pathlib.Path('src/idle/BROKEN').write_text('x')\n")
    scripts["idle"] = breaker
    rally_yml = _map(scripts, ["api", "idle"]).replace(
        "teammates:\n", 'merge: {verify: ["test ! -e src/idle/BROKEN"]}\nteammates:\n', 1)
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    assert state.teammate("idle").outcome == "unverified"  # type: ignore[attr-defined]
    assert "verify" in state.teammate("idle").reason  # type: ignore[attr-defined]
    assert state.integrated == ("api",)  # type: ignore[attr-defined]
    assert [v.passed for v in state.verification] == [True]  # type: ignore[attr-defined]
    assert state.verification[0].exit_code == 0  # type: ignore[attr-defined]
    # Every verify run is recorded: the full integration failed, the bisection found the culprit.
    runs = [(r.teammates, r.passed) for r in state.verify_runs]  # type: ignore[attr-defined]
    assert runs[0] == (("api", "idle"), False) and runs[-1] == (("api",), True)
    from rally_gh.report import build_report, report_markdown

    assert f"merge.verify ran {len(runs)} times" in report_markdown(build_report(state))  # type: ignore[arg-type]
    files = run_git(repo, "ls-tree", "-r", "--name-only", "rally/r1/_integration").split()
    assert "src/api/orders.py" in files and "src/idle/BROKEN" not in files
    kept = run_git(repo, "ls-tree", "-r", "--name-only", "rally/r1/idle").split()
    assert "src/idle/BROKEN" in kept  # its branch keeps what it produced


def test_a_failed_or_timed_out_teammates_branch_is_checked_and_its_violations_reported(tmp_path: Path) -> None:
    from rally_gh.report import build_report, report_markdown

    scripts = _write_scripts(tmp_path / "scripts")
    # crash commits a write to README.md (not its own) and fails; hang leaves one in its worktree and is stopped.
    scripts["crash"].write_text(textwrap.dedent("""
        import pathlib, subprocess, sys
        pathlib.Path("README.md").write_text("rewritten by crash\\n")
        subprocess.run(["git", "-c", "user.name=a", "-c", "user.email=a@example.com", "commit", "-qam", "x"],
                       check=True)
        sys.exit(3)
    """))
    scripts["hang"].write_text(textwrap.dedent("""
        import pathlib, time
        pathlib.Path("rally.yml").write_text("version: 1\\n")
        time.sleep(60)
    """))
    rally_yml = _map(scripts, ["api", "crash", "hang"]).replace("    done_when: [tests/api/test_orders.py]\n", "")
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    crash, hang = state.teammate("crash"), state.teammate("hang")  # type: ignore[attr-defined]
    assert (crash.outcome, hang.outcome) == ("failed", "timed_out")
    assert [(v.path, v.kind) for v in crash.violations] == [("README.md", "modified")]
    assert crash.violations[0].commit == run_git(repo, "rev-parse", "rally/r1/crash").strip()
    assert [v.path for v in hang.violations] == ["rally.yml"]
    assert crash.reason.endswith("; its branch also holds 1 path it does not own: README.md")
    text = report_markdown(build_report(state))  # type: ignore[arg-type]
    assert "None: every teammate wrote only what it owns" not in text
    assert "| crash | `README.md` | nobody | modified |" in text and "| hang | `rally.yml` |" in text
    data = report_json(state)  # type: ignore[arg-type]
    assert {(v["teammate"], v["path"]) for v in data["violations"]} == {("crash", "README.md"), ("hang", "rally.yml")}
    assert state.integrated == ("api",)  # type: ignore[attr-defined]


def test_a_violation_keeps_its_reason_and_rule_from_the_check_to_the_report(tmp_path: Path) -> None:
    from rally_gh.report import build_report, report_markdown

    scripts = _write_scripts(tmp_path / "scripts")
    # stray writes a file in api's directory: api's first pattern owns it.
    scripts["stray"].write_text(textwrap.dedent("""
        import pathlib
        pathlib.Path("src/api").mkdir(parents=True, exist_ok=True)
        pathlib.Path("src/api/stray.py").write_text("x = 1\\n")
    """))
    rally_yml = _map(scripts, ["api", "stray"])
    line = next(n for n, text in enumerate(rally_yml.splitlines(), 1) if "[src/api/**" in text)
    rule = f"rally.yml:{line}:{rally_yml.splitlines()[line - 1].index('src/api/**') + 1}"
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    stray = state.teammate("stray")  # type: ignore[attr-defined]
    assert stray.outcome == "violated"
    [bad] = stray.violations
    reason = "stray added it, but it is owned by api"
    assert (bad.path, bad.owner, bad.reason, str(bad.rule)) == ("src/api/stray.py", "api", reason, rule)
    # The record saved in run.json, the report's Markdown and its JSON all keep both.
    assert load_state(git.common_dir(git.open_repo(repo)), "r1").teammate("stray").violations == (bad,)
    assert f"| `{(bad.commit or '')[:10]}` | {reason} | `{rule}` |" in report_markdown(build_report(state))  # type: ignore[arg-type]
    [found] = report_json(state)["violations"]  # type: ignore[arg-type]
    assert (found["reason"], found["rule"]) == (reason, rule)


def test_every_verify_runs_output_is_kept_and_the_report_shows_the_failing_tail(tmp_path: Path) -> None:
    from rally_gh.report import build_report, report_markdown

    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "merge.sh").write_text('if [ -e src/b/BROKEN ]; then\n  for i in $(seq 1 60); do echo "merge line $i"; done\n'
                                     '  echo "FAILED tests/test_b.py::test_it - AssertionError"; exit 1\nfi\necho ok\n')
    (checks / "c.sh").write_text('for i in $(seq 1 30); do echo "c line $i"; done\necho "c: 1 failed" >&2; exit 2\n')
    rally_yml = textwrap.dedent(f"""\
        version: 1
        team: t
        defaults: {{timeout: 10s, retries: 0}}
        merge: {{order: listed, verify: ["sh {checks / 'merge.sh'}"]}}
        teammates:
          - name: a
            exclusive_write: ["src/a/**"]
            agent: {{preset: command, command: [sh, -c, "mkdir -p src/a && echo a > src/a/x"]}}
            verify: ["test -f src/a/x"]
          - name: b
            exclusive_write: ["src/b/**"]
            agent: {{preset: command, command: [sh, -c, "mkdir -p src/b && echo b > src/b/BROKEN"]}}
          - name: c
            exclusive_write: ["src/c/**"]
            agent: {{preset: command, command: [sh, -c, "mkdir -p src/c && echo c > src/c/x"]}}
            verify: ["sh {checks / 'c.sh'}"]
        """)
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    outcomes = {t.name: t.outcome for t in state.teammates}  # type: ignore[attr-defined]
    assert outcomes == {"a": "done", "b": "unverified", "c": "unverified"}

    # Every verify run, teammates' and merge.verify's bisection steps alike, has its whole output in the run's folder.
    folder = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "r1"
    logs = sorted(p.name for p in (folder / "verify").iterdir())
    runs = state.verify_runs  # type: ignore[attr-defined]
    assert len(logs) == 2 + len(runs) and len(runs) >= 2
    assert {"a", "c"} == {name.split("-", 1)[1][:-4] for name in logs if "merge" not in name}
    c_verify = state.teammate("c").verify[0]  # type: ignore[attr-defined]
    c_log = (folder / c_verify.log).read_text()
    assert c_log.startswith(f"$ sh {checks / 'c.sh'}\nc line 1\n") and "c: 1 failed\n[rally-gh] exit 2" in c_log
    [blaming] = [r for r in runs if r.blamed]
    assert blaming.blamed == ("b",) and not blaming.passed and blaming.teammates[-1] == "b"
    merge_log = (folder / blaming.commands[0].log).read_text()
    assert "merge line 1\n" in merge_log and "FAILED tests/test_b.py::test_it" in merge_log
    assert all(c.log for r in runs for c in r.commands)

    text = report_markdown(build_report(state))  # type: ignore[arg-type]
    assert (f"**b** dropped from the integration: merge.verify `sh {checks / 'merge.sh'}` failed on "
            f"`{blaming.sha[:10]}`, holding the work of a, b. The last lines (all of it in "
            f"`.git/rally/runs/r1/{blaming.commands[0].log}`):") in text
    assert "FAILED tests/test_b.py::test_it - AssertionError\n```" in text
    assert "merge line 42\n" in text and "merge line 41\n" not in text  # the last 20 lines only
    assert f"**c**: `sh {checks / 'c.sh'}` failed. The last lines (all of it in `.git/rally/runs/r1/{c_verify.log}`)" \
        in text
    assert "c line 30\nc: 1 failed\n```" in text and "c line 10\n" not in text
    assert "**a**:" not in text  # a passing verify shows no output


def test_a_dry_run_prints_the_plan(tmp_path: Path) -> None:
    from rally_gh.commands import run as run_cmd

    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "web"])
    repo = _repo(tmp_path, rally_yml)
    out = io.StringIO()
    code = run_cmd.run(repo, read(os.environ), out, options=run_cmd.RunOptions(run_id="dry", dry_run=True),
                       progress_stream=io.StringIO())
    assert code == 0
    assert out.getvalue().startswith("Dry run dry: nothing was started.\nTeam scripted")
    assert "wave 2: web" in out.getvalue()


def test_a_run_split_across_jobs_talks_only_through_artifacts_and_publishes_from_one_job(tmp_path: Path) -> None:
    from rally_gh.commands import publish as publish_cmd
    from rally_gh.commands import run as run_cmd

    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "web", "stray"])
    seed = _repo(tmp_path, rally_yml)
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    jobs = {}
    for job in ("api", "web", "stray", "merge", "publish"):
        run_git(tmp_path, "clone", "-q", str(remote), str(tmp_path / f"job-{job}"))
        jobs[job] = tmp_path / f"job-{job}"
    env = read(os.environ)
    store = tmp_path / "artifacts"  # the workflow run's artifacts, one folder each
    refs_before = run_git(remote, "for-each-ref")
    for name in ("api", "web", "stray"):  # web after api: its job needs api's work, from api's artifact
        out = io.StringIO()
        options = run_cmd.TeammateOptions(name, "s1", results=store / f"rally-teammate-{name}", inputs=store)
        code = run_cmd.teammate(jobs[name], env, out, options=options)
        assert code == (1 if name == "stray" else 0), out.getvalue()

    out = io.StringIO()
    options = run_cmd.MergeOptions("s1", results=store / "rally-results", inputs=store)
    assert run_cmd.merge(jobs["merge"], env, out, options=options) == 1  # stray violated: partial
    assert "## rally-gh run `s1`: Partial" in out.getvalue()
    assert run_git(remote, "for-each-ref") == refs_before, "no job but the publish job writes"

    publish = publish_cmd.PublishOptions(results=store / "rally-results", run_id="s1")
    assert publish_cmd.publish(jobs["publish"], read({**os.environ, "RALLY_REMOTE": "origin"}), io.StringIO(),
                               options=publish) == 1
    files = run_git(remote, "ls-tree", "-r", "--name-only", "rally/s1/_integration").split()
    assert "src/api/orders.py" in files and "src/web/app.js" in files and "src/stray/x.py" not in files

    # A re-run merge job writes the same results again without error.
    assert run_cmd.merge(jobs["merge"], env, io.StringIO(), options=options) == 1


def test_a_split_run_played_in_one_clone_passes_its_artifacts_through_the_runs_folder(tmp_path: Path) -> None:
    from rally_gh.commands import run as run_cmd

    scripts = _write_scripts(tmp_path / "scripts")
    repo = _repo(tmp_path, _map(scripts, ["api", "web"]))
    env = read(os.environ)
    for name in ("api", "web"):
        assert run_cmd.teammate(repo, env, io.StringIO(), options=run_cmd.TeammateOptions(name, "s3")) == 0
    out = io.StringIO()
    assert run_cmd.merge(repo, env, out, options=run_cmd.MergeOptions("s3")) == 0, out.getvalue()
    artifacts = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "s3" / "artifacts"
    assert sorted(p.name for p in artifacts.iterdir()) == ["rally-results", "rally-teammate-api",
                                                            "rally-teammate-web"]


def test_a_split_runs_merge_lists_a_failed_teammates_violations_and_keeps_it_failed(tmp_path: Path) -> None:
    from rally_gh.commands import run as run_cmd

    scripts = _write_scripts(tmp_path / "scripts")
    scripts["crash"].write_text("import pathlib, sys\npathlib.Path('README.md').write_text('mine now\\n')\nsys.exit(3)\n")
    rally_yml = _map(scripts, ["api", "crash"])
    seed = _repo(tmp_path, rally_yml)
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    env = read(os.environ)
    store = tmp_path / "artifacts"
    for job in ("api", "crash", "merge"):
        run_git(tmp_path, "clone", "-q", str(remote), str(tmp_path / f"job-{job}"))
    for name in ("api", "crash"):
        options = run_cmd.TeammateOptions(name, "s2", results=store / f"rally-teammate-{name}", inputs=store)
        code = run_cmd.teammate(tmp_path / f"job-{name}", env, io.StringIO(), options=options)
        assert code == (0 if name == "api" else 1)
    out = io.StringIO()
    run_cmd.merge(tmp_path / "job-merge", env, out,
                  options=run_cmd.MergeOptions("s2", results=store / "rally-results", inputs=store))
    state = load_state(git.common_dir(git.open_repo(tmp_path / "job-merge")), "s2")
    crash = state.teammate("crash")
    assert crash.outcome == "failed" and [v.path for v in crash.violations] == ["README.md"]
    assert "| crash | `README.md` | nobody | modified |" in out.getvalue()


def test_a_teammate_whose_blocker_failed_is_skipped(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    scripts["api"] = scripts["crash"]
    rally_yml = _map(scripts, ["api", "web", "idle"])
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    web = state.teammate("web")  # type: ignore[attr-defined]
    assert (state.teammate("api").outcome, web.outcome) == ("failed", "skipped")  # type: ignore[attr-defined]
    assert "api" in web.reason and web.attempts == 0
    assert run_status(state) == "failed"  # type: ignore[arg-type]


def test_only_the_teammates_the_issue_names_run(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "web", "idle"])
    repo = _repo(tmp_path, rally_yml)
    issue = "Orders\n\n```rally\napi: Build the orders endpoint\nidle: Nothing, really\n```\n"
    loaded = load_config_text(rally_yml, "rally.yml")
    tasks = tasks_from_issue(issue, loaded.config)
    state = pipeline.run(repo, loaded, "r9", issue, time.time, dict(os.environ), tasks=tasks)
    assert [t.name for t in state.teammates] == ["api", "idle"]
    prompt = git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "r9" / "teammates" / "api" / "prompt.md"
    assert "Build the orders endpoint" in prompt.read_text() and "Do the api work." not in prompt.read_text()
    assert "in parallel with idle." in prompt.read_text()  # web is not in this run


LAND_ON_MAIN = """
import os, pathlib, subprocess, tempfile
# Someone lands a commit on the remote's main while the team works (plumbing, from the teammate's
# own repository: the remote is all that the run reads the base branch from again).
env = dict(os.environ, GIT_INDEX_FILE=os.path.join(tempfile.mkdtemp(), "index"))
git = lambda *a, **k: subprocess.run(["git", *a], env=env, check=True, capture_output=True, text=True, **k).stdout.strip()
base = os.environ["RALLY_BASE_SHA"]
git("read-tree", base)
blob = git("hash-object", "-w", "--stdin", input="landed during the run\\n")
git("update-index", "--add", "--cacheinfo", f"100644,{blob},LANDED.md")
commit = git("commit-tree", git("write-tree"), "-p", base, "-m", "landed on main")
git("push", "-q", REMOTE, f"{commit}:refs/heads/main")
pathlib.Path("src/api").mkdir(parents=True, exist_ok=True)
pathlib.Path("src/api/orders.py").write_text("def orders():\\n    return []\\n")
"""


def _with_origin(tmp_path: Path, repo: Path) -> Path:
    """A bare remote ``origin`` of ``repo`` holding its main."""
    origin = tmp_path / "origin.git"
    run_git(tmp_path, "init", "-q", "--bare", str(origin))
    run_git(repo, "remote", "add", "origin", str(origin))
    run_git(repo, "push", "-q", "origin", "main")
    return origin


def _lands_on_main(scripts: dict[str, Path], origin: Path, landed_path: str = "LANDED.md") -> None:
    script = textwrap.dedent(LAND_ON_MAIN).replace("REMOTE", repr(str(origin)))
    scripts["api"].write_text(script.replace('"LANDED.md"', repr(landed_path)).replace(
        'f"100644,{blob},LANDED.md"', f'f"100644,{{blob}},{landed_path}"'))


def test_integration_goes_onto_the_base_as_it_is_on_the_remote_when_integrating(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"]).replace("    done_when: [tests/api/test_orders.py]\n", "")
    repo = _repo(tmp_path, rally_yml)
    origin = _with_origin(tmp_path, repo)
    _lands_on_main(scripts, origin)
    started_on = run_git(repo, "rev-parse", "main").strip()
    state = _run(repo, rally_yml, remote=git.Remote("origin"), sandbox=False)  # the agent reaches the remote
    landed = run_git(origin, "rev-parse", "main").strip()
    assert landed != started_on and state.base_sha == started_on  # type: ignore[attr-defined]
    assert state.integrated_onto == landed  # type: ignore[attr-defined]
    files = run_git(repo, "ls-tree", "-r", "--name-only", "rally/r1/_integration").split()
    assert "LANDED.md" in files and "src/api/orders.py" in files
    ancestry = subprocess.run(["git", "merge-base", "--is-ancestor", landed, "rally/r1/_integration"], cwd=repo)
    assert ancestry.returncode == 0


def test_a_local_run_integrates_onto_where_it_started_whatever_moves_the_base_branch(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"]).replace("    done_when: [tests/api/test_orders.py]\n", "")
    repo = _repo(tmp_path, rally_yml)
    started_on = run_git(repo, "rev-parse", "main").strip()
    run_git(repo, "config", "receive.denyCurrentBranch", "ignore")
    _lands_on_main(scripts, repo / ".git")  # no sandbox: the agent reaches the user's repository
    state = _run(repo, rally_yml, sandbox=False)
    assert run_git(repo, "rev-parse", "main").strip() != started_on
    assert state.integrated_onto == state.base_sha == started_on  # type: ignore[attr-defined]
    files = run_git(repo, "ls-tree", "-r", "--name-only", "rally/r1/_integration").split()
    assert "LANDED.md" not in files and "src/api/orders.py" in files


def test_a_conflict_with_a_commit_that_landed_on_the_base_during_the_run_names_it(tmp_path: Path) -> None:
    from rally_gh.report import build_report, report_markdown

    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"]).replace("    done_when: [tests/api/test_orders.py]\n", "")
    repo = _repo(tmp_path, rally_yml)
    origin = _with_origin(tmp_path, repo)
    # main gets its own src/api/orders.py while api writes one: the clash is main's, not a teammate's.
    _lands_on_main(scripts, origin, "src/api/orders.py")
    started_on = run_git(repo, "rev-parse", "main").strip()
    state = _run(repo, rally_yml, remote=git.Remote("origin"), sandbox=False)
    landed = run_git(origin, "rev-parse", "main").strip()
    assert landed != started_on and state.integrated_onto == landed  # type: ignore[attr-defined]
    api = state.teammate("api")  # type: ignore[attr-defined]
    assert api.outcome == "conflicted"
    assert api.reason == f"conflicts with main @ {landed[:10]}, committed during the run: src/api/orders.py"
    [conflict] = state.conflicts  # type: ignore[attr-defined]
    assert [(c.base_commit, c.teammate, c.paths) for c in conflict.causes] == [(landed, None, ("src/api/orders.py",))]
    text = report_markdown(build_report(state))  # type: ignore[arg-type]
    assert f"onto `main` @ `{landed[:10]}`, where `main` moved during the run; started from `{started_on[:10]}`" \
        in text and f"(from `main` @ `{started_on[:10]}`)" not in text
    assert f"conflicts with main @ {landed[:10]}, committed during the run: src/api/orders.py (skipped)" in text
    data = json.loads(json.dumps(report_json(state)))  # type: ignore[arg-type]
    assert (data["base_sha"], data["integrated_onto"]) == (started_on, landed)
    assert data["conflicts"][0]["causes"] == [{"paths": ["src/api/orders.py"], "teammate": None,
                                               "base_commit": landed}]


def _a_then_b(merge: str) -> str:
    """Two teammates whose work conflicts although their patterns do not overlap:
    '/src/*' owns the file src/x, '/src/x/' what is inside a directory src/x."""
    return textwrap.dedent("""\
        version: 1
        team: t
        defaults: {timeout: 10s, retries: 0}
        merge: MERGE
        teammates:
          - name: a
            exclusive_write: ["/src/*"]
            agent: {preset: command, command: [sh, -c, "mkdir -p src && echo a > src/x"]}
          - name: b
            exclusive_write: ["/src/x/"]
            agent: {preset: command, command: [sh, -c, "mkdir -p src/x && echo b > src/x/y"]}
        """).replace("MERGE", merge)


def test_a_conflict_with_a_teammate_integrated_before_names_it(tmp_path: Path) -> None:
    rally_yml = _a_then_b("{order: listed}")
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    b = state.teammate("b")  # type: ignore[attr-defined]
    assert b.outcome == "conflicted"
    assert b.reason.startswith("conflicts with a's work, integrated before it: src/x")
    assert state.integrated_onto == state.base_sha  # type: ignore[attr-defined]


PLANT = """
    import pathlib, subprocess, sys
    own = pathlib.Path(subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True,
                                      text=True, check=True).stdout.strip()).resolve()
    # The user's git directory: the one whose objects the teammate's own repository borrows.
    users = pathlib.Path((own / "objects" / "info" / "alternates").read_text().split()[0]).parent
    marker = sys.argv[1]
    for common in (own, users):  # planted in both: neither runs in rally-gh's git
        try:
            with open(common / "config", "a") as f:
                f.write(f'[filter "pwn"]\\n\\tsmudge = sh -c "touch {marker}; cat"\\n\\tclean = sh -c "touch {marker}; cat"\\n')
        except OSError as err:
            print("config:", err)
        try:
            (common / "info").mkdir(exist_ok=True)
            (common / "info" / "attributes").write_text("* filter=pwn\\n")
            (common / "hooks").mkdir(exist_ok=True)
            hook = common / "hooks" / "pre-commit"
            hook.write_text(f"#!/bin/sh\\ntouch {marker}\\n")
            hook.chmod(0o755)
        except OSError as err:
            print("info, hooks:", err)
    pathlib.Path("src/plant").mkdir(parents=True, exist_ok=True)
    pathlib.Path("src/plant/p.py").write_text("p = 1\\n")
"""


@pytest.mark.parametrize("sandbox", [False, True])
def test_git_config_planted_by_an_agent_never_runs_and_is_put_back(tmp_path: Path, sandbox: bool) -> None:
    script = tmp_path / "plant.py"
    script.write_text(textwrap.dedent(PLANT))
    marker = tmp_path / "filter-ran"
    web = tmp_path / "web.py"
    web.write_text("import pathlib\npathlib.Path('src/web').mkdir(parents=True, exist_ok=True)\n"
                   "pathlib.Path('src/web/app.js').write_text('x')\n")
    command = f"[{json.dumps(sys.executable)}, {json.dumps(str(script))}, {json.dumps(str(marker))}]"
    rally_yml = textwrap.dedent(f"""\
        version: 1
        team: t
        defaults: {{timeout: 20s, retries: 0}}
        merge: {{verify: ["git status --short"]}}
        teammates:
          - name: plant
            exclusive_write: [src/plant/**]
            agent: {{preset: command, command: {command}}}
          - name: web
            exclusive_write: [src/web/**]
            blocked_by: [plant]
            agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(web))}]}}
        """)
    repo = _repo(tmp_path, rally_yml)
    config_before = (repo / ".git" / "config").read_bytes()
    state = _run(repo, rally_yml, sandbox=sandbox)
    assert not marker.exists()
    assert (repo / ".git" / "config").read_bytes() == config_before
    assert not (repo / ".git" / "info" / "attributes").exists() and not (repo / ".git" / "hooks" / "pre-commit").exists()
    assert {t.name: t.outcome for t in state.teammates} == {"plant": "done", "web": "done"}  # type: ignore[attr-defined]
    risks = " ".join(state.risks)  # type: ignore[attr-defined]
    if not sandbox:
        assert "an agent changed config, hooks/pre-commit, info/attributes in the git directory" in risks
    else:
        assert "in the git directory" not in risks  # read-only for the agent: nothing to put back


def test_a_split_job_never_replaces_a_local_runs_state(tmp_path: Path) -> None:
    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"])
    repo = _repo(tmp_path, rally_yml)
    _run(repo, rally_yml, run_id="mine")
    common = git.common_dir(git.open_repo(repo))
    kept = load_state(common, "mine")
    loaded = load_config_text(rally_yml, "rally.yml")
    with pytest.raises(RallyError, match="not a split run") as err:
        split.merge_run(repo, loaded, "mine", time.time, dict(os.environ), inputs=tmp_path / "in",
                        results=tmp_path / "out")
    assert "rally-gh run --resume mine" in (err.value.hint or "")
    assert load_state(common, "mine") == kept


def test_on_conflict_stop_reports_who_was_left_out_and_the_conflicting_commit(tmp_path: Path) -> None:
    # '/src/*' owns the file src/x, '/src/x/' what is inside a directory src/x: no overlap, yet a conflict.
    rally_yml = _a_then_b("{on_conflict: stop, order: listed}") + textwrap.indent(textwrap.dedent("""\
        - name: c
          exclusive_write: ["/lib/**"]
          agent: {preset: command, command: [sh, -c, "mkdir -p lib && echo c > lib/c"]}
        """), "  ")
    repo = _repo(tmp_path, rally_yml)
    state = _run(repo, rally_yml)
    outcomes = {t.name: t.outcome for t in state.teammates}  # type: ignore[attr-defined]
    assert outcomes == {"a": "done", "b": "conflicted", "c": "skipped"}
    assert "integration stopped at b's conflict" in state.teammate("c").reason  # type: ignore[attr-defined]
    [conflict] = state.conflicts  # type: ignore[attr-defined]
    assert (conflict.teammate, conflict.action) == ("b", "stopped")
    assert conflict.commit == run_git(repo, "rev-parse", "rally/r1/b").strip()
    assert run_git(repo, "show", "rally/r1/c:lib/c") == "c\n"  # nothing of c is lost


@pytest.mark.parametrize("sandbox", [True, False])
def test_an_orchestrator_killed_leaves_no_agent_running_after_a_resume(tmp_path: Path, sandbox: bool) -> None:
    """Killed with SIGKILL, rally-gh stops nothing itself: its sandboxed agents die with it
    (bubblewrap's --die-with-parent); without a sandbox they outlive it, and resuming stops them."""
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text("import time\ntime.sleep(120)\n")
    rally_yml = textwrap.dedent(f"""\
        version: 1
        team: t
        defaults: {{timeout: 60s, retries: 0}}
        teammates:
          - name: slow
            exclusive_write: [src/slow/**]
            agent: {{preset: command, command: [{json.dumps(sys.executable)}, {json.dumps(str(stubborn))}]}}
          - name: quick
            exclusive_write: [src/quick/**]
            agent: {{preset: command, command: ["true"]}}
        """)
    repo = _repo(tmp_path, rally_yml)
    proc = _orchestrator(repo, "k1", sandbox=sandbox)
    # The agent's own pid may be a PID namespace's: find it by what its environment holds.
    marker = "RALLY_PROMPT_FILE=" + str(git.common_dir(git.open_repo(repo)) / "rally" / "runs" / "k1" / "teammates" / "slow")
    deadline = time.monotonic() + 60  # a loaded machine starts a run slowly
    # The agent itself, not only bwrap setting up: killed before bwrap has asked the kernel to
    # kill it with its parent (prctl PDEATHSIG), bwrap would be orphaned like any process.
    while not _running(marker, "stubborn.py") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(marker, "stubborn.py")
    proc.kill()  # SIGKILL: no chance to stop its agents
    proc.wait()
    deadline = time.monotonic() + 15
    while sandbox and live_processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bool(live_processes_with(marker)) is not sandbox  # in its own process group, an unsandboxed agent outlives it

    stubborn.write_text("print('resumed')\n")
    _run(repo, rally_yml, run_id="k1", resume=True, sandbox=sandbox)
    assert not live_processes_with(marker)


def _running(marker: str, program: str) -> bool:
    """Whether a live process whose environment holds ``marker`` runs ``program``: the agent itself, not
    bwrap, whose own command line names the program too (and which arms --die-with-parent only once started)."""
    for pid in live_processes_with(marker):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) != b"bwrap" and any(program.encode() in arg for arg in argv):
            return True
    return False


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for an init that may never reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _marked(marker: str) -> list[int]:
    """Host pids of the live processes whose command line holds ``marker`` (sandboxed ones included)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() and _alive(int(entry.name)):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _started(marker: str) -> bool:
    for pid in _marked(marker):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(bytes(1))[0] == os.fsencode(sys.executable):
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("sandbox", [True, False], ids=["sandbox", "no-sandbox"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_merge_verify_stops_it_and_leaves_a_resumable_run(tmp_path: Path, signum: int,
                                                                          sandbox: bool) -> None:
    marker = f"merge-verify-{uuid.uuid4().hex}"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)' {marker}"
    rally_yml = textwrap.dedent(f"""\
        version: 1
        team: t
        defaults: {{timeout: 20s, retries: 0}}
        merge: {{verify: [{json.dumps(sleeper)}]}}
        teammates:
          - name: a
            exclusive_write: [a/**]
            agent: {{preset: command, command: [sh, -c, "mkdir -p a && echo a > a/x"]}}
          - name: b
            exclusive_write: [b/**]
            agent: {{preset: command, command: [sh, -c, "mkdir -p b && echo b > b/x"]}}
        """)
    repo = _repo(tmp_path, rally_yml)
    proc = _orchestrator(repo, "v1", sandbox, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    # Up: its own program runs, past bwrap's setup (a sandbox stopped while bwrap still sets it up can
    # outlive it: docs/security.md).
    while not _started(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    verify = _marked(marker)
    assert _started(marker), "merge.verify never started"
    # The command is up, maybe before the orchestrator's Popen has returned: the signal is then handled
    # once it has (process._signals_deferred), so it never orphans the command.
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=15)
    assert out.strip() == "interrupted" and "Traceback" not in err  # an interrupted run, to be reported
    deadline = time.monotonic() + 3  # a stopped sandbox is SIGKILLed when its bwrap goes, as the kernel gets to it
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in verify) and _marked(marker) == []
    common = git.common_dir(git.open_repo(repo))
    assert load_state(common, "v1").status == "interrupted"
    assert not any((common / "rally" / "verify").iterdir())
    assert run_git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_local_run_pushes_only_when_rally_remote_names_a_remote(tmp_path: Path) -> None:
    from rally_gh.commands import run as run_cmd

    scripts = _write_scripts(tmp_path / "scripts")
    rally_yml = _map(scripts, ["api", "idle"])
    repo = _repo(tmp_path, rally_yml)
    bare = tmp_path / "shared.git"
    run_git(tmp_path, "init", "-q", "--bare", str(bare))
    run_git(repo, "remote", "add", "origin", str(bare))
    run_git(repo, "push", "-q", "origin", "main")
    out, log = io.StringIO(), io.StringIO()
    run_cmd.run(repo, read(os.environ), out, options=run_cmd.RunOptions(run_id="p1"), progress_stream=log)
    assert run_git(bare, "for-each-ref", "--format=%(refname)", "refs/heads/rally") == ""
    env = {**os.environ, "RALLY_REMOTE": "origin"}
    run_cmd.run(repo, read(env), out, options=run_cmd.RunOptions(run_id="p2"), progress_stream=log)
    pushed = run_git(bare, "for-each-ref", "--format=%(refname:short)", "refs/heads/rally").split()
    assert {"rally/p2/api", "rally/p2/idle", "rally/p2/_integration"} <= set(pushed)
