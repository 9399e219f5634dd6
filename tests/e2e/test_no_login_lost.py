"""No rotation ever loses or misfiles a login: real Claude Code, real hooks, account-aware API.

The fake Anthropic API here knows accounts (alice, bob, ...): one token family each, the
profile endpoint names the account that owns a token, and a refresh token used twice is
answered `invalid_grant` and revokes the family, as Anthropic does. Each person's setup is
what a user does: `/login` as each account (the live link becomes a file, `~/.claude.json`
`oauthAccount` names the account), `gptme-subscription slot add NAME`, then `install
claude-code`. So `oauthAccount` names the account that logged in last, and Claude Code never
changes it on a refresh (DESIGN.md fact 5).

After every scenario (`assert_no_login_lost`):
- the fake saw no `invalid_grant`;
- the live path is a link;
- every slot holds its own account's current refresh token (asked of the fake);
- and, with our hooks uninstalled, each slot in turn is made live and expired and `claude -p`
  runs: Claude Code must refresh that slot's account, once, without `invalid_grant`.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from ..support.fake_api import (
    FakeAnthropicServer,
    bash,
    end_turn,
    make_usage_doc,
)
from .claude_harness import ClaudeRun, Fleet, wait_for

pytestmark = pytest.mark.e2e

PENDING_LOGIN = ".gptme-subscription-pending-login"
RUN_TIMEOUT = 90.0


def fresh(now: float | None = None) -> dict[str, Any]:
    return make_usage_doc(now or time.time(), five_hour=10, seven_day=20)


def spent(now: float | None = None) -> dict[str, Any]:
    return make_usage_doc(now or time.time(), five_hour=40, seven_day=99)


# ---------------------------------------------------------------- the checks


def invalid_grant_problems(server: FakeAnthropicServer) -> list[str]:
    return [
        f"invalid_grant for {g.account or 'a token of no account'} "
        f"({g.reason}, refresh token #{g.generation})"
        for g in server.invalid_grant_events()
    ]


def misfiled(fleet: Fleet, slots: Sequence[str]) -> list[str]:
    """Slots that do not hold their own account's current refresh token, and what they hold."""
    problems = []
    for name in slots:
        token = fleet.slot_refresh_token(name)
        if token is None:
            problems.append(f"slot {name} holds no refresh token")
        elif fleet.server.owner_of(token) != name or not fleet.server.is_current_refresh_token(
            token
        ):
            problems.append(f"slot {name} holds {fleet.server.describe_token(token)}")
    return problems


def slot_problems(fleet: Fleet, slots: Sequence[str]) -> list[str]:
    """Where the files disagree with the fake: a misfiled or spent login, a file not a link."""
    problems = invalid_grant_problems(fleet.server)
    if not fleet.sandbox.live.is_symlink():
        problems.append("the live path is a regular file, not a link to a slot")
    return problems + misfiled(fleet, slots)


def refresh_problems(fleet: Fleet, slots: Sequence[str]) -> list[str]:
    """Let Claude Code refresh each slot once more (our hooks off): whose family rotates?

    Each slot in turn is made live with its access token dated expired, so `claude -p`
    refreshes before its first request. The refreshed file is put back into that slot when
    the refresh was its own account's (the test knows), so the next slot starts clean.
    """
    sandbox, server = fleet.sandbox, fleet.server
    fleet.cli("uninstall", "claude-code")
    server.clear_script()
    server.script_each_turn(end_turn("refreshed"))
    problems = []
    for name in slots:
        path = sandbox.slot_path(name)
        doc = json.loads(path.read_text())
        doc["claudeAiOauth"]["expiresAt"] = int(time.time() * 1000) - 60_000
        path.write_text(json.dumps(doc))
        sandbox.link_live(name)
        before, grants_before = len(server.token_refreshes()), server.invalid_grants()

        run = sandbox.run(f"refresh {name}", timeout=RUN_TIMEOUT)

        refreshed = [r.account for r in server.token_refreshes()[before:]]
        if server.invalid_grants() > grants_before:
            problems.append(f"slot {name}: Claude Code's refresh got invalid_grant")
        if refreshed != [name]:
            problems.append(f"slot {name}: Claude Code refreshed {refreshed or 'nothing'}")
        if not run.ok or run.result.get("is_error"):
            problems.append(f"slot {name}: claude -p failed: {outcome(run)}")
        if refreshed == [name] and not sandbox.live.is_symlink():
            path.write_bytes(sandbox.live.read_bytes())
        sandbox.link_live(name)
    return problems


def outcome(run: ClaudeRun) -> str:
    """Claude Code's own words for how a run ended (its result text), in one short line."""
    events = run.events
    text = str(events[-1].get("result", "")) if events else ""
    return (text or run.stderr.strip() or f"exit {run.returncode}")[-200:]


def assert_no_login_lost(fleet: Fleet, slots: Sequence[str], problems: Sequence[str] = ()) -> None:
    """Every check, all reported together (`problems`: what the scenario itself found)."""
    problems = [*problems, *slot_problems(fleet, slots)]
    problems += refresh_problems(fleet, slots)
    assert not problems, "logins lost or misfiled:\n- " + "\n- ".join(problems)


# ---------------------------------------------------------------- the scenarios


