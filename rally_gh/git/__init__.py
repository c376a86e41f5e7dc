"""All git access: the only package that imports pygit2.

Callers write ``from rally_gh import git`` and ``git.branch_tip(repo, ...)``.
A ``Repository`` is an opaque handle outside this package: every question
about it (its folders, its refs, its commits) is a function here, and no
pygit2 object is handed out. The modules, along the ways rally-gh uses git:

- ``repository``: opening a repository and reading it (commits, trees, blobs,
  HEAD, config); who writes a commit; ``run_git``, the one door to the git
  CLI where libgit2 falls short.
- ``changes``: what a commit, a range, the index or the work tree writes (the
  input of ownership enforcement).
- ``trees``: trees as raw bytes parsed once and cached, the fast path under
  ``changes`` and ``replay`` (internal).
- ``refs``: references and branches; a compare-and-swap move of a ref.
- ``private``: a teammate's own repository (the user's objects borrowed, the
  rest its own): made, neutralised before rally-gh's git runs there, what its
  agent left committed, and its result exported into the user's repository.
- ``worktrees``: checkouts (sparse or full) of a teammate's repository or a
  scratch worktree to verify a commit in, and the guard of the user's git
  directory's controls.
- ``replay``: the in-memory replay of commits onto a new tip, conflicts as
  values (integration).
- ``remote``: pushes under a lease and what a remote holds.
- ``records``: records kept as commits (the run history, split-run results).
- ``bundles``: a run's branches carried to the publish job in a bundle, and taken
  from one as untrusted input.

Errors are ``rally_gh.errors.GitError``: what went wrong, and what to do.
"""

from __future__ import annotations

from pygit2 import Repository

from rally_gh.git.bundles import (
    bundle_heads,
    import_bundle,
    write_bundle,
)
from rally_gh.git.changes import (
    Change,
    StagedIndex,
    changed_files,
    commit_changes,
    commits_between,
    dirty_paths,
    index_paths,
    merge_head_shas,
    non_merge_commits,
    patch_ids,
    read_index_blob,
    staged_changes,
    tree_changes,
)
from rally_gh.git.private import (
    commit_all,
    copy_objects,
    create_private_repo,
    export_result,
    is_private_repo,
    neutralise_private_repo,
    objects_dir,
    private_git_dir,
    private_head,
    remove_private_repo,
)
from rally_gh.git.records import (
    blobs_under,
    commit_with_files,
    write_record_commit,
)
from rally_gh.git.refs import (
    RefTarget,
    branch_names,
    branch_tip,
    branches_with_times,
    delete_branches,
    delete_refs,
    ref_exists,
    ref_names,
    ref_sha,
    ref_target,
    update_ref_if,
)
from rally_gh.git.remote import (
    HttpCredentials,
    Remote,
    PushedRef,
    RefPush,
    push_refs,
    remote_ref_shas,
)
from rally_gh.git.replay import (
    CommitSummary,
    PathConflict,
    ReplayedCommit,
    commit_summaries,
    replay_commit,
    replay_key,
    replay_session,
)
from rally_gh.git.repository import (
    EMPTY_TREE_SHA,
    MODE_BLOB,
    MODE_EXEC,
    MODE_GITLINK,
    MODE_LINK,
    MODE_TREE,
    RALLY_COMMITTER,
    Identity,
    Sha,
    blob_text,
    common_dir,
    config_value,
    entry_at,
    entry_names_at,
    git_dir,
    head_branch,
    head_sha,
    hooks_dir,
    in_progress_operation,
    is_ancestor,
    is_bare,
    is_commit,
    merge_base,
    object_exists,
    open_repo,
    read_blob,
    resolve,
    run_git,
    short,
    tracked_paths,
    user_identity,
    workdir,
)
from rally_gh.git.trees import (
    TreeCache,
    new_tree_cache,
)
from rally_gh.git.worktrees import (
    GitDirControls,
    cone_patterns,
    dematerialize,
    git_dir_controls,
    materialize,
    populate_worktree,
    prune_worktree_records,
    prune_worktrees,
    rally_worktrees_root,
    checked_out_branches,
    remove_worktree,
    restore_git_dir_controls,
)

__all__ = [
    "Repository",  # an opaque handle outside this package
    # bundles
    "bundle_heads", "import_bundle", "write_bundle",
    # changes
    "Change", "StagedIndex", "changed_files", "commit_changes", "commits_between", "dirty_paths", "index_paths",
    "merge_head_shas", "non_merge_commits", "patch_ids", "read_index_blob", "staged_changes", "tree_changes",
    # private (a teammate's own repository)
    "commit_all", "copy_objects", "create_private_repo", "export_result", "is_private_repo",
    "neutralise_private_repo", "objects_dir", "private_git_dir", "private_head", "remove_private_repo",
    # records
    "blobs_under", "commit_with_files", "write_record_commit",
    # refs
    "RefTarget", "branch_names", "branch_tip", "branches_with_times", "delete_branches", "delete_refs", "ref_exists",
    "ref_names", "ref_sha", "ref_target", "update_ref_if",
    # remote
    "HttpCredentials", "Remote", "PushedRef", "RefPush", "push_refs", "remote_ref_shas",
    # replay
    "CommitSummary", "PathConflict", "ReplayedCommit", "commit_summaries", "replay_commit", "replay_key",
    "replay_session",
    # repository
    "EMPTY_TREE_SHA", "MODE_BLOB", "MODE_EXEC", "MODE_GITLINK", "MODE_LINK", "MODE_TREE", "RALLY_COMMITTER",
    "Identity", "Sha", "blob_text", "common_dir", "config_value", "entry_at", "entry_names_at", "git_dir",
    "head_branch", "head_sha", "hooks_dir", "in_progress_operation", "is_ancestor", "is_bare", "is_commit",
    "merge_base", "object_exists", "open_repo", "read_blob", "resolve", "run_git", "short", "tracked_paths",
    "user_identity", "workdir",
    # trees
    "TreeCache", "new_tree_cache",
    # worktrees
    "GitDirControls", "cone_patterns", "dematerialize", "git_dir_controls",
    "materialize", "populate_worktree", "prune_worktree_records", "prune_worktrees", "rally_worktrees_root",
    "remove_worktree", "checked_out_branches", "restore_git_dir_controls",
]
