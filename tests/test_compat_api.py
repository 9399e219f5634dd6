"""The 0.1.0 Python API (`gptme_subscription`) over ours, and the guards on our own API.

Everything runs on real slot files, a real live symlink, a real usage-script executable and a
loopback usage endpoint. The 0.1.0 README snippet runs exactly as printed (see
`test_readme_snippet_runs_exactly_as_printed`); the scenarios of 0.1.0's own tests that concern
its public API are re-run black box below, each marked with the 0.1.0 test it comes from.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gptme_subscription_plugin.manager import SubscriptionManager as CoreManager

from .support.credentials import (
    credential_bytes,
    serve_profile,
    write_slot,
)
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox

H = 3600.0
DAY = 24 * H
# .ci/run sets it: there a test that cannot run fails instead of skipping. Read at import,
# before a sandbox clears the GPTME_SUBSCRIPTION_* variables.
IN_CI = bool(os.environ.get("GPTME_SUBSCRIPTION_CI"))


def live_slot(claude: Path) -> str:
    return os.readlink(claude / ".credentials.json").rsplit(".", 1)[1]


@pytest.fixture
def core(tmp_path: Path, fake_server: FakeAnthropicServer) -> CoreManager:
    """Our manager over three real slots (alice live), usage from the loopback endpoint."""
    box = Sandbox(
        tmp_path, ("alice", "bob", "carol"), server=fake_server, expires_at=time.time() + 8 * H
    )
    return box.manager(poll_timeout=2.0, lock_wait=2.0)


# ---------------------------------------------------------------- our own API


def test_positional_evaluate_is_a_type_error_never_refresh_and_model(core: CoreManager):
    """0.1.0's `evaluate(usage, active)` on our manager used to be read as
    `evaluate(refresh=usage, model=active)` and decided on the wrong input, silently."""
    usage = {"seven_day": {"utilization": 0.99, "resets_in_seconds": DAY}}
    with pytest.raises(TypeError):
        core.evaluate(usage, "alice")  # type: ignore[misc]
    with pytest.raises(TypeError):
        core.evaluate(False)  # type: ignore[misc]
    with pytest.raises(TypeError):
        core.check_usage(False)  # type: ignore[misc]
    with pytest.raises(TypeError):
        core.view({}, "opus")  # type: ignore[misc]
    with pytest.raises(TypeError):
        core.report(True)  # type: ignore[misc]
    with pytest.raises(TypeError):
        core.switch_to("bob", "why", True)  # type: ignore[misc]  # 0.1.0's (sub, reason, force)
    assert live_slot(core.config.claude_dir) == "alice"  # nothing was switched on the way


def test_our_check_credential_file_refuses_a_slot_name_for_the_clock(tmp_path: Path):
    """0.1.0's call shape on ours: a missing file was answered without looking at `now`."""
    from gptme_subscription_plugin import check_credential_file

    with pytest.raises(TypeError, match="gptme_subscription.check_credential_file"):
        check_credential_file(tmp_path / "missing", "bob")  # type: ignore[arg-type]
    assert check_credential_file(tmp_path / "missing", time.time()).health.value == "missing"


def test_a_refused_switch_is_falsy_and_a_pending_one_too(core: CoreManager):
    refused = core.switch_to("nobody")
    assert refused.status == "refused" and not refused
    core.turns.mark_busy("other-session", core.clock())
    pending = core.switch_to("bob")
    assert pending.status == "pending" and not pending  # not live yet
    assert live_slot(core.config.claude_dir) == "alice"
    core.turns.mark_idle("other-session", core.clock())
    switched = core.switch_to("bob")
    assert switched.status == "switched" and switched
    unchanged = core.switch_to("bob")
    assert unchanged.status == "unchanged" and unchanged  # bob is live: what was asked for


# ---------------------------------------------------------------- the 0.1.0 API: a sandbox

# The "Python API" snippet of gptme-subscription 0.1.0's README, exactly as printed there.
README_SNIPPET = """\
from pathlib import Path
from gptme_subscription import (
    Config,
    SubscriptionManager,
    check_credential_file,
)

cfg = Config(
    subscriptions=["bob", "alice", "erik"],
    fallback_order=["alice", "erik"],
    usage_script=Path("/home/me/bin/check-claude-usage.sh"),
)
sm = SubscriptionManager(cfg)

usage = sm.check_usage()
decision = sm.evaluate(usage, sm.get_active_subscription())
if decision.action == "switch" and decision.target:
    sm.switch_to(decision.target, decision.reason)

# Or just inspect credentials:
info = check_credential_file(cfg.slot_path("bob"), "bob")
print(info.status, info.expires_in_seconds)
"""

# A usage script as 0.1.0 documents it (`--json [--no-cache]`, utilization 0-1, resets in
# seconds). It reads the credential it is asked about (CLAUDE_USAGE_CREDS_FILE, else the one
# at $HOME/.claude) and says the account in SPENT is out of quota; each run appends its
# argv to $USAGE_SCRIPT_RUNS.
USAGE_SCRIPT = """\
import json, os, sys
creds = os.environ.get("CLAUDE_USAGE_CREDS_FILE") or os.path.join(
    os.environ["HOME"], ".claude", ".credentials.json"
)
token = json.load(open(creds))["claudeAiOauth"]["accessToken"]
spent = any(f"-{name}-" in token for name in os.environ.get("SPENT", "").split(","))
with open(os.environ["USAGE_SCRIPT_RUNS"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
print(json.dumps({
    "five_hour": {"utilization": 0.95 if spent else 0.10, "resets_in_seconds": 3 * 3600},
    "seven_day": {"utilization": 0.99 if spent else 0.20, "resets_in_seconds": 3 * 86400},
    "seven_day_sonnet": {"utilization": 0.30, "resets_in_seconds": 3 * 86400},
    "_pacing": {"actual_utilization": 0.5, "target_utilization": 0.5, "status": "on_track"},
}))
"""


