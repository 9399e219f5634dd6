"""The slot store on real files, symlinks, locks and processes.

Claude Code is played by the helpers `claude_code_refresh` (the live link becomes a regular file,
`~/.claude.json` untouched) and `claude_code_login` (the same, and `oauthAccount` rewritten); the
profile endpoint is the loopback fake API, answering for the account that owns each token.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.claude_locks import ClaudeLockBusy
from gptme_subscription_plugin.credentials import fingerprint, load_credential
from gptme_subscription_plugin.slots import LiveKind, SlotError, SlotStore

from .support.credentials import (
    access_token,
    account_email,
    claude_code_login,
    claude_code_refresh,
    credential_bytes,
    link_live,
    refresh_token,
    serve_profile,
    write_oauth_account,
    write_slot,
)
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import UNREACHABLE, Sandbox


def make_store(
    tmp_path: Path,
    keep: int = 5,
    lock_wait: float = 2.0,
    api_base: str = UNREACHABLE,
    clock=None,
) -> SlotStore:
    """The slot store of an empty claude dir in `tmp_path/home` (no slot yet)."""
    return Sandbox(tmp_path, (), api_base=api_base).slot_store(keep, lock_wait, clock)


def all_refresh_tokens(store: SlotStore) -> set[str]:
    paths = [store.slot_path(n) for n in store.list_slots()]
    paths += list(store.backup_dir.glob("*")) if store.backup_dir.exists() else []
    return {load_credential(p).refresh_token for p in paths}


def login(store: SlotStore, name: str, generation: int = 1, server=None) -> None:
    """`/login` as `name`; the fake API (when given) knows the new token's account."""
    if server is not None:
        serve_profile(server, name, generation)
    claude_code_login(store.claude_dir, store.claude_dir.parent, name, generation)


def refresh(store: SlotStore, name: str, generation: int, server=None) -> None:
    """Claude Code refreshes the live credential of `name`'s account."""
    if server is not None:
        serve_profile(server, name, generation)
    claude_code_refresh(store.claude_dir, credential_bytes(name, generation))


def setup_two(tmp_path: Path, server: FakeAnthropicServer | None = None) -> SlotStore:
    store = make_store(tmp_path, api_base=server.base_url if server else UNREACHABLE)
    login(store, "alice", server=server)
    store.add("alice")
    login(store, "bob", server=server)
    store.add("bob")
    return store


def slot_token(store: SlotStore, name: str) -> str | None:
    return load_credential(store.slot_path(name)).refresh_token


def test_add_captures_live_login_and_links(tmp_path, fake_server):
    store = make_store(tmp_path, api_base=fake_server.base_url)
    login(store, "alice", server=fake_server)
    info = store.add("alice")
    assert info.health.usable
    assert store.live_state().kind is LiveKind.LINK and store.active_slot() == "alice"
    assert os.readlink(store.live_path) == ".credentials.json.alice"  # relative link
    assert store.identity_of("alice").email == account_email("alice")  # asked of the account
    assert stat.S_IMODE(store.slot_path("alice").stat().st_mode) == 0o600
    assert stat.S_IMODE(store.claude_dir.stat().st_mode) == 0o700


def test_add_without_a_profile_answer_records_no_identity(tmp_path):
    store = make_store(tmp_path)  # the endpoint is unreachable
    login(store, "alice")
    store.add("alice")
    assert store.identity_of("alice") is None  # ~/.claude.json is never taken as identity


def test_add_refusals_change_nothing(tmp_path):
    store = setup_two(tmp_path)
    before = {p.name: p.read_bytes() for p in store.claude_dir.glob(".credentials.json.*")}
    with pytest.raises(SlotError, match="already exists"):
        store.add("bob")
    with pytest.raises(SlotError, match="already slot bob"):
        store.add("carol")  # live is bob's login: a second slot would share its refresh token
    for bad in ("../x", "a/b", "a.b", ""):
        with pytest.raises(SlotError, match="invalid slot name"):
            store.add(bad)
    src = tmp_path / "norefresh.json"
    src.write_bytes(credential_bytes("dave", refresh=False))
    with pytest.raises(SlotError, match="no refresh token"):
        store.add("dave", source=src)
    after = {p.name: p.read_bytes() for p in store.claude_dir.glob(".credentials.json.*")}
    assert before == after and store.list_slots() == ["alice", "bob"]


