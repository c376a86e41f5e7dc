"""A run of the team (SPEC sections 4 and 7), as a pipeline of phases.

- ``pipeline``: ``run()``, the phases in order: assess, plan, spawn, run and reconcile
  (per teammate, in the scheduler's job threads), integrate, verify, publish, clean up.
- ``context``: the one frozen ``RunContext`` every phase reads, with the ``Policy``
  that says how the run publishes.
- ``assess``: who runs, whether the run may start at all, the risks it takes.
- ``scheduler``: the teammates' attempts, at most ``max_parallel`` at once, in
  dependency order, with retries, a budget and shared blockers; it says what happened.
- ``teammate``: one teammate from spawn to its final record: its worktree, its agent's
  command and sandbox, the git directory guarded, and its outcome, decided once.
- ``fanin``: integrate, ``merge.verify`` and its bisection, and integration's one
  verdict on each teammate; publish.
- ``split``: the same phases across CI jobs: a teammate job, a merge job, and the
  records that travel between them through the remote.
- ``ledger``: the run's state, shared by the job threads, saved atomically.
"""
