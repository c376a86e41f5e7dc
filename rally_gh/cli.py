"""The ``rally-gh`` command line: parse options, call one command function.

Nothing here knows how anything is done. Command modules are imported lazily
so that ``rally-gh hook pre-commit`` pays only for what it uses.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rally_gh import __version__
from rally_gh.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, RallyError

if TYPE_CHECKING:
    from rally_gh.github.actions import ActionsContext

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The ownership map (default: rally.yml, else .github/rally.yml).",
)
NO_SANDBOX_OPTION = click.option(
    "--no-sandbox", is_flag=True,
    help="Run the agents, their verify commands and merge.verify outside bubblewrap's sandbox, where none can be "
         "had: the report's first risk.",
)


def _guarded(fn: Callable[[], int]) -> int:
    """Run a command function: user errors become a message and an exit code."""
    try:
        return fn()
    except RallyError as err:
        click.echo(f"rally-gh: error: {err}", err=True)
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("rally-gh: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException:
        raise
    except BrokenPipeError:
        # The reader went away (``rally-gh owner - | head``): not our error.
        sys.stderr.close()
        return 0
    except Exception:  # noqa: BLE001 - the one place that turns bugs into a log
        fd, log = tempfile.mkstemp(prefix="rally-gh-", suffix=".log")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"rally-gh {__version__}, python {sys.version.split()[0]}\n")
            fh.write(f"argv: {sys.argv!r}\n\n")
            traceback.print_exc(file=fh)
        click.echo(
            f"rally-gh: an unexpected error has occurred: {sys.exc_info()[1]!r}\n"
            f"  the traceback is in {log}; please attach it to a bug report.",
            err=True,
        )
        return EXIT_INTERNAL


def _exit(fn: Callable[[], int]) -> None:
    raise SystemExit(_guarded(fn))


def _actions(event_path: Path | None = None) -> ActionsContext:
    """This process's environment, as GitHub Actions shapes it (read here, once, for every command)."""
    from rally_gh import process
    from rally_gh.github.actions import TOKEN_VARIABLES, read

    context = read(os.environ, event_path=event_path)
    # Read once: from here on the token lives in the context alone, not in the environment that
    # every git, agent or verify rally-gh starts inherits, nor in this process's /proc/<pid>/environ.
    process.forget_environment(TOKEN_VARIABLES)
    return context


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rally-gh")
def cli() -> None:
    """Run several coding agents on one repository without them trampling each other."""


@cli.command()
@click.option("--workflows", is_flag=True, help="Also write the ready GitHub workflows into .github/workflows/.")
@click.option("--force", is_flag=True, help="Replace an existing rally.yml (and workflows).")
def init(workflows: bool, force: bool) -> None:
    """A starter rally.yml from CODEOWNERS or the top-level layout, valid as written."""
    from rally_gh.commands import init as cmd

    _exit(lambda: cmd.run(Path.cwd(), sys.stdout, workflows=workflows, force=force))


@cli.command()
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def validate(config_path: Path | None, fmt: str) -> None:
    """Check the ownership map: schema, names, cycles, overlaps, control files."""
    from rally_gh.commands import validate as cmd

    _exit(lambda: cmd.run(Path.cwd(), sys.stdout, config_path=config_path, fmt=fmt))


@cli.command()
@click.argument("paths", nargs=-1)
@CONFIG_OPTION
@click.option("--codeowners", "codeowners_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Answer from this CODEOWNERS file instead of rally.yml.")
@click.option("--format", "fmt", type=click.Choice(["tsv", "json"]), default="tsv")
def owner(paths: tuple[str, ...], config_path: Path | None, codeowners_path: Path | None, fmt: str) -> None:
    """The owner of each PATH ('-' reads paths from standard input)."""
    from rally_gh.commands import owner as cmd

    _exit(lambda: cmd.run(Path.cwd(), list(paths), config_path, codeowners_path, fmt, sys.stdin, sys.stdout))


@cli.command()
@CONFIG_OPTION
@click.option("--base", default=None, help="Commits after this one are checked (default: the map's base branch).")
@click.option("--head", default="HEAD", show_default=True)
@click.option("--teammate", default=None, help="Who wrote the commits (default: from the branch name).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text")
def check(config_path: Path | None, base: str | None, head: str, teammate: str | None, fmt: str) -> None:
    """Ownership violations in every commit between --base and --head."""
    from rally_gh.commands import check as cmd

    options = cmd.CheckOptions(config_path=config_path, base=base, head=head, teammate=teammate, fmt=fmt)
    _exit(lambda: cmd.run(Path.cwd(), _actions(), sys.stdout, options=options))


@cli.group()
def hook() -> None:
    """Git hooks."""


@hook.command("pre-commit")
@CONFIG_OPTION
def hook_pre_commit(config_path: Path | None) -> None:
    """Refuse a commit that writes outside the teammate's ownership."""
    from rally_gh.commands import hook as cmd

    _exit(lambda: cmd.pre_commit(Path.cwd(), _actions(), sys.stdout, config_path=config_path))


