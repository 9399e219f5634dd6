"""The manager end to end on real files, locks and a loopback usage endpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.boundary import Defer, DropPending, Plan
from gptme_subscription_plugin.boundary_runner import BoundaryRunner
from gptme_subscription_plugin.credentials import load_credential
from gptme_subscription_plugin.manager import SubscriptionManager
from gptme_subscription_plugin.usage.oauth import USAGE_PATH

from .support.credentials import (
    access_token,
    claude_code_refresh,
    credential_bytes,
    refresh_token,
    serve_profile,
    write_oauth_account,
    write_slot,
)
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox
from .support.usage import Clock, make_usage_doc

T0 = 1_800_000_000.0
H = 3600.0


def usage_doc(five: float, week: float, week_reset: float) -> dict:
    """The usage endpoint's answer at T0 (fractions here), the 5-hour reset unknown."""
    return make_usage_doc(T0, five * 100, week * 100, None, week_reset - T0)


@pytest.fixture
def env(tmp_path: Path, fake_server: FakeAnthropicServer):
    box = Sandbox(tmp_path, ("alice", "bob", "carol"), server=fake_server, expires_at=T0 + 8 * H)
    clock = Clock(T0)
    manager = box.manager(clock, poll_interval=180, poll_timeout=1.0, lock_wait=2.0)
    for name in ("alice", "bob", "carol"):
        serve_profile(fake_server, name)
    fake_server.set_usage(access_token("alice"), usage_doc(0.2, 0.5, T0 + 3 * 24 * H))
    fake_server.set_usage(access_token("bob"), usage_doc(0.1, 0.3, T0 + 5 * 24 * H))
    fake_server.set_usage(access_token("carol"), usage_doc(0.1, 0.1, T0 + 6 * 24 * H))
    return manager, clock, fake_server


def test_switch_waits_for_other_sessions_then_applies(env):
    m, clock, _ = env
    m.turns.mark_busy("other", clock())
    out = m.switch_to("bob", session_id="me")
    assert out.status == "pending" and out.blockers == ("other",)
    assert m.get_active_subscription() == "alice" and m.pending()["slot"] == "bob"
    assert BoundaryRunner(m).prompt_submit("me").outcome is None  # still busy
    assert m.get_active_subscription() == "alice"
    m.turns.mark_idle("other", clock())
    out = BoundaryRunner(m).prompt_submit("me").outcome
    assert out is not None and out.status == "switched" and m.get_active_subscription() == "bob"
    assert m.pending() is None
    kinds = [e["kind"] for e in m.events.tail(10)]
    assert "pending" in kinds and "switch" in kinds


def test_own_session_does_not_block_and_force_flips_now(env):
    m, clock, _ = env
    m.turns.mark_busy("me", clock())
    assert m.switch_to("bob", session_id="me").status == "switched"
    m.turns.mark_busy("other", clock())
    out = m.switch_to("carol", force=True)
    assert out.status == "switched" and m.get_active_subscription() == "carol"
    assert m.events.tail(1)[0]["forced"] is True


def test_silent_sessions_expire_from_the_registry(env):
    m, clock, _ = env
    m.turns.mark_busy("ghost", clock())
    clock.now += m.config.session_ttl + 1
    assert m.switch_to("bob").status == "switched"


def test_refusals_change_nothing(env):
    m, _, _ = env
    m.slots.slot_path("carol").write_text("{broken")
    before = os.readlink(m.config.live_path)
    for slot, needle in (
        ("carol", "malformed"),
        ("nobody", "no slot named"),
        ("../etc", "invalid slot name"),
    ):
        out = m.switch_to(slot)
        assert out.status == "refused" and needle in out.detail
    assert os.readlink(m.config.live_path) == before
    assert [e["kind"] for e in m.events.tail(3)] == ["refusal"] * 3


def test_evaluate_polls_within_budget(env):
    m, clock, server = env

    def polls() -> int:
        return server.request_count(access_token("alice"), USAGE_PATH)

    d = m.evaluate()
    assert d.action == "stay" and polls() == 1
    m.evaluate()
    assert polls() == 1  # inside the poll interval
    clock.now += 181
    m.evaluate()
    assert polls() == 2


def test_exhaustion_switches_and_remembers_departure(env):
    m, clock, server = env
    server.set_usage(access_token("alice"), usage_doc(0.3, 0.985, T0 + 3 * 24 * H))
    d = m.evaluate()
    assert (d.action, d.target, d.mode) == ("switch", "bob", "exhausted")
    assert m.apply(d).status == "switched"
    assert m.rotation_state()["left_exhausted"]["alice"] == clock()


