"""The dashboard's JSON API, served by the real `gptme-subscription dashboard` process over a
sandbox (real slot files, live link, turn registry, events; usage from the loopback fake API):
what it answers is what the sandbox holds, it never shows a token, and its guards hold.
"""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

from gptme_subscription_plugin.credentials import fingerprint
from tests.support.credentials import access_token, refresh_token
from tests.support.dashboard import running_dashboard
from tests.support.sandbox import Sandbox, hook_payload
from tests.support.transcripts import OPUS, Call, write_turn

pytest.importorskip("fastapi")


@pytest.fixture
def sb(tmp_path, fake_server) -> Sandbox:
    sandbox = Sandbox(
        tmp_path, ("alice", "bob"), server=fake_server, expires_at=time.time() + 8 * 3600
    )
    sandbox.set_usage("alice", 30, 50, models={"sonnet": 20})
    sandbox.set_usage("bob", 5, 10)
    return sandbox


def _account(snapshot: dict, name: str) -> dict:
    return next(a for a in snapshot["accounts"] if a["name"] == name)


def _wait_for(predicate, dash, timeout: float = 10.0) -> dict:
    """The first snapshot for which `predicate` holds (the server refreshes every half second)."""
    deadline = time.monotonic() + timeout
    while True:
        snap = dash.json("/api/snapshot")
        if predicate(snap):
            return snap
        assert time.monotonic() < deadline, json.dumps(snap)[:2000]
        time.sleep(0.2)  # polling an HTTP API: there is nothing to wait on but the next answer


def test_accounts_show_what_the_sandbox_holds_and_no_token(sb: Sandbox) -> None:
    with running_dashboard(sb) as dash:
        # the server's own poller fills the usage cache through the shared budget
        snap = _wait_for(lambda s: _account(s, "alice")["windows"], dash)
        status, _, raw = dash.request("/api/snapshot")
    assert status == 200
    alice, bob = _account(snap, "alice"), _account(snap, "bob")
    assert snap["live"] == "alice" and alice["live"] and not bob["live"]
    windows = {w["name"]: w for w in alice["windows"]}
    assert windows["five_hour"]["utilization"] == pytest.approx(0.30)
    assert windows["seven_day"]["utilization"] == pytest.approx(0.50)
    assert windows["model:sonnet"]["utilization"] == pytest.approx(0.20)
    assert windows["seven_day"]["resets_at"] > snap["now"]
    assert 0 <= windows["seven_day"]["pace"] <= 1
    assert alice["fingerprint"] == fingerprint(refresh_token("alice"))
    assert bob["fingerprint"] == fingerprint(refresh_token("bob"))
    assert alice["home"] == "link" and alice["health"] == "valid" and alice["fix"] is None
    assert snap["verdict"] == "green"
    # one chart sample per slot, taken when the poll stored the reading
    assert [round(p[2], 2) for p in alice["history"]] == [0.5]
    for name in ("alice", "bob"):
        for token in (access_token(name), refresh_token(name)):
            assert token.encode() not in raw


def test_a_busy_session_then_a_switch_show_up(sb: Sandbox) -> None:
    with running_dashboard(sb) as dash:
        sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session="s-busy"))
        snap = _wait_for(lambda s: any(x["session_id"] == "s-busy" for x in s["sessions"]), dash)
        (session,) = [x for x in snap["sessions"] if x["session_id"] == "s-busy"]
        assert session["state"] == "mid-turn" and session["slot"] == "alice"
        assert _account(snap, "alice")["sessions"] == 1

        sb.hook("Stop", hook_payload("Stop", session="s-busy"))
        sb.run("switch", "bob", code=0)
        snap = _wait_for(lambda s: s["live"] == "bob", dash)
        (session,) = [x for x in snap["sessions"] if x["session_id"] == "s-busy"]
        assert session["state"] == "idle"
        newest = snap["events"][0]
        assert newest["kind"] == "switch" and newest["slot"] == "bob"
        assert "from alice" in newest["text"]


def test_rejected_and_expired_logins_say_the_fix(sb: Sandbox) -> None:
    sb.manager().record_rejection("alice", "usage endpoint")
    with running_dashboard(sb) as dash:
        alice = _account(dash.json("/api/snapshot"), "alice")
    assert alice["health"] == "rejected"
    assert "gptme-subscription reauth alice" in alice["fix"]


def test_openapi_is_served_and_other_paths_are_404(sb: Sandbox) -> None:
    with running_dashboard(sb) as dash:
        spec = dash.json("/openapi.json")
        assert {"/api/snapshot", "/api/usage"} <= set(spec["paths"])
        assert {"Snapshot", "UsageReportModel"} <= set(spec["components"]["schemas"])
        for path in ("/docs", "/etc/passwd", "/api/nothing", "/../state/rotation.json"):
            assert dash.request(path)[0] == 404, path
        # read-only by default: no action route, a POST is refused
        assert dash.action("/api/actions/switch", {"slot": "bob"})[0] == 405
        status, headers, _ = dash.request("/")
        assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
        # a page elsewhere that rebinds a DNS name to 127.0.0.1 is refused by Host
        assert dash.request("/api/snapshot", headers={"Host": "evil.example"})[0] == 421
    assert sb.live() == "alice"


