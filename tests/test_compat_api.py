"""The 0.1.0 Python API (`gptme_subscription`) over ours, and the guards on our own API.

Everything runs on real slot files, a real live symlink, a real usage-script executable and a
loopback usage endpoint. The 0.1.0 README snippet runs exactly as printed (see
`test_readme_snippet_runs_exactly_as_printed`); the scenarios of 0.1.0's own tests that concern
its public API are re-run black box below, each marked with the 0.1.0 test it comes from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gptme_subscription_plugin.config import Config as CoreConfig
from gptme_subscription_plugin.fake_api import FakeAnthropicServer
from gptme_subscription_plugin.manager import SubscriptionManager as CoreManager

from .helpers import credential_bytes, link_live, write_slot

H = 3600.0
DAY = 24 * H


def live_slot(claude: Path) -> str:
    return os.readlink(claude / ".credentials.json").rsplit(".", 1)[1]


@pytest.fixture
def core(tmp_path: Path, fake_server: FakeAnthropicServer) -> CoreManager:
    """Our manager over three real slots (alice live), usage from the loopback endpoint."""
    home = tmp_path / "home"
    claude = home / ".claude"
    now = time.time()
    for name in ("alice", "bob", "carol"):
        write_slot(claude, name, credential_bytes(name, expires_at=now + 8 * H))
    link_live(claude, "alice")
    config = CoreConfig(
        claude_dir=claude,
        state_dir=tmp_path / "state",
        home=home,
        api_base=fake_server.base_url,
        poll_timeout=2.0,
        lock_wait=2.0,
    )
    return CoreManager(config)


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
    with pytest.raises(TypeError):
        core.apply_pending("session")  # type: ignore[misc]
    assert live_slot(core.config.claude_dir) == "alice"  # nothing was switched on the way


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
