"""`gptme-subscription demo`: the real core in a throwaway sandbox, through a scripted day.

Nothing here is mocked except the network edge: a fake Anthropic usage endpoint on
127.0.0.1. Slots are real files, the live credential a real symlink, locks real locks, polls
real HTTP. Only the clock is scripted, so a day passes in a second and the output is stable.
No real account or ~/.claude is touched.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import fsutil
from .boundary_runner import BoundaryRunner
from .config import Config
from .credentials import CredentialError, load_credential
from .demo_keep import KEPT_DAY_ENDS_AGO, leave_for_dashboard
from .demo_transcripts import TranscriptWriter
from .loopback import LoopbackAPI, make_profile_doc
from .manager import SubscriptionManager, SwitchOutcome
from .policy import Decision, format_duration
from .render import decision_line
from .usage.statusline import parse_statusline_rate_limits

DAY0 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc).timestamp()  # a Monday, 08:00 UTC
HOUR = 3600.0


class ScriptedClock:
    """The demo's only fake: time moves when the script says so."""

    def __init__(self, start: float):
        self.day0 = start  # 08:00 of the scripted day
        self.now = start

    def __call__(self) -> float:
        return self.now

    def at(self, hhmm: str) -> None:
        hours, minutes = (int(x) for x in hhmm.split(":"))
        self.now = self.day0 - 8 * HOUR + hours * HOUR + minutes * 60


@dataclass
class Account:
    """A synthetic subscription: its tokens, its identity, its quota as the server reports it."""

    name: str
    email: str
    weekly_reset: float
    generation: int = 1
    five_hour: float = 0.0
    five_hour_reset: float | None = None
    seven_day: float = 0.0
    sonnet: float = 0.0

    @property
    def access_token(self) -> str:
        return f"sk-ant-oat01-demo-{self.name}-access-{self.generation}"

    @property
    def refresh_token(self) -> str:
        return f"sk-ant-ort01-demo-{self.name}-refresh-{self.generation}"

    def credential(self, expires_at: float) -> bytes:
        doc = {
            "claudeAiOauth": {
                "accessToken": self.access_token,
                "refreshToken": self.refresh_token,
                "expiresAt": int(expires_at * 1000),
                "scopes": ["user:inference", "user:profile"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x",
            },
            "mcpOAuth": {"kept": "byte-for-byte"},
        }
        return json.dumps(doc, indent=2).encode()

    def usage_doc(self) -> dict[str, Any]:
        def iso(ts: float | None) -> str | None:
            return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()

        return {
            "five_hour": {
                "utilization": self.five_hour * 100,
                "resets_at": iso(self.five_hour_reset),
            },
            "seven_day": {"utilization": self.seven_day * 100, "resets_at": iso(self.weekly_reset)},
            "seven_day_opus": None,
            "limits": [
                {
                    "kind": "weekly_scoped",
                    "group": "weekly",
                    "percent": self.sonnet * 100,
                    "resets_at": iso(self.weekly_reset),
                    "scope": {"model": {"id": None, "display_name": "Sonnet"}},
                }
            ],
        }


@dataclass
class Step:
    time: str
    event: str
    decision: str | None = None
    outcome: str | None = None
    live: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "event": self.event,
            "decision": self.decision,
            "outcome": self.outcome,
            "live": self.live,
            "notes": self.notes,
        }


