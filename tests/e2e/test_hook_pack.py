"""Our hook pack on the real Claude Code CLI: installed by our installer, run headless.

Each test: a temp HOME with two slots (a, b), `gptme-subscription install claude-code` into
its settings.json, the fake Anthropic API on 127.0.0.1 recording which access token every
model request carried, and usage served by the same fake (our hooks poll it directly).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support.fake_api import (
    FakeAnthropicServer,
    api_error,
    bash,
    end_turn,
    make_profile_doc,
    make_usage_doc,
    ratelimit_headers,
)
from .claude_harness import ClaudeSandbox, RefreshProxy

pytestmark = pytest.mark.e2e

TOK_A, TOK_B = "sk-ant-oat01-fake-slot-a", "sk-ant-oat01-fake-slot-b"


def our_env(sandbox: ClaudeSandbox, server: FakeAnthropicServer) -> dict[str, str]:
    """What our hooks need beyond Claude Code's own env: where state lives, where usage is."""
    return {
        "GPTME_SUBSCRIPTION_STATE_DIR": str(sandbox.root / "state"),
        "GPTME_SUBSCRIPTION_API_BASE": server.base_url,
        "GPTME_SUBSCRIPTION_POLL_TIMEOUT": "2",
        "XDG_CONFIG_HOME": str(sandbox.root / "xdg"),
    }


