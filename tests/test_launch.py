"""Where a new session starts (launch.py): pure, on views built in memory."""

from __future__ import annotations

from collections import Counter

from gptme_subscription_plugin.launch import SlotLoad, choose_launch_slot, session_cap
from gptme_subscription_plugin.policy import PolicyView
from gptme_subscription_plugin.thresholds import Thresholds

from .support.usage import DAY, NOW, slot_view

T = Thresholds()


def view(**slots: dict) -> PolicyView:
    """One slot per keyword, its reading as `slot_view` takes it (fractions)."""
    return PolicyView(None, tuple(slot_view(name, now=NOW, **r) for name, r in slots.items()))


# alice's week resets first (perishable); bob and carol later, with room
FLEET = view(
    alice={"five": 0.0, "week": 0.4, "week_reset_in": 1 * DAY},
    bob={"five": 0.0, "week": 0.3, "week_reset_in": 3 * DAY},
    carol={"five": 0.0, "week": 0.2, "week_reset_in": 5 * DAY},
)


def launch_many(v: PolicyView, n: int, at: float = NOW) -> Counter[str]:
    """n launches in the same second, each seeing the ones before it as launches."""
    launches: dict[str, list[float]] = {}
    for _ in range(n):
        loads = {name: SlotLoad(launches=tuple(ts)) for name, ts in launches.items()}
        choice = choose_launch_slot(v, loads, T, at)
        assert choice.slot is not None
        launches.setdefault(choice.slot, []).append(at)
    return Counter({name: len(ts) for name, ts in launches.items()})


def test_the_first_launch_goes_to_the_perishable_quota() -> None:
    choice = choose_launch_slot(FLEET, {}, T, NOW)
    assert choice.slot == "alice" and "ranks first" in choice.reason


def test_twenty_launches_in_one_second_spread_over_every_slot_tilted_to_the_best() -> None:
    spread = launch_many(FLEET, 20)
    assert set(spread) == {"alice", "bob", "carol"}
    assert spread["alice"] >= spread["bob"] >= spread["carol"] >= 5, spread
    assert max(spread.values()) - min(spread.values()) <= 2, spread


def test_launches_older_than_the_window_no_longer_count_but_sessions_do() -> None:
    old = {"alice": SlotLoad(launches=(NOW - T.launch_window - 1,) * 5)}
    assert choose_launch_slot(FLEET, old, T, NOW).slot == "alice"
    busy = {"alice": SlotLoad(sessions=5)}
    assert choose_launch_slot(FLEET, busy, T, NOW).slot == "bob"


def test_the_cap_tightens_as_the_five_hour_window_fills() -> None:
    empty, half, full = (slot_view("s", now=NOW, five=u, week=0.2) for u in (0.0, 0.4, 0.85))
    assert [session_cap(s, T, NOW) for s in (empty, half, full)] == [8, 4, 1]
    v = view(
        alice={"five": 0.6, "week": 0.4, "week_reset_in": 1 * DAY},  # cap 2
        bob={"five": 0.0, "week": 0.3, "week_reset_in": 3 * DAY},
    )
    loads = {"alice": SlotLoad(sessions=2), "bob": SlotLoad(sessions=3)}
    choice = choose_launch_slot(v, loads, T, NOW)
    assert choice.slot == "bob" and choice.cap["alice"] == 2


def test_never_onto_a_spent_limited_or_rejected_slot() -> None:
    v = PolicyView(
        None,
        (
            slot_view("spent", now=NOW, five=0.1, week=0.99, week_reset_in=DAY),
            slot_view("limited", now=NOW, five=0.1, week=0.2, limited_until=NOW + 600),
            slot_view("rejected", now=NOW, usable=False, health="rejected", five=0.0, week=0.1),
            slot_view("ok", now=NOW, five=0.5, week=0.6, week_reset_in=6 * DAY),
        ),
    )
    assert {choose_launch_slot(v, {}, T, NOW).slot for _ in range(3)} == {"ok"}
    assert set(launch_many(v, 10)) == {"ok"}  # past its cap too: nothing else can serve
    nothing = PolicyView(None, v.slots[:3])
    assert choose_launch_slot(nothing, {}, T, NOW).slot is None


def test_a_resumed_session_stays_on_its_slot_while_it_serves() -> None:
    loads = {"carol": SlotLoad(sessions=7)}
    kept = choose_launch_slot(FLEET, loads, T, NOW, resume="carol")
    assert kept.slot == "carol" and "resumed" in kept.reason
    spent = view(
        alice={"five": 0.0, "week": 0.4, "week_reset_in": DAY},
        carol={"five": 0.95, "week": 0.2, "week_reset_in": 5 * DAY},
    )
    assert choose_launch_slot(spent, {}, T, NOW, resume="carol").slot == "alice"


def test_a_bigger_plan_carries_more_sessions_in_proportion_to_its_size() -> None:
    """Twenty launches onto Max 20x + Max 5x + Pro, all fresh: load per plan size, so the
    Max 20x takes most of them and the Pro few."""
    v = PolicyView(
        None,
        (
            slot_view("big", now=NOW, five=0.0, week=0.3, week_reset_in=3 * DAY, capacity=20.0),
            slot_view("mid", now=NOW, five=0.0, week=0.3, week_reset_in=3 * DAY, capacity=5.0),
            slot_view("pro", now=NOW, five=0.0, week=0.3, week_reset_in=3 * DAY, capacity=1.0),
        ),
    )
    spread = launch_many(v, 20)
    assert spread["big"] >= 3 * spread["mid"] >= 3 and spread["pro"] <= 1, spread
    assert session_cap(v.slots[0], T, NOW) == 32 and session_cap(v.slots[2], T, NOW) == 1