class Sandbox:
    """A throwaway HOME with a Claude config dir, a state dir and a fake usage server."""

    def __init__(self, root: Path, server: LoopbackAPI, clock: ScriptedClock):
        self.root = root
        self.home = fsutil.ensure_private_dir(root / "home")
        self.claude_dir = fsutil.ensure_private_dir(self.home / ".claude")
        self.server = server
        self.clock = clock
        self.accounts: dict[str, Account] = {}
        self.config = Config(
            claude_dir=self.claude_dir,
            state_dir=root / "state",
            home=self.home,
            api_base=server.base_url,
            poll_interval=180.0,
            poll_timeout=2.0,
            lock_wait=2.0,
        )
        self.manager = SubscriptionManager(self.config, clock=clock)
        self.transcripts = TranscriptWriter(self.claude_dir)
        self.seen_refresh_tokens: set[str] = set()

    def add_account(self, account: Account) -> None:
        self.accounts[account.name] = account
        self.publish(account)

    def publish(self, account: Account) -> None:
        """Tell the fake endpoint this account's usage and profile for its current token."""
        self.server.set_usage(account.access_token, account.usage_doc())
        self.server.set_profile(
            account.access_token, make_profile_doc(account.email, f"uuid-{account.name}")
        )
        self.seen_refresh_tokens.add(account.refresh_token)

    def write_live_file(self, account: Account) -> None:
        """Claude Code writes the live credential by replacing the link with a regular file."""
        fsutil.atomic_write_bytes(
            self.config.live_path, account.credential(self.clock() + 24 * HOUR)
        )

    def login(self, account: Account) -> None:
        """What `claude /login` leaves behind: a regular live file and oauthAccount."""
        self.write_live_file(account)
        self.write_oauth_account(account)

    def write_oauth_account(self, account: Account) -> None:
        doc = {
            "hasCompletedOnboarding": True,
            "oauthAccount": {"accountUuid": f"uuid-{account.name}", "emailAddress": account.email},
        }
        fsutil.atomic_write_text(self.home / ".claude.json", json.dumps(doc))

    def claude_code_refresh(self, account: Account) -> None:
        """Claude Code's token refresh: a new pair; `oauthAccount` is left as it was."""
        account.generation += 1
        self.publish(account)
        self.write_live_file(account)

    def turn(self, session: str) -> None:
        """What UserPromptSubmit records, then the turn's requests in the transcript."""
        self.manager.turns.mark_busy(session, self.clock())
        self.manager.record_turn(session, "start")
        self.transcripts.turn(session, self.clock())

    def stop(self, session: str) -> tuple[Decision | None, SwitchOutcome | None]:
        """What the Stop hook does: end the turn, then the boundary controller's Stop."""
        m = self.manager
        m.turns.mark_idle(session, self.clock())
        m.record_turn(session, "end")
        result = BoundaryRunner(m).stop(session)
        return result.plan.decision, result.outcome

    def tokens_lost(self) -> list[str]:
        """Refresh tokens handed out that are in no slot and no backup (must stay empty)."""
        kept: set[str] = set()
        files = [p for p in self.claude_dir.glob(".credentials.json.*")]
        files += list(self.manager.slots.backup_dir.glob("*"))
        for path in files:
            try:
                cred = load_credential(path)
            except CredentialError:
                continue
            if cred.refresh_token:
                kept.add(cred.refresh_token)
        current = {a.refresh_token for a in self.accounts.values()}
        # a spent refresh token (rotated by Claude Code) is dead weight; only current ones count
        return sorted(t.split("-refresh-")[0] for t in current - kept)


