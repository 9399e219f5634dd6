"""Claude Code hook handlers at turn boundaries (everything but the PreToolUse fast path).

Each handler takes the hook's stdin payload and returns the JSON Claude Code documents for that
event (or None for no output). The dispatcher in `dispatch.py` guarantees exit 0 and turns any
exception into one line on stderr: a hook never hurts the user's session.

Turn lifecycle: UserPromptSubmit (or the first PreToolUse) marks the session busy; Stop,
StopFailure and SessionEnd end the turn. Flips happen only where no other session is mid-turn:
a decided switch stays pending until such a boundary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..config import load_config
from ..hookstatus import write_hook_status
from ..manager import SubscriptionManager, SwitchOutcome, first_outcome
from ..overrides import override_warnings
from ..policy import Decision, rate_limit_marks
from ..summary import Summary, summarize
from .transcript import last_model

# StopFailure errors that mean Anthropic refused the live slot's credential itself
REJECTED_ERRORS = ("authentication_failed", "oauth_org_not_allowed")


def make_manager(env: Mapping[str, str]) -> SubscriptionManager:
    return SubscriptionManager(load_config(env=env, use_cache=True))


def context_output(event: str, text: str, system_message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hookSpecificOutput": {"hookEventName": event, "additionalContext": text[:9000]}
    }
    if system_message:
        out["systemMessage"] = system_message[:1000]
    return out


def session_of(payload: Mapping[str, Any]) -> str | None:
    sid = payload.get("session_id")
    return sid if isinstance(sid, str) and sid else None


def heal_if_drifted(m: SubscriptionManager) -> str | None:
    """At every boundary: heal drift, or note the healthy live link for a later heal.

    Returns a line for the person when something was healed or needs their hand.
    """
    result = m.heal_if_drifted()
    return f"subscription: {result.detail}" if result is not None else None


def refresh_summary(
    m: SubscriptionManager, decision: Decision | None = None, refresh: bool = False
) -> Summary:
    """Compute the pressure summary on cached usage and publish it for the fast path."""
    now = m.clock()
    usage = m.check_usage(refresh=refresh)
    view = m.view(usage)
    decision = decision or m.policy.decide(view, now)
    pending = m.pending()
    summary = summarize(
        view, decision, m.config.thresholds, now, pending=pending.get("slot") if pending else None
    )
    write_hook_status(m.config.state_dir, {**summary.to_dict(), "updated_at": now})
    return summary


def outcome_line(outcome: SwitchOutcome | None) -> str | None:
    if outcome is None or outcome.status != "switched":
        return None
    return f"subscription: switched {outcome.previous or '?'} -> {outcome.slot} ({outcome.detail})"


# ---------------------------------------------------------------- handlers


def session_start(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    m = make_manager(env)
    sid = session_of(payload)
    now = m.clock()
    m.turns.sweep(now, m.config.session_ttl)
    if sid:
        m.turns.mark_idle(sid, now)
    notes = [n for n in (heal_if_drifted(m),) if n]
    overrides = override_warnings(env, payload, m.config.claude_dir)
    summary = refresh_summary(m, refresh=True)
    text = summary.text
    if overrides:
        warning = (
            "subscription WARNING: "
            + ", ".join(overrides)
            + " overrides the subscription slots; rotation has no effect in this session"
        )
        text = warning + "\n" + text
        notes.append(warning)
    return context_output("SessionStart", text, "; ".join(notes) if notes else None)


def user_prompt_submit(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The turn starts: the last safe point before its first request.

    A pending switch lands here when everyone else is idle. With nobody mid-turn this is also
    a decision point of its own (cached usage, no network): the first prompt after a quiet
    spell is often the only moment a busy fleet leaves for a flip, and the decisions taken
    before the quiet (held by dwell, or made on data now hours old) are worth taking again.
    """
    m = make_manager(env)
    sid = session_of(payload)
    notes = [n for n in (heal_if_drifted(m),) if n]
    outcome = m.apply_pending(session_id=sid)
    if (outcome is None or outcome.status != "switched") and not m.busy_sessions(exclude=sid):
        outcome = first_outcome(m.apply(m.evaluate(refresh=False), session_id=sid), outcome)
    if sid:
        m.turns.mark_busy(sid, m.clock())
    line = outcome_line(outcome)
    if line is None:
        return {"systemMessage": "; ".join(notes)} if notes else None
    summary = refresh_summary(m)
    return context_output("UserPromptSubmit", summary.text, "; ".join([*notes, line]))


def stop(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """The turn ends: evaluate on cached usage (refreshed within budget) and apply or defer.
    The turn was answered, so the live slot serves: a refusal streak on it is over."""
    m = make_manager(env)
    sid = session_of(payload)
    if sid:
        m.turns.mark_idle(sid, m.clock())
    notes = [n for n in (heal_if_drifted(m),) if n]
    live = m.get_active_subscription()
    if live is not None:
        m.record_served(live)
    outcome = m.apply_pending(session_id=sid)
    decision = m.evaluate(refresh=True)
    if outcome is None or outcome.status != "switched":
        outcome = first_outcome(m.apply(decision, session_id=sid), outcome)
    refresh_summary(m, decision if outcome is None else None)
    line = outcome_line(outcome)
    if outcome is not None and outcome.status == "pending" and decision.urgent:
        line = f"subscription: {outcome.detail}"
    notes += [line] if line else []
    return {"systemMessage": "; ".join(notes)} if notes else None


def stop_failure(payload: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any] | None:
    """A turn ended on an API error. A rate limit marks the live slot limited until its
    expected recovery (only the session's model, when the readings say that model's own
    weekly window ran out and nothing else did); a refused credential marks it rejected;
    either way, move at once when nobody else is mid-turn. Other errors (overloaded, server
    errors) say nothing about the slot and change nothing."""
    m = make_manager(env)
    sid = session_of(payload)
    now = m.clock()
    if sid:
        m.turns.mark_idle(sid, now)
    error = payload.get("error")
    if error != "rate_limit" and error not in REJECTED_ERRORS:
        return None
    heal_if_drifted(m)  # the slot, not a drifted live file, is what gets marked
    live = m.get_active_subscription()
    if live is not None and error == "rate_limit":
        record_rate_limit(m, live, now, last_model(payload.get("transcript_path")))
    elif live is not None:
        m.record_rejection(live, f"StopFailure {error}")
    decision = m.evaluate(refresh=False)
    outcome = m.apply(decision, session_id=sid)
    refresh_summary(m, decision if outcome is None else None)
    line = outcome_line(outcome)
    return {"systemMessage": line} if line else None


def record_rate_limit(m: SubscriptionManager, slot: str, now: float, model: str | None) -> None:
    """Mark the slot limited until its expected recovery, or only the models whose own
    weekly windows the readings blame; a slot refusing for longer than a 5-hour window
    waits for a weekly reset (`policy.rate_limit_marks`)."""
    usage = m.check_usage(refresh=False, names=[slot]).get(slot)
    since = m.record_refusal(slot, now)
    whole, per_model = rate_limit_marks(
        usage, m.config.thresholds, now, model, refusing_since=since
    )
    for key, until in per_model.items():
        m.record_rate_limit(slot, until, model=key)
    if whole is not None:
        m.record_rate_limit(slot, whole)


HANDLERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], dict[str, Any] | None]] = {
    "session-start": session_start,
    "user-prompt-submit": user_prompt_submit,
    "stop": stop,
    "stop-failure": stop_failure,
}

__all__ = ["HANDLERS", "override_warnings", "refresh_summary"]
