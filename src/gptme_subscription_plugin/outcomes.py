"""What the manager's requests come to: a switch's outcome, a probe's verdict, a slot's report
(with the rejection it shows while a refused credential is still in the slot).

Plain values with no behaviour beyond rendering themselves (`to_dict`), so the surfaces that
show them and the code that builds them share one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .credentials import CredentialInfo
from .rotation_state import RotationState
from .slots import HealResult
from .usage.snapshot import UsageSnapshot

SwitchStatus = Literal["switched", "pending", "refused", "unchanged"]


@dataclass(frozen=True)
class SwitchOutcome:
    """What a switch request came to.

    Truthy when `slot` is live once the call returns: "switched", or "unchanged" (it already
    was). A "pending" switch is falsy: nothing changed yet, it lands at a later turn boundary
    (and may be dropped there if its target can no longer serve); test `.status == "pending"`
    to tell it from a "refused" one. So `if manager.switch_to(...)` means what it says.
    """

    status: SwitchStatus
    slot: str | None
    detail: str
    previous: str | None = None
    blockers: tuple[str, ...] = ()
    heal: HealResult | None = None

    def __bool__(self) -> bool:
        return self.status in ("switched", "unchanged")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "slot": self.slot,
            "previous": self.previous,
            "detail": self.detail,
            "blockers": list(self.blockers),
            "heal": self.heal.detail if self.heal else None,
        }


ProbeStatus = Literal["ok", "FAIL", "skipped"]


@dataclass(frozen=True)
class ProbeResult:
    """What a probe found for one slot, and which source said so (no secrets)."""

    slot: str
    status: ProbeStatus
    source: str  # "usage script" or "usage endpoint"
    detail: str
    needs_login: bool = False  # the source refused the credential itself (401 / 403)

    @property
    def ok(self) -> bool:
        """A skipped probe (a token this tool must not refresh) is no failure."""
        return self.status != "FAIL"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status": self.status,
            "source": self.source,
            "detail": self.detail,
            "needs_login": self.needs_login,
        }


@dataclass
class SlotReport:
    """Everything `status` shows for one slot (no secrets)."""

    name: str
    live: bool
    credential: CredentialInfo
    usage: UsageSnapshot | None
    pressure: float | None
    limited_until: float | None
    poll: dict[str, Any] = field(default_factory=dict)
    rejected: dict[str, Any] | None = None  # Anthropic refused this very credential
    limited_models: dict[str, float] = field(default_factory=dict)  # per-model 429s in force
    home: str = "link"  # link | profile | ambiguous (slot_files.SlotFiles.home_of)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "live": self.live,
            "home": self.home,
            "credential": self.credential.to_dict(),
            "usage": self.usage.to_dict() if self.usage else None,
            "pressure": self.pressure,
            "limited_until": self.limited_until,
            "limited_models": self.limited_models,
            "poll": self.poll,
            "rejected": self.rejected,
        }


def first_outcome(*outcomes: SwitchOutcome | None) -> SwitchOutcome | None:
    """The first outcome that exists. Not `a or b`: a pending or refused outcome is falsy,
    and it is still the one to report."""
    return next((o for o in outcomes if o is not None), None)


def credential_key(info: CredentialInfo) -> str | None:
    """Which credential a rejection was about: its refresh token's fingerprint (or the access
    token's when it has none), so a new login into the slot clears the rejection."""
    return info.refresh_fingerprint or info.access_fingerprint


def standing_rejection(
    rotation: RotationState, slot: str, info: CredentialInfo
) -> dict[str, Any] | None:
    """The rejection record while the slot still holds the very credential that was refused."""
    entry = rotation.standing_rejection(slot, credential_key(info))
    return None if entry is None else {"at": entry.at, "source": entry.source}


__all__ = [
    "ProbeResult",
    "ProbeStatus",
    "SlotReport",
    "SwitchOutcome",
    "SwitchStatus",
    "credential_key",
    "first_outcome",
    "standing_rejection",
]