def test_rotate_then_claude_code_refreshes_the_newly_live_slot(fleet: Fleet) -> None:
    """(a) The hooks switch bob -> alice; Claude Code refreshes alice's expired token."""
    server = fleet.server
    fleet.onboard(["alice", "bob"], expired=["alice"])  # bob is live and named by oauthAccount
    server.set_account_usage("bob", spent())
    server.script_each_turn(bash("echo hi"), end_turn("done"))

    run = fleet.run("hello")

    assert run.ok, run.describe()
    # the scenario happened: the hooks moved to alice, Claude Code refreshed her token
    assert [r.account for r in server.token_refreshes()] == ["alice"]
    assert {server.owner_of(c.token) for c in server.messages_calls()} == {"alice"}
    # DESIGN.md fact 5: the refresh left oauthAccount naming bob, who logged in last
    account = fleet.sandbox.read_claude_json()["oauthAccount"]
    assert account["accountUuid"] == server.account("bob").account_uuid
    assert_no_login_lost(fleet, ["alice", "bob"])


def test_rotate_while_a_refresh_is_in_flight(fleet: Fleet) -> None:
    """(b) A switch lands while Claude Code's refresh of the live slot waits for its answer."""
    server, sandbox = fleet.server, fleet.sandbox
    fleet.onboard(["alice", "bob"], expired=["alice"])
    fleet.cli("switch", "alice")  # alice live, oauthAccount still names bob
    server.set_token_delay(3.0)
    server.script_each_turn(bash("echo hi"), end_turn("done"))

    proc = fleet.start("hello")
    assert wait_for(lambda: server.refreshes_in_flight() == 1), "no refresh went out"
    switched = fleet.cli("switch", "bob", "--force", check=False)
    run = proc.finish(RUN_TIMEOUT)

    assert switched.returncode == 0, switched.stderr
    assert run.ok, run.describe()
    assert [r.account for r in server.token_refreshes()] == ["alice"]
    assert sandbox.live_target() == ".credentials.json.bob"
    assert_no_login_lost(fleet, ["alice", "bob"])


def test_four_sessions_over_three_expired_slots_while_usage_flips(fleet: Fleet) -> None:
    """(c) Concurrent sessions; every slot expired; the spent account moves every 2 s."""
    server = fleet.server
    names = ["alice", "bob", "dave"]
    fleet.onboard(names, expired=names)
    server.script_each_turn(bash("sleep 1"), bash("echo two"), end_turn("done"))
    stop = threading.Event()

    def flip_usage() -> None:
        turn = 0
        while not stop.wait(2.0):
            turn += 1
            for i, name in enumerate(names):
                server.set_account_usage(name, spent() if i == turn % 3 else fresh())

    flipper = threading.Thread(target=flip_usage, daemon=True)
    flipper.start()
    runs: list[ClaudeRun] = []
    try:
        for wave in range(2):
            procs = []
            for i in range(4):
                proc = fleet.start(f"wave {wave} session {i}")
                procs.append(proc)
                # staggered: the next starts once this one's first request is answered
                wait_for(lambda p=proc: bool(server.messages_calls(session_id=p.session_id)))
            runs += [p.finish(RUN_TIMEOUT * 2) for p in procs]
    finally:
        stop.set()
        flipper.join(5)

    # the scenario happened: the hooks switched, and more than one account refreshed
    assert fleet.events("switch"), "the hooks never switched"
    refreshed = {r.account for r in server.token_refreshes()}
    assert len(refreshed) >= 2, f"only {refreshed} refreshed"
    failed = [f"session {r.session_id[:8]} failed: {outcome(r)}" for r in runs if not r.ok]
    assert_no_login_lost(fleet, names, failed)


def test_login_as_a_new_account_is_kept_aside_until_slot_add(fleet: Fleet) -> None:
    """(d) `/login` as carol, who is in no slot: never copied into a slot; `slot add` takes it."""
    server, sandbox = fleet.server, fleet.sandbox
    fleet.onboard(["alice", "bob"])
    server.add_account("carol")
    server.set_account_usage("carol", fresh())
    sandbox.login_as("carol")  # the live link becomes a file holding carol's login
    server.script_each_turn(bash("echo hi"), end_turn("done"))

    run = fleet.run("hello as carol")

    assert run.ok, run.describe()
    carol_refresh = server.current_tokens("carol")[1]
    pending = sandbox.claude_dir / PENDING_LOGIN
    problems = invalid_grant_problems(server) + misfiled(fleet, ["alice", "bob"])
    if not pending.is_file() or pending.is_symlink():
        problems.append(f"no pending-login file {PENDING_LOGIN}")
    else:
        if stat.S_IMODE(pending.stat().st_mode) != 0o600:
            problems.append(f"{PENDING_LOGIN} mode is {oct(pending.stat().st_mode & 0o777)}")
        held = json.loads(pending.read_text()).get("claudeAiOauth", {}).get("refreshToken")
        if held != carol_refresh:
            problems.append(f"{PENDING_LOGIN} holds {server.describe_token(held)}")
    assert not problems, "the new login was not kept aside:\n- " + "\n- ".join(problems)

    fleet.cli("slot", "add", "carol")

    assert fleet.slot_refresh_token("carol") == server.current_tokens("carol")[1]
    assert not os.path.lexists(pending)  # taken, not copied
    assert sandbox.live.is_symlink()
    assert_no_login_lost(fleet, ["alice", "bob", "carol"])
