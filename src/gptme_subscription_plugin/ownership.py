"""Whose credential is this? The pure rule behind every heal.

Evidence, strongest first:
1. the profile endpoint's answer for the credential's own access token (`profile`): the account
   itself says who it is; a slot is named only if exactly one slot was recorded, from that same
   endpoint, as that account;
2. the refresh-token lineage (`lineage`): the token was seen in exactly one slot before;
3. a `/login` seen in `~/.claude.json` (its `accountUuid` changed since we last looked): then
   the file may belong to an account in no slot, so nothing is overwritten on a guess;
4. the slot that was live when Claude Code wrote the file (`last-live`): a refresh happens under
   Claude Code's credential lock, which every flip of ours also takes.
`~/.claude.json` is never an identity: Claude Code does not update it when it refreshes a token.
When the evidence names no slot, or a new account, the file is kept aside, never copied over a
slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .credentials import AccountIdentity


@dataclass(frozen=True)
class SlotRecord:
    """What we know of one slot: its profile-confirmed identity and refresh-token lineage."""

    identity: AccountIdentity | None
    lineage: Sequence[str] = ()


@dataclass(frozen=True)
class Verdict:
    """An owner and how we know, or `owner=None` with the reason the file is kept aside."""

    owner: str | None
    method: str  # profile | lineage | last-live | new-account | ambiguous | login-seen | unknown
    detail: str

    @property
    def keep_aside(self) -> bool:
        return self.owner is None


def owner_of(
    refresh_fp: str | None,
    identity: AccountIdentity | None,
    slots: Mapping[str, SlotRecord],
    last_live: str | None,
    login_seen: bool,
) -> Verdict:
    """Decide the owner of a credential that Claude Code wrote outside any slot."""
    by_lineage = [n for n, r in slots.items() if refresh_fp and refresh_fp in r.lineage]
    live = last_live if last_live in slots else None
    if identity is not None and identity.known:
        same = [
            n for n, r in slots.items() if r.identity is not None and r.identity.matches(identity)
        ]
        who = identity.email or identity.account_uuid
        if len(same) == 1:
            return Verdict(same[0], "profile", f"the profile endpoint names {who}")
        if len(same) > 1:
            narrowed = [n for n in same if n in by_lineage] or [n for n in same if n == live]
            if len(narrowed) == 1:
                return Verdict(narrowed[0], "profile", f"{who} is recorded for {', '.join(same)}")
            return Verdict(None, "ambiguous", f"{who} is recorded for {', '.join(same)}")
        unrecorded = [n for n in by_lineage if slots[n].identity is None]
        if len(unrecorded) == 1:
            return Verdict(unrecorded[0], "lineage", f"{who}: refresh token seen in that slot")
        if live is not None and slots[live].identity is None and not login_seen:
            return Verdict(live, "last-live", f"{who}: the slot live when it was written")
        return Verdict(None, "new-account", f"{who} is in no slot")
    if len(by_lineage) == 1:
        return Verdict(by_lineage[0], "lineage", "refresh token seen in that slot")
    if len(by_lineage) > 1:
        return Verdict(None, "ambiguous", f"refresh token seen in {', '.join(by_lineage)}")
    if login_seen:
        return Verdict(None, "login-seen", "a /login happened and its account is not confirmed")
    if live is not None:
        return Verdict(live, "last-live", "the slot live when it was written")
    return Verdict(None, "unknown", "no slot was live and nothing names the owner")