def make_usage_script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{USAGE_SCRIPT}")
    path.chmod(0o700)
    return path


class ApiSandbox(Sandbox):
    """Slots bob, alice, erik (bob live) in a temp HOME; the environment a user would have,
    which this process sees too, and 0.1.0's usage script."""

    def __init__(self, tmp_path: Path, server: FakeAnthropicServer, monkeypatch):
        self.runs = tmp_path / "script-runs.jsonl"
        self.script = make_usage_script(tmp_path / "bin" / "check-claude-usage.sh")
        env = {"USAGE_SCRIPT_RUNS": str(self.runs), "SPENT": "bob"}
        super().__init__(
            tmp_path,
            ("bob", "alice", "erik"),
            server=server,
            expires_at=time.time() + 8 * H,
            usage=(10, 20),
            five_hour_resets_in=3 * H,
            env=env,
        )
        self.apply_env(monkeypatch)

    def script_runs(self) -> list[list[str]]:
        if not self.runs.exists():
            return []
        return [json.loads(line) for line in self.runs.read_text().splitlines()]

    def usage_polls(self) -> int:
        return len([r for r in self.server.requests() if r.route == "/api/oauth/usage"])


@pytest.fixture
def sb(tmp_path: Path, fake_server: FakeAnthropicServer, monkeypatch) -> ApiSandbox:
    return ApiSandbox(tmp_path, fake_server, monkeypatch)


def usage(five: float, week: float, week_in: float = 3 * DAY, **extra: object) -> dict:
    """A 0.1.0 usage document (fractions, relative resets)."""
    return {
        "five_hour": {"utilization": five, "resets_in_seconds": 3 * 3600},
        "seven_day": {"utilization": week, "resets_in_seconds": week_in},
        **extra,
    }


# ---------------------------------------------------------------- the README snippet


