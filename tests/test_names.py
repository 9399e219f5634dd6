"""One naming rule (names.py) behind every public place that takes a slot or document name.

Each entry point gets the same bad names and must refuse every one with the same explanation
(the rule itself); good names pass everywhere; files on disk whose name breaks the rule are
left out of the slot and usage-cache listings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gptme_subscription_plugin.config import ConfigError, load_config
from gptme_subscription_plugin.names import RULE, is_valid_name, validate_slot_name
from gptme_subscription_plugin.slots import SlotError
from gptme_subscription_plugin.state import StateStore
from gptme_subscription_plugin.usage.cache import UsageCache

from .support.sandbox import Sandbox

BAD = ["", "a/b", "..", "a.b", "../x", "a\x00b", "x" * 65, "é", " a", "-a", "_a", "a\n", "a b"]
GOOD = ["alice", "Bob_2", "max-20x", "a", "9", "x" * 64]
# bad names that can still be file names: planted files the listings must skip
BAD_FILE_NAMES = ["a.b", "x" * 65, "é", " a", "-a", "_a", "a b"]

EntryPoint = Callable[[Sandbox, str], object]


def _config(sb: Sandbox, name: str) -> object:
    return load_config({"slots": [name]}, env=sb.env)


def _config_fallback(sb: Sandbox, name: str) -> object:
    return load_config({"fallback_order": [name]}, env=sb.env)


def _slot_path(sb: Sandbox, name: str) -> object:
    return sb.slot_store().slot_path(name)


def _slot_add(sb: Sandbox, name: str) -> object:
    return sb.slot_store().add(name)


def _slot_remove(sb: Sandbox, name: str) -> object:
    return sb.slot_store().remove(name)


def _state_doc(sb: Sandbox, name: str) -> object:
    return StateStore(sb.state).read(name)


def _usage_cache(sb: Sandbox, name: str) -> object:
    return UsageCache(sb.state, 180.0).path(name)


def _switch(sb: Sandbox, name: str) -> object:
    out = sb.manager().switch_to(name)
    assert out.status == "refused"
    raise ValueError(out.detail)


ENTRY_POINTS: dict[str, tuple[EntryPoint, type[Exception]]] = {
    "names.validate_slot_name": (lambda _sb, n: validate_slot_name(n), ValueError),
    "config slots": (_config, ConfigError),
    "config fallback_order": (_config_fallback, ConfigError),
    "SlotStore.slot_path": (_slot_path, SlotError),
    "SlotStore.add": (_slot_add, SlotError),
    "SlotStore.remove": (_slot_remove, SlotError),
    "StateStore.read": (_state_doc, ValueError),
    "UsageCache.path": (_usage_cache, ValueError),
    "manager.switch_to": (_switch, ValueError),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_refuses_the_same_bad_names_with_the_rule(
    tmp_path: Path, entry: str
) -> None:
    sb = Sandbox(tmp_path)
    call, error = ENTRY_POINTS[entry]
    before = {p.name: p.read_bytes() for p in sb.claude.iterdir() if p.is_file()}
    for name in BAD:
        assert not is_valid_name(name)
        with pytest.raises(error) as info:
            call(sb, name)
        assert "invalid" in str(info.value) and RULE in str(info.value), (entry, name)
    after = {p.name: p.read_bytes() for p in sb.claude.iterdir() if p.is_file()}
    assert after == before  # a refused name changed nothing


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass_every_name_check(tmp_path: Path, name: str) -> None:
    sb = Sandbox(tmp_path)
    assert is_valid_name(name) and validate_slot_name(name) == name
    assert load_config({"slots": [name]}, env=sb.env).slots == [name]
    assert sb.slot_store().slot_path(name) == sb.claude / f".credentials.json.{name}"
    assert StateStore(sb.state).path(name) == sb.state / f"{name}.json"
    assert UsageCache(sb.state, 180.0).path(name).name == f"{name}.json"


def test_listings_skip_files_whose_name_breaks_the_rule(tmp_path: Path) -> None:
    sb = Sandbox(tmp_path)
    alice = (sb.claude / ".credentials.json.alice").read_bytes()
    cache = UsageCache(sb.state, 180.0)
    cache.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path, data in [(cache.dir / "alice.json", b"{}")] + [
        p
        for name in BAD_FILE_NAMES
        for p in [
            (sb.claude / f".credentials.json.{name}", alice),
            (cache.dir / f"{name}.json", b"{}"),
        ]
    ]:
        path.write_bytes(data)
        path.chmod(0o600)
    assert sb.slot_store().list_slots() == ["alice", "bob"]
    assert cache.slots() == ["alice"]