def test_the_plan_in_each_credential_sizes_its_slot_and_steers_urgent_moves(env):
    m, _, server = env
    claude = m.config.claude_dir
    pro = json.loads(credential_bytes("bob", expires_at=T0 + 8 * H))
    pro["claudeAiOauth"]["rateLimitTier"] = "default_claude_ai"
    write_slot(claude, "bob", json.dumps(pro).encode())
    team = json.loads(credential_bytes("carol", expires_at=T0 + 8 * H))
    team["claudeAiOauth"]["rateLimitTier"] = "default_claude_team"
    write_slot(claude, "carol", json.dumps(team).encode())
    sizes = {s.name: s.capacity for s in m.view().slots}
    assert sizes == {"alice": 20.0, "bob": 1.0, "carol": None}  # a team plan: not known
    write_slot(claude, "carol", credential_bytes("carol", expires_at=T0 + 8 * H))
    server.set_usage(access_token("alice"), usage_doc(0.3, 0.985, T0 + 3 * 24 * H))
    d = m.evaluate()  # bob (Pro) expires first, carol (Max 20x) a day later takes the burst
    assert (d.action, d.target, d.mode) == ("switch", "carol", "exhausted")


def test_rate_limit_record_drives_a_switch(env):
    m, clock, _ = env
    m.record_rate_limit("alice", clock() + H)
    d = m.evaluate()
    assert d.urgent and d.target == "bob"


def test_a_refusal_streak_keeps_its_start_until_a_turn_is_answered(env):
    m, clock, _ = env
    assert m.record_refusal("alice", clock()) == clock()
    clock.now += 2 * H
    assert m.record_refusal("alice", clock()) == clock() - 2 * H  # still refusing since then
    assert m.record_refusal("bob", clock()) == clock()
    m.record_served("alice")
    assert m.rotation_state()["refusing"] == {"bob": clock()}
    assert m.record_refusal("alice", clock()) == clock()  # a new streak
    rotation = m.config.state_dir / "rotation.json"
    rotation.write_text(json.dumps({"refusing": ["not", "a", "map"]}))
    m.record_served("alice")  # a malformed entry is no streak, and no crash
    assert m.record_refusal("alice", clock()) == clock()


def test_a_per_model_rate_limit_binds_that_model_and_expires_at_the_next_flip(env):
    m, clock, _ = env
    m.record_rate_limit("alice", clock() + H, model="opus")
    m.record_rate_limit("bob", clock() + 60, model="opus")
    view = m.view()
    assert view.slot("alice").limited_models == {"opus": clock() + H}
    assert view.slot("alice").limited_until is None  # Sonnet still goes through
    d = m.evaluate()  # carol serves every model: worth moving to
    assert (d.action, d.target, d.urgent) == ("switch", "carol", True) and "opus" in d.reason
    assert [e.get("model") for e in m.events.tail(3)][:2] == ["opus", "opus"]
    clock.now += 120
    assert m.switch_to("bob").status == "switched"
    assert m.rotation_state()["limited_models"] == {"alice": {"opus": clock() - 120 + H}}
    report = {r.name: r for r in m.report()}
    assert report["alice"].limited_models == {"opus": clock() - 120 + H}
    assert report["bob"].limited_models == {}


def test_flip_heals_drift_first_and_loses_no_token(env):
    m, _, server = env
    write_oauth_account(m.config.home, "bob")  # stale since an earlier swap: never evidence
    m.heal_if_drifted()  # a boundary sees the healthy link to alice
    m.slots.learn_identities()  # what evaluations do, one slot at a time
    serve_profile(server, "alice", 2)
    claude_code_refresh(m.config.claude_dir, credential_bytes("alice", 2))
    out = m.switch_to("bob")
    assert out.status == "switched" and out.heal is not None and out.heal.owner == "alice"
    assert out.heal.method == "profile"
    assert load_credential(m.slots.slot_path("alice")).refresh_token == refresh_token("alice", 2)
    assert m.get_active_subscription() == "bob"


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "garbage", "truncated"])
def test_endpoint_faults_degrade_to_cached_data(env, fault):
    m, clock, server = env
    m.evaluate()
    clock.now += 200
    server.set_fault(fault, retry_after=600 if fault == "429" else None)
    d = m.evaluate()
    assert d.action in ("stay", "switch")
    snap = m.check_usage(refresh=False)["alice"]
    assert snap is not None and snap.stale
    errors = [e for e in m.events.tail(20) if e["kind"] == "usage-error"]
    assert errors and all("sk-ant" not in json.dumps(e) for e in errors)


