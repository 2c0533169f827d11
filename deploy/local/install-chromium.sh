#!/usr/bin/env bash
# Installs headless Chromium from Debian's packages, for the tests that open a cutover
# report in a real browser (tests/it/report/). Idempotent: when /usr/bin/chromium (or
# $CUTOVER_CHROMIUM) already runs, it does nothing.
#
#   deploy/local/install-chromium.sh
#
# Needs apt-get and root (or sudo). When it cannot install, it fails loudly with the
# command that would have installed the browser, so that a person or CI can run it.
set -euo pipefail
browser="${CUTOVER_CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$browser" ]] && "$browser" --version >/dev/null 2>&1; then
  exit 0
fi
# fonts-liberation: Chromium's default sans-serif face, so text in screenshots is real text.
packages=(chromium fonts-liberation)
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages[*]}"
fail() {
  echo "install-chromium.sh: $1" >&2
  echo "install-chromium.sh: install the browser with: $cmd" >&2
  exit 1
}
command -v apt-get >/dev/null || fail "apt-get not found: this script installs Debian's chromium package"
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
  command -v sudo >/dev/null || fail "not root and no sudo"
  sudo=(sudo)
fi
echo "installing ${packages[*]} (Debian packages) for the report's browser tests" >&2
# apt's progress goes to a log, shown only when something fails.
log="$(mktemp "${TMPDIR:-/tmp}/install-chromium.XXXXXX")"
trap 'rm -f "$log"' EXIT
apt() {
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "$@" >"$log" 2>&1 || {
    tail -n 20 "$log" >&2
    fail "apt-get $* failed"
  }
}
apt update
apt install -y --no-install-recommends "${packages[@]}"
[[ -x "$browser" ]] || fail "$browser is still missing after the install"
"$browser" --version >/dev/null 2>&1 || fail "$browser does not run: $("$browser" --version 2>&1 | tail -n 1)"
