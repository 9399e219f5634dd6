"""What one simulator run measured (`RunMetrics`) and recorded (`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunMetrics:
    """Everything one run measured; `capture` counts useful quota only (see README)."""

    capture: float = 0.0
    served: float = 0.0
    stalls: int = 0  # refused requests while another account could have served them
    refused: int = 0
    rate_limited: int = 0  # 429s seen by sessions
    auth_errors: int = 0
    stall_hours: float = 0.0  # time sessions waited on refused requests
    swaps: int = 0
    swaps_per_day: float = 0.0
    mid_turn_swaps: int = 0
    mid_request_swaps: int = 0
    violations: int = 0
    resumes: int = 0  # profile mode: sessions resumed on another slot after a refusal
    lost_chains: int = 0  # refreshes of a credential outside its one home (profile mode)
    cache_extra: float = 0.0  # units spent re-writing caches left warm on another account
    cache_extra_pct: float = 0.0  # the same, as a share of served useful units
    wait_cache_extra: float = 0.0  # units re-writing caches that expired while a session waited
    polls: int = 0
    decisions: int = 0
    requests: int = 0
    closed_windows: int = 0

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    metrics: RunMetrics
    switches: list[tuple[float, str | None, str, str]] = field(default_factory=list)
    samples: list[tuple[float, str | None, tuple[tuple[float, float], ...]]] = field(
        default_factory=list
    )
    windows: list[tuple[str, float, float, float, float]] = field(default_factory=list)
    # with record=True: (session, turn index, start, end, account) of every served request
    requests: list[tuple[str, int, float, float, str]] = field(default_factory=list)
