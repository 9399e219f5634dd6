"""Starting new sessions in slots' profiles: which slot, the environment, the reservation.

`gptme-subscription run` / `env` and the gptme tool's worker assignment come here. The choice is
`launch.choose_launch_slot` (pure, shared with the simulator) over the slots whose home is their
profile; this module gathers its input from the files and keeps the record that makes
concurrent launchers see each other: every launch is written to the `launches` state document
in the same locked update that chose it, so twenty launchers started in one second are twenty
updates in a row, each seeing the ones before (anti-dogpile), not twenty reads of one picture.

The document also remembers which slot each launched session ran on, so a resumed session goes
back to its slot (its prompt cache is warm there) while that slot can serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .launch import LaunchChoice, SlotLoad, choose_launch_slot
from .ranking import can_serve
from .slot_files import SlotError
from .turns import session_key

if TYPE_CHECKING:
    from .manager import SubscriptionManager

LAUNCHES_DOC = "launches"
CONFIG_DIR_ENV = "CLAUDE_CONFIG_DIR"
SESSIONS_KEPT = 500  # session -> slot memory for resumes; the oldest go first


class LaunchError(SlotError):
    """A launch refused before anything started or was recorded; one line, safe to print."""


@dataclass(frozen=True)
class Launch:
    """A new session's slot, its config dir, and why (no secrets: names and paths only)."""

    slot: str
    config_dir: Path
    reason: str
    session: str | None = None
    load: Mapping[str, int] | None = None  # by candidate slot, when routing chose

    @property
    def env(self) -> dict[str, str]:
        """What a launcher adds to Claude Code's environment."""
        return {CONFIG_DIR_ENV: str(self.config_dir)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "config_dir": str(self.config_dir),
            "reason": self.reason,
            "session": self.session,
            "env": self.env,
            "load": dict(self.load) if self.load is not None else None,
        }


class Launcher:
    """Launch planning over one manager; the clock is the manager's."""

    def __init__(self, manager: SubscriptionManager) -> None:
        self.m = manager

    def plan(
        self,
        *,
        slot: str | None = None,
        count: int = 1,
        session: str | None = None,
        resume: str | None = None,
        record: bool = True,
        refresh: bool = True,
    ) -> list[Launch]:
        """`count` launches (each sees the ones before it), recorded unless `record` is false.

        `slot` names the slot instead of routing (it must be in its profile); `resume` is the
        session being resumed, which goes back to its slot while that slot can serve;
        `session` is the new session's id, remembered for a later resume.
        """
        if count < 1:
            raise LaunchError("the number of launches must be at least 1")
        profiled = self.m.slots.profile_slots()
        if slot is not None:
            self._check_named(slot)
        elif not profiled:
            raise LaunchError(
                "no slot is in a profile; `gptme-subscription profile enable` moves every "
                "slot but the live one into its own"
            )
        usage = self.m.check_usage(refresh=refresh, names=profiled)
        view = self.m.view(usage, home="profile")
        sessions = self.m.sessions_by_slot()
        planned: list[Launch] = []

        def choose(doc: dict[str, Any]) -> dict[str, Any]:
            # the clock is read under the lock: a launch recorded while we waited for it is
            # in our past, never in our future (where the window would not count it)
            now = self.m.clock()
            planned.clear()
            launches = _recent(doc.get("launches"), now, self.m.config.launch_window)
            remembered = _remembered(doc.get("sessions"))
            sticky = remembered.get(session_key(resume)) if resume else None
            for _ in range(count):
                if slot is not None:
                    served = view.slot(slot)
                    why = f"{slot} as asked"
                    thresholds = self.m.config.thresholds
                    if served is None or not can_serve(served, thresholds, now, view.model):
                        why += " (it cannot serve now; its requests may be refused)"
                    choice = LaunchChoice(slot, why)
                else:
                    loads = {
                        name: SlotLoad(sessions.get(name, 0), [t for s, t in launches if s == name])
                        for name in profiled
                    }
                    choice = choose_launch_slot(
                        view, loads, self.m.config.thresholds, now, resume=sticky
                    )
                if choice.slot is None:
                    raise LaunchError(f"no slot can serve a new session now: {choice.reason}")
                launches.append((choice.slot, now))
                planned.append(
                    Launch(
                        choice.slot,
                        self._config_dir(choice.slot),
                        choice.reason,
                        session=resume or session,
                        load=dict(choice.load) if choice.load else None,
                    )
                )
            key = resume or session
            if key is not None and planned:
                remembered.pop(session_key(key), None)
                remembered[session_key(key)] = planned[-1].slot
            doc["launches"] = [{"slot": s, "at": t} for s, t in launches]
            doc["sessions"] = dict(list(remembered.items())[-SESSIONS_KEPT:])
            return doc

        if record:
            self.m.state.update(LAUNCHES_DOC, choose)
            for launch in planned:
                self.m.events.append(
                    "launch",
                    self.m.clock(),
                    slot=launch.slot,
                    reason=launch.reason,
                    session=launch.session,
                )
        else:
            choose(self.m.state.read(LAUNCHES_DOC))
        return planned

    def _check_named(self, slot: str) -> None:
        home = self.m.slots.home_of(slot)  # SlotError on a bad name
        if home is None:
            raise LaunchError(f"no slot named {slot}")
        if home == "link":
            raise LaunchError(
                f"slot {slot} is not in a profile (its home is the live link); "
                f"`gptme-subscription profile enable {slot}` first"
            )
        if home == "ambiguous":
            raise LaunchError(f"{self.m.slots.two_homes(slot)}; keep one first")

    def _config_dir(self, slot: str) -> Path:
        directory = self.m.slots.profile_dir(slot)
        assert directory is not None  # a profile slot has one
        return directory


def _recent(value: Any, now: float, window: float) -> list[tuple[str, float]]:
    """The launches of the last `window` seconds, from the document's list."""
    out = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        slot, at = item.get("slot"), item.get("at")
        if isinstance(slot, str) and isinstance(at, (int, float)) and now - window <= at <= now:
            out.append((slot, float(at)))
    return out


def _remembered(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
