#!/usr/bin/env bash
# Install the pinned Claude Code CLI from the npm registry into a cache dir, for the end-to-end
# tests. Idempotent: when the cached binary already reports the pinned version nothing is
# fetched. The native binary ships inside the optional dependency
# @anthropic-ai/claude-code-linux-x64, so npm is the only thing that talks to the network.
#
# Usage: scripts/install-claude-code.sh            (prints the path of `claude` on its last line)
# Env:   GPTME_SUBSCRIPTION_E2E_CACHE  cache root (default ~/.cache/gptme-subscription-e2e)
#        CLAUDE_CODE_VERSION           another version than the pinned one (the e2e tests
#                                      pass it on; CI's second e2e run uses the newest)
set -euo pipefail

version="${CLAUDE_CODE_VERSION:-2.1.330}"
cache_root="${GPTME_SUBSCRIPTION_E2E_CACHE:-$HOME/.cache/gptme-subscription-e2e}"
prefix="$cache_root/claude-code-$version"
bin="$prefix/node_modules/.bin/claude"

installed_version() {
    # `claude --version` prints e.g. "2.1.330 (Claude Code)"; it works offline.
    [ -x "$bin" ] || return 1
    DISABLE_AUTOUPDATER=1 timeout 60 "$bin" --version 2>/dev/null | head -n1 | awk '{print $1}'
}

if [ "$(installed_version || true)" = "$version" ]; then
    echo "claude-code $version already installed in $prefix" >&2
    echo "$bin"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: cannot install @anthropic-ai/claude-code@$version" >&2
    exit 127
fi

mkdir -p "$prefix"
# One installer at a time per cache (two test runs may start together); re-check under it.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache_root/.install-$version.lock"
    flock -w 600 9
    if [ "$(installed_version || true)" = "$version" ]; then
        echo "$bin"
        exit 0
    fi
fi
# A private package.json keeps npm from walking up into some parent project.
if [ ! -f "$prefix/package.json" ]; then
    printf '{"name": "gptme-subscription-e2e-claude-code", "private": true}\n' \
        >"$prefix/package.json"
fi

echo "installing @anthropic-ai/claude-code@$version into $prefix" >&2
start=$(date +%s)
# --ignore-scripts is not used: the package's postinstall only links the native binary that
# came with the optional dependency; it downloads nothing.
npm install \
    --prefix "$prefix" \
    --no-save --no-audit --no-fund --no-update-notifier --loglevel=error \
    "@anthropic-ai/claude-code@$version" >&2
echo "installed in $(($(date +%s) - start)) s" >&2

got="$(installed_version || true)"
if [ "$got" != "$version" ]; then
    echo "installed claude-code reports version '${got:-<nothing>}', expected $version" >&2
    exit 1
fi
echo "$bin"
