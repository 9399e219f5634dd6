"""16 sessions x 4 concurrent hook processes on one claude dir and one state dir."""

from __future__ import annotations

from gptme_subscription_plugin.credentials import load_credential

from .reliability import check_repaired, kept_refresh_tokens
from .storm import Storm


def test_hook_storm_keeps_every_invariant(tmp_path, fake_server):
    storm = Storm(tmp_path, fake_server, sessions=16, concurrency=4, turns=2, seconds=120)
    result = storm.run()

    assert result.failures == []
    assert result.hooks_run >= 16 * (2 + 2 * 6)  # every planned hook ran (none past the bound)
    assert result.refreshes >= 1  # Claude Code's refresh did interleave with the storm
    claude, state = storm.claude, storm.state
    # every refresh token that ever existed is in a slot or its backup ring...
    assert result.refresh_tokens <= kept_refresh_tokens(claude)
    # ...and the newest one of each account is in its slot, ready to be linked
    for name, token in result.current_tokens.items():
        assert load_credential(claude / f".credentials.json.{name}").refresh_token == token
    check_repaired(claude, state, set(result.current_tokens.values()))
    sessions = list((state / "sessions").glob("*.json"))
    assert sessions == []  # every session unregistered at SessionEnd
