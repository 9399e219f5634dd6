"""fallback_order decides between slots whose readings say the same thing: readings of equal
quota taken moments apart (one clock read per slot, a relative reset counted from each) must
not outrank the user's order, in any of the policy's rankings."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptme_subscription_plugin.policy import (
    DefaultPolicy,
    PolicyView,
    SlotView,
    rank_candidates,
    rank_last_resort,
    rank_untried,
)
from gptme_subscription_plugin.thresholds import Thresholds
from gptme_subscription_plugin.usage.snapshot import (
    UsageSnapshot,
)

from .support.fake_api import FakeAnthropicServer
from .support.sandbox import ScriptSandbox
from .support.sandbox import script_answer as answer
from .support.usage import DAY, NOW, H, snapshot


@pytest.fixture
def sandbox(tmp_path: Path, fake_server: FakeAnthropicServer) -> ScriptSandbox:
    return ScriptSandbox(tmp_path, fake_server, ("alice", "bob", "carol"))


@pytest.mark.parametrize("order", [["bob", "carol"], ["carol", "bob"]])
@pytest.mark.parametrize("polled", [["bob", "carol"], ["carol", "bob"]])
def test_fallback_order_decides_between_slots_whose_readings_say_the_same(
    sandbox, monkeypatch, order, polled
):
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    same = answer(0.1, 0.3, week_reset_in=2 * DAY)
    sandbox.write_answers(alice=answer(0.1, 0.99), bob=same, carol=same)
    m = sandbox.script_manager(order)
    for name in ["alice", *polled]:  # one slot at a time, each with its own clock read
        m.check_usage(names=[name])
    decision = m.evaluate(refresh=False)
    assert (decision.action, decision.target) == ("switch", order[0]), decision.reason


def view_of(names: list[str], skew: float, order: list[str], used: float) -> PolicyView:
    """Identical readings of every slot, taken `skew` seconds apart in `names` order."""

    def reading(name: str, i: int) -> UsageSnapshot:
        return snapshot(name, 0.1, used, now=NOW + i * skew, source="script", week_reset_in=2 * DAY)

    slots = [SlotView(n, usage=reading(n, i)) for i, n in enumerate(names)]
    live = SlotView("live", usage=reading("live", 0), limited_until=NOW + DAY)
    return PolicyView("live", (live, *slots), preference=tuple(order))


@pytest.mark.parametrize("skew", [1e-6, 0.05, 30.0])
@pytest.mark.parametrize("order", [["b", "c"], ["c", "b"]])
def test_every_ranking_leaves_equal_readings_to_the_preference(skew, order):
    t = Thresholds()
    now = NOW + 60
    fresh = view_of(["b", "c"], skew, order, used=0.3)
    assert [s.name for s in rank_candidates(fresh, t, now, exclude="live")] == order
    assert DefaultPolicy(t).decide(fresh, now).target == order[0]
    spent = view_of(["b", "c"], skew, order, used=0.985)  # past our threshold, under 100 %
    assert [s.name for s in rank_last_resort(spent, t, now, exclude="live")] == order
    assert [s.name for s in rank_untried(spent, t, now, exclude="live")] == order


def test_resets_far_enough_apart_still_rank_by_expiry():
    t = Thresholds()
    view = view_of(["b", "c"], 3 * H, ["c", "b"], used=0.3)
    assert [s.name for s in rank_candidates(view, t, NOW + 60, exclude="live")] == ["b", "c"]
