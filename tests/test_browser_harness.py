"""The browser harness itself (tests/support/browser.py, the `browser` fixture) and how CI gets
its browser (scripts/install-chromium.sh): the system Chromium loads a page from a real
loopback server, a missing browser skips here and fails in CI, and the installer does what
each case needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.browser import CHROMEDRIVER, CHROMIUM, wait_until

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "scripts" / "install-chromium.sh"
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")

PAGE = b"""<!doctype html><html><head><title>harness</title></head><body>
<p id="out">waiting</p>
<script>
fetch("/value").then((r) => r.text()).then((t) => {
  document.getElementById("out").textContent = t;
});
</script></body></html>"""


class _Site(ThreadingHTTPServer):
    """A page whose script fetches /value from the same server; every path asked is kept."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.paths: list[str] = []
        self.value = b"served by 127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    server: _Site

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.paths.append(self.path)
        routes = {"/": (PAGE, "text/html"), "/value": (self.server.value, "text/plain")}
        body, kind = routes.get(self.path, (b"not found", "text/plain"))
        self.send_response(200 if self.path in routes else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[_Site]:
    server = _Site()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _version(binary: str) -> str:
    """The version number `binary --version` prints (second word)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.split()[1]


@pytest.mark.browser
def test_the_system_chromium_renders_a_page_from_a_loopback_server(browser, site) -> None:
    """The page's own script ran (its fetch reached the server and its answer is in the DOM),
    and the browser and driver are Debian's binaries, not anything Selenium fetched."""
    browser.get(site.url)
    out = wait_until(browser, lambda d: d.find_element("id", "out"))
    wait_until(browser, lambda d: out.text == "served by 127.0.0.1")
    assert site.paths[:2] == ["/", "/value"]
    caps = browser.capabilities
    assert caps["browserVersion"] == _version(CHROMIUM)
    assert caps["chrome"]["chromedriverVersion"].split()[0] == _version(CHROMEDRIVER)


@pytest.mark.browser
def test_wait_until_times_out_on_a_condition_that_never_holds(browser, site) -> None:
    from selenium.common.exceptions import TimeoutException

    browser.get(site.url)
    with pytest.raises(TimeoutException):
        wait_until(browser, lambda d: d.find_element("id", "out").text == "never", timeout=0.5)


def test_a_missing_browser_skips_here_and_fails_in_ci() -> None:
    """CI (.ci/run exports GPTME_SUBSCRIPTION_CI) must never pass by skipping the browser
    tests: with Chromium missing the smoke test skips outside CI and fails inside."""
    assert "export GPTME_SUBSCRIPTION_CI=1" in (ROOT / ".ci" / "run").read_text()
    smoke = test_the_system_chromium_renders_a_page_from_a_loopback_server.__name__
    test = f"{Path(__file__).resolve()}::{smoke}"
    env = {k: v for k, v in os.environ.items() if k != "GPTME_SUBSCRIPTION_CI"}
    env["CHROMIUM"] = "/nonexistent/chromium"
    cmd = [sys.executable, "-m", "pytest", test, "-q", "-rs", "-p", "no:cacheprovider"]
    outside = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert outside.returncode == 0 and "SKIPPED [1]" in outside.stdout, outside.stdout
    assert "/nonexistent/chromium" in outside.stdout
    env["GPTME_SUBSCRIPTION_CI"] = "1"
    inside = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert inside.returncode == 1, inside.stdout
    assert "CI must run the browser tests" in inside.stdout, inside.stdout


# ---------------------------------------------------------------- scripts/install-chromium.sh


def _installer(
    env: dict[str, str], prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The installer as `make setup` runs it (read from stdin, so an unprivileged user needs
    no access to the checkout)."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [*prefix, "bash", "-s"],
        input=INSTALLER.read_text(),
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_installer_does_nothing_when_both_binaries_are_there(tmp_path) -> None:
    for name in ("chromium", "chromedriver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    env = {"CHROMIUM": str(tmp_path / "chromium"), "CHROMEDRIVER": str(tmp_path / "chromedriver")}
    # not even the dry run's line: nothing is missing
    proc = _installer({**env, "INSTALL_CHROMIUM_DRY_RUN": "1"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_the_installer_runs_apt_get_for_a_missing_driver(tmp_path) -> None:
    """As root with apt-get (CI) a missing driver means apt-get update and install of both
    packages; the dry run prints exactly that and runs nothing."""
    (tmp_path / "chromium").write_text("#!/bin/sh\n")
    (tmp_path / "chromium").chmod(0o755)
    env = {
        "CHROMIUM": str(tmp_path / "chromium"),
        "CHROMEDRIVER": str(tmp_path / "chromedriver"),
        "INSTALL_CHROMIUM_DRY_RUN": "1",
    }
    proc = _installer(env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "install-chromium: would run: apt-get update -qq && "
        "apt-get install -y -qq chromium chromium-driver"
    ]
    assert not (tmp_path / "chromedriver").exists()


def test_the_installer_off_root_says_the_browser_tests_will_skip(tmp_path) -> None:
    """Not root: one line on stderr, exit 0 (`make setup` goes on), nothing installed."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run the installer as an unprivileged user")
        prefix = NOBODY
    env = {"CHROMIUM": "/nonexistent/chromium", "CHROMEDRIVER": "/nonexistent/chromedriver"}
    proc = _installer(env, prefix)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "/nonexistent/chromium" in line and "the browser tests will skip" in line


# ---------------------------------------------------------------- scripts/screenshot_dashboard.py


@pytest.mark.browser
def test_the_screenshot_script_saves_the_demo_dashboard(tmp_path) -> None:
    """docs/dashboard.png's maker still works: a PNG of exactly the asked page size, saved
    after the page showed the demo's slots, events and busy session without a token."""
    import struct

    from tests.support.browser import require_browser

    require_browser()
    out = tmp_path / "shot.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot_dashboard.py"), "--out", str(out)]
        + ["--size", "1000x700"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 slots" in proc.stdout and "tokens checked absent" in proc.stdout
    head = out.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1000, 700)
