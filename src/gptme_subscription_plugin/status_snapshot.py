"""One read of everything a status surface shows, taken once and only rendered after.

`gptme-subscription status`, the gptme `subscription` tool's `status` answer and the Claude Code
statusline show the same facts: the live slot, each slot's report and verdict, the policy's
decision, the pending switch, what was not believed, who is mid-turn. `take_snapshot` reads
them in one place, so the surfaces cannot disagree about them; each surface formats a
`StatusSnapshot` and asks the manager nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .credentials import CredentialInfo
from .outcomes import SlotReport, standing_rejection
from .policy import Decision, PolicyView, SlotView, format_duration, slot_pressure
from .slots import Drift
from .summary import Summary, summarize

# `status` mentions a clamped rotation time for this long after it happened.
NOTE_TTL = 86400.0

if TYPE_CHECKING:
    from .manager import SubscriptionManager


@dataclass(frozen=True)
class StatusSnapshot:
    """What the rotation looks like at `now` (no secrets: fingerprints only)."""

    now: float
    live: str | None
    reports: tuple[SlotReport, ...]
    view: PolicyView  # every slot (its `home` says which), from the same usage as `reports`
    decision: Decision  # what the policy would do now (not logged: looking is not deciding)
    pending: dict[str, Any] | None  # the pending switch, as rotation.json holds it
    pending_login: CredentialInfo | None  # a login of an account in no slot, kept aside
    busy: tuple[str, ...]  # sessions (and agent lock files) mid-turn
    drift: Drift | None
    notes: tuple[str, ...]  # one line per thing not believed or failed
    summary: Summary  # the compact paragraph for agents and the hook status file
    claude_dir: Path  # where the slots live, for "no slots in ..." messages

    @property
    def pending_slot(self) -> str | None:
        slot = self.pending.get("slot") if self.pending else None
        return slot if isinstance(slot, str) else None

    def verdict(self, name: str) -> SlotView | None:
        """The policy's verdict on one slot: `health` is "rejected" while Anthropic refuses its
        credential, and `usable` is false then too (the credential file alone looks valid)."""
        return self.view.slot(name)

    def to_dict(self) -> dict[str, Any]:
        """The `status --json` document (its shape is a public interface: keep it)."""
        drift = self.drift
        return {
            "live": self.live,
            "slots": [r.to_dict() for r in self.reports],
            "pending": self.pending,
            "pending_login": None if self.pending_login is None else self.pending_login.to_dict(),
            "sessions_mid_turn": list(self.busy),
            "drift": None if drift is None else {"kind": drift.kind, "detail": drift.detail},
            "decision": self.decision.to_dict(),
            "notes": list(self.notes),
            "now": self.now,
        }


def slot_reports(m: SubscriptionManager, *, refresh: bool = False) -> list[SlotReport]:
    """Every slot's report, as `status` shows it; `refresh` polls usage first."""
    now = m.clock()
    usage = m.check_usage(refresh=refresh)
    rot = m.rotation()
    live = m.get_active_subscription()
    reports = []
    for name in m.slot_names():
        info = m.slots.check(name)
        reports.append(
            SlotReport(
                name=name,
                live=name == live,
                home=m.slots.home_of(name) or "link",
                credential=info,
                usage=usage.get(name),
                pressure=slot_pressure(usage.get(name), m.config.thresholds, now),
                limited_until=rot.limited.get(name),
                poll=m.usage.status(name, now),
                rejected=standing_rejection(rot, name, info),
                limited_models={
                    model: until for model, until in rot.model_limits(name).items() if until > now
                },
            )
        )
    return reports


def status_notes(m: SubscriptionManager, reports: Sequence[SlotReport]) -> list[str]:
    """One line per thing `status` should admit: failed polls, values not believed."""
    now = m.clock()
    lines = []
    for r in reports:
        error, note = r.poll.get("last_error"), r.poll.get("note")
        if error:
            lines.append(f"{r.name}: last usage poll failed: {error}")
        if note:
            lines.append(f"{r.name}: {note}")
    clamped = m.rotation().clamped
    if clamped is not None and 0 <= now - clamped.at < NOTE_TTL:
        lines.append(
            f"rotation: {', '.join(clamped.fields)} lay in the future (the clock stepped "
            f"back); set to now {format_duration(now - clamped.at)} ago"
        )
    return lines


def take_snapshot(
    m: SubscriptionManager, *, refresh: bool, exclude: str | None = None
) -> StatusSnapshot:
    """Read the status once. `refresh` polls usage within the shared poll budget; `exclude`
    is the caller's own session, which does not count as another session mid-turn."""
    now = m.clock()
    reports = tuple(m.report(refresh=refresh))
    pending = m.pending()
    busy = tuple(m.busy_sessions(exclude=exclude))
    view = m.view({r.name: r.usage for r in reports}, home=None)
    link_view = view.homed("link")  # what the live link may serve: the policy's input
    decision = m.policy.decide(link_view, now)
    pending_slot = pending.get("slot") if pending else None
    summary = agent_summary(m, link_view, decision, now, pending_slot)
    return StatusSnapshot(
        now=now,
        live=m.get_active_subscription(),
        reports=reports,
        view=view,
        decision=decision,
        pending=pending,
        pending_login=m.slots.pending_login(),
        busy=busy,
        drift=m.slots.detect_drift(),
        notes=tuple(m.notes(reports)),
        summary=summary,
        claude_dir=m.config.claude_dir,
    )


def agent_summary(
    m: SubscriptionManager, view: PolicyView, decision: Decision, now: float, pending: str | None
) -> Summary:
    """The compact paragraph for agents: the snapshot's, and the one the turn-boundary hooks
    publish for the PreToolUse fast path (they build only the view, not the whole status)."""
    return summarize(view, decision, m.config.thresholds, now, pending=pending)


__all__ = ["StatusSnapshot", "agent_summary", "take_snapshot"]
