#!/usr/bin/env bash
# Installs the Mermaid renderer that tests/mermaid/ draws the report's diagrams
# with, pinned, into a cache OUTSIDE the repository:
#
#   ${RALLY_MERMAID_CACHE:-$HOME/.cache/rally-gh-mermaid}/node_modules/{mermaid,jsdom}
#
# mermaid's own parser and renderer under node, with jsdom for a DOM: the same
# code that draws a diagram on GitHub (what mermaid-cli runs in Chromium), in
# about 170 MB and well under a second per diagram, without a browser. Idempotent: a stamp
# that names the pinned versions leaves the cache alone (well under a second).
# No node or no registry is not a CI failure: the tests skip and say why.
set -uo pipefail

MERMAID_VERSION=11.17.2
JSDOM_VERSION=26.1.0
WANT="mermaid@$MERMAID_VERSION jsdom@$JSDOM_VERSION"

CACHE="${RALLY_MERMAID_CACHE:-$HOME/.cache/rally-gh-mermaid}"
say() { printf 'mermaid: %s\n' "$*"; }

if [[ -f "$CACHE/installed" && "$(cat "$CACHE/installed")" == "$WANT" ]]; then
    say "$WANT already installed"; exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    say "node or npm not found: the report's diagrams will NOT be rendered by the tests"; exit 0
fi
# One quick look at the registry first: unreachable, npm retries for minutes.
if ! timeout 60 npm view --fetch-retries=0 "mermaid@$MERMAID_VERSION" version >/dev/null 2>&1; then
    say "the npm registry does not answer for mermaid@$MERMAID_VERSION: the diagram tests will skip"; exit 0
fi
say "installing $WANT into $CACHE"
rm -rf "$CACHE"
mkdir -p "$CACHE"
# A stamp is written only after a whole install succeeded: an interrupted one is redone.
if timeout 600 npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error \
        "mermaid@$MERMAID_VERSION" "jsdom@$JSDOM_VERSION" >"$CACHE/install.log" 2>&1; then
    printf '%s' "$WANT" > "$CACHE/installed"
    say "$WANT installed"
else
    say "could not install $WANT (registry unreachable?); the diagram tests will skip. Log: $CACHE/install.log"
    tail -n 5 "$CACHE/install.log" | sed 's/^/    /'
fi
exit 0
