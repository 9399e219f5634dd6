"""The dashboard in a real browser: Debian's headless Chromium loads the page from the running
`gptme-subscription dashboard` process over a sandbox, and what a person would see follows what
the hooks and the CLI do to the sandbox's real files.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support.browser import chromium, wait_until
from tests.support.dashboard import running_dashboard
from tests.support.sandbox import Sandbox, hook_payload

pytest.importorskip("fastapi")
pytestmark = pytest.mark.browser


def _tokens(sb: Sandbox) -> list[str]:
    """Every token in the sandbox's credential files (none may reach the page)."""
    found = []
    for path in sb.claude.glob(".credentials.json*"):
        oauth = json.loads(path.read_text())["claudeAiOauth"]
        found += [oauth["accessToken"], oauth["refreshToken"]]
    assert found
    return found


def _row(driver, selector: str):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, selector)
    return rows[0] if rows else None


def _text(driver, selector: str) -> str | None:
    row = _row(driver, selector)
    return row.text if row is not None else None


def _click(driver, selector: str) -> bool:
    """Click it; False when the redraw replaced it between finding and clicking."""
    from selenium.common.exceptions import StaleElementReferenceException

    button = _row(driver, selector)
    try:
        if button is not None:
            button.click()
            return True
    except StaleElementReferenceException:
        pass
    return False


def test_the_page_follows_the_sandbox(tmp_path, fake_server) -> None:
    sb = Sandbox(tmp_path, ("alice", "bob"), server=fake_server, expires_at=time.time() + 8 * 3600)
    sb.set_usage("alice", 30, 50)
    sb.set_usage("bob", 5, 10)
    with running_dashboard(sb, "--allow-actions") as dash, chromium() as driver:
        driver.get(f"{dash.url}#action={dash.action_token}")
        # the accounts table: both slots, alice marked live, her weekly bar from the poll
        live = wait_until(driver, lambda d: _row(d, '#accounts tr.live[data-slot="alice"]'))
        assert _row(driver, '#accounts tr[data-slot="bob"]') is not None
        wait_until(driver, lambda d: "50%" in _text(d, '#accounts tr[data-slot="alice"]'))
        assert "valid" in live.text
        assert _text(driver, "#verdict") in ("green", "yellow")

        # a session a hook marks busy appears mid-turn within seconds
        sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session="s-browser"))
        state = '#sessions tr[data-session="s-browser"] td.state'
        wait_until(driver, lambda d: _text(d, state) == "mid-turn")
        sb.hook("Stop", hook_payload("Stop", session="s-browser"))
        wait_until(driver, lambda d: _text(d, state) == "idle")

        # a switch made with the CLI appears in the events, newest first, and moves the marker
        sb.run("switch", "bob", code=0)
        wait_until(driver, lambda d: _row(d, '#accounts tr.live[data-slot="bob"]'))
        newest = wait_until(driver, lambda d: _row(d, "#events li"))
        assert newest.get_attribute("data-kind") == "switch" and "bob" in newest.text

        # the page's own switch button (the action token came in the URL's fragment)
        assert "#action" not in driver.current_url  # moved out of the address bar
        assert _row(driver, 'button.switch[data-slot="bob"]') is None  # bob is live
        wait_until(driver, lambda d: _click(d, 'button.switch[data-slot="alice"]'))
        wait_until(driver, lambda d: sb.live() == "alice")
        wait_until(driver, lambda d: _row(d, '#accounts tr.live[data-slot="alice"]'))

        page = driver.page_source
        for token in _tokens(sb):
            assert token not in page
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors


def _fetch_status(driver, path: str, body: dict, headers: dict) -> int:
    """The status a POST from the page's own script gets (same origin, its cookies)."""
    script = """
const [path, body, headers, done] = arguments;
fetch(path, {method: "POST", credentials: "same-origin",
             headers: {"Content-Type": "application/json", ...headers},
             body: JSON.stringify(body)}).then((r) => done(r.status), () => done(-1));
"""
    return driver.execute_async_script(script, path, body, headers)


def test_without_the_action_token_the_page_cannot_switch(tmp_path, fake_server, browser) -> None:
    """--allow-actions, but the page opened without its token: the switch button is refused
    (403, said on the page), as is a POST from outside; the live link stays."""
    sb = Sandbox(tmp_path, ("alice", "bob"), server=fake_server, expires_at=time.time() + 8 * 3600)
    with running_dashboard(sb, "--allow-actions") as dash:
        browser.get(dash.url)
        wait_until(browser, lambda d: _click(d, 'button.switch[data-slot="bob"]'))
        said = wait_until(browser, lambda d: _text(d, "#action-result"))
        assert "X-Action-Token" in said
        status, _ = dash.action("/api/actions/switch", {"slot": "bob"})
        assert status == 403
        assert _fetch_status(browser, "/api/actions/switch", {"slot": "bob"}, {}) == 403
        wrong = {"X-Action-Token": "not-the-token"}
        assert _fetch_status(browser, "/api/actions/switch", {"slot": "bob"}, wrong) == 403
        assert sb.live() == "alice" and sb.events("switch") == []


def test_a_read_only_page_offers_no_action(tmp_path, fake_server, browser) -> None:
    """Without --allow-actions: no switch or heal button on the page, and a POST from the
    page itself changes nothing."""
    from selenium.webdriver.common.by import By

    sb = Sandbox(tmp_path, ("alice", "bob"), server=fake_server, expires_at=time.time() + 8 * 3600)
    with running_dashboard(sb) as dash:
        browser.get(dash.url)
        wait_until(browser, lambda d: _row(d, '#accounts tr.live[data-slot="alice"]'))
        assert _row(browser, '#accounts tr[data-slot="bob"]') is not None
        assert browser.find_elements(By.CSS_SELECTOR, "button.switch") == []
        assert not browser.find_element(By.ID, "action-bar").is_displayed()
        status = _fetch_status(browser, "/api/actions/switch", {"slot": "bob"}, {})
        assert status == 405  # read-only: no action at all
        assert sb.live() == "alice" and sb.events("switch") == []