def test_actions_need_the_token_and_the_same_origin(sb: Sandbox) -> None:
    with running_dashboard(sb, "--allow-actions") as dash:
        assert dash.action_token
        assert dash.action("/api/actions/switch", {"slot": "bob"})[0] == 403
        assert dash.action("/api/actions/switch", {"slot": "bob"}, token="wrong")[0] == 403
        status, _, _ = dash.request(
            "/api/actions/switch",
            method="POST",
            body={"slot": "bob"},
            headers={
                "Content-Type": "application/json",
                "X-Action-Token": dash.action_token,
                "Origin": "http://evil.example",
            },
        )
        assert status == 403
        assert sb.live() == "alice"  # nothing changed on a refused request
        status, answer = dash.action("/api/actions/switch", {"slot": "nope"}, dash.action_token)
        assert status == 200 and not answer["ok"]
        assert sb.live() == "alice"
        status, answer = dash.action("/api/actions/switch", {"slot": "bob"}, dash.action_token)
        assert status == 200 and answer["ok"], answer
        assert sb.live() == "bob"
        status, answer = dash.action("/api/actions/heal", {}, dash.action_token)
        assert status == 200 and answer["ok"]


def test_a_port_in_use_is_one_line(sb: Sandbox) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = sb.run("dashboard", "--port", str(port), timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"dashboard: port {port} on 127.0.0.1 is in use; pick another with --port"
    )


def test_off_loopback_needs_a_token(sb: Sandbox) -> None:
    proc = sb.run("dashboard", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "--token" in proc.stderr
    with running_dashboard(sb, "--host", "0.0.0.0", "--token", "s3cret-dash") as dash:
        dash.url = dash.url.replace("0.0.0.0", "127.0.0.1")
        assert dash.request("/api/snapshot")[0] == 401
        assert dash.request("/api/snapshot", headers={"Authorization": "Bearer nope"})[0] == 401
        auth = {"Authorization": "Bearer s3cret-dash"}
        assert dash.request("/api/snapshot", headers=auth)[0] == 200
        # the page's own way in: ?token= sets a cookie and sends the browser on to /
        host, port = dash.url.split("//")[1].rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/?token=s3cret-dash")
        first = conn.getresponse()
        first.read()
        cookie = first.getheader("Set-Cookie", "")
        assert first.status == 303 and first.getheader("Location") == "/"
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        conn.request("GET", "/", headers={"Cookie": cookie.split(";")[0]})
        assert conn.getresponse().status == 200
        conn.close()


def test_usage_and_cost_match_the_transcripts_to_the_token(sb: Sandbox) -> None:
    first = [Call("m1", input=11, output=101), Call("m2", OPUS, input=7, output=900)]
    second = [Call("m3", output=55, cache_read=70_000)]
    with running_dashboard(sb) as dash:
        sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session="s-use"))
        write_turn(sb.claude, "s-use", first)
        sb.hook("Stop", hook_payload("Stop", session="s-use"))
        sb.run("switch", "bob", code=0)
        sb.hook("UserPromptSubmit", hook_payload("UserPromptSubmit", session="s-use"))
        write_turn(sb.claude, "s-use", second)
        # the server reads new transcript lines every few seconds
        snap = _wait_for(lambda s: _account(s, "bob")["week"]["requests"] == 1, dash, 20)
        api = dash.json("/api/usage?since=1d&by=account")
        assert dash.request("/api/usage?since=soon")[0] == 400
        assert dash.request("/api/usage?by=colour")[0] == 400
    for name, calls in (("alice", first), ("bob", second)):
        for span in ("today", "week"):
            got = _account(snap, name)[span]
            assert got["requests"] == len(calls)
            assert got["output_tokens"] == sum(c.output for c in calls)
            assert got["cache_read_tokens"] == sum(c.cache_read for c in calls)
            assert got["cost_usd"] == pytest.approx(sum(c.cost() for c in calls), abs=1e-9)
    assert {r["key"]: r["requests"] for r in api["rows"]} == {"alice": 2, "bob": 1}
    cli = json.loads(sb.run("usage", "--json", "--since", "1d").stdout)
    assert api["rows"] == cli["rows"] and api["total"] == cli["total"]
    (session,) = [s for s in snap["sessions"] if s["session_id"] == "s-use"]
    assert session["project"] == "app" and session["model"] == second[-1].model
    assert [t["output_tokens"] for t in session["last_turns"]] == [1001, 55]


def test_notify_shows_a_desktop_notification_for_a_refused_login(sb: Sandbox) -> None:
    """`--notify` hands new alert-worthy events to notify-send (here a script on PATH that
    writes down its arguments), once per kind."""
    bin_dir = sb.root / "bin"
    bin_dir.mkdir()
    seen = sb.root / "notified.txt"
    fake = bin_dir / "notify-send"
    fake.write_text(f'#!/bin/sh\nprintf "%s|%s\\n" "$1" "$2" >> {seen}\n')
    fake.chmod(0o755)
    path = f"{bin_dir}:{sb.env['PATH']}"
    with running_dashboard(sb, "--notify", PATH=path) as dash:
        rejected = hook_payload("StopFailure", error="authentication_failed")
        sb.hook("stop-failure-worker", rejected)
        deadline = time.monotonic() + 20
        while not (seen.exists() and seen.read_text()):
            assert time.monotonic() < deadline, "no notification"
            time.sleep(0.1)  # the server looks at new events every few seconds
        assert dash.proc.poll() is None
    title, text = seen.read_text().splitlines()[0].split("|", 1)
    assert title == "gptme-subscription: credential-rejected" and "alice" in text
    assert "sk-ant" not in seen.read_text()