def test_flip_relinks_atomically_and_touches_target(tmp_path):
    store = setup_two(tmp_path)
    target = store.slot_path("alice")
    os.utime(target, (1_000_000, 1_000_000))
    result = store.flip("alice")
    assert result.slot == "alice" and result.previous == "bob"
    assert store.active_slot() == "alice"
    assert target.stat().st_mtime > 1_000_000  # Claude Code notices the change


def test_flip_refuses_a_malformed_slot(tmp_path):
    store = setup_two(tmp_path)
    store.slot_path("alice").write_text("{garbage")
    with pytest.raises(SlotError, match="malformed"):
        store.flip("alice")
    assert store.active_slot() == "bob"


def test_heal_after_claude_code_refresh_keeps_new_token(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)  # bob live
    refresh(store, "bob", 2, fake_server)
    assert store.detect_drift().kind == "regular-file"
    result = store.heal()
    assert result.healed and (result.owner, result.method) == ("bob", "profile")
    assert store.active_slot() == "bob"
    assert slot_token(store, "bob") == refresh_token("bob", 2)
    assert refresh_token("bob", 1) in all_refresh_tokens(store)  # old one in the backup ring
    assert slot_token(store, "alice") == refresh_token("alice", 1)
    assert store.detect_drift() is None


@pytest.mark.parametrize("profiles", [True, False], ids=["profile-answers", "profile-down"])
def test_refresh_after_a_rotation_goes_into_the_slot_that_was_refreshed(
    tmp_path, fake_server, profiles
):
    """The data-loss bug: bob -> alice, Claude Code refreshes alice, `oauthAccount` says bob.

    The refreshed file is alice's; healing it into bob's slot left alice with a spent refresh
    token (the next refresh on alice: invalid_grant, family revoked) and bob overwritten.
    """
    store = setup_two(tmp_path, fake_server)  # bob live, ~/.claude.json names bob
    store.flip("alice")
    if not profiles:
        store.resolver.api_base = UNREACHABLE
    refresh(store, "alice", 2, fake_server if profiles else None)
    result = store.heal()
    assert result.owner == "alice", result.detail
    assert result.method == ("profile" if profiles else "last-live")
    assert slot_token(store, "alice") == refresh_token("alice", 2)
    assert slot_token(store, "bob") == refresh_token("bob", 1)
    assert store.active_slot() == "alice"
    assert store.identity_of("bob").email == account_email("bob")


def test_heal_by_lineage_and_by_last_live_without_profile(tmp_path):
    store = setup_two(tmp_path)  # no profile endpoint
    # a regular file with exactly bob's current token: that slot holds it
    claude_code_refresh(store.claude_dir, store.slot_path("bob").read_bytes())
    assert store.heal().method == "same-token"
    # a token seen in bob's lineage before (bob's file changed since): lineage
    old = store.slot_path("bob").read_bytes()
    store.write_slot("bob", credential_bytes("bob", 2))
    store._remember("bob", load_credential(store.slot_path("bob")))
    claude_code_refresh(store.claude_dir, old)
    result = store.heal()
    assert (result.owner, result.method) == ("bob", "lineage")
    assert slot_token(store, "bob") == refresh_token("bob", 2)  # never back to an older login
    # a new token: the slot that was live
    refresh(store, "bob", 3)
    result = store.heal()
    assert (result.owner, result.method) == ("bob", "last-live")


def test_login_as_a_new_account_is_kept_aside_until_slot_add(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)  # bob live
    slots_before = {n: store.slot_path(n).read_bytes() for n in store.list_slots()}
    login(store, "carol", server=fake_server)  # an account in no slot
    result = store.heal()
    assert result.kept_aside and not result.healed and "slot add" in result.detail
    assert {n: store.slot_path(n).read_bytes() for n in store.list_slots()} == slots_before
    pending = store.pending_login_path
    assert load_credential(pending).refresh_token == refresh_token("carol")
    assert stat.S_IMODE(pending.stat().st_mode) == 0o600
    assert store.live_state().kind is LiveKind.REGULAR_FILE  # the session keeps carol
    with pytest.raises(SlotError, match="slot add"):
        store.flip("alice")  # never discards the login
    store.add("carol")
    assert store.active_slot() == "carol" and not pending.exists()
    assert store.identity_of("carol").email == account_email("carol")
    assert slot_token(store, "bob") == refresh_token("bob", 1)


def test_login_seen_without_a_profile_answer_is_kept_aside(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)
    store.resolver.api_base = UNREACHABLE
    login(store, "carol")  # ~/.claude.json changed account: a /login, owner unconfirmed
    result = store.heal()
    assert result.kept_aside and result.method == "login-seen"
    assert slot_token(store, "bob") == refresh_token("bob", 1)


