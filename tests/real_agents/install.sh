#!/usr/bin/env bash
# Installs the real agent CLIs that tests/real_agents/ drives, pinned, into a
# cache OUTSIDE the repository (they weigh 235 MB, 404 MB and 687 MB):
#
#   ${RALLY_AGENT_CACHE:-$HOME/.cache/rally-gh-agents}/bin/{claude,codex,aider}
#
# Idempotent: a CLI whose stamp file says the pinned version is installed is
# left alone, so a second run takes well under a second. A registry that
# cannot be reached is not a CI failure: the tests of that CLI skip, and this
# script says why and exits 0. aider gets a virtualenv of its own because it
# pins dozens of heavy dependencies that must not touch the project's.
set -uo pipefail

CLAUDE_VERSION=2.1.197
CODEX_VERSION=0.169.0
AIDER_VERSION=0.86.2

CACHE="${RALLY_AGENT_CACHE:-$HOME/.cache/rally-gh-agents}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

say() { printf 'real agents: %s\n' "$*"; }

# A stamp is written only after a whole install succeeded: an interrupted
# install is redone next time instead of being taken for a good one.
installed() { [[ -f "$CACHE/$1.installed" && "$(cat "$CACHE/$1.installed")" == "$2" && -x "$BIN/$1" ]]; }
stamp() { printf '%s' "$2" > "$CACHE/$1.installed"; }

# One quick look at the registry before an install: unreachable, npm and pip
# would each retry for a minute or more before giving up.
npm_has() { timeout 60 npm view --fetch-retries=0 "$1@$2" version >/dev/null 2>&1; }
pip_has() { timeout 60 "$1" -m pip index versions --retries 0 --timeout 20 "$2" 2>/dev/null | grep -qw -- "$3"; }

install_npm() {  # NAME VERSION PACKAGE
    local name=$1 version=$2 package=$3 dir="$CACHE/$1"
    if installed "$name" "$version"; then say "$name $version already installed"; return; fi
    if ! npm_has "$package" "$version"; then
        say "the npm registry does not answer for $package@$version: $name tests will skip"; return
    fi
    say "installing $package@$version into $dir"
    rm -rf "$dir" "$CACHE/$name.installed"
    mkdir -p "$dir"
    # The package's native binary comes as a per-platform npm dependency: the
    # registry is the only host contacted.
    if timeout 900 npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
            "$package@$version" >"$CACHE/$name.log" 2>&1 \
        && "$dir/node_modules/.bin/$name" --version >>"$CACHE/$name.log" 2>&1; then
        ln -sfn "$dir/node_modules/.bin/$name" "$BIN/$name"
        stamp "$name" "$version"
        say "$name $version installed"
    else
        say "could not install $package@$version (registry unreachable?); its tests will skip. Log: $CACHE/$name.log"
        tail -n 5 "$CACHE/$name.log" | sed 's/^/    /'
    fi
}

install_aider() {
    local dir="$CACHE/aider"
    if installed aider "$AIDER_VERSION"; then say "aider $AIDER_VERSION already installed"; return; fi
    rm -rf "$dir" "$CACHE/aider.installed"
    # aider 0.86 supports Python 3.10 to 3.12.
    local python=""
    for candidate in python3.12 python3.11 python3.10 python3; do
        if command -v "$candidate" >/dev/null \
            && "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
            python=$candidate; break
        fi
    done
    if [[ -z "$python" ]]; then say "no Python 3.10 to 3.12 for aider; its tests will skip"; return; fi
    if ! pip_has "$python" aider-chat "$AIDER_VERSION"; then
        say "the package index does not answer for aider-chat==$AIDER_VERSION: aider tests will skip"; return
    fi
    say "installing aider-chat==$AIDER_VERSION into $dir"
    if "$python" -m venv "$dir" >"$CACHE/aider.log" 2>&1 \
        && timeout 1200 "$dir/bin/python" -m pip install -q --disable-pip-version-check \
            "aider-chat==$AIDER_VERSION" >>"$CACHE/aider.log" 2>&1 \
        && "$dir/bin/aider" --version >>"$CACHE/aider.log" 2>&1; then
        ln -sfn "$dir/bin/aider" "$BIN/aider"
        stamp aider "$AIDER_VERSION"
        say "aider $AIDER_VERSION installed"
    else
        say "could not install aider-chat==$AIDER_VERSION (registry unreachable?); its tests will skip. Log: $CACHE/aider.log"
        tail -n 5 "$CACHE/aider.log" | sed 's/^/    /'
    fi
}

if command -v npm >/dev/null; then
    install_npm claude "$CLAUDE_VERSION" @anthropic-ai/claude-code
    install_npm codex "$CODEX_VERSION" @openai/codex
else
    say "npm not found: Claude Code and Codex tests will skip"
fi
install_aider
exit 0