def _script(
    sb: Sandbox,
) -> list[tuple[str, str, Callable[[], tuple[Decision | None, SwitchOutcome | None]]]]:
    """The scripted day: (time, what happens, action) triples."""
    alice, bob = sb.accounts["alice"], sb.accounts["bob"]
    m = sb.manager

    def set_usage(acct: Account, **values: float | None) -> None:
        for key, value in values.items():
            setattr(acct, key, value)
        sb.publish(acct)

    def morning() -> tuple[Decision | None, SwitchOutcome | None]:
        set_usage(alice, five_hour=0.20, five_hour_reset=sb.clock() + 4 * HOUR, seven_day=0.55)
        sb.turn("session-A")
        return sb.stop("session-A")

    def five_hour_pressure() -> tuple[Decision | None, SwitchOutcome | None]:
        set_usage(alice, five_hour=0.92, five_hour_reset=sb.clock() + 4 * HOUR, seven_day=0.66)
        sb.turn("session-A")
        sb.turn("session-B")
        return sb.stop("session-A")  # B is still mid-turn: the switch must wait

    def b_finishes() -> tuple[Decision | None, SwitchOutcome | None]:
        return None, sb.stop("session-B")[1]

    def refresh() -> tuple[Decision | None, SwitchOutcome | None]:
        sb.claude_code_refresh(bob)
        set_usage(bob, five_hour=0.30, five_hour_reset=sb.clock() + 4 * HOUR, seven_day=0.41)
        sb.turn("session-A")
        return sb.stop("session-A")

    def endpoint_429() -> tuple[Decision | None, SwitchOutcome | None]:
        sb.server.set_fault("429", token=bob.access_token, retry_after=900, count=1)
        sb.turn("session-A")
        return sb.stop("session-A")

    def five_hour_reset() -> tuple[Decision | None, SwitchOutcome | None]:
        set_usage(alice, five_hour=0.0, five_hour_reset=None)
        set_usage(bob, five_hour=0.45)
        sb.turn("session-A")
        return sb.stop("session-A")

    def weekly_exhausted() -> tuple[Decision | None, SwitchOutcome | None]:
        set_usage(alice, five_hour=0.60, five_hour_reset=sb.clock() + 2 * HOUR, seven_day=0.99)
        sb.turn("session-A")
        # the statusline hands Claude Code's own rate_limits to us for free after a response
        statusline = {
            "rate_limits": {
                "five_hour": {"used_percentage": 60, "resets_at": sb.clock() + 2 * HOUR},
                "seven_day": {"used_percentage": 99, "resets_at": alice.weekly_reset},
            }
        }
        snapshot = parse_statusline_rate_limits(statusline, "alice", sb.clock())
        assert snapshot is not None
        m.record_usage(snapshot)
        return sb.stop("session-A")

    def rate_limited() -> tuple[Decision | None, SwitchOutcome | None]:
        m.record_rate_limit("bob", sb.clock() + 2 * HOUR)  # what StopFailure(rate_limit) records
        sb.turn("session-A")
        return sb.stop("session-A")

    def manual() -> tuple[Decision | None, SwitchOutcome | None]:
        outcome = m.switch_to("bob", reason="person prefers bob tonight", mode="manual")
        return m.evaluate(), outcome

    return [
        ("08:00", "alice live; 5h 20%, weekly 55% resetting tomorrow", morning),
        ("10:30", "alice 5h window at 92%; session-B is mid-turn", five_hour_pressure),
        ("10:34", "session-B ends its turn: everyone idle", b_finishes),
        ("11:40", "Claude Code refreshes bob's token, replacing the link with a file", refresh),
        ("13:00", "the usage endpoint answers bob's poll with 429 Retry-After 900", endpoint_429),
        ("15:40", "alice's 5h window has reset; her weekly quota expires first", five_hour_reset),
        ("18:10", "the statusline reports alice's weekly quota spent (99%)", weekly_exhausted),
        ("20:15", "bob hits a rate limit (StopFailure rate_limit) until 22:15", rate_limited),
        ("23:00", "a person switches to bob by hand", manual),
    ]


def run_demo(keep: bool = False, as_json: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="gptme-subscription-demo-"))
    # a kept sandbox is for looking at (`dashboard`): its day ends just now, not on DAY0
    day0 = time.time() - KEPT_DAY_ENDS_AGO - 15 * HOUR if keep else DAY0
    clock = ScriptedClock(day0)
    steps: list[Step] = []
    try:
        with LoopbackAPI() as server:
            sb = Sandbox(root, server, clock)
            for acct in (
                Account("alice", "alice@example.com", weekly_reset=day0 + 26 * HOUR),
                Account("bob", "bob@example.com", weekly_reset=day0 + 4 * 24 * HOUR),
                Account("carol", "carol@example.com", weekly_reset=day0 + 6 * 24 * HOUR),
            ):
                sb.add_account(acct)
            _setup_slots(sb)
            steps.append(
                Step(
                    "08:00",
                    "slots added: alice (captured after /login), bob, carol",
                    live=sb.manager.get_active_subscription(),
                )
            )
            for hhmm, event, action in _script(sb):
                clock.at(hhmm)
                decision, outcome = action()
                steps.append(
                    Step(
                        hhmm,
                        event,
                        decision=decision_line(decision) if decision else None,
                        outcome=outcome.detail if outcome is not None else None,
                        live=sb.manager.get_active_subscription(),
                        notes=_notes(sb),
                    )
                )
            lost = sb.tokens_lost()
            summary = _summary(sb, lost)
            if keep:
                summary["dashboard"] = leave_for_dashboard(
                    root, sb.config, list(sb.accounts.values())
                )
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if as_json:
        print(
            json.dumps(
                {
                    "steps": [s.to_dict() for s in steps],
                    "summary": summary,
                    "sandbox": str(root) if keep else None,
                },
                indent=2,
            )
        )
    else:
        _print_human(steps, summary, root if keep else None)
    return 0 if not lost else 1


