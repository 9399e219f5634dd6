"""Every command sees a slot in its profile, and the live link never serves one.

A slot whose credential moved into its profile is still a slot: `status`, `check-auth`,
`doctor` and usage polling find it there (its own token, answered by the fake API for its own
account). But its chain's one home is the profile, so the live link, `switch`, `slot add` and
`slot remove` never touch it, and a slot found in both places is named, never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptme_subscription_plugin.credentials import load_credential

from .support.credentials import credential_bytes, refresh_token, write_slot
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox, tree

SLOTS = ("alice", "bob", "carol")


@pytest.fixture
def sb(tmp_path: Path, fake_server: FakeAnthropicServer) -> Sandbox:
    """alice live and spent, bob fresh, carol spent; bob moved into his profile."""
    sandbox = Sandbox(tmp_path, SLOTS, server=fake_server, usage=(20.0, 30.0))
    sandbox.set_usage("alice", 100.0, 40.0)
    sandbox.set_usage("bob", 0.0, 5.0)
    sandbox.set_usage("carol", 100.0, 90.0)
    sandbox.run("profile", "enable", "bob", code=0)
    return sandbox


def profile_of(sb: Sandbox, name: str) -> Path:
    return sb.home / ".claude-profiles" / name


def refused(sb: Sandbox, *args: str) -> str:
    """Exit 1, one line of output, and nothing under the sandbox changed (the event log may
    note the refusal)."""

    def files() -> dict[str, object]:
        return {k: v for k, v in tree(sb.root).items() if k != "state/events.jsonl"}

    before = files()
    proc = sb.run(*args, code=1)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    assert "sk-ant" not in proc.stdout + proc.stderr
    assert files() == before
    return lines[0]


def test_status_polls_and_shows_a_slot_in_its_profile(sb: Sandbox) -> None:
    doc = json.loads(sb.run("status", "--refresh", "--json", code=0).stdout)

    rows = {row["name"]: row for row in doc["slots"]}
    assert sorted(rows) == list(SLOTS)
    assert rows["bob"]["home"] == "profile" and rows["alice"]["home"] == "link"
    # bob's usage came from the token in his profile, answered for his own account
    assert rows["bob"]["usage"]["five_hour"]["utilization"] == 0.0
    assert rows["bob"]["credential"]["health"] == "valid"
    assert "in its profile" in sb.run("status", code=0).stdout


def test_the_live_link_never_goes_to_a_slot_in_its_profile(sb: Sandbox) -> None:
    # alice (live) and carol are spent; only bob has room, and bob is in his profile
    sb.run("status", "--refresh", code=0)
    doc = json.loads(sb.run("evaluate", "--json", "--execute", code=None).stdout)
    assert doc["decision"]["target"] != "bob"
    assert sb.live() == "alice"
    assert load_credential(profile_of(sb, "bob") / ".credentials.json").refresh_token == (
        refresh_token("bob", 1)
    )

    line = refused(sb, "switch", "bob")
    assert "lives in its profile" in line and "profile disable bob" in line
    assert "lives in its profile" in refused(sb, "switch", "bob", "--dry-run")
    assert "lives in its profile" in refused(sb, "switch", "bob", "--force")


def test_slot_add_and_remove_refuse_a_slot_in_its_profile(sb: Sandbox, tmp_path: Path) -> None:
    login = tmp_path / "login.json"
    login.write_bytes(credential_bytes("bob", 7))
    login.chmod(0o600)

    assert "lives in its profile" in refused(
        sb, "slot", "add", "bob", "--from", str(login), "--force"
    )
    assert "lives in its profile" in refused(sb, "slot", "remove", "bob")


def test_check_auth_and_doctor_see_the_profile_slot(sb: Sandbox) -> None:
    doc = json.loads(sb.run("check-auth", "--json", code=None).stdout)
    assert "bob" in json.dumps(doc)

    out = sb.run("doctor", code=None).stdout
    bob = [line for line in out.splitlines() if "slot bob" in line]
    assert bob and "OK" in bob[0] and "in its profile" in bob[0]


def test_a_slot_with_two_homes_is_named_and_never_used(sb: Sandbox) -> None:
    write_slot(sb.claude, "bob", credential_bytes("bob", 2))  # a copy back in the main dir

    out = sb.run("doctor", code=None).stdout
    bob = [line for line in out.splitlines() if "slot bob" in line]
    assert bob and "FAIL" in bob[0] and "two homes" in bob[0]
    rows = {r["name"]: r for r in json.loads(sb.run("status", "--json", code=0).stdout)["slots"]}
    assert rows["bob"]["home"] == "ambiguous"
    assert "two homes" in refused(sb, "switch", "bob")


def test_reauth_of_a_slot_in_its_profile_logs_in_there(sb: Sandbox) -> None:
    out = sb.run("reauth", "bob", code=0).stdout
    assert f"CLAUDE_CONFIG_DIR={profile_of(sb, 'bob')} claude auth login" in out
    assert "slot add" not in out  # the login lands in its one home: nothing to import

    out = sb.run("reauth", "carol", code=0).stdout
    assert "slot add carol" in out  # a link slot still logs in aside and imports


def test_our_cli_inside_a_profile_session_works_on_the_main_dir(sb: Sandbox) -> None:
    """An agent in bob's profile runs `gptme-subscription status` with the session's
    CLAUDE_CONFIG_DIR: the slots and the live link are still the main dir's."""
    inside = {"CLAUDE_CONFIG_DIR": str(profile_of(sb, "bob"))}
    doc = json.loads(sb.run("status", "--json", code=0, **inside).stdout)

    assert doc["live"] == "alice"
    assert {row["name"]: row["home"] for row in doc["slots"]} == {
        "alice": "link",
        "bob": "profile",
        "carol": "link",
    }
    assert "slot bob" in sb.run("doctor", code=None, **inside).stdout
