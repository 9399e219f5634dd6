"""One scripted run of turn boundaries through the file-backed hooks and through the simulator:
the same switches at the same moments, the same rotation state left behind.

The file side is the real thing: slot files, the live link, rotation.json and the turn
registry under their locks, usage polled over HTTP from a fake endpoint on loopback, each
boundary carried out by `BoundaryRunner` as the Claude Code hooks carry it out. The simulator
side is `Simulator` driven hook by hook. Before every step the fake endpoint is told to answer
what the simulator's ground truth says, so both sides read the same numbers whenever their
(shared) poll budget lets them ask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gptme_subscription_plugin.boundary_runner import BoundaryRunner
from gptme_subscription_plugin.manager import SubscriptionManager
from gptme_subscription_plugin.policy import DefaultPolicy
from gptme_subscription_plugin.rotation_state import RotationState
from gptme_subscription_plugin.sim.engine import Simulator
from gptme_subscription_plugin.sim.fleet import FleetAccount
from gptme_subscription_plugin.sim.model import DAY, T0, TIERS
from gptme_subscription_plugin.sim.workload import Request, Session, Turn, Workload
from gptme_subscription_plugin.thresholds import Thresholds

from .support.credentials import access_token, serve_profile
from .support.fake_api import FakeAnthropicServer
from .support.sandbox import Sandbox
from .support.usage import Clock

SLOTS = ("alice", "bob", "carol", "dave")
SESSIONS = ("A", "B")
WEEK_UNITS = TIERS["max20"].weekly
FIVE_UNITS = TIERS["max20"].five_hour

# (seconds after T0, what happens): a hook ("event", session[, error]) or a spend
# ("spend", slot, units) charged to an account's ground truth.
SCRIPT: tuple[tuple[float, tuple[Any, ...]], ...] = (
    (0, ("session-start", "A")),
    (5, ("prompt-submit", "A")),
    (60, ("session-start", "B")),
    (65, ("prompt-submit", "B")),
    (600, ("spend", "alice", 0.95 * WEEK_UNITS)),  # alice's week runs out mid-turn
    (1200, ("stop", "A")),  # decides to leave alice; B is mid-turn: pending
    (1300, ("prompt-submit", "A")),  # B still busy: nothing lands
    (1500, ("stop", "B")),  # A is busy again: still pending
    (1800, ("stop", "A")),  # everyone idle: the pending switch lands
    (1900, ("prompt-submit", "A")),
    (1950, ("spend", "bob", 1.2 * FIVE_UNITS)),  # bob's 5-hour window runs dry
    (2000, ("stop-failure", "A", "rate_limit")),  # marked limited, moves at once
    (2100, ("prompt-submit", "B")),
    (2400, ("stop", "B")),
    (2500, ("prompt-submit", "A")),
    (2600, ("stop-failure", "A", "authentication_failed")),  # the live credential refused
    (2700, ("prompt-submit", "B")),
    (3000, ("stop", "B")),
    (3100, ("stop-failure", "B", "overloaded")),  # says nothing of the slot
    (4000, ("prompt-submit", "A")),
    (4300, ("stop", "A")),  # answered: a refusal streak on the live slot ends
)


def fleet() -> tuple[FleetAccount, ...]:
    """Four max20 accounts (the sandbox's credential files say max20), staggered resets."""
    return tuple(
        FleetAccount(
            name,
            TIERS["max20"],
            first_reset=T0 + (2 + i) * DAY,
            initial_weekly=0.2 + 0.1 * i,
            token_expires_at=T0 + 30 * DAY,
        )
        for i, name in enumerate(SLOTS)
    )


def simulator() -> Simulator:
    idle = Request("sonnet", 1.0, 1.0, False, 1.0, 0.0, T0)  # never served: no run()
    sessions = tuple(
        Session(sid, (Turn(T0, 0.0, (idle,)),), lane=i) for i, sid in enumerate(SESSIONS)
    )
    workload = Workload(sessions, T0, T0 + 7 * DAY)
    return Simulator(workload, fleet(), DefaultPolicy(Thresholds()))


class FileSide:
    """The hooks' boundary sequence on real files, clock driven by the script."""

    def __init__(self, root: Path, server: FakeAnthropicServer) -> None:
        self.clock = Clock(T0)
        self.box = Sandbox(root, SLOTS, server=server, expires_at=T0 + 30 * DAY)
        for name in SLOTS:
            serve_profile(server, name)
        self.server = server
        self.m: SubscriptionManager = self.box.manager(
            self.clock, poll_interval=180, poll_timeout=2.0, lock_wait=2.0
        )

    def fire(self, event: str, sid: str, error: str | None = None) -> None:
        """What claude_code/hooks.py does around the runner (the registry is the hook's)."""
        m, now = self.m, self.clock()
        runner = BoundaryRunner(m)
        if event == "session-start":
            m.turns.mark_idle(sid, now)
            runner.session_start()
        elif event == "prompt-submit":
            runner.prompt_submit(sid)
            m.turns.mark_busy(sid, now)
        elif event == "stop":
            m.turns.mark_idle(sid, now)
            runner.stop(sid)
        else:
            m.turns.mark_idle(sid, now)
            runner.stop_failure(sid, error, "sonnet")

    def switches(self) -> list[tuple[float, str | None, str, str]]:
        return [
            (e["ts"], e["previous"], e["slot"], e["mode"])
            for e in self.m.events.tail(10_000)
            if e["kind"] == "switch"
        ]


def comparable(rot: RotationState) -> dict[str, Any]:
    """What both sides must agree on (credential keys differ by design: fingerprints vs names)."""
    return {
        "pending": None if rot.pending is None else (rot.pending.slot, rot.pending.mode),
        "limited": rot.limited,
        "limited_models": rot.limited_models,
        "refusing": rot.refusing,
        "rejected": sorted(rot.rejected),
        "left_exhausted": rot.left_exhausted,
        "last_switch_at": rot.last_switch_at,
    }


@pytest.mark.parametrize("script", [SCRIPT], ids=["scripted-fleet"])
def test_the_hooks_and_the_simulator_switch_alike(
    tmp_path: Path,
    fake_server: FakeAnthropicServer,
    script: tuple[tuple[float, tuple[Any, ...]], ...],
) -> None:
    sim = simulator()
    files = FileSide(tmp_path, fake_server)
    steps = []
    for offset, (what, *args) in script:
        now = T0 + offset
        files.clock.now = now
        if what == "spend":
            sim.spend(args[0], now, args[1])
            continue
        for name in SLOTS:  # the endpoint answers the ground truth of this moment
            fake_server.set_usage(access_token(name), sim.endpoint_answer(name, now))
        files.fire(what, *args)
        sim.at_boundary(what, args[0], now, *args[1:])
        live = files.box.live()
        sim_live = None if sim.live is None else sim.names[sim.live]
        steps.append((offset, what, *args, live, sim_live))
        assert live == sim_live, steps
        assert comparable(files.m.rotation()) == comparable(sim.rotation), steps

    switches = files.switches()
    assert switches == sim.result.switches
    # the script exercises every kind of move: a deferred switch landing later, a rate
    # limit, a refused credential
    modes = [mode for *_, mode in switches]
    assert len(switches) >= 3, switches
    assert switches[0][0] == T0 + 1800  # the pending switch landed when everyone was idle
    assert files.m.rotation().rejected and sim.rejected
    assert any(e["kind"] == "pending" for e in files.m.events.tail(10_000)), modes