def test_alive_lock_files_count_as_mid_turn(env, tmp_path):
    m, _, _ = env
    lock = tmp_path / "agent.lock"
    lock.write_text(str(os.getpid()))
    config = dataclasses.replace(m.config, lock_glob=str(tmp_path / "*.lock"))
    guarded = SubscriptionManager(config, clock=m.clock)
    assert guarded.switch_to("bob").status == "pending"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    lock.write_text(dead)
    assert guarded.switch_to("bob").status == "switched"


def test_events_and_state_never_hold_tokens(env):
    m, clock, server = env
    m.evaluate()
    m.switch_to("bob")
    m.record_rate_limit("bob", clock() + 60)
    m.evaluate()
    for path in m.config.state_dir.rglob("*"):
        if path.is_file():
            assert b"sk-ant" not in path.read_bytes(), path


def test_expired_tokens_are_never_refreshed_or_used(env):
    """Invariant 3: this tool never refreshes a token; an expired one is not even sent."""
    m, clock, server = env
    before = {n: m.slots.slot_path(n).read_bytes() for n in m.slot_names()}
    clock.now = T0 + 9 * H  # every access token in the fixture expired at T0 + 8 h
    m.evaluate()
    assert server.request_count() == 0
    assert not any("oauth/token" in r.path for r in server.requests())
    assert {n: m.slots.slot_path(n).read_bytes() for n in m.slot_names()} == before


def test_slots_are_polled_in_parallel_so_a_refresh_stays_bounded(env):
    """Hooks refresh at turn boundaries: hanging endpoints cost one timeout, not one per slot."""
    m, _, server = env
    write_slot(m.config.claude_dir, "dave", credential_bytes("dave", expires_at=T0 + 8 * H))
    server.set_fault("timeout")  # every slot's poll hangs past the 1 s client timeout
    started = time.monotonic()
    usage = m.check_usage()
    elapsed = time.monotonic() - started
    assert set(usage) == {"alice", "bob", "carol", "dave"}
    assert elapsed < 3.0, f"4 hanging polls took {elapsed:.1f}s: not parallel"


def test_a_pending_policy_switch_is_dropped_when_its_target_ran_out(env):
    m, clock, server = env
    m.turns.mark_busy("other", clock())
    assert m.switch_to("bob", mode="exhausted").status == "pending"
    m.record_rate_limit("bob", clock() + H)  # bob hit a limit meanwhile
    m.turns.mark_idle("other", clock())
    result = BoundaryRunner(m).prompt_submit(None)
    assert result.plan.changes == (DropPending("bob", "exhausted"),)
    assert m.get_active_subscription() != "bob"
    assert "pending-dropped" in [e["kind"] for e in m.events.tail(5)]
    # a person's choice is kept, though: manual switches are not second-guessed
    m.switch_to("alice", force=True)
    m.turns.mark_busy("other", clock())
    assert m.switch_to("bob").status == "pending"
    m.turns.mark_idle("other", clock())
    out = BoundaryRunner(m).prompt_submit(None).outcome
    assert out is not None and out.status == "switched" and m.get_active_subscription() == "bob"


def test_a_401_from_the_usage_endpoint_marks_the_slot_rejected_until_a_new_login(env):
    m, clock, server = env
    server.remove_usage(access_token("bob"))  # bob's token is refused from now on: revoked
    m.check_usage(refresh=True)
    bob = m.view().slot("bob")
    assert (bob.usable, bob.health) == (False, "rejected")
    assert m.evaluate(refresh=False).target != "bob"
    events = [json.loads(line) for line in (m.config.state_dir / "events.jsonl").open()]
    assert any(e["kind"] == "credential-rejected" and e["slot"] == "bob" for e in events)
    # the person logs bob in again: a new credential, so the rejection no longer stands
    write_slot(m.config.claude_dir, "bob", credential_bytes("bob", 2, expires_at=T0 + 8 * H))
    bob = m.view().slot("bob")
    assert (bob.usable, bob.health) == (True, "valid")


def test_a_deferred_switch_is_refused_like_a_switch_when_its_target_is_rejected(env):
    """A plan's deferral goes through the same checks as a switch: no pending switch to a
    slot Anthropic refused, and a deferral whose blockers went idle flips at once."""
    m, clock, _ = env
    m.record_rejection("bob", "StopFailure authentication_failed")
    m.turns.mark_busy("other", clock())
    runner = BoundaryRunner(m)
    out = runner.carry_out(Plan(moves=(Defer("bob", "why", "exhausted", ("other",)),)), "me")
    assert out is not None and out.status == "refused"
    assert m.pending() is None and m.get_active_subscription() == "alice"
    m.turns.mark_idle("other", clock())
    out = runner.carry_out(Plan(moves=(Defer("carol", "why", "exhausted", ("other",)),)), "me")
    assert out is not None and out.status == "switched" and m.get_active_subscription() == "carol"


