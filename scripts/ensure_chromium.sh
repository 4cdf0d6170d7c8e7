#!/usr/bin/env bash
# Make sure the browser test has Debian's Chromium (Playwright drives it; never `playwright install`).
#   CHROMIUM   the binary the tests use (default /usr/bin/chromium; tests read HF_FVIZ_CHROMIUM too)
#   DRY_RUN=1  say what would be done, change nothing
# Present: nothing to do. Missing and root with apt-get: apt-get update + install chromium.
# Otherwise: one line saying what to install, and exit 1 (`make test` stops before pytest).
set -euo pipefail
CHROMIUM="${CHROMIUM:-${HF_FVIZ_CHROMIUM:-/usr/bin/chromium}}"
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "would run: apt-get update && apt-get install -y chromium (missing: $CHROMIUM)"
    exit 0
  fi
  echo "installing Debian's chromium for the browser test (missing: $CHROMIUM)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  [ -x "$CHROMIUM" ] && exit 0
  echo "make test: chromium installed but $CHROMIUM is still missing: set CHROMIUM=/path/to/chromium" >&2
  exit 1
fi
echo "make test: the browser test needs Chromium at $CHROMIUM: run \`sudo apt-get install -y chromium\` (Debian/Ubuntu), or set CHROMIUM=/path/to/chromium" >&2
exit 1
