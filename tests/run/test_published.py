"""A published run handed from the command job of rally-comment.yml to its agents' job (``run.published``):
the agents' job, which has no token to fetch the run, restores it from the artifact alone, and refuses
one that is not a run handed over."""

from __future__ import annotations

from pathlib import Path

import pytest

from rally_gh import git as rgit
from rally_gh.errors import RallyError, UsageError
from rally_gh.run import published
from rally_gh.run.published import Again, PublishedRun
from rally_gh.testing import SHOP_MAP, commit, git, init_repo, run_state, teammate_record

RECORD = "ab" * 20
"""The commit of a published record, as the command job took it up."""


def _handed(tmp_path: Path) -> tuple[Path, Path, str]:
    """Run r1 as a command job leaves it: api's branch (a commit beyond the base) restored in ``origin``,
    handed over to ``folder`` to retry web; a clone of the base alone, as the agents' job checks out."""
    origin = init_repo(tmp_path / "origin", {"rally.yml": SHOP_MAP, "README.md": "# shop\n"})
    base = git(origin, "rev-parse", "HEAD").strip()
    git(origin, "checkout", "-q", "-b", "rally/r1/api")
    head = commit(origin, {"src/api/a.py": "api\n"}, "api: work")
    git(origin, "checkout", "-q", "main")
    state = run_state(teammate_record("api", "done", head_sha=head, start_sha=base),
                      teammate_record("web", "failed"), base_sha=base, integration_sha=None, integrated=())
    folder = tmp_path / "rally-again"
    again = Again(run_id="r1", record=RECORD, retry=("web",))
    published.hand_over(origin, PublishedRun(issue=7, state=state), again, {}, folder)
    clone = tmp_path / "agents-job"
    git(tmp_path, "clone", "-q", "--no-local", "--single-branch", "--branch", "main", str(origin), str(clone))
    return clone, folder, head


def test_the_agents_job_restores_the_run_from_the_artifact_alone(tmp_path: Path) -> None:
    clone, folder, head = _handed(tmp_path)
    assert rgit.ref_sha(rgit.open_repo(clone), "refs/heads/rally/r1/api") is None
    taken, loaded = published.take_over(clone, folder)
    assert taken.again == Again(run_id="r1", record=RECORD, retry=("web",)) and taken.published.issue == 7
    assert rgit.ref_sha(rgit.open_repo(clone), "refs/heads/rally/r1/api") == head
    assert [t.name for t in loaded.config.teammates] == ["api", "web", "infra"]


def test_a_handed_over_run_whose_bundle_is_gone_or_whose_record_is_a_link_is_refused(tmp_path: Path) -> None:
    clone, folder, _ = _handed(tmp_path)
    (folder / published.TAKEN_UP_BUNDLE).unlink()
    with pytest.raises(RallyError, match="rally/r1/api is not at .* in its bundle"):
        published.take_over(clone, folder)
    record = folder / published.TAKEN_UP_FILE
    record.rename(folder / "elsewhere.json")
    record.symlink_to(folder / "elsewhere.json")
    with pytest.raises(RallyError, match="not a regular file"):
        published.take_over(clone, folder)


def test_what_to_do_again_is_read_as_the_command_job_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "again.json"
    path.write_text(Again(run_id="r1", record=RECORD, drop={"api": "taken out"}).model_dump_json())
    assert published.read_again(path).drop == {"api": "taken out"}
    # Without the record it was taken up from (which the publish job publishes over, and only over), or with
    # anything but a commit id there, it is not the command job's.
    for wrong in ('{"run_id": "r1", "record": "%s", "rerun": ["api"]}' % RECORD, '{"run_id": "r1", "retry": ["web"]}',
                  '{"run_id": "r1", "record": "HEAD", "retry": ["web"]}'):
        path.write_text(wrong)
        with pytest.raises(UsageError, match="again.json: not what a taken-up run does again"):
            published.read_again(path)


def test_a_handed_over_run_that_names_a_branch_outside_the_run_or_an_oversized_bundle_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clone, folder, _ = _handed(tmp_path)
    path = folder / published.TAKEN_UP_FILE
    taken = published.TakenUp.model_validate_json(path.read_text())
    state = taken.published.state
    for branch in ("main", "rally/r1/web", "rally/r2/api"):
        moved = state.with_teammate(state.teammate("api").model_copy(update={"branch": branch}))
        path.write_text(taken.model_copy(update={"published": PublishedRun(issue=7, state=moved)}).model_dump_json())
        with pytest.raises(RallyError, match=f"'{branch}' is not a branch of run r1"):
            published.take_over(clone, folder)
    assert rgit.ref_sha(rgit.open_repo(clone), "refs/heads/rally/r1/api") is None
    path.write_text(taken.model_dump_json())
    monkeypatch.setattr(published, "TAKEN_UP_BUNDLE_LIMIT", 10)
    with pytest.raises(RallyError, match="run.bundle: more than the 10 bytes"):
        published.take_over(clone, folder)
