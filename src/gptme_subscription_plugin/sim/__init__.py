"""Routing simulator and policy tournament (offline, seeded, no wall clock).

    from gptme_subscription_plugin.sim import SCENARIOS, Simulator, run_seed
    inp = SCENARIOS["under-demand"].instantiate(seed=0)
    result = Simulator(inp.workload, inp.fleet, DefaultPolicy(), inp.options).run()

Modules: `model` (tiers, quota units, cache cost, window arithmetic), `workload` (sessions,
turns, requests; the seeded generator), `transcripts` (replay of Claude Code transcripts),
`fleet` (accounts per run), `accounts` (their ground truth and the usage endpoint's answers),
`engine` (the simulator and the hook pack), `profile_mode` (sessions bound to one slot each,
launch routers), `metrics` (a run's results), `rivals` (the anchors' policies), `oracle`
(hindsight oracle, flow bound), `scenarios`, `tournament`, `plot`, `cli`
(`gptme-subscription simulate`). Importing this package imports nothing heavy.
"""

from __future__ import annotations

_EXPORTS = {
    "Simulator": "engine",
    "SimOptions": "engine",
    "ProfileSimulator": "profile_mode",
    "ROUTERS": "profile_mode",
    "RunMetrics": "engine",
    "RunResult": "engine",
    "Scenario": "scenarios",
    "SCENARIOS": "scenarios",
    "SimInput": "scenarios",
    "Workload": "workload",
    "WorkloadSpec": "workload",
    "generate": "workload",
    "load_transcripts": "transcripts",
    "ClairvoyantPolicy": "oracle",
    "flow_bound": "oracle",
    "POLICIES": "tournament",
    "ALL_POLICIES": "tournament",
    "run_seed": "tournament",
    "run_tournament": "tournament",
    "summarize": "tournament",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
