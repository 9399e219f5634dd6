"""The shared usage cache and poll budget, on a fake clock against a real loopback server."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gptme_subscription_plugin.usage.cache import PollResult, UsageCache
from gptme_subscription_plugin.usage.oauth import UsageFetchError, fetch_oauth_usage
from gptme_subscription_plugin.usage.snapshot import (
    FIVE_HOUR_S,
    SEVEN_DAY_S,
    UsageSnapshot,
    UsageWindow,
)

from .support.fake_api import FakeAnthropicServer, make_usage_doc
from .support.usage import snapshot

TOKEN = "sk-ant-oat01-test-SECRET-cache-token-0123456789abcdef"
T0 = 1_790_000_000.0
INTERVAL = 180.0


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        srv.set_usage(TOKEN, make_usage_doc(T0, five_hour=20, seven_day=40, scoped={"Fable": 84}))
        yield srv


@pytest.fixture
def cache(tmp_path: Path) -> UsageCache:
    return UsageCache(tmp_path / "state", poll_interval=INTERVAL, max_backoff=3600.0)


def fetcher(srv: FakeAnthropicServer, now: float, slot: str = "a") -> Callable[[], UsageSnapshot]:
    return lambda: fetch_oauth_usage(srv.base_url, TOKEN, slot, 2.0, now)


def poll(
    cache: UsageCache, srv: FakeAnthropicServer, now: float, force: bool = False
) -> PollResult:
    return cache.poll("a", fetcher(srv, now), now, force=force)


def oauth_snapshot(at: float, five: float = 0.2, seven: float = 0.4) -> UsageSnapshot:
    return snapshot(
        "a",
        five,
        seven,
        now=at,
        source="oauth",
        five_reset_in=3600,
        week_reset_in=86400,
        models={"fable": 0.84},
    )


def statusline_snapshot(at: float, five: float, seven: float) -> UsageSnapshot:
    return snapshot(
        "a", five, seven, now=at, source="statusline", five_reset_in=1800, week_reset_in=80000
    )


def five_hour(snapshot: UsageSnapshot | None) -> float:
    assert snapshot is not None and snapshot.five_hour is not None
    return snapshot.five_hour.utilization


# ---------------------------------------------------------------- budget


def test_second_poll_inside_the_interval_does_not_hit_the_server(cache, server) -> None:
    first = poll(cache, server, T0)
    assert (first.polled, first.reason) == (True, "polled")
    assert first.snapshot is not None and not first.snapshot.stale
    assert first.snapshot.models["fable"].utilization == pytest.approx(0.84)
    assert server.request_count(TOKEN) == 1

    second = poll(cache, server, T0 + INTERVAL - 1)
    assert (second.polled, second.reason) == (False, "fresh")
    assert second.snapshot == first.snapshot
    assert server.request_count(TOKEN) == 1

    third = poll(cache, server, T0 + INTERVAL)
    assert third.polled and server.request_count(TOKEN) == 2


def test_budget_is_shared_by_separate_cache_objects(tmp_path: Path, server) -> None:
    one = UsageCache(tmp_path / "state", INTERVAL)
    two = UsageCache(tmp_path / "state", INTERVAL)
    assert one.poll("a", fetcher(server, T0), T0).polled
    assert not two.poll("a", fetcher(server, T0 + 5), T0 + 5).polled
    assert server.request_count(TOKEN) == 1


def test_force_skips_the_budget(cache, server) -> None:
    poll(cache, server, T0)
    assert poll(cache, server, T0 + 10, force=True).polled
    assert server.request_count(TOKEN) == 2


def test_force_at_the_same_instant_reuses_the_answer(cache, server) -> None:
    poll(cache, server, T0)
    again = poll(cache, server, T0, force=True)
    assert (again.polled, again.reason) == (False, "fresh")
    assert server.request_count(TOKEN) == 1


# ---------------------------------------------------------------- backoff


def test_retry_after_is_honoured_even_with_force(cache, server) -> None:
    poll(cache, server, T0)
    server.set_fault("429", token=TOKEN, retry_after=900, count=1)
    failed = poll(cache, server, T0 + INTERVAL)
    assert failed.polled and failed.error_kind == "rate_limited"
    assert failed.reason.startswith("error: ") and "429" in failed.reason
    assert failed.snapshot is not None and failed.snapshot.stale  # previous data, marked stale
    assert five_hour(failed.snapshot) == pytest.approx(0.2)
    assert server.request_count(TOKEN) == 2

    for later in (T0 + INTERVAL + 200, T0 + INTERVAL + 899):
        blocked = poll(cache, server, later, force=True)
        assert (blocked.polled, blocked.reason) == (False, "backoff")
        assert blocked.snapshot is not None and blocked.snapshot.stale
    assert server.request_count(TOKEN) == 2

    status = cache.status("a", T0 + INTERVAL + 10)
    assert status["rate_limited_until"] == T0 + INTERVAL + 900
    assert status["next_poll_at"] == T0 + INTERVAL + 900
    assert status["last_error_kind"] == "rate_limited" and status["backoff_count"] == 1

    recovered = poll(cache, server, T0 + INTERVAL + 900)
    assert recovered.polled and recovered.reason == "polled"
    assert recovered.snapshot is not None and not recovered.snapshot.stale
    assert cache.status("a", T0 + INTERVAL + 900)["backoff_count"] == 0


def test_429_without_retry_after_backs_off_exponentially(cache, server) -> None:
    server.set_fault("429", token=TOKEN)
    now = T0
    waits = []
    for _ in range(6):
        result = poll(cache, server, now, force=True)
        assert result.polled and result.error_kind == "rate_limited"
        until = cache.status("a", now)["rate_limited_until"]
        waits.append(until - now)
        assert not poll(cache, server, until - 1, force=True).polled
        now = until
    assert waits == [180, 360, 720, 1440, 2880, 3600]
    assert server.request_count(TOKEN) == 6


def test_other_errors_back_off_but_force_may_retry(cache, server) -> None:
    server.set_fault("500", token=TOKEN, count=2)
    first = poll(cache, server, T0)
    assert first.error_kind == "server" and first.snapshot is None
    assert cache.status("a", T0)["next_poll_at"] == T0 + INTERVAL
    second = poll(cache, server, T0 + INTERVAL)
    assert second.error_kind == "server"
    assert cache.status("a", T0 + INTERVAL)["next_poll_at"] == T0 + 3 * INTERVAL
    assert poll(cache, server, T0 + 2 * INTERVAL).reason == "backoff"
    forced = poll(cache, server, T0 + 2 * INTERVAL, force=True)
    assert forced.polled and forced.reason == "polled"
    assert cache.status("a", T0 + 2 * INTERVAL)["backoff_count"] == 0


def test_timeout_error_is_recorded(tmp_path: Path, server) -> None:
    cache = UsageCache(tmp_path / "state", INTERVAL)
    server.set_fault("timeout", token=TOKEN)
    result = cache.poll("a", lambda: fetch_oauth_usage(server.base_url, TOKEN, "a", 0.3, T0), T0)
    assert result.error_kind == "timeout"
    assert cache.status("a", T0)["last_error"] == str(result.reason).removeprefix("error: ")


def test_a_broken_fetch_function_is_contained(cache) -> None:
    def broken() -> UsageSnapshot:
        raise RuntimeError(f"bug while holding {TOKEN}")

    result = cache.poll("a", broken, T0)
    assert result.polled and result.error_kind == "internal"
    assert TOKEN not in result.reason and "RuntimeError" in result.reason


def test_clock_jumping_back_does_not_mute_polling(cache, server) -> None:
    server.set_fault("429", token=TOKEN, retry_after=3600, count=1)
    poll(cache, server, T0)
    assert poll(cache, server, T0 - 10 * 86400).polled


# ---------------------------------------------------------------- cross-process


HOLD_LOCK = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Start a real second process that holds a file lock until its stdin closes."""
    procs: list[subprocess.Popen[str]] = []

    def start(path: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(HOLD_LOCK), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.communicate(timeout=10)


@pytest.mark.planted_files  # writes files of its own into a state dir
def test_single_in_flight_poll_across_processes(cache, server, hold_lock) -> None:
    cache.record(oauth_snapshot(T0 - 30))
    holder = hold_lock(cache.dir / "a.poll.lock")
    result = poll(cache, server, T0, force=True)
    assert (result.polled, result.reason) == (False, "in-flight elsewhere")
    assert result.snapshot is not None and result.snapshot.observed_at == T0 - 30
    assert server.request_count() == 0

    holder.communicate(timeout=10)  # the other process finishes its poll
    after = poll(cache, server, T0)
    assert after.polled and server.request_count(TOKEN) == 1


def test_concurrent_polls_fetch_once(cache, server) -> None:
    calls: list[float] = []

    def slow_fetch() -> UsageSnapshot:
        calls.append(time.monotonic())
        time.sleep(0.3)
        return fetch_oauth_usage(server.base_url, TOKEN, "a", 2.0, T0)

    results: list[PollResult] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.poll("a", slow_fetch, T0)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and server.request_count(TOKEN) == 1
    assert sorted(r.polled for r in results) == [False, False, False, True]
    assert {r.reason for r in results if not r.polled} <= {"in-flight elsewhere", "fresh"}


def test_busy_slot_lock_skips_the_write(tmp_path: Path, hold_lock) -> None:
    cache = UsageCache(tmp_path / "state", INTERVAL, lock_timeout=0.2)
    cache.record(oauth_snapshot(T0))
    hold_lock(cache.dir / "a.lock")
    started = time.monotonic()
    assert cache.record(statusline_snapshot(T0 + 10, 0.9, 0.9)) is False
    assert time.monotonic() - started < 2.0
    assert five_hour(cache.get("a", T0 + 10)) == pytest.approx(0.2)


# ---------------------------------------------------------------- merge and staleness


def test_statusline_merges_into_an_oauth_snapshot(cache) -> None:
    assert cache.record(oauth_snapshot(T0))
    assert cache.record(statusline_snapshot(T0 + 60, five=0.55, seven=0.45))
    merged = cache.get("a", T0 + 60)
    assert merged is not None
    assert merged.five_hour.utilization == pytest.approx(0.55)
    assert merged.seven_day.utilization == pytest.approx(0.45)
    assert merged.models["fable"].utilization == pytest.approx(0.84)  # kept from oauth
    assert (merged.source, merged.observed_at) == ("statusline", T0 + 60)

    # an older observation never overwrites a newer one
    cache.record(statusline_snapshot(T0 - 100, five=0.01, seven=0.01))
    again = cache.get("a", T0 + 60)
    assert again is not None and again.five_hour.utilization == pytest.approx(0.55)


def test_stale_when_old(cache) -> None:
    cache.record(oauth_snapshot(T0))
    assert not cache.get("a", T0 + 2 * INTERVAL).stale
    assert cache.get("a", T0 + 2 * INTERVAL + 1).stale
    assert cache.get("b", T0) is None


def test_stale_after_a_failed_poll_until_newer_data(cache, server) -> None:
    poll(cache, server, T0)
    server.set_fault("500", token=TOKEN)
    poll(cache, server, T0 + INTERVAL)
    assert cache.get("a", T0 + INTERVAL + 1).stale
    cache.record(statusline_snapshot(T0 + INTERVAL + 5, 0.3, 0.4))
    assert not cache.get("a", T0 + INTERVAL + 6).stale


# ---------------------------------------------------------------- files


def test_files_are_private_and_hold_no_token(cache, server) -> None:
    poll(cache, server, T0)
    server.set_fault("429", token=TOKEN, retry_after=60)
    poll(cache, server, T0 + INTERVAL)
    cache.record(statusline_snapshot(T0 + INTERVAL + 1, 0.3, 0.4))
    assert stat.S_IMODE(cache.dir.stat().st_mode) == 0o700
    files = sorted(cache.dir.iterdir())
    assert {p.name for p in files} >= {"a.json", "a.lock", "a.poll.lock"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
        assert TOKEN not in path.read_text(errors="replace")
    doc = json.loads((cache.dir / "a.json").read_text())
    assert doc["poll"]["last_error_kind"] == "rate_limited"
    assert cache.slots() == ["a"]


@pytest.mark.planted_files  # writes files of its own into a state dir
def test_corrupt_cache_file_costs_one_poll(cache, server) -> None:
    cache.dir.mkdir(parents=True)
    (cache.dir / "a.json").write_text("{not json")
    assert cache.get("a", T0) is None
    assert poll(cache, server, T0).polled
    assert cache.get("a", T0) is not None


@pytest.mark.parametrize("slot", ["../evil", "a/b", "", ".hidden", "x" * 65])
def test_slot_names_are_checked(cache, slot: str) -> None:
    with pytest.raises(ValueError):
        cache.get(slot, T0)


def test_status_for_display(cache, server) -> None:
    empty = cache.status("a", T0)
    assert empty["last_poll_at"] is None and empty["next_poll_at"] == T0
    poll(cache, server, T0)
    status = cache.status("a", T0 + 30)
    assert status["last_poll_at"] == T0 and status["last_success_at"] == T0
    assert status["next_poll_at"] == T0 + INTERVAL and status["next_poll_in"] == INTERVAL - 30
    assert status["backoff_count"] == 0 and status["last_error"] is None
    assert status["source"] == "oauth" and status["stale"] is False


def test_fetch_error_from_any_source_is_kept_as_message_only(cache) -> None:
    def failing() -> UsageSnapshot:
        raise UsageFetchError("script", "usage script exited with status 3")

    result = cache.poll("a", failing, T0)
    assert result.reason == "error: usage script exited with status 3"
    assert cache.status("a", T0)["last_error"] == "usage script exited with status 3"


def test_retry_after_on_a_server_error_is_respected_but_force_may_retry(cache, server) -> None:
    from .support.fake_api import api_error

    server.add_route(
        "GET",
        "/api/oauth/usage",
        lambda request: api_error(503, "overloaded_error", "busy", **{"Retry-After": "1000"}),
    )
    failed = poll(cache, server, T0)
    assert failed.error_kind == "server"
    assert cache.status("a", T0)["next_poll_at"] == T0 + 1000
    assert cache.status("a", T0)["rate_limited_until"] is None
    assert poll(cache, server, T0 + 500).reason == "backoff"
    assert poll(cache, server, T0 + 500, force=True).polled


def test_per_model_windows_are_capped_oldest_seen_first(cache: UsageCache) -> None:
    from gptme_subscription_plugin.usage.cache import MAX_MODEL_WINDOWS

    now = 1_900_000_000.0
    for i in range(MAX_MODEL_WINDOWS + 10):
        window = UsageWindow(0.5, now + 86400, 7 * 86400)
        cache.record(UsageSnapshot("a", "oauth", now + i, models={f"model-{i:03d}": window}))
    models = cache.get("a", now + 100).models
    assert len(models) == MAX_MODEL_WINDOWS
    assert "model-000" not in models and f"model-{MAX_MODEL_WINDOWS + 9:03d}" in models


def test_an_oversized_cache_is_read_as_empty_and_replaced(cache: UsageCache) -> None:
    from gptme_subscription_plugin.usage.cache import MAX_CACHE_BYTES

    now = 1_900_000_000.0
    cache.record(UsageSnapshot("a", "oauth", now, five_hour=UsageWindow(0.1, None, 18000)))
    path = cache.path("a")
    doc = json.loads(path.read_text())
    doc["padding"] = "x" * (MAX_CACHE_BYTES + 1)
    path.write_text(json.dumps(doc))
    assert cache.get("a", now) is None  # not parsed: a few KB is all a slot needs
    cache.record(UsageSnapshot("a", "oauth", now + 1, five_hour=UsageWindow(0.2, None, 18000)))
    assert path.stat().st_size < 4096


def test_a_reset_further_ahead_than_its_window_is_unknown(cache: UsageCache) -> None:
    now = 1_900_000_000.0
    years = 10 * 365 * 86400
    cache.record(
        UsageSnapshot(
            "a",
            "oauth",
            now,
            five_hour=UsageWindow(0.99, now + years, FIVE_HOUR_S),
            seven_day=UsageWindow(0.5, now + 3 * 86400, SEVEN_DAY_S),
        )
    )
    got = cache.get("a", now)
    assert got.five_hour.resets_at is None and got.five_hour.utilization == 0.99
    assert got.seven_day.resets_at == now + 3 * 86400  # a plausible one is kept