def test_identities_recorded_by_earlier_versions_are_ignored_and_repaired(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)
    # an earlier version recorded oauthAccount (bob) as alice's identity after a swap

    def misfile(doc):
        doc["slots"]["alice"]["identity"] = {"account_uuid": "uuid-bob", "email": "bob@x"}
        doc["slots"]["alice"].pop("identity_source")

    store.state.update("slots", misfile)
    assert store.identity_of("alice") is None
    store.flip("alice")
    refresh(store, "alice", 2, fake_server)
    assert store.heal().owner == "alice"
    assert store.identity_of("alice").email == account_email("alice")
    learned = store.learn_identities(["bob"], retry=True)
    assert learned["bob"].email == account_email("bob")


def test_login_written_through_the_link_is_saved_before_the_slot_is_restored(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)
    store.flip("alice")
    # an older Claude Code wrote a /login of bob *through* the link into alice's slot
    serve_profile(fake_server, "bob", 5)
    store.slot_path("alice").write_bytes(credential_bytes("bob", 5))
    write_oauth_account(store.claude_dir.parent, "bob")
    store.prefetch_identity()
    drift = store.detect_drift()
    assert drift is not None and drift.kind == "slot-changed" and drift.slot == "alice"
    result = store.heal()
    assert result.healed and result.owner == "bob", result.detail
    assert slot_token(store, "bob") == refresh_token("bob", 5)
    assert slot_token(store, "alice") == refresh_token("alice", 1)
    assert store.active_slot() == "bob"


def test_a_new_account_written_through_the_link_goes_to_pending(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)
    serve_profile(fake_server, "carol", 1)
    store.slot_path("bob").write_bytes(credential_bytes("carol", 1))  # through the live link
    store.prefetch_identity()
    result = store.heal()
    assert result.kept_aside
    assert load_credential(store.pending_login_path).refresh_token == refresh_token("carol")
    assert slot_token(store, "bob") == refresh_token("bob", 1)


def test_restore_never_brings_back_a_spent_refresh_token(tmp_path, fake_server):
    """Only the newest login of the lineage is restorable; older tokens were spent."""
    store = setup_two(tmp_path, fake_server)  # bob live
    refresh(store, "bob", 2, fake_server)
    store.heal()  # bob: generation 2, generation 1 spent
    ring = store.backups("bob")
    assert {load_credential(b).refresh_token for b in ring} >= {refresh_token("bob", 2)}
    os.unlink([b for b in ring if load_credential(b).refresh_token == refresh_token("bob", 2)][0])
    serve_profile(fake_server, "carol", 1)
    store.slot_path("bob").write_bytes(credential_bytes("carol", 1))
    store.prefetch_identity()
    result = store.heal()
    assert not result.healed and "log in again as bob" in result.detail
    assert slot_token(store, "bob") == refresh_token("carol")  # not the spent generation 1


def test_backup_ring_is_bounded_private_and_ordered_by_sequence(tmp_path):
    now = [2_000_000_000.0]
    store = make_store(tmp_path, keep=3, clock=lambda: now[0])
    for gen in range(1, 8):
        store.write_slot("x", credential_bytes("x", gen))
        now[0] -= 3600  # the clock steps back between writes
    backups = store.backups("x")
    assert len(backups) == 3
    assert load_credential(backups[-1]).refresh_token == refresh_token("x", 7)  # newest kept
    assert stat.S_IMODE(store.backup_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(b.stat().st_mode) == 0o600 for b in backups)
    assert all("sk-ant" not in b.name for b in backups)


def test_a_slot_linked_to_another_slot_is_one_account(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)
    os.symlink(".credentials.json.alice", store.claude_dir / ".credentials.json.work")
    assert store.list_slots() == ["alice", "bob"]
    assert store.slot_path("work") == store.slot_path("alice")
    store.flip("alice")
    refresh(store, "alice", 2, fake_server)
    store.heal()
    assert (store.claude_dir / ".credentials.json.work").is_symlink()  # written through
    assert load_credential(store.claude_dir / ".credentials.json.work").refresh_token == (
        refresh_token("alice", 2)
    )


