"""Replay mode: a workload from Claude Code transcripts (`~/.claude/projects/**/*.jsonl`).

Each assistant message carries the `usage` of the API call that produced it, but Claude Code
writes one line per content block and repeats the usage on each, so messages are deduplicated
by `message.id` (the largest output count wins). A user line that is not only tool results
starts a turn. Times are kept as they were, shifted so the first request starts at the
simulation's start; token counts are priced with the same cost model as generated workloads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..accounting.transcript_lines import (
    UsageLine,
    is_prompt,
    merge,
    parse_timestamp,
    parse_usage_line,
)
from .model import COSTS, DAY, T0, CostModel, model_family
from .workload import Request, Session, Turn, Workload, assign_lanes

MIN_DAYS = 8.0  # long enough for every account's weekly window to close once


class TranscriptError(ValueError):
    """No usable usage records under the directory (one line, for the CLI)."""


@dataclass
class _Call:
    at: float
    model: str
    input: float
    cache_read: float
    cache_write: float
    output: float


def read_session(path: Path) -> tuple[str, list[float], list[_Call]]:
    """(session id, turn start times, deduplicated calls) of one transcript file."""
    calls: dict[str, UsageLine] = {}
    prompts: list[float] = []
    session = path.stem
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            if isinstance(doc.get("sessionId"), str):
                session = doc["sessionId"]
            if doc.get("type") == "user" and is_prompt(doc.get("message")):
                at = parse_timestamp(doc.get("timestamp"))
                if at is not None:
                    prompts.append(at)
                continue
            call = parse_usage_line(doc)
            if call is not None:
                old = calls.get(call.message_id)
                calls[call.message_id] = call if old is None else merge(old, call)
    found = [
        _Call(
            at=c.at,
            model=model_family(c.model if c.model != "unknown" else "sonnet"),
            input=float(c.input),
            cache_read=float(c.cache_read),
            cache_write=float(c.cache_write),
            output=float(c.output),
        )
        for c in calls.values()
    ]
    return session, sorted(prompts), sorted(found, key=lambda c: c.at)


def load_transcripts(directory: Path, costs: CostModel = COSTS) -> Workload:
    """Every `*.jsonl` under `directory` as one workload starting at the simulation start."""
    files = sorted(p for p in Path(directory).rglob("*.jsonl") if p.is_file())
    raw = [read_session(p) for p in files]
    raw = [r for r in raw if r[2]]
    if not raw:
        raise TranscriptError(f"no assistant usage records in {directory}")
    first = min(call.at - _duration(call) for _, _, calls in raw for call in calls)
    last = max(call.at for _, _, calls in raw for call in calls)
    shift = T0 - first
    sessions: list[Session] = []
    by_id: dict[str, int] = {}
    for sid, prompts, calls in raw:
        turns = _turns(prompts, calls, shift, costs)
        if sid in by_id:  # a resumed session written to a second file
            sid = f"{sid}-{by_id[sid]}"
        by_id[sid] = by_id.get(sid, 0) + 1
        sessions.append(Session(sid, tuple(turns)))
    days = max(MIN_DAYS, math.ceil((last - first) / DAY) + 1.0)
    return Workload(assign_lanes(sessions), T0, T0 + days * DAY)


def _duration(call: _Call) -> float:
    return min(300.0, 2.0 + call.output / 55.0)


def _turns(prompts: list[float], calls: list[_Call], shift: float, costs: CostModel) -> list[Turn]:
    groups: list[list[_Call]] = []
    p = 0
    for call in calls:
        starts_turn = False
        while p < len(prompts) and prompts[p] <= call.at - _duration(call) + 1e-6:
            starts_turn = True
            p += 1
        if starts_turn or not groups:
            groups.append([call])
        else:
            groups[-1].append(call)
    turns = []
    for group in groups:
        requests = []
        for i, call in enumerate(group):
            duration = _duration(call)
            start = call.at - duration
            nxt = group[i + 1] if i + 1 < len(group) else None
            tool = 0.0 if nxt is None else max(0.0, (nxt.at - _duration(nxt)) - call.at)
            warm = costs.warm(
                call.model, call.input, call.cache_read, call.cache_write, call.output
            )
            cold = costs.cold(
                call.model, call.input, call.cache_read, call.cache_write, call.output
            )
            requests.append(
                Request(
                    model=call.model,
                    warm=warm,
                    cold=cold,
                    natural_cold=call.cache_read == 0,
                    duration=duration,
                    tool_after=tool,
                    release=start + shift,
                )
            )
        turns.append(Turn(at=requests[0].release, think=0.0, requests=tuple(requests)))
    return turns
