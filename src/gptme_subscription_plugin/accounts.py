"""`identity baseline` and `identity check`: which account each slot holds, per the account itself.

Both ask the profile endpoint with each slot's own access token (one request per token, cached),
so the answer cannot be the stale `~/.claude.json` record. A slot that cannot be read or asked
is one row with its reason; it never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from .credentials import Credential, CredentialError, load_credential
from .slots import SlotError, SlotStore

OK, UNKNOWN, CHANGED, DUPLICATE, UNREADABLE, NO_BASELINE = (
    "ok",
    "unknown",
    "changed",
    "duplicate",
    "unreadable",
    "no-baseline",
)


@dataclass(frozen=True)
class AccountRow:
    slot: str
    status: str
    account: str | None
    detail: str

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def baseline(slots: SlotStore, names: list[str]) -> list[AccountRow]:
    """Record each slot's refresh token and the account the profile endpoint names."""
    slots.observe()  # and which slot is live, the owner of a refresh written before the next hook

    def judge(name: str, cred: Credential) -> AccountRow:
        learned = slots.learn_identities([name], retry=True).get(name)
        slots.record_lineage(name, cred)
        if learned is None:
            why = "expired access token" if cred.expired(slots.clock()) else "no profile answer"
            return AccountRow(name, UNKNOWN, None, f"{why}; refresh token recorded")
        return AccountRow(name, OK, _label(learned), "recorded from the profile")

    return _rows(slots, names, judge)


def check(slots: SlotStore, names: list[str]) -> list[AccountRow]:
    """Compare each slot's recorded account with what its token's profile says now."""

    def judge(name: str, cred: Credential) -> AccountRow:
        recorded = slots.identity_of(name)
        if recorded is None:
            hint = f"run `gptme-subscription identity baseline {name}`"
            return AccountRow(name, NO_BASELINE, None, hint)
        current = slots.resolver.resolve(cred, retry_failures=True) if slots.resolver else None
        if current is None:
            silent = "the profile endpoint did not answer"
            return AccountRow(name, UNKNOWN, _label(recorded), silent)
        if recorded.matches(current):
            return AccountRow(name, OK, _label(current), "holds its own account")
        hint = f"recorded as {_label(recorded)}; log in again as that account"
        return AccountRow(name, CHANGED, _label(current), hint)

    return _rows(slots, names, judge)


def _rows(
    slots: SlotStore, names: list[str], judge: Callable[[str, Credential], AccountRow]
) -> list[AccountRow]:
    """One row per slot, `judge`'s or "unreadable" with the reason; shared accounts flagged."""
    rows = []
    for name in names:
        try:
            cred = load_credential(slots.slot_path(name))
        except (CredentialError, SlotError) as exc:
            rows.append(AccountRow(name, UNREADABLE, None, _one_line(exc)))
        else:
            rows.append(judge(name, cred))
    return _flag_duplicates(rows)


def exit_code(rows: list[AccountRow]) -> int:
    """0 clean, 1 a slot changed, is unreadable or shares an account, 2 no baseline."""
    statuses = {r.status for r in rows}
    if statuses & {CHANGED, UNREADABLE, DUPLICATE}:
        return 1
    return 2 if NO_BASELINE in statuses else 0


def _flag_duplicates(rows: list[AccountRow]) -> list[AccountRow]:
    by_account: dict[str, list[str]] = {}
    for r in rows:
        if r.account and r.status == OK:
            by_account.setdefault(r.account, []).append(r.slot)
    out = []
    for r in rows:
        twins = by_account.get(r.account or "", [])
        if len(twins) > 1:
            others = ", ".join(t for t in twins if t != r.slot)
            r = AccountRow(r.slot, DUPLICATE, r.account, f"same account as {others}")
        out.append(r)
    return out


def _label(identity: object) -> str:
    email = getattr(identity, "email", None)
    uuid = getattr(identity, "account_uuid", None)
    return str(email or uuid or "?")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
