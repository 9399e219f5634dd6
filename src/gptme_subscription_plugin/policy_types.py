"""The policy's input and output: `SlotView`, `PolicyView`, `Decision`, and the `Policy` protocol.

Split from `policy.py` so the pressure math, the ranking and the rules can each read them;
`policy` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from .usage.snapshot import UsageSnapshot

Action = Literal["stay", "switch", "hold", "defer"]

REJECTED = "rejected"  # SlotView.health of a credential Anthropic refused


@dataclass(frozen=True)
class SlotView:
    """What the policy may know about one slot: credential health and observed usage."""

    name: str
    usable: bool = True  # credential valid or refreshable
    health: str = "valid"
    usage: UsageSnapshot | None = None
    limited_until: float | None = None  # a 429 / StopFailure said: nothing until then
    # a 429 on a model whose own weekly window is spent: that model waits, the others serve
    limited_models: Mapping[str, float] = field(default_factory=dict)
    left_exhausted_at: float | None = None  # when we last left it because it ran out
    capacity: float | None = None  # size of its plan's windows, Pro = 1 (None: not known)
    home: str = "link"  # "profile": its own config dir serves it; the live link never does


@dataclass(frozen=True)
class PolicyView:
    """The whole input of a decision, apart from the clock."""

    live: str | None
    slots: tuple[SlotView, ...]
    model: str | None = None  # the model about to be used, when known
    last_switch_at: float | None = None
    manual_hold_slot: str | None = None
    manual_hold_until: float | None = None
    preference: tuple[str, ...] = ()  # tie-break order (fallback_order)

    def slot(self, name: str | None) -> SlotView | None:
        for s in self.slots:
            if s.name == name:
                return s
        return None

    def only(self, name: str) -> PolicyView:
        """This view with slot `name` alone, as its live slot: a profile session's view."""
        return replace(self, live=name, slots=tuple(s for s in self.slots if s.name == name))

    def homed(self, home: str) -> PolicyView:
        """This view with only the slots whose home is `home`: the live link's policy sees
        the "link" slots, the launcher the "profile" ones."""
        return replace(self, slots=tuple(s for s in self.slots if s.home == home))


@dataclass(frozen=True)
class Decision:
    """What to do now, why (one human line), and the numbers behind it."""

    action: Action
    live: str | None
    target: str | None
    mode: str
    reason: str
    urgent: bool = False
    retry_at: float | None = None  # for defer: when it is worth looking again
    pressure: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def wants_switch(self) -> bool:
        return self.action == "switch" and self.target is not None and self.target != self.live

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "live": self.live,
            "target": self.target,
            "mode": self.mode,
            "reason": self.reason,
            "urgent": self.urgent,
            "retry_at": self.retry_at,
            "pressure": dict(self.pressure),
        }


class Policy(Protocol):
    """Anything the manager and the simulator can run: a name and a pure decide()."""

    name: str

    def decide(self, view: PolicyView, now: float) -> Decision: ...