def test_a_rejection_is_lifted_by_a_successful_poll_after_the_probe_cooldown(env):
    m, clock, server = env
    m.record_rejection("carol", "StopFailure authentication_failed")
    m.check_usage(refresh=True)  # carol answers now, but too soon after the refusal
    assert m.view().slot("carol").health == "rejected"
    clock.now += m.config.thresholds.probe_cooldown + m.config.poll_interval
    m.check_usage(refresh=True)
    assert m.view().slot("carol").health == "valid"
    assert "rejected" not in m.rotation_state() or "carol" not in m.rotation_state()["rejected"]


def test_times_left_in_the_future_by_a_clock_step_hold_no_longer_than_set(env):
    m, clock, server = env
    years = 10 * 365 * 24 * H

    def stepped(doc):  # written before the clock stepped back by ten years
        doc["last_switch_at"] = clock() + years
        doc["manual_hold"] = {"slot": "alice", "until": clock() + years}

    m.state.update("rotation", stepped)
    d = m.evaluate()
    assert d.action == "hold" and "3649d" not in d.reason  # at most a hold we would set
    rot = m.rotation_state()
    assert rot["last_switch_at"] == clock()
    assert rot["manual_hold"]["until"] == clock() + m.config.manual_hold
    assert m.events.tail(5, kinds={"clamped"})
    m.evaluate()
    assert m.rotation_state()["manual_hold"]["until"] == rot["manual_hold"]["until"]  # once


def test_warning_markers_of_sessions_that_died_are_swept(env, tmp_path):
    m, clock, _ = env
    warned = m.config.state_dir / "warned"
    warned.mkdir(mode=0o700, exist_ok=True)
    old, fresh = warned / "dead-session", warned / "live-session"
    for marker in (old, fresh):
        marker.write_text("alice:0.9")
        marker.chmod(0o600)
    ttl = m.config.session_ttl
    os.utime(old, (clock() - ttl - 60, clock() - ttl - 60))
    os.utime(fresh, (clock() - 60, clock() - 60))
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.utime(victim, (clock() - ttl - 60, clock() - ttl - 60))
    os.symlink(victim, warned / "planted")
    SubscriptionManager(m.config, clock=clock)  # every hook builds one
    assert not old.exists() and fresh.exists()
    assert victim.read_text() == "keep" and (warned / "planted").is_symlink()


def test_a_damaged_rotation_json_breaks_no_decision_and_is_written_back_clean(env):
    m, clock, _ = env
    fields = ("pending", "manual_hold", "last_switch", "left_exhausted", "limited")
    fields += ("limited_models", "refusing", "rejected", "clamped")
    damaged = {key: ["not", "a", "record"] for key in fields}
    damaged.update(last_switch_at=float("nan"), written_by="a later version")
    m.state.update("rotation", lambda doc: damaged)
    m.evaluate()
    assert m.pending() is None
    assert not [n for n in m.notes(m.report()) if n.startswith("rotation:")]
    m.record_rate_limit("alice", clock() + H)
    assert m.record_refusal("alice", clock()) == clock()
    assert m.switch_to("bob", "by hand")
    doc = json.loads((m.config.state_dir / "rotation.json").read_text())
    assert doc["limited"] == {"alice": clock() + H} and doc["refusing"] == {"alice": clock()}
    assert doc["manual_hold"] == {"slot": "bob", "until": clock() + m.config.manual_hold}
    assert doc["last_switch_at"] == clock() and "written_by" not in doc
    assert doc["rejected"] == {} and doc["limited_models"] == {} and "clamped" not in doc


def test_the_cache_settings_bound_the_backoff_of_a_failing_slot(tmp_path, fake_server):
    """`usage_max_backoff` caps the wait after failed polls (it doubles from poll_interval)."""
    box = Sandbox(tmp_path, ("alice",), server=fake_server, expires_at=T0 + 8 * H)
    clock = Clock(T0)
    m = box.manager(clock, poll_interval=180, poll_timeout=1.0, usage_max_backoff=400.0)
    fake_server.set_fault("500")
    waits = []
    for _ in range(4):
        m.check_usage(refresh=True, force=True)
        waits.append(m.usage.status("alice", clock())["next_poll_in"])
        clock.now += 1000  # past any wait: the next poll goes out
    assert waits == [180.0, 360.0, 400.0, 400.0]
