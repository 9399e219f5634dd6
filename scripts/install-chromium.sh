#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests (tests/test_dashboard_browser.py),
# installed once by `make setup`. Nothing is downloaded at test time: Selenium is pointed at
# these two binaries. As root (CI) it installs them with apt-get; otherwise it says the
# browser tests will skip (under GPTME_SUBSCRIPTION_CI they fail instead).
#
# Env: CHROMIUM, CHROMEDRIVER           the binaries to look for (default /usr/bin/...)
#      INSTALL_CHROMIUM_DRY_RUN=1       print the apt-get commands root would run, run nothing
#                                       (whoever runs it; tests/test_browser_harness.py uses it)
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
DRY_RUN="${INSTALL_CHROMIUM_DRY_RUN:-}"
if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
    exit 0
fi
if [ -n "$DRY_RUN" ]; then
    echo "install-chromium: would run: apt-get update -qq &&" \
        "apt-get install -y -qq chromium chromium-driver"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: $CHROMIUM or $CHROMEDRIVER missing and not root with apt-get:" \
        "the browser tests will skip (apt-get install chromium chromium-driver)" >&2
    exit 0
fi
echo "install-chromium: apt-get install chromium chromium-driver" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
if ! [ -x "$CHROMIUM" ] || ! [ -x "$CHROMEDRIVER" ]; then
    echo "install-chromium: installed, but $CHROMIUM or $CHROMEDRIVER is still missing" >&2
    exit 1
fi
