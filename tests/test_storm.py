"""16 sessions x 4 concurrent hook processes on one claude dir and one state dir."""

from __future__ import annotations

import pytest

from gptme_subscription_plugin.credentials import load_credential

from .support.reliability import check_repaired, kept_refresh_tokens
from .support.storm import Storm


@pytest.mark.storm
def test_hook_storm_keeps_every_invariant(tmp_path, fake_server):
    storm = Storm(tmp_path, fake_server, sessions=16, concurrency=4, turns=2, seconds=120)
    result = storm.run()

    assert result.failures == []
    assert result.hooks_run >= 16 * (2 + 2 * 6)  # every planned hook ran (none past the bound)
    assert result.refreshes >= 1  # Claude Code's refresh did interleave with the storm
    claude, state = storm.claude, storm.state
    # no refresh ever presented a spent token (which would have revoked an account)
    assert fake_server.invalid_grant_events() == []
    # every refresh token that ever existed is in a slot or its backup ring...
    assert result.refresh_tokens <= kept_refresh_tokens(claude)
    # ...and the newest one of each account is in its own slot, ready to be linked
    misfiled = {}
    for name in result.current_tokens:
        held = load_credential(claude / f".credentials.json.{name}").refresh_token
        if held != fake_server.current_tokens(name)[1]:
            misfiled[name] = fake_server.describe_token(held)
    assert misfiled == {}
    check_repaired(claude, state, set(result.current_tokens.values()))
    sessions = list((state / "sessions").glob("*.json"))
    assert sessions == []  # every session unregistered at SessionEnd