def gptme_subscription(sandbox: ClaudeSandbox, server: FakeAnthropicServer, *args: str) -> str:
    """Run our CLI as the person would, with the sandbox's HOME."""
    env = {**sandbox.env(), **our_env(sandbox, server)}
    proc = subprocess.run(
        [sys.executable, "-m", "gptme_subscription_plugin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def setup(sandbox: ClaudeSandbox, server: FakeAnthropicServer, a_weekly: float = 30.0) -> None:
    now = time.time()
    sandbox.write_slot("a", TOK_A)
    sandbox.write_slot("b", TOK_B)
    sandbox.link_live("a")
    server.set_usage(TOK_A, make_usage_doc(now, five_hour=10, seven_day=a_weekly))
    server.set_usage(
        TOK_B, make_usage_doc(now, five_hour=5, seven_day=20, seven_day_resets_in=5 * 86400)
    )
    out = gptme_subscription(sandbox, server, "install", "claude-code")
    assert "installed into" in out and str(sandbox.claude_dir / "settings.json") in out


def run(sandbox: ClaudeSandbox, server: FakeAnthropicServer, prompt: str, **kw):
    return sandbox.run(prompt, env=our_env(sandbox, server), timeout=60, **kw)


def tokens_of(server: FakeAnthropicServer, session_id: str, since: float = 0.0) -> list[str | None]:
    return [
        c.token
        for c in server.messages_calls(session_id=session_id)
        if c.request.received_at >= since
    ]


def session_state(sandbox: ClaudeSandbox, session_id: str) -> str | None:
    path = sandbox.root / "state" / "sessions" / f"{session_id}.json"
    try:
        return json.loads(path.read_text())["state"]
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_pressure_summary_reaches_the_model_in_the_first_request(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api)
    fake_api.script_each_turn(end_turn("ok"))

    result = run(claude_sandbox, fake_api, "hello").check()

    first = fake_api.messages_calls(session_id=result.session_id)[0]
    assert first.mentions("[subscription] live slot a: 5h 10%")
    assert first.mentions("next: b (weekly 20%)")
    assert first.token == TOK_A


def test_a_prompt_that_finds_everyone_idle_moves_off_a_spent_slot_before_its_request(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api, a_weekly=99.0)  # a is spent; SessionStart polls it
    fake_api.script_each_turn(end_turn("ok"))

    result = run(claude_sandbox, fake_api, "hello").check()

    assert tokens_of(fake_api, result.session_id) == [TOK_B]  # UserPromptSubmit flipped
    assert claude_sandbox.live_target() == ".credentials.json.b"


def test_a_switch_decided_mid_turn_lands_only_after_stop(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api)
    sid = "00000000-0000-4000-8000-000000000002"
    fake_api.script_each_turn(bash("sleep 3"), end_turn("slept"))

    proc = claude_sandbox.start(
        "work a while", session_id=sid, env=our_env(claude_sandbox, fake_api)
    )
    assert wait_for(lambda: session_state(claude_sandbox, sid) == "busy")
    assert wait_for(lambda: len(fake_api.messages_calls(session_id=sid)) >= 1)
    # a person switches while the turn is running: it must wait for the turn boundary
    out = gptme_subscription(claude_sandbox, fake_api, "switch", "b")
    assert "pending" in out
    assert claude_sandbox.live_target() == ".credentials.json.a"
    first = proc.finish(timeout=60).check()

    assert tokens_of(fake_api, sid) == [TOK_A, TOK_A]  # the whole turn on one credential
    assert claude_sandbox.live_target() == ".credentials.json.b"  # flipped at Stop
    second_started = time.time()
    fake_api.script_each_turn(end_turn("next"))
    run(claude_sandbox, fake_api, "and now?", session_id=sid, extra_args=["--resume", sid]).check()
    assert tokens_of(fake_api, sid, since=second_started) == [TOK_B]
    assert first.result["result"] == "slept"


def test_concurrent_sessions_flip_only_when_both_are_idle(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api)
    slow, quick = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    fake_api.script_messages(bash("sleep 6"), end_turn("slept"), session_id=slow)
    fake_api.script_messages(end_turn("quick"), session_id=quick)
    env = {**our_env(claude_sandbox, fake_api), "GPTME_SUBSCRIPTION_POLL_INTERVAL": "1"}

    a = claude_sandbox.start("sleep a while", session_id=slow, env=env)
    assert wait_for(lambda: len(fake_api.messages_calls(session_id=slow)) >= 1)
    assert wait_for(lambda: session_state(claude_sandbox, slow) == "busy")
    # a is spent now, while A is mid-turn: B's hooks see it, the next decision wants b
    fake_api.set_usage(TOK_A, make_usage_doc(time.time(), five_hour=10, seven_day=99.0))
    b = claude_sandbox.run("be quick", session_id=quick, env=env, timeout=60).check()
    assert b.result["result"] == "quick"
    # B's Stop decided to leave the spent slot, but A is mid-turn: nothing flipped
    assert claude_sandbox.live_target() == ".credentials.json.a"
    pending = json.loads((claude_sandbox.root / "state" / "rotation.json").read_text())["pending"]
    assert pending["slot"] == "b"
    run_a = a.finish(timeout=60).check()

    assert run_a.result["result"] == "slept"
    assert tokens_of(fake_api, slow) == [TOK_A, TOK_A]  # A never changed credential mid-turn
    assert claude_sandbox.live_target() == ".credentials.json.b"  # A's Stop: both idle, flip


def test_a_refreshed_token_is_healed_into_its_slot_and_the_next_turn_works(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer, refresh_proxy: RefreshProxy
) -> None:
    now_ms = int(time.time() * 1000)
    claude_sandbox.write_slot("a", TOK_A, "sk-ant-ort01-fake-a-1", expires_at_ms=now_ms - 60_000)
    claude_sandbox.write_slot("b", TOK_B, "sk-ant-ort01-fake-b-1")
    claude_sandbox.link_live("a")
    gptme_subscription(claude_sandbox, fake_api, "install", "claude-code")
    fake_api.add_refresh_grant(
        "sk-ant-ort01-fake-a-1", "sk-ant-oat01-fake-a-2", "sk-ant-ort01-fake-a-2"
    )
    fake_api.set_profile("sk-ant-oat01-fake-a-2", make_profile_doc("alice@example.invalid"))
    fake_api.set_usage("sk-ant-oat01-fake-a-2", make_usage_doc(time.time()))
    fake_api.script_each_turn(bash("echo hi"), end_turn("done"))
    claude_sandbox.use_proxy(refresh_proxy)
    sid = "00000000-0000-4000-8000-000000000004"

    run(claude_sandbox, fake_api, "say hi", session_id=sid).check()

    # Claude Code refreshed (link -> regular file); our Stop hook healed it back
    assert claude_sandbox.live_target() == ".credentials.json.a"
    slot = claude_sandbox.read_credentials(claude_sandbox.slot_path("a"))
    assert slot["refreshToken"] == "sk-ant-ort01-fake-a-2"  # the new, live refresh token
    backups = list((claude_sandbox.claude_dir / ".gptme-subscription-backups").iterdir())
    assert any("sk-ant-ort01-fake-a-1" in p.read_text() for p in backups)  # old one kept
    assert len(fake_api.token_refreshes()) == 1
    # the next turn works on the healed slot, with no further refresh
    later = time.time()
    fake_api.script_each_turn(end_turn("still fine"))
    run(claude_sandbox, fake_api, "again", session_id=sid, extra_args=["--resume", sid]).check()
    assert tokens_of(fake_api, sid, since=later) == ["sk-ant-oat01-fake-a-2"]
    assert len(fake_api.token_refreshes()) == 1


@pytest.mark.parametrize(
    "breakage",
    ["corrupt-config", "missing-slot", "state-dir-unwritable", "corrupt-project-settings"],
)
def test_a_broken_installation_never_fails_the_session(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer, breakage: str
) -> None:
    setup(claude_sandbox, fake_api)
    env = our_env(claude_sandbox, fake_api)
    if breakage == "corrupt-config":
        cfg = Path(env["XDG_CONFIG_HOME"]) / "gptme-subscription" / "config.toml"
        cfg.parent.mkdir(parents=True)
        cfg.write_text("poll_interval = [")
    elif breakage == "missing-slot":
        env["GPTME_SUBSCRIPTION_SLOTS"] = "a,b,ghost"  # configured, but no such file
    elif breakage == "state-dir-unwritable":
        blocker = claude_sandbox.root / "state-is-a-file"
        blocker.write_text("")
        env["GPTME_SUBSCRIPTION_STATE_DIR"] = str(blocker)
    else:
        settings = claude_sandbox.project / ".claude" / "settings.json"
        settings.parent.mkdir()
        settings.write_text("{not json")
    fake_api.script_each_turn(bash("echo hi"), end_turn("fine"))

    result = claude_sandbox.run("hi", env=env, timeout=60)

    result.check()
    assert result.result["result"] == "fine"


def test_a_rate_limit_moves_the_next_turn_to_another_slot_at_once(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api)
    now = time.time()
    limited = ratelimit_headers(now, five_hour=1.0, status="rejected")
    fake_api.script_messages(api_error(429, "rate_limit_error", "limited", **limited))

    hit = run(claude_sandbox, fake_api, "hit the limit")

    assert hit.returncode == 1  # Claude Code gives up the turn: StopFailure(rate_limit)
    # our StopFailure hook hands off to a detached worker (Claude Code does not wait for it)
    assert wait_for(lambda: claude_sandbox.live_target() == ".credentials.json.b", 15)
    rotation = json.loads((claude_sandbox.root / "state" / "rotation.json").read_text())
    assert rotation["limited"]["a"] > now
    fake_api.script_each_turn(end_turn("served by b"))
    after = time.time()
    ok = run(claude_sandbox, fake_api, "try again").check()
    assert tokens_of(fake_api, ok.session_id, since=after) == [TOK_B]


def test_a_refused_credential_moves_the_next_turn_to_another_slot(
    claude_sandbox: ClaudeSandbox, fake_api: FakeAnthropicServer
) -> None:
    setup(claude_sandbox, fake_api)
    # a's credential is revoked server-side: the API answers 401, as it does for a dead token
    fake_api.script_messages(
        api_error(401, "authentication_error", "OAuth token revoked"),
        api_error(401, "authentication_error", "OAuth token revoked"),
        api_error(401, "authentication_error", "OAuth token revoked"),
        api_error(401, "authentication_error", "OAuth token revoked"),
    )

    hit = run(claude_sandbox, fake_api, "use the revoked login")

    assert hit.returncode == 1  # Claude Code gives up: StopFailure(authentication_failed)
    assert wait_for(lambda: claude_sandbox.live_target() == ".credentials.json.b", 15)
    rotation = json.loads((claude_sandbox.root / "state" / "rotation.json").read_text())
    assert rotation["rejected"]["a"]["source"] == "StopFailure authentication_failed"
    fake_api.clear_script()
    fake_api.script_each_turn(end_turn("served by b"))
    after = time.time()
    ok = run(claude_sandbox, fake_api, "try again").check()
    assert tokens_of(fake_api, ok.session_id, since=after) == [TOK_B]
