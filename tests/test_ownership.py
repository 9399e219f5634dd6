"""The pure ownership rule: which evidence wins, and when a login is kept aside."""

from __future__ import annotations

import pytest

from gptme_subscription_plugin.credentials import AccountIdentity
from gptme_subscription_plugin.ownership import SlotRecord, owner_of


def who(name: str) -> AccountIdentity:
    return AccountIdentity(account_uuid=f"uuid-{name}", email=f"{name}@example.com")


SLOTS = {
    "alice": SlotRecord(who("alice"), ("a1", "a2")),
    "bob": SlotRecord(who("bob"), ("b1",)),
    "new": SlotRecord(None, ("n1",)),
}


@pytest.mark.parametrize(
    ("refresh_fp", "identity", "last_live", "login_seen", "owner", "method"),
    [
        # the profile answer wins over the slot that was live (the rotation bug's case)
        ("x", who("alice"), "bob", False, "alice", "profile"),
        # ... and over lineage naming another slot
        ("b1", who("alice"), "bob", False, "alice", "profile"),
        # an account in no slot is kept aside even though a slot was live
        ("x", who("carol"), "bob", False, None, "new-account"),
        # an account in no slot, live slot never confirmed: that slot learns its identity
        ("x", who("carol"), "new", False, "new", "last-live"),
        # ... unless a /login was seen: then it may be anyone's
        ("x", who("carol"), "new", True, None, "new-account"),
        # lineage of a slot with no recorded identity
        ("n1", who("carol"), "bob", False, "new", "lineage"),
        # no profile answer: lineage, then a /login keeps aside, then the slot live
        ("b1", None, "alice", False, "bob", "lineage"),
        ("x", None, "alice", True, None, "login-seen"),
        ("x", None, "alice", False, "alice", "last-live"),
        ("x", None, None, False, None, "unknown"),
        ("x", None, "gone", False, None, "unknown"),  # last live slot no longer exists
    ],
)
def test_owner_of(refresh_fp, identity, last_live, login_seen, owner, method) -> None:
    verdict = owner_of(refresh_fp, identity, SLOTS, last_live, login_seen)
    assert (verdict.owner, verdict.method) == (owner, method)
    assert verdict.keep_aside == (owner is None)


def test_one_account_in_two_slots_is_narrowed_by_lineage_or_kept_aside() -> None:
    slots = {"a": SlotRecord(who("alice"), ("a1",)), "b": SlotRecord(who("alice"), ("b1",))}
    assert owner_of("b1", who("alice"), slots, "a", False).owner == "b"
    assert owner_of("x", who("alice"), slots, "a", False).owner == "a"
    ambiguous = owner_of("x", who("alice"), slots, None, False)
    assert ambiguous.keep_aside and ambiguous.method == "ambiguous"