def test_remove_refuses_live_and_keeps_a_backup(tmp_path):
    store = setup_two(tmp_path)
    with pytest.raises(SlotError, match="is live"):
        store.remove("bob")
    backup = store.remove("alice")
    assert store.list_slots() == ["bob"] and backup is not None
    assert load_credential(backup).refresh_token == refresh_token("alice")
    with pytest.raises(SlotError, match="no slot named"):
        store.remove("alice")


def test_flip_waits_for_claude_lock_then_gives_up(tmp_path):
    store = setup_two(tmp_path)
    store.lock_wait = 0.5
    lock = store.claude_dir / ".oauth_refresh.lock"
    lock.mkdir()  # Claude Code is refreshing (fresh mtime: not stale)
    t0 = time.monotonic()
    with pytest.raises(ClaudeLockBusy):
        store.flip("alice")
    assert time.monotonic() - t0 < 5
    assert store.active_slot() == "bob"
    lock.rmdir()
    store.flip("alice")
    assert store.active_slot() == "alice"


def _flipper(tmp: str, names: list[str], rounds: int) -> None:
    store = make_store(Path(tmp), lock_wait=30)
    for i in range(rounds):
        store.flip(names[i % len(names)])


def test_concurrent_flips_leave_a_valid_link_and_intact_slots(tmp_path):
    store = make_store(tmp_path)
    contents = {}
    for name in ("a", "b", "c"):
        contents[name] = credential_bytes(name)
        write_slot(store.claude_dir, name, contents[name])
    link_live(store.claude_dir, "a")
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_flipper, args=(str(tmp_path), order, 15))
        for order in (["a", "b", "c"], ["c", "b", "a"], ["b", "a", "c"])
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert store.live_state().kind is LiveKind.LINK
    for name, data in contents.items():
        assert store.slot_path(name).read_bytes() == data
    assert not list(store.claude_dir.glob("*.tmp-gsp-*"))
    assert not (store.claude_dir / ".oauth_refresh.lock").exists()


def test_fingerprints_not_tokens_in_metadata(tmp_path, fake_server):
    store = setup_two(tmp_path, fake_server)
    for doc in ("slots", "profiles"):
        text = store.state.path(doc).read_text()
        assert "sk-ant" not in text
    assert fingerprint(refresh_token("bob")) in store.state.path("slots").read_text()
    assert json.loads(store.state.path("profiles").read_text())  # answers are cached


def test_flip_never_discards_an_unattributed_live_credential(tmp_path):
    store = make_store(tmp_path)
    for name in ("a", "b"):
        write_slot(store.claude_dir, name, credential_bytes(name))
    # Claude Code refreshed before anything was recorded: a regular file nobody can attribute
    store.live_path.write_bytes(credential_bytes("a", 2))
    for _ in range(2):
        with pytest.raises(SlotError, match="in no slot and its owner is unknown"):
            store.flip("b")
    assert not store.live_path.is_symlink()
    assert load_credential(store.live_path).refresh_token == refresh_token("a", 2)
    kept = [*store.backup_dir.glob("_orphan.*"), *[store.pending_login_path]]
    kept = [p for p in kept if p.exists()]
    assert {load_credential(p).refresh_token for p in kept} == {refresh_token("a", 2)}
    # once it is captured into a slot, the flip goes ahead
    store.add("a2")
    assert store.flip("b").slot == "b"
    assert load_credential(store.slot_path("a2")).refresh_token == refresh_token("a", 2)


def test_observe_records_the_live_slot_for_a_later_heal(tmp_path):
    store = make_store(tmp_path)
    for name in ("a", "b"):
        write_slot(store.claude_dir, name, credential_bytes(name))
    link_live(store.claude_dir, "a")  # linked by hand: no metadata yet
    store.observe()
    claude_code_refresh(store.claude_dir, credential_bytes("a", 2))
    result = store.heal()
    assert (result.owner, result.method) == ("a", "last-live")
    assert slot_token(store, "a") == refresh_token("a", 2)


def test_learning_identities_skips_slots_that_failed_lately(tmp_path, fake_server):
    store = make_store(tmp_path, api_base=fake_server.base_url)
    for name in ("a", "b"):
        write_slot(store.claude_dir, name, credential_bytes(name))
    fake_server.set_profile(access_token("a"), {"not": "a profile"})
    serve_profile(fake_server, "b")
    assert store.learn_identities(limit=1) == {"a": None}  # one request per call
    learned = store.learn_identities(limit=1)  # a failed lately: b gets the request
    assert learned["b"].email == account_email("b") and "a" not in learned
    assert fake_server.request_count(access_token("a")) == 1