@hook.command("install")
@click.option("--force", is_flag=True, help="Replace a hook that rally-gh did not write (it is kept as .orig and chained).")
def hook_install(force: bool) -> None:
    """Install a plain git pre-commit hook (for repositories without the pre-commit framework)."""
    from rally_gh.commands import hook as cmd

    _exit(lambda: cmd.install(Path.cwd(), force, sys.stdout))


@cli.command()
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json", "mermaid", "matrix"]), default="text")
@click.option("--issue", type=click.IntRange(min=1), default=None)
@click.option("--tasks", "tasks_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--from-handoff", "handoff_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def plan(config_path: Path | None, fmt: str, issue: int | None, tasks_path: Path | None, handoff_path: Path | None) -> None:
    """The waves, each teammate's prompt, refusals and warnings."""
    from rally_gh.commands import plan as cmd

    options = cmd.PlanOptions(config_path=config_path, fmt=fmt, issue=issue, tasks_path=tasks_path,
                              handoff_path=handoff_path)
    _exit(lambda: cmd.run(Path.cwd(), _actions(), sys.stdout, options=options))


@cli.command()
@CONFIG_OPTION
@click.option("--run-id", default=None)
@click.option("--issue", type=click.IntRange(min=1), default=None)
@click.option("--event", "event_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--tasks", "tasks_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--from-handoff", "handoff_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="This run's tasks from a planner's handoff file (YAML or JSON).")
@click.option("--dry-run", is_flag=True)
@click.option("--resume", "resume", default=None, metavar="RUN")
@NO_SANDBOX_OPTION
@click.option("--approved", is_flag=True,
              help="A person approved this run (the map's `approval` rules ask for one before agents start).")
@click.option("--results", "results", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Publish nothing and use no GitHub token: write the run's branches and records to DIR "
                   "for `rally-gh publish` in another job.")
@click.option("--again", "again", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="With --results: run again the published run that `rally-gh admit --again` handed on in DIR "
                   "(`/rally retry`, `drop`, a review's follow-up rounds).")
def run(config_path: Path | None, run_id: str | None, issue: int | None, event_path: Path | None,
        tasks_path: Path | None, handoff_path: Path | None, dry_run: bool, resume: str | None,
        no_sandbox: bool, approved: bool, results: Path | None, again: Path | None) -> None:
    """A whole run: plan, spawn, run agents, reconcile, integrate, publish."""
    from rally_gh.commands import run as cmd

    options = cmd.RunOptions(config_path=config_path, run_id=run_id, issue=issue, tasks_path=tasks_path,
                             handoff_path=handoff_path, dry_run=dry_run, resume=resume, no_sandbox=no_sandbox,
                             approved=approved, results=results, again=again)
    _exit(lambda: cmd.run(Path.cwd(), _actions(event_path), sys.stdout, options=options))


@cli.command()
@CONFIG_OPTION
@click.option("--run-id", default=None, help="The run's id (default: from the issue and the workflow run).")
@click.option("--issue", type=click.IntRange(min=1), default=None)
@click.option("--event", "event_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--again", "again", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="A `/rally retry` or `drop`, or a review's rounds: hand the published run on to the agents' "
                   "job in DIR (its artifact) instead of only answering.")
def admit(config_path: Path | None, run_id: str | None, issue: int | None, event_path: Path | None,
          again: Path | None) -> None:
    """Decide whether the event may start a run, and tell the issue; no agent runs."""
    from rally_gh.commands import admit as cmd

    options = cmd.AdmitOptions(config_path=config_path, run_id=run_id, issue=issue, again=again)
    _exit(lambda: cmd.admit(Path.cwd(), _actions(event_path), sys.stdout, options=options))


@cli.command()
@click.option("--results", "results", type=click.Path(file_okay=False, path_type=Path), required=True,
              metavar="DIR", help="The folder `rally-gh run --results` wrote in the agents' job (its artifact); "
                                  "when there is none, the run is marked failed on its issue.")
@click.option("--run-id", default=None, help="The run (default: from the issue and the workflow run, as run names it).")
@click.option("--event", "event_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--again", "again", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="A published run taken up again: what the command job said to do again (its `again` output, "
                   "JSON); the run's record is fetched from the remote and the results judged against it.")
@CONFIG_OPTION
def publish(results: Path, run_id: str | None, event_path: Path | None, again: Path | None,
            config_path: Path | None) -> None:
    """Check a run's results against the map of the base commit, and publish what passes."""
    from rally_gh.commands import publish as cmd
    from rally_gh.run.published import read_again

    def publish_it() -> int:
        options = cmd.PublishOptions(results=results, run_id=run_id, config_path=config_path,
                                     again=None if again is None else read_again(again))
        return cmd.publish(Path.cwd(), _actions(event_path), sys.stdout, options=options)

    _exit(publish_it)


SPLIT_FROM_OPTION = click.option(
    "--from", "inputs", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
    help="The teammate jobs' artifacts, one folder each as actions/download-artifact leaves them "
         "(default: the run's artifacts folder in .git/rally/runs/RUN/artifacts).")


@cli.command()
@click.argument("name")
@click.option("--run", "run_id", required=True)
@CONFIG_OPTION
@NO_SANDBOX_OPTION
@click.option("--results", "results", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Where its record and commits go, for its job's artifact "
                                  "(default: rally-teammate-NAME in the run's artifacts folder).")
@SPLIT_FROM_OPTION
def teammate(name: str, run_id: str, config_path: Path | None, no_sandbox: bool, results: Path | None,
             inputs: Path | None) -> None:
    """One teammate of a run split across CI jobs; it publishes nothing."""
    from rally_gh.commands import run as cmd

    options = cmd.TeammateOptions(name=name, run_id=run_id, config_path=config_path, no_sandbox=no_sandbox,
                                  results=results, inputs=inputs)
    _exit(lambda: cmd.teammate(Path.cwd(), _actions(), sys.stdout, options=options))


@cli.command()
@click.option("--run", "run_id", required=True)
@CONFIG_OPTION
@NO_SANDBOX_OPTION
@click.option("--results", "results", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Where the run's results go, for `rally-gh publish --results` "
                                  "(default: rally-results in the run's artifacts folder).")
@SPLIT_FROM_OPTION
def merge(run_id: str, config_path: Path | None, no_sandbox: bool, results: Path | None,
          inputs: Path | None) -> None:
    """Integrate and verify the teammates' results of a split run, for `rally-gh publish`."""
    from rally_gh.commands import run as cmd

    options = cmd.MergeOptions(run_id=run_id, config_path=config_path, no_sandbox=no_sandbox, results=results,
                               inputs=inputs)
    _exit(lambda: cmd.merge(Path.cwd(), _actions(), sys.stdout, options=options))


@cli.command()
@click.option("--run", "run_id", default=None, help="The run (default: the one started last; see `rally-gh runs`).")
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json", "step-complete", "handoff"]), default=None,
              help="text: drawn for a terminal (the default in one); md: Markdown for GitHub (the default otherwise).")
def report(run_id: str | None, fmt: str | None) -> None:
    """The report of a run, the latest by default."""
    from rally_gh.commands import report as cmd

    _exit(lambda: cmd.run(Path.cwd(), sys.stdout, run_id=run_id, fmt=fmt))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def runs(fmt: str) -> None:
    """The runs of this repository, newest first: status, teammates, integration branch."""
    from rally_gh.commands import runs as cmd

    _exit(lambda: cmd.run(Path.cwd(), sys.stdout, fmt=fmt))


@cli.command()
@click.option("--run", "run_id", default=None, help="Only this run (default: every run that is not running).")
@click.option("--older-than", default=None, metavar="AGE", help="Only runs started more than AGE ago (30d, 12h, 2w).")
@click.option("--dry-run", is_flag=True, help="List what would go, remove nothing.")
@click.option("--force", is_flag=True, help="Also delete branches whose work exists nowhere else.")
def clean(run_id: str | None, older_than: str | None, dry_run: bool, force: bool) -> None:
    """Remove runs' branches, state and leftover worktrees (never work found nowhere else, unless --force)."""
    import time

    from rally_gh.commands import clean as cmd

    options = cmd.CleanOptions(run_id=run_id, older_than=older_than, dry_run=dry_run, force=force)
    _exit(lambda: cmd.run(Path.cwd(), time.time, sys.stdout, options=options))


@cli.command()
@CONFIG_OPTION
@click.option("--apply", "apply", type=int, default=None, metavar="N",
              help="Write suggestion N into rally.yml (comments and layout kept).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def history(config_path: Path | None, apply: int | None, fmt: str) -> None:
    """The trend of past runs (refs/rally/history) and the changes to the map it suggests."""
    from rally_gh.commands import history as cmd

    options = cmd.HistoryOptions(config_path=config_path, apply=apply, fmt=fmt)
    _exit(lambda: cmd.run(Path.cwd(), sys.stdout, options=options))


@cli.group()
def codeowners() -> None:
    """Convert between CODEOWNERS and rally.yml."""


@codeowners.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--team", default=None, help="The team name (default: the repository's directory name).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
def codeowners_import(file: Path, team: str | None, output: Path | None) -> None:
    """A rally.yml whose ownership is exactly FILE's."""
    from rally_gh.commands import codeowners as cmd

    _exit(lambda: cmd.import_(Path.cwd(), file, team, output, sys.stdout))


@codeowners.command("export")
@CONFIG_OPTION
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of standard output.")
def codeowners_export(config_path: Path | None, output: Path | None) -> None:
    """A CODEOWNERS file that keeps every path's review owners (the teammates' codeowners)."""
    from rally_gh.commands import codeowners as cmd

    _exit(lambda: cmd.export(Path.cwd(), config_path, output, sys.stdout))


@cli.command()
def schema() -> None:
    """The JSON Schema of rally.yml, for editors."""
    from rally_gh.commands import schema as cmd

    _exit(lambda: cmd.run(sys.stdout))


@cli.command()
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build the sample repository here and keep it.")
def demo(keep: Path | None) -> None:
    """A sample repository, scripted teammates, a full local run and its report."""
    from rally_gh.commands import demo as cmd

    _exit(lambda: cmd.run(_actions(), sys.stdout, keep=keep))


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="rally-gh")
