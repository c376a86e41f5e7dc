#!/usr/bin/env bash
# Installs the real agent CLIs that tests/real_agents/ drives into a cache
# OUTSIDE the repository (they weigh 235 MB, 404 MB and 687 MB), each twice:
# the pinned release, and the latest one (what users install), resolved when
# this script runs:
#
#   ${RALLY_AGENT_CACHE:-$HOME/.cache/rally-gh-agents}/bin/{claude,codex,aider}          pinned
#   ${RALLY_AGENT_CACHE:-$HOME/.cache/rally-gh-agents}/latest/bin/{claude,codex,aider}   latest
#
# Idempotent: a CLI whose stamp file says the wanted version is installed is
# left alone; a latest release equal to the pinned one is a link to it. A
# registry that cannot be reached is not a CI failure: the tests of that CLI
# skip, this script says why and exits 0, and the test run ends with a line
# naming every CLI that was not exercised. aider gets a virtualenv of its own
# because it pins dozens of heavy dependencies that must not touch the project's.
set -uo pipefail

CLAUDE_VERSION=2.1.197
CODEX_VERSION=0.169.0
AIDER_VERSION=0.86.2

CACHE="${RALLY_AGENT_CACHE:-$HOME/.cache/rally-gh-agents}"
BIN="$CACHE/bin"
LATEST_BIN="$CACHE/latest/bin"
mkdir -p "$BIN" "$LATEST_BIN"

say() { printf 'real agents: %s\n' "$*"; }

# A stamp is written only after a whole install succeeded: an interrupted
# install is redone next time instead of being taken for a good one.
# $1 is the install's name: claude (pinned) or claude-latest; its binary is $3.
installed() { [[ -f "$CACHE/$1.installed" && "$(cat "$CACHE/$1.installed")" == "$2" && -x "$3" ]]; }
stamp() { printf '%s' "$2" > "$CACHE/$1.installed"; }

# One quick look at the registry before an install: unreachable, npm and pip
# would each retry for a minute or more before giving up.
npm_has() { timeout 60 npm view --fetch-retries=0 "$1@$2" version >/dev/null 2>&1; }
# pip's answer is read whole before it is searched: `pip ... | grep -q` under
# pipefail fails whenever grep stops at its first match and pip dies of the
# broken pipe, which made every aider install skip.
pip_versions() { timeout 60 "$1" -m pip index versions --retries 0 --timeout 20 "$2" 2>/dev/null; }
pip_has() { local versions; versions=$(pip_versions "$1" "$2") && grep -qw -- "$3" <<<"$versions"; }
npm_latest() { timeout 60 npm view --fetch-retries=0 "$1" version 2>/dev/null; }
pip_latest() {  # "aider-chat (0.86.2)" -> 0.86.2
    local versions; versions=$(pip_versions "$1" "$2") || return 1
    sed -n '1s/^.*(\(.*\)).*$/\1/p' <<<"$versions"
}

# NAME-latest: the latest release next to the pinned one; a link to the pinned
# install when they are the same version.
link_latest_to_pinned() {  # NAME VERSION PINNED_VERSION
    if [[ "$2" == "$3" ]] && installed "$1" "$3" "$BIN/$1"; then
        ln -sfn "$(readlink -f "$BIN/$1")" "$LATEST_BIN/$1"
        stamp "$1-latest" "$2"
        say "$1-latest is $2, the pinned release"
        return 0
    fi
    return 1
}

install_npm() {  # CLI VERSION PACKAGE [latest]
    local cli=$1 version=$2 package=$3 name=$1 bin=$BIN
    if [[ "${4:-}" == latest ]]; then name="$cli-latest"; bin=$LATEST_BIN; fi
    local dir="$CACHE/$name"
    if installed "$name" "$version" "$bin/$cli"; then say "$name $version already installed"; return; fi
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
        && "$dir/node_modules/.bin/$cli" --version >>"$CACHE/$name.log" 2>&1; then
        ln -sfn "$dir/node_modules/.bin/$cli" "$bin/$cli"
        stamp "$name" "$version"
        say "$name $version installed"
    else
        say "could not install $package@$version (registry unreachable?); its tests will skip. Log: $CACHE/$name.log"
        tail -n 5 "$CACHE/$name.log" | sed 's/^/    /'
    fi
}

install_npm_latest() {  # CLI PINNED_VERSION PACKAGE
    local version
    if ! version=$(npm_latest "$3") || [[ -z "$version" ]]; then
        say "the npm registry does not name the latest $3: $1-latest tests will skip"; return
    fi
    link_latest_to_pinned "$1" "$version" "$2" || install_npm "$1" "$version" "$3" latest
}

aider_python() {
    # aider 0.86 supports Python 3.10 to 3.12.
    for candidate in python3.12 python3.11 python3.10 python3; do
        if command -v "$candidate" >/dev/null \
            && "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
            echo "$candidate"; return
        fi
    done
}

install_aider() {  # VERSION [latest]
    local version=$1 name=aider bin=$BIN
    if [[ "${2:-}" == latest ]]; then name=aider-latest; bin=$LATEST_BIN; fi
    local dir="$CACHE/$name"
    if installed "$name" "$version" "$bin/aider"; then say "$name $version already installed"; return; fi
    rm -rf "$dir" "$CACHE/$name.installed"
    local python; python=$(aider_python)
    if [[ -z "$python" ]]; then say "no Python 3.10 to 3.12 for aider; $name tests will skip"; return; fi
    if ! pip_has "$python" aider-chat "$version"; then
        say "the package index does not answer for aider-chat==$version: $name tests will skip"; return
    fi
    say "installing aider-chat==$version into $dir"
    if "$python" -m venv "$dir" >"$CACHE/$name.log" 2>&1 \
        && timeout 1200 "$dir/bin/python" -m pip install -q --disable-pip-version-check \
            "aider-chat==$version" >>"$CACHE/$name.log" 2>&1 \
        && "$dir/bin/aider" --version >>"$CACHE/$name.log" 2>&1; then
        ln -sfn "$dir/bin/aider" "$bin/aider"
        stamp "$name" "$version"
        say "$name $version installed"
    else
        say "could not install aider-chat==$version (registry unreachable?); its tests will skip. Log: $CACHE/$name.log"
        tail -n 5 "$CACHE/$name.log" | sed 's/^/    /'
    fi
}

install_aider_latest() {
    local python version; python=$(aider_python)
    if [[ -z "$python" ]]; then say "no Python 3.10 to 3.12 for aider; aider-latest tests will skip"; return; fi
    if ! version=$(pip_latest "$python" aider-chat) || [[ -z "$version" ]]; then
        say "the package index does not name the latest aider-chat: aider-latest tests will skip"; return
    fi
    link_latest_to_pinned aider "$version" "$AIDER_VERSION" || install_aider "$version" latest
}

if command -v npm >/dev/null; then
    install_npm claude "$CLAUDE_VERSION" @anthropic-ai/claude-code
    install_npm_latest claude "$CLAUDE_VERSION" @anthropic-ai/claude-code
    install_npm codex "$CODEX_VERSION" @openai/codex
    install_npm_latest codex "$CODEX_VERSION" @openai/codex
else
    say "npm not found: Claude Code and Codex tests will skip"
fi
install_aider "$AIDER_VERSION"
install_aider_latest
exit 0