def _setup_slots(sb: Sandbox) -> None:
    """The real `slot add` paths: capture a fresh login, import two credential files."""
    m = sb.manager
    sb.login(sb.accounts["alice"])
    m.slots.add("alice")
    for name in ("bob", "carol"):
        src = sb.root / f"{name}.credentials.json"
        fsutil.atomic_write_bytes(src, sb.accounts[name].credential(sb.clock() + 24 * HOUR))
        m.slots.add(name, source=src)


def _notes(sb: Sandbox) -> list[str]:
    """What the events log says happened since the last step (kinds other than decisions)."""
    m = sb.manager
    notes = []
    for ev in m.events.tail(12):
        if ev.get("ts", 0) < sb.clock() - 1 or ev.get("kind") == "decision":
            continue
        kind = ev.get("kind")
        if kind == "heal":
            notes.append(f"healed: {ev.get('detail')}")
        elif kind == "pending":
            notes.append(
                f"pending: {ev.get('slot')} waits for {len(ev.get('blockers', []))} session(s)"
            )
        elif kind == "usage-error":
            notes.append(f"usage poll for {ev.get('slot')}: {ev.get('reason')}")
    for name in m.slot_names():
        status = m.usage.status(name, sb.clock())
        if status.get("next_poll_at") and status["next_poll_at"] - sb.clock() > 600:
            notes.append(
                f"{name}: polling paused {format_duration(status['next_poll_at'] - sb.clock())}"
                f" (backoff), using cached data"
            )
    return notes


def _summary(sb: Sandbox, lost: list[str]) -> dict[str, Any]:
    m = sb.manager
    events = m.events.tail(500)
    kinds: dict[str, int] = {}
    for ev in events:
        kinds[str(ev.get("kind"))] = kinds.get(str(ev.get("kind")), 0) + 1
    drift = m.slots.detect_drift()
    polls = {name: sb.server.request_count(acct.access_token) for name, acct in sb.accounts.items()}
    return {
        "live": m.get_active_subscription(),
        "switches": kinds.get("switch", 0),
        "pending_switches": kinds.get("pending", 0),
        "heals": kinds.get("heal", 0),
        "decisions": kinds.get("decision", 0),
        "usage_requests_by_current_token": polls,
        "refresh_tokens_lost": len(lost),
        "drift": drift.kind if drift is not None else None,
    }


def _print_human(steps: list[Step], summary: dict[str, Any], kept: Path | None) -> None:
    print("gptme-subscription demo: three synthetic slots, a fake usage endpoint on 127.0.0.1,")
    print("real files, symlinks and locks; the clock is scripted.\n")
    for s in steps:
        print(f"{s.time}  {s.event}")
        if s.decision:
            print(f"        decision: {s.decision}")
        if s.outcome:
            print(f"        outcome:  {s.outcome}")
        for note in s.notes:
            print(f"        note:     {note}")
        print(f"        live:     {s.live}")
    print()
    print(
        f"switches: {summary['switches']}, pending switches: {summary['pending_switches']}, "
        f"heals: {summary['heals']}, refresh tokens lost: {summary['refresh_tokens_lost']}, "
        f"drift left: {summary['drift'] or 'none'}"
    )
    if kept:
        print(f"sandbox kept at {kept}")
        print(f"see it live (the day above ended {KEPT_DAY_ENDS_AGO / 60:.0f} minutes ago):")
        print(f"  {summary['dashboard']}")
