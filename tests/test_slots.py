"""The slot store on real files, symlinks, locks and processes."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.claude_locks import ClaudeLockBusy
from gptme_subscription_plugin.credentials import fingerprint, load_credential
from gptme_subscription_plugin.slots import LiveKind, SlotError, SlotStore
from gptme_subscription_plugin.state import StateStore

from .helpers import (
    credential_bytes,
    link_live,
    refresh_token,
    write_oauth_account,
    write_slot,
)


def make_store(tmp_path: Path, keep: int = 5, lock_wait: float = 2.0) -> SlotStore:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return SlotStore(
        home / ".claude",
        StateStore(tmp_path / "state"),
        home / ".claude.json",
        backup_keep=keep,
        lock_wait=lock_wait,
    )


def all_refresh_tokens(store: SlotStore) -> set[str]:
    paths = [store.slot_path(n) for n in store.list_slots()]
    paths += list(store.backup_dir.glob("*")) if store.backup_dir.exists() else []
    return {load_credential(p).refresh_token for p in paths}


def login(store: SlotStore, name: str, generation: int = 1) -> None:
    """What Claude Code's /login or refresh does: replace the live link with a regular file."""
    live = store.live_path
    if live.is_symlink():
        live.unlink()
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(credential_bytes(name, generation))
    live.chmod(0o600)
    write_oauth_account(store.claude_dir.parent, name)


def setup_two(tmp_path: Path) -> SlotStore:
    store = make_store(tmp_path)
    login(store, "alice")
    store.add("alice")
    login(store, "bob")
    store.add("bob")
    return store


def test_add_captures_live_login_and_links(tmp_path):
    store = make_store(tmp_path)
    login(store, "alice")
    info = store.add("alice")
    assert info.health.usable
    assert store.live_state().kind is LiveKind.LINK and store.active_slot() == "alice"
    assert os.readlink(store.live_path) == ".credentials.json.alice"  # relative link
    assert store.identity_of("alice").email == "alice@example.com"
    assert stat.S_IMODE(store.slot_path("alice").stat().st_mode) == 0o600
    assert stat.S_IMODE(store.claude_dir.stat().st_mode) == 0o700


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


def test_heal_after_claude_code_refresh_keeps_new_token(tmp_path):
    store = setup_two(tmp_path)  # bob live
    login(store, "bob", generation=2)  # refresh: new refresh token, link replaced by a file
    assert store.detect_drift().kind == "regular-file"
    result = store.heal()
    assert result.healed and result.owner == "bob" and result.method == "identity"
    assert store.active_slot() == "bob"
    assert load_credential(store.slot_path("bob")).refresh_token == refresh_token("bob", 2)
    assert refresh_token("bob", 1) in all_refresh_tokens(store)  # old one in the backup ring
    assert load_credential(store.slot_path("alice")).refresh_token == refresh_token("alice", 1)
    assert store.detect_drift() is None


def test_heal_by_lineage_and_by_last_live(tmp_path):
    store = setup_two(tmp_path)
    # a regular file with exactly bob's current token: lineage identifies it
    data = store.slot_path("bob").read_bytes()
    store.live_path.unlink()
    store.live_path.write_bytes(data)
    (store.claude_dir.parent / ".claude.json").unlink()
    assert store.heal().method == "lineage"
    # new token, no identity file: fall back to the slot that was live
    login(store, "bob", generation=3)
    (store.claude_dir.parent / ".claude.json").unlink()
    result = store.heal()
    assert (result.owner, result.method) == ("bob", "last-live")


def test_heal_refuses_an_emptied_live_file(tmp_path):
    store = setup_two(tmp_path)
    before = store.slot_path("bob").read_bytes()
    store.live_path.unlink()
    store.live_path.write_text('{"claudeAiOauth": {"accessToken": "x"}}')  # invalid_grant wipe
    result = store.heal()
    assert not result.healed and "no refresh token" in result.detail
    assert store.slot_path("bob").read_bytes() == before


def test_heal_relinks_a_broken_link(tmp_path):
    store = setup_two(tmp_path)
    store.flip("alice")
    store.flip("bob")
    link_live(store.claude_dir, "ghost")
    assert store.detect_drift().kind == "broken-link"
    result = store.heal()
    assert result.healed and store.active_slot() == "bob"


def test_identity_change_through_link_moves_login_and_restores(tmp_path):
    store = setup_two(tmp_path)  # bob live; alice has a backup? give her one by rewriting
    store.flip("alice")
    store.write_slot("alice", store.slot_path("alice").read_bytes() + b" ")  # backup of alice
    # old Claude Code wrote a /login of bob *through* the link into alice's slot
    store.slot_path("alice").write_bytes(credential_bytes("bob", 5))
    write_oauth_account(store.claude_dir.parent, "bob")
    drift = store.detect_drift()
    assert drift is not None and drift.kind == "identity-changed" and drift.slot == "alice"
    result = store.heal()
    assert result.healed and result.owner == "bob"
    assert load_credential(store.slot_path("bob")).refresh_token == refresh_token("bob", 5)
    assert load_credential(store.slot_path("alice")).refresh_token == refresh_token("alice", 1)
    assert store.active_slot() == "bob"


def test_backup_ring_is_bounded_and_private(tmp_path):
    store = make_store(tmp_path, keep=3)
    for gen in range(1, 8):
        store.write_slot("x", credential_bytes("x", gen))
        time.sleep(0.002)
    backups = store.backups("x")
    assert len(backups) == 3
    assert stat.S_IMODE(store.backup_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(b.stat().st_mode) == 0o600 for b in backups)
    assert all("sk-ant" not in b.name for b in backups)


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


def test_fingerprints_not_tokens_in_metadata(tmp_path):
    store = setup_two(tmp_path)
    text = store.state.path("slots").read_text()
    assert "sk-ant" not in text and fingerprint(refresh_token("bob")) in text


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
    [orphan] = store.backup_dir.glob("_orphan.*")  # kept once, however often it is refused
    assert load_credential(orphan).refresh_token == refresh_token("a", 2)
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
    store.live_path.unlink()
    store.live_path.write_bytes(credential_bytes("a", 2))  # refreshed by Claude Code
    result = store.heal()
    assert (result.owner, result.method) == ("a", "last-live")
    assert load_credential(store.slot_path("a")).refresh_token == refresh_token("a", 2)
