#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests (tests/test_dashboard_browser.py),
# installed once by `make setup`. Nothing is downloaded at test time: Selenium is pointed at
# these two binaries. As root (CI) it installs them with apt-get; otherwise it says the
# browser tests will skip (under GPTME_SUBSCRIPTION_CI they fail instead).
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
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
