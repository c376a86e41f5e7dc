"""The pattern language of ``rally.yml`` and the ownership it decides (SPEC section 1).

One area, read from the bottom up:

- ``paths``: which repository paths nobody may ever write (hostile names,
  control files). Imports nothing, because the hook's fast path uses it.
- ``globs``: what a pattern means: CODEOWNERS syntax parsed once into a
  ``Glob`` (its segments), which matching reads as an RE2 expression over
  whole paths (``GlobSet``: many patterns in one pass) and ``overlap`` as an
  automaton.
- ``rules``: who owns a path: each teammate's ``exclusive_write`` list read like
  a gitignore list, exclusive between teammates (``Ownership``).
- ``overlap``: whether two teammates' lists can own a common path, proved from
  the patterns alone, with the shortest example path.
- ``validation``: everything ``rally-gh validate`` says about a loaded map
  (overlaps, control-file grants, dead patterns, unowned files).
- ``enforce``: which writes of a commit range, or of the staged index, a
  teammate was not allowed to make (``check``, the hook, a run's reconciliation).
- ``codeowners``: CODEOWNERS files: who owns a path by GitHub's reading, and
  the conversion to and from ``rally.yml``.

This package imports none of its modules here: the hook's fast path imports
``paths`` alone, and ``owner --codeowners`` never loads pydantic.
"""