def _namespace_runner() -> list[str] | None:
    """A private mount namespace, so /home/me can exist for one process and nowhere else."""
    runner = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "-rm"]
    try:
        probe = subprocess.run([*runner, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return runner if probe.returncode == 0 else None


def test_readme_snippet_runs_exactly_as_printed(sb: ApiSandbox):
    """0.1.0's README snippet, unchanged, against three real slots: the live slot (bob) is
    out of quota by the usage script's reading, so the snippet switches to alice (first in
    its fallback_order) and prints bob's credential status."""
    runner = _namespace_runner()
    if runner is None:
        why = "needs a mount namespace (unshare) to give the snippet its /home/me path"
        if IN_CI:
            pytest.fail(f"{why}; CI must run it (GPTME_SUBSCRIPTION_CI is set)")
        pytest.skip(why)
    snippet = sb.root / "snippet.py"
    snippet.write_text(README_SNIPPET)
    setup = (
        "mount -t tmpfs tmpfs /home && mkdir -p /home/me/bin"
        f' && cp "{sb.script}" /home/me/bin/check-claude-usage.sh'
        f' && exec "{sys.executable}" "{snippet}"'
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **sb.env}
    proc = subprocess.run(
        [*runner, "sh", "-c", setup], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    status, expires_in = proc.stdout.split()
    assert status == "valid" and 7 * H < int(expires_in) <= 8 * H
    assert sb.script_runs() == [["--json"]]  # check_usage asked the script, once
    assert sb.live() == "alice"
    [switch] = sb.events("switch")
    assert (switch["previous"], switch["slot"], switch["mode"]) == ("bob", "alice", "exhausted")
    assert "sk-ant" not in proc.stdout + proc.stderr


def test_ci_fails_the_snippet_test_when_it_cannot_run():
    """CI (.ci/run exports GPTME_SUBSCRIPTION_CI) must never pass by skipping the snippet:
    without `unshare` on PATH the test fails there, and only skips elsewhere."""
    root = Path(__file__).resolve().parent.parent
    assert "export GPTME_SUBSCRIPTION_CI=1" in (root / ".ci" / "run").read_text()
    test = f"{Path(__file__).resolve()}::test_readme_snippet_runs_exactly_as_printed"
    env = {k: v for k, v in os.environ.items() if k != "GPTME_SUBSCRIPTION_CI"}
    env["PATH"] = str(Path(sys.executable).parent)  # no unshare there
    cmd = [sys.executable, "-m", "pytest", test, "-q", "-rs", "-p", "no:cacheprovider"]
    outside = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert outside.returncode == 0 and "SKIPPED [1]" in outside.stdout, outside.stdout
    env["GPTME_SUBSCRIPTION_CI"] = "1"
    inside = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert inside.returncode == 1 and "CI must run it" in inside.stdout, inside.stdout


# ---------------------------------------------------------------- check_usage and evaluate


def test_check_usage_returns_the_live_slots_reading_as_the_0_1_0_document(sb: ApiSandbox):
    from gptme_subscription import Config, SubscriptionManager

    sm = SubscriptionManager(Config(subscriptions=["bob", "alice", "erik"], usage_script=sb.script))
    doc = sm.check_usage()
    assert doc is not None
    assert doc["five_hour"]["utilization"] == pytest.approx(0.95)
    assert doc["seven_day"]["utilization"] == pytest.approx(0.99)
    assert doc["seven_day_sonnet"]["utilization"] == pytest.approx(0.30)
    assert 3 * DAY - 60 < doc["seven_day"]["resets_in_seconds"] <= 3 * DAY
    assert isinstance(doc["five_hour"]["resets_in_seconds"], int)
    assert doc["_pacing"]["status"] == "overusing"  # 99 % used, 4/7 of the week gone
    assert doc["_slot"] == "bob" and "_stale" not in doc
    assert sb.script_runs() == [["--json"]]
    sm.check_usage()  # within the poll budget every process shares: the same reading
    assert sb.script_runs() == [["--json"]]
    sm.check_usage(no_cache=True)  # asks now, and the script past its own cache
    assert sb.script_runs() == [["--json"], ["--json", "--no-cache"]]


def test_check_usage_without_a_script_reads_the_usage_endpoint(sb: ApiSandbox):
    """0.1.0 answered None without a script; ours asks the OAuth usage endpoint."""
    from gptme_subscription import Config, SubscriptionManager

    sb.set_usage("bob", five=30, week=60)
    doc = SubscriptionManager(Config(usage_script=None)).check_usage()
    assert doc is not None and doc["seven_day"]["utilization"] == pytest.approx(0.60)
    assert sb.usage_polls() == 1 and sb.script_runs() == []


def test_evaluate_decides_on_the_usage_it_is_handed_and_polls_nothing(sb: ApiSandbox):
    """The endpoint says bob is healthy; the document handed to evaluate says he is spent.
    The decision follows the document (and the other way round), and nothing is polled."""
    from gptme_subscription import Config, SubscriptionManager

    sm = SubscriptionManager(Config(subscriptions=["bob", "alice", "erik"], usage_script=None))
    sm.core.check_usage(refresh=True)  # every slot has a healthy reading in the cache
    sb.server.reset_requests()
    spent = sm.evaluate(usage(0.95, 0.99), "bob")
    assert (spent.action, spent.target, spent.mode) == ("switch", "alice", "exhausted")
    assert spent.active == "bob" and "bob weekly quota exhausted" in spent.reason
    assert spent.weekly_utilization == pytest.approx(0.99)
    assert spent.core is not None and spent.core.urgent

    sb.set_usage("bob", five=95, week=99)
    sm.core.check_usage(refresh=True, force=True)  # now the cache says bob is spent
    sb.server.reset_requests()
    healthy = sm.evaluate(usage(0.10, 0.20), "bob")
    assert (healthy.action, healthy.target) == ("stay", "bob")
    assert sb.usage_polls() == 0 and sb.live() == "bob"
    assert healthy.to_dict()["action"] == "stay" and "core" not in healthy.to_dict()


def test_evaluate_with_no_usage_decides_without_a_reading_of_the_live_slot(sb: ApiSandbox):
    from gptme_subscription import Config, SubscriptionManager

    sm = SubscriptionManager(Config(subscriptions=["bob", "alice", "erik"], usage_script=None))
    decision = sm.evaluate(None, "bob")
    assert decision.action == "stay" and decision.target == "bob"
    assert "no usage data" in decision.reason


def test_rate_limit_file_that_is_a_fifo_never_hangs(sb: ApiSandbox):
    """Read as the CLI reads it: bounded, a regular file only. A FIFO (no writer) is not a
    rate limit, answered at once; 0.1.0's plain read blocked until a writer came."""
    limit = sb.root / "rl"
    os.mkfifo(limit)
    code = (
        "from gptme_subscription import Config, SubscriptionManager\n"
        "cfg = Config(subscriptions=['bob', 'alice'], usage_script=None,\n"
        f"             rate_limit_file={str(limit)!r})\n"
        "sm = SubscriptionManager(cfg)\n"
        "print(sm.is_rate_limited(), sm.evaluate(None, 'bob').action)\n"
        "sm.clear_rate_limit()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert proc.stdout.split() == ["False", "stay"]
    assert limit.exists()  # not a file it read: not one it deletes


def test_evaluate_honours_the_rate_limit_file(sb: ApiSandbox):
    """0.1.0: a file naming a future time says the live slot is rate-limited until then."""
    from gptme_subscription import Config, SubscriptionManager

    limit = sb.root / "rate-limited-until.txt"
    cfg = Config(subscriptions=["bob", "alice", "erik"], usage_script=None, rate_limit_file=limit)
    sm = SubscriptionManager(cfg)
    limit.write_text(datetime.fromtimestamp(time.time() + H, timezone.utc).isoformat())
    assert sm.is_rate_limited()
    decision = sm.evaluate(usage(0.10, 0.20), "bob")
    assert decision.action == "switch" and "rate-limited" in decision.reason
    assert sm.switch_to(decision.target, decision.reason) is True
    assert not limit.exists()  # it was about the slot that was live (0.1.0 cleared it too)
    limit.write_text(datetime.fromtimestamp(time.time() - 1, timezone.utc).isoformat())
    assert not sm.is_rate_limited()
    limit.write_text("not-a-timestamp")
    assert not sm.is_rate_limited()


# ---------------------------------------------------------------- switch_to


def test_switch_to_returns_a_flag_0_1_0_callers_can_test(sb: ApiSandbox):
    from gptme_subscription import Config, SubscriptionManager

    sm = SubscriptionManager(Config(subscriptions=["bob", "alice", "erik"], usage_script=None))
    assert sm.switch_to("alice", "by hand") is True and sb.live() == "alice"
    assert sm.switch_to("nobody", "typo") is False and sb.live() == "alice"
    assert sm.last_outcome is not None and sm.last_outcome.status == "refused"
    assert not sm.last_switch_deferred

    sm.core.turns.mark_busy("other-session", time.time())  # another session is mid-turn
    assert sm.switch_to("erik", "by hand") is False
    assert sm.last_switch_deferred and sb.live() == "alice"  # pending, as 0.1.0 deferred
    assert sm.core.pending()["slot"] == "erik"
    assert sm.switch_to("erik", "by hand", force=True) is True and sb.live() == "erik"


def test_a_switch_by_hand_holds_and_a_decided_one_does_not(sb: ApiSandbox):
    """0.1.0's `--switch` recorded a manual hold; ours: any switch_to that no evaluate()
    decision named is a switch by hand and holds (load_rebalance_state shows it)."""
    from gptme_subscription import Config, SubscriptionManager

    sm = SubscriptionManager(Config(subscriptions=["bob", "alice", "erik"], usage_script=None))
    decision = sm.evaluate(usage(0.95, 0.99), "bob")
    assert sm.switch_to(decision.target, decision.reason) is True
    assert sm.load_rebalance_state() is None  # the policy's own switch: no hold
    assert sm.switch_to("erik", "operator prefers erik") is True
    hold = sm.load_rebalance_state()
    assert hold is not None and hold["mode"] == "manual-switch" and hold["target"] == "erik"
    # 0.1.0 test_record_manual_switch_hold_persists_state: the hold is honoured by evaluate
    held = sm.evaluate(usage(0.10, 0.20), "erik", rebalance_state=hold)
    assert (held.action, held.mode) == ("stay", "manual-switch-hold")
    assert held.hold_seconds is not None and held.hold_seconds > 7 * H


# ---------------------------------------------------------------- 0.1.0's manager scenarios
# from tests/test_subscription_manager.py of 0.1.0, black box; "stale" there meant a slot
# file not rewritten for 7 days, here a credential that cannot be used (see the migration doc)


def _manager(sb: ApiSandbox, **kw):
    from gptme_subscription import Config, SubscriptionManager

    cfg = Config(subscriptions=["bob", "alice", "erik"], fallback_order=["alice", "erik"], **kw)
    return SubscriptionManager(cfg)


def _exhausted() -> dict:
    return {
        "seven_day": {"utilization": 0.99, "resets_in_seconds": 3 * DAY},
        "five_hour": {"utilization": 0.95, "resets_in_seconds": 3 * 3600},
        "seven_day_sonnet": {"utilization": 0.20},
    }


def _healthy() -> dict:
    return {
        "seven_day": {"utilization": 0.10, "resets_in_seconds": 4 * DAY},
        "five_hour": {"utilization": 0.05, "resets_in_seconds": 3600},
        "seven_day_sonnet": {"utilization": 0.05, "resets_in_seconds": 4 * DAY},
    }


def _hold(target: str) -> dict:
    now = datetime.now(timezone.utc)
    return {
        "active": target,
        "action": "stay",
        "target": target,
        "reason": f"manual switch via --switch {target}",
        "mode": "manual-switch",
        "hold_until": now + timedelta(hours=8),
        "hold_seconds": 8 * 3600,
    }


def test_0_1_0_check_usage_of_a_script_that_cannot_run_is_none(sb: ApiSandbox):
    sb.script.chmod(0o600)  # test_check_usage_returns_none_for_non_executable_script
    assert _manager(sb, usage_script=sb.script).check_usage() is None


def test_0_1_0_check_usage_falls_back_to_a_stale_cache_file(sb: ApiSandbox):
    sb.script.chmod(0o600)  # test_check_usage_stale_cache_fallback_on_script_failure
    sm = _manager(sb, usage_script=sb.script)
    cache = sb.root / "stale-bob.json"
    cache.write_text(json.dumps({"seven_day": {"utilization": 0.3}, "_ok": True, "_sub": "bob"}))
    doc = sm.check_usage(stale_cache=cache)
    assert doc is not None and doc["seven_day"]["utilization"] == pytest.approx(0.3)
    assert doc["_stale"] is True
    cache.write_text(json.dumps({"seven_day": {"utilization": 0.5}, "_ok": False}))
    assert sm.check_usage(stale_cache=cache) is None  # ..._skipped_when_not_ok
    cache.write_text(json.dumps({"seven_day": {"utilization": 0.3}, "_ok": True}))
    old = time.time() - 5 * H
    os.utime(cache, (old, old))
    assert sm.check_usage(stale_cache=cache) is None  # ..._rejected_when_too_old


def test_0_1_0_a_stale_cache_file_is_not_read_when_the_script_answers(sb: ApiSandbox):
    sm = _manager(sb, usage_script=sb.script)  # ..._not_used_when_script_succeeds
    cache = sb.root / "stale.json"
    cache.write_text(json.dumps({"seven_day": {"utilization": 0.1}, "_ok": True}))
    doc = sm.check_usage(stale_cache=cache)
    assert doc is not None and doc["seven_day"]["utilization"] == pytest.approx(0.99)


def test_0_1_0_an_unusable_fallback_is_skipped_for_a_usable_one(sb: ApiSandbox):
    """test_evaluate_skips_stale_fallback_picks_fresh: alice first in fallback_order but her
    credential cannot be used (no refresh token), so erik."""
    write_slot(sb.claude, "alice", credential_bytes("alice", refresh=False))
    decision = _manager(sb, usage_script=None).evaluate(_exhausted(), "bob")
    assert (decision.action, decision.target) == ("switch", "erik")


def test_0_1_0_with_no_usable_fallback_it_stays(sb: ApiSandbox):
    """test_evaluate_all_fallbacks_stale_stays: nowhere to go; ours uses the last of bob's
    quota (under Anthropic's own limit) and says so."""
    for name in ("alice", "erik"):
        (sb.claude / f".credentials.json.{name}").unlink()
    sm = _manager(sb, usage_script=None)
    decision = sm.evaluate(_exhausted(), "bob")
    assert (decision.action, decision.target, decision.mode) == ("stay", "bob", "last-quota")
    stale, why = sm.slot_credential_is_stale("alice")
    assert stale and "missing" in why  # test_slot_credential_is_stale_missing_file


def test_0_1_0_fresh_fallbacks_are_chosen(sb: ApiSandbox):
    decision = _manager(sb, usage_script=None).evaluate(_exhausted(), "bob")
    assert decision.action == "switch" and decision.target in ("alice", "erik")


def test_0_1_0_an_idle_slot_file_is_not_stale(sb: ApiSandbox):
    """test_slot_credential_is_stale_old_file, changed: a slot file untouched for 10 days is
    an idle slot, still usable (0.1.0 called it stale)."""
    sm = _manager(sb, usage_script=None)
    old = time.time() - 10 * DAY
    os.utime(sb.claude / ".credentials.json.alice", (old, old))
    assert sm.slot_credential_is_stale("alice") == (False, "valid")


def test_0_1_0_manual_hold_scenarios(sb: ApiSandbox):
    sm = _manager(sb, usage_script=None)
    # test_manual_switch_hold_blocks_routing_on_fallback / ..._respected_on_healthy_primary
    for active in ("alice", "bob"):
        d = sm.evaluate(_healthy(), active, rebalance_state=_hold(active))
        assert (d.action, d.mode) == ("stay", "manual-switch-hold")
        assert "chosen by hand" in d.reason
    # ..._does_not_strand_on_exhausted_primary / ..._fallback
    for active in ("bob", "alice"):
        d = sm.evaluate(_exhausted(), active, rebalance_state=_hold(active))
        assert d.action == "switch" and d.mode != "manual-switch-hold" and d.target != active


def test_0_1_0_a_hold_on_another_slot_does_not_block_routing(sb: ApiSandbox):
    """test_manual_switch_hold_does_not_block_wrong_slot(_fallback). 0.1.0 forward-routed to a
    slot 'not used this period' on a guess; ours forward-routes to quota known to expire
    sooner, so erik's reading says his week ends in a day."""
    sb.set_usage("erik", five=5, week=30, week_in=1 * DAY)
    sm = _manager(sb, usage_script=None)
    sm.core.check_usage(refresh=True)
    for active, held in (("bob", "alice"), ("alice", "bob")):
        d = sm.evaluate(_healthy(), active, rebalance_state=_hold(held))
        assert (d.action, d.target, d.mode) == ("switch", "erik", "forward-routing")


def test_0_1_0_switch_history_comes_from_our_events_log(sb: ApiSandbox):
    """test_seconds_since_last_primary_departure_tracks_primary_exit, on real switches."""
    sm = _manager(sb, usage_script=None)
    assert sm.seconds_since_last_primary_departure() is None
    assert sm.switch_to("alice", "weekly exhausted") and sm.switch_to("erik", "by hand")
    assert 0 <= sm.seconds_since_last_primary_departure() < 60
    assert 0 <= sm.seconds_since_last_switch_to("alice") < 60
    assert sm.seconds_since_last_switch_to("bob") is None
    assert sm.infer_active_slot_from_log() == "erik"


def test_drift_is_reported_and_healed_into_the_owner(sb: ApiSandbox):
    sm = _manager(sb, usage_script=None)
    for name in ("bob", "alice", "erik"):
        serve_profile(sb.server, name)
    sm.core.slots.learn_identities(limit=3)  # what `gptme-subscription identity baseline` does
    assert sm.detect_live_slot_drift() is None and sm.heal_drift() == (False, "no drift")
    live = sb.claude / ".credentials.json"
    refreshed = credential_bytes("bob", generation=2)  # what Claude Code's refresh writes
    serve_profile(sb.server, "bob", generation=2)  # the account that owns the new token
    live.unlink()
    live.write_bytes(refreshed)
    live.chmod(0o600)
    assert sm.detect_live_slot_drift()["kind"] == "regular-file"
    assert sm.heal_drift()[0] is True and live.is_file() and not live.is_symlink()  # preview
    healed, detail = sm.heal_drift(execute=True)
    assert healed, detail
    assert sb.live() == "bob"
    assert (sb.claude / ".credentials.json.bob").read_bytes() == refreshed


# ---------------------------------------------------------------- 0.1.0's auth scenarios


def test_0_1_0_credential_statuses(tmp_path: Path):
    from gptme_subscription import check_credential_file

    now = time.time()
    path = tmp_path / "creds.json"
    info = check_credential_file(tmp_path / "nope.json", "alice")
    assert (info.status, info.needs_reauth_hint, info.expires_at) == ("missing", True, None)
    assert info.to_dict() == {
        "sub": "alice",
        "path": str(tmp_path / "nope.json"),
        "status": "missing",
    }

    path.write_bytes(credential_bytes("alice", expires_at=now + H))
    info = check_credential_file(path, "alice")
    assert info.status == "valid" and not info.needs_reauth_hint
    assert info.expires_at == int((now + H) * 1000) and 0 < info.expires_in_seconds <= H
    assert info.subscription_type == "max"

    path.write_bytes(credential_bytes("alice", expires_at=now - H))
    info = check_credential_file(path, "alice")  # Claude Code refreshes it: no re-login
    assert info.status == "stale" and info.expires_in_seconds < 0 and not info.needs_reauth_hint

    for content in ('{"some": "other shape"}', "{not json at all"):
        path.write_text(content)
        info = check_credential_file(path, "alice")
        assert info.status == "malformed" and info.needs_reauth_hint and info.error

    path.write_text(json.dumps({"claudeAiOauth": {"accessToken": "x"}}))  # no refresh token
    info = check_credential_file(path, "alice")
    assert info.status == "malformed" and info.health == "no-refresh-token"

    path.unlink()
    path.mkdir()
    assert check_credential_file(path, "alice").status == "unreadable"


def test_reauth_instructions_log_in_apart_and_never_hand_link(tmp_path: Path):
    from gptme_subscription import format_reauth_instructions

    text = format_reauth_instructions("alice")
    assert "slot add alice" in text and "claude auth login" in text
    assert "ln -sf" not in text  # a hand-made link over a refreshed file lost its token
    login_dir = Path(text.split("CLAUDE_CONFIG_DIR=")[1].split()[0])
    assert login_dir.is_dir() and (login_dir.stat().st_mode & 0o777) == 0o700
    login_dir.rmdir()
    with pytest.raises(ValueError):
        format_reauth_instructions("../alice")


# ---------------------------------------------------------------- the pure helpers


def test_pressure_and_blocked_are_our_policys_answers():
    from gptme_subscription import is_subscription_blocked, subscription_pressure_from_usage
    from gptme_subscription_plugin.policy import slot_pressure
    from gptme_subscription_plugin.thresholds import Thresholds
    from gptme_subscription_plugin.usage.script import parse_script_usage

    doc = usage(0.45, 0.49, seven_day_sonnet={"utilization": 0.2, "resets_in_seconds": DAY})
    ours = slot_pressure(parse_script_usage(doc, "x", time.time()), Thresholds(), time.time())
    assert subscription_pressure_from_usage(doc) == pytest.approx(ours)
    assert subscription_pressure_from_usage(doc) == pytest.approx(0.5)  # 49 % of 98 %
    assert subscription_pressure_from_usage(doc, weekly_exhausted=0.49) == 1.0
    assert subscription_pressure_from_usage({}) is None
    with pytest.raises(ValueError, match="5-hour"):
        subscription_pressure_from_usage(doc, short_reset_window=60)
    # 0.1.0's own defaults, passed explicitly, ask for nothing we lack
    assert subscription_pressure_from_usage(doc, short_reset_window=7200) == pytest.approx(0.5)
    assert subscription_pressure_from_usage(doc, 0.98, 0.90, 0.95, 7200) == pytest.approx(0.5)

    assert is_subscription_blocked(doc) == (False, "all limits healthy")
    blocked, why = is_subscription_blocked(usage(0.10, 0.99))
    assert blocked and why.startswith("weekly quota exhausted")
    assert is_subscription_blocked(usage(0.91, 0.10))[0]  # a spent 5-hour window blocks
    sonnet = usage(0.1, 0.1, seven_day_sonnet={"utilization": 0.97, "resets_in_seconds": DAY})
    assert is_subscription_blocked(sonnet) == (
        False,
        "serves every model but sonnet (its weekly window is spent)",
    )
    assert is_subscription_blocked(sonnet, sonnet_weekly_exhausted=0.99)[1] == "all limits healthy"


WEEK = 7 * DAY


def test_0_1_0_window_pacing():
    """0.1.0 tests/test_routing.py, pacing: same results from our pace gap."""
    from gptme_subscription import (
        combine_window_pacing_snapshots,
        compute_pacing_snapshot,
        compute_window_pacing,
        compute_window_pacing_snapshot,
    )

    cases = [  # (used, share of the week left, status)
        (0.5, 0.5, "on_track"),
        (0.95, 0.05, "on_track"),
        (0.95, 0.2, "overusing"),
        (0.1, 0.5, "underusing"),
    ]
    for used, left, status in cases:
        target, gap, got = compute_window_pacing(used, int(WEEK * left), int(WEEK))
        assert got == status and gap == pytest.approx(used - (1 - left), abs=1e-4)
        assert target == pytest.approx(1 - left, abs=1e-4)
    assert compute_window_pacing(0.5, 0, int(WEEK)) is None
    assert compute_window_pacing(0.5, 3600, 0) is None
    snap = compute_window_pacing_snapshot(0.7, int(WEEK * 0.25), int(WEEK))
    assert snap.headroom == pytest.approx(0.3) and snap.target_utilization == pytest.approx(0.75)
    combined = combine_window_pacing_snapshots([(0.2, 3600, 18000), (0.6, 302400, 604800)])
    assert combined.pace_gap > 0 and combined.status == "overusing"
    snap = compute_pacing_snapshot(0.8, elapsed_fraction=0.5)
    assert (snap.pace_gap, snap.headroom, snap.status) == (
        pytest.approx(0.3),
        pytest.approx(0.2),
        "overusing",
    )
    assert compute_pacing_snapshot(1.0, elapsed_fraction=1.0).status == "on_track"
    assert compute_pacing_snapshot(1.5, elapsed_fraction=0.5).utilization == 1.0
    assert compute_pacing_snapshot(0.0, elapsed_fraction=0.5).status == "underusing"
    assert compute_pacing_snapshot(0.6, elapsed_fraction=0.5).pace_gap == pytest.approx(0.1)
    with pytest.raises(ValueError, match="target_utilization"):
        compute_pacing_snapshot(0.5, elapsed_fraction=0.5, target_utilization=0.9)


def _observe(obs_dir: Path, sub: str, reset: datetime) -> None:
    from gptme_subscription import record_sub_reset_time

    record_sub_reset_time(obs_dir, sub, "seven_day", reset.isoformat())


def test_fallback_order_spends_the_quota_that_expires_first(tmp_path: Path):
    """0.1.0 tests/test_routing.py TestCapacityAwareFallbackOrder / TestSoonestResetting.
    Changed by design: 0.1.0 put the slot that reset most recently (most room) first; ours
    puts the one whose weekly quota expires soonest first, known expiry before unknown."""
    from gptme_subscription import capacity_aware_fallback_order, soonest_resetting_fallback

    now = datetime(2026, 7, 9, 12, 0, 0, tzinfo=timezone.utc)
    obs = tmp_path / "obs"
    assert capacity_aware_fallback_order(["alice", "bob", "erik"], obs) == ["alice", "bob", "erik"]
    _observe(obs, "alice", now - timedelta(days=1))  # expires in 6 days
    _observe(obs, "bob", now - timedelta(days=6))  # expires in 1 day
    assert capacity_aware_fallback_order(["bob", "alice"], obs, now=now) == ["bob", "alice"]
    assert capacity_aware_fallback_order(["erik", "alice"], obs, now=now) == ["alice", "erik"]
    with pytest.raises(ValueError, match="no equivalent"):
        capacity_aware_fallback_order(["bob"], obs, unknown_pressure=0.6)
    with pytest.raises(ValueError, match="no equivalent"):
        capacity_aware_fallback_order(["bob"], obs, expiring_capacity_credit=0.25)
    defaults = {  # 0.1.0's defaults, passed explicitly: accepted
        "unknown_pressure": 0.5,
        "soon_to_expire_threshold": 4 * 3600,
        "expiring_capacity_credit": 0.15,
    }
    assert capacity_aware_fallback_order(["erik", "alice"], obs, now, **defaults) == [
        "alice",
        "erik",
    ]

    assert soonest_resetting_fallback("bob", ["alice", "erik"], tmp_path / "none") is None
    _observe(obs, "erik", now - timedelta(days=6, hours=21, minutes=36))  # expires in 2.4 h
    assert soonest_resetting_fallback("bob", ["alice", "erik"], obs, now=now) == "erik"
    assert soonest_resetting_fallback("erik", ["erik", "alice"], obs, now=now) == "alice"


def test_observation_files_survive_concurrent_writers(tmp_path: Path):
    """0.1.0 test_concurrent_reset_time_updates_are_preserved, on the observation dir."""
    from gptme_subscription import load_sub_observations, record_sub_reset_time

    obs = tmp_path / "obs"
    names = [f"slot-{i}" for i in range(12)]
    procs = [
        multiprocessing.Process(target=record_sub_reset_time, args=(obs, "bob", f"metric-{i}"))
        for i in range(len(names))
    ]
    procs += [
        multiprocessing.Process(target=record_sub_reset_time, args=(obs, name, "seven_day"))
        for name in names
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    found = load_sub_observations(obs)
    assert set(found) == {"bob", *names}
    assert set(found["bob"].track_resets) == {f"metric-{i}" for i in range(len(names))}
    for path in obs.iterdir():
        assert path.stat().st_mode & 0o077 == 0


def test_remaining_until_an_observed_reset_keeps_the_windows_phase():
    from gptme_subscription import SubscriptionObservation, remaining_until_observed_reset

    now = datetime(2026, 7, 9, 12, 0, 0, tzinfo=timezone.utc)
    seen = SubscriptionObservation(
        track_resets={"seven_day": (now - timedelta(days=6)).isoformat()}
    )
    assert remaining_until_observed_reset(seen, "seven_day", int(WEEK), now=now) == DAY
    late = now + timedelta(days=2)  # past that reset: the next is a week after it (0.1.0: 0)
    assert remaining_until_observed_reset(seen, "seven_day", int(WEEK), now=late) == 6 * DAY
    assert remaining_until_observed_reset(seen, "opus", int(WEEK), now=now) is None


def test_manager_fallback_order_ranks_on_cached_readings(sb: ApiSandbox):
    sb.set_usage("erik", five=5, week=30, week_in=1 * DAY)
    sm = _manager(sb, usage_script=None)
    assert sm.capacity_aware_fallback_order() == ["alice", "erik"]  # nothing read yet
    sm.core.check_usage(refresh=True)
    assert sm.capacity_aware_fallback_order() == ["erik", "alice"]


def test_manager_fallback_order_ranks_under_the_configured_thresholds(sb: ApiSandbox):
    """erik's week, 90 % used, expires first: first under our default weekly_exhausted
    (0.98), spent (ranked last) under a configured 0.85, as evaluate would judge it."""
    sb.set_usage("erik", five=5, week=90, week_in=1 * DAY)
    ours = _manager(sb, usage_script=None)
    ours.core.check_usage(refresh=True)
    assert ours.capacity_aware_fallback_order() == ["erik", "alice"]
    strict = _manager(sb, usage_script=None, weekly_exhausted=0.85)
    assert strict.capacity_aware_fallback_order() == ["alice", "erik"]
    decision = strict.evaluate(usage(0.95, 0.99), "bob")
    assert (decision.action, decision.target) == ("switch", "alice")


# ---------------------------------------------------------------- Config


def test_config_reads_the_0_1_0_variables_and_our_defaults(sb: ApiSandbox, monkeypatch):
    from gptme_subscription import Config

    cfg = Config()
    assert cfg.subscriptions == [] and cfg.primary == ""  # every slot file found
    assert cfg.weekly_exhausted == 0.98 and cfg.five_hour_exhausted == 0.90  # ours
    assert cfg.creds_dir == sb.claude and cfg.state_dir == sb.state
    assert cfg.usage_script is None and cfg.creds_link == sb.claude / ".credentials.json"

    monkeypatch.setenv("GPTME_SUBSCRIPTION_SLOTS", "bob,alice,erik")
    monkeypatch.setenv("GPTME_SUBSCRIPTION_FALLBACK_ORDER", "erik,alice")
    monkeypatch.setenv("GPTME_SUBSCRIPTION_WEEKLY_EXHAUSTED", "0.85")
    monkeypatch.setenv("GPTME_SUBSCRIPTION_SONNET_WEEKLY_EXHAUSTED", "0.9")
    monkeypatch.setenv("GPTME_SUBSCRIPTION_PROBE_COOLDOWN", "600")
    monkeypatch.setenv("GPTME_SUBSCRIPTION_USAGE_SCRIPT", str(sb.script))
    cfg = Config()
    assert (cfg.subscriptions, cfg.primary, cfg.fallback_order) == (
        ["bob", "alice", "erik"],
        "bob",
        ["erik", "alice"],
    )
    assert (cfg.weekly_exhausted, cfg.sonnet_weekly_exhausted) == (0.85, 0.9)
    assert cfg.probe_primary_cooldown == 600 and cfg.usage_script == sb.script
    core = cfg.core_config()
    assert core.fallback_order == ["bob", "erik", "alice"]  # the primary first, then 0.1.0's
    assert (core.model_weekly_exhausted, core.probe_cooldown) == (0.9, 600)
    assert Config(usage_script=None).core_config().usage_script is None  # given beats env
    assert Config(weekly_exhausted=0.9).core_config().weekly_exhausted == 0.9
    monkeypatch.delenv("GPTME_SUBSCRIPTION_FALLBACK_ORDER")
    assert Config(subscriptions=["alice", "bob"]).fallback_order == ["bob"]
    assert cfg.slot_path("alice") == sb.claude / ".credentials.json.alice"
    with pytest.raises(ValueError):
        cfg.slot_path("../bob")


def test_config_refuses_what_it_cannot_honour(sb: ApiSandbox):
    from gptme_subscription import Config

    with pytest.raises(ValueError, match="not in subscriptions"):
        Config(subscriptions=["bob", "alice"], fallback_order=["erik"])
    with pytest.raises(ValueError, match="not in subscriptions"):
        Config(subscriptions=["bob", "alice"], primary="erik")
    with pytest.raises(ValueError, match="min_dwell"):
        Config(rebalance_min_hold=60)
    with pytest.raises(ValueError, match="creds_dir"):
        Config(slot_template="creds.{sub}.json")
    with pytest.raises(ValueError, match="weekly_exhausted"):
        Config(weekly_exhausted=1.5)
    assert Config(rebalance_min_hold=6 * 3600).rebalance_min_hold == 6 * 3600  # 0.1.0's default
    cfg = Config()
    with pytest.raises(AttributeError, match="events.jsonl"):
        _ = cfg.switch_log
    assert not hasattr(cfg, "reset_times_file")


def test_dropped_names_say_what_to_use_instead(sb: ApiSandbox):
    import gptme_subscription

    with pytest.raises(ImportError, match="check-auth --probe"):
        from gptme_subscription import probe_credential  # noqa: F401
    with pytest.raises(ImportError, match="was dropped"):
        from gptme_subscription.routing import best_lower_pressure_fallback  # noqa: F401
    with pytest.raises(AttributeError):
        _ = gptme_subscription.no_such_name
    sm = _manager(sb, usage_script=None)
    with pytest.raises(AttributeError, match="holds for manual_hold by itself"):
        sm.record_manual_switch_hold("alice")
    assert not hasattr(sm, "capture_slot_fingerprint")
    assert set(gptme_subscription.__all__) >= {
        "Config",
        "SubscriptionManager",
        "check_credential_file",
        "subscription_pressure_from_usage",
        "capacity_aware_fallback_order",
        "compute_window_pacing",
        "is_subscription_blocked",
    }


def test_0_1_0_submodule_paths_import(sb: ApiSandbox):
    from gptme_subscription.auth import check_credential_file
    from gptme_subscription.cli import main
    from gptme_subscription.config import Config
    from gptme_subscription.manager import Decision, SubscriptionManager
    from gptme_subscription.observation import format_duration
    from gptme_subscription.routing import compute_window_pacing

    assert callable(main) and callable(check_credential_file) and callable(compute_window_pacing)
    assert SubscriptionManager(Config()).get_available_subscriptions() == ["alice", "bob", "erik"]
    assert Decision("bob", "stay", "bob", "why").to_dict() == {
        "active": "bob",
        "action": "stay",
        "target": "bob",
        "reason": "why",
    }
    assert format_duration(3 * 3600 + 5 * 60) == "3h05m"


# ---------------------------------------------------------------- import cost


def test_the_package_is_free_to_import_and_the_hook_fast_path_never_imports_it(sb: ApiSandbox):
    code = (
        "import io, json, sys\n"
        "import gptme_subscription\n"
        "cheap = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'gptme_subscription_plugin'))\n"
        "for m in [m for m in sys.modules if m.startswith('gptme_subscription')]:\n"
        "    del sys.modules[m]\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(json.dumps({'session_id': 'x'}).encode()))\n"
        "from gptme_subscription_plugin.entry import main\n"
        "main(['hook', 'pre-tool-use'])\n"
        "hook = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'gptme_subscription'))\n"
        "print(json.dumps([cheap, hook]), file=sys.stderr)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), **sb.env}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == [[], []]
