"""`gptme-subscription simulate`: table, --json keys, errors, --plot with and without matplotlib."""

from __future__ import annotations

import builtins
import json
import sys

import pytest

from gptme_subscription_plugin.cli import main
from gptme_subscription_plugin.sim import scenarios as scenarios_mod

KEYS = {"capture", "oracle_ratio", "served", "stalls", "swaps_per_day", "violations"}


@pytest.fixture
def quick(monkeypatch):
    """Shorter runs of the same scenarios, so the CLI can be exercised in a second or two."""
    short = {name: s.scaled(days=3) for name, s in scenarios_mod.SCENARIOS.items()}
    monkeypatch.setattr(scenarios_mod, "SCENARIOS", short)
    from gptme_subscription_plugin.sim import tournament

    monkeypatch.setattr(tournament, "SCENARIOS", short)


def test_json_has_the_documented_keys_per_scenario_and_policy(quick, capsys):
    rc = main(
        ["simulate", "--scenario", "under-demand", "--seeds", "1", "--json", "--workers", "1"]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    policies = doc["scenarios"]["under-demand"]["policies"]
    assert "default" in policies and "oracle" in policies and "profile" in policies
    assert len(policies) == 12  # 7 link-mode policies, the oracle, 4 profile-mode routers
    for metrics in policies.values():
        assert set(metrics) >= KEYS
    assert policies["oracle"]["oracle_ratio"] == 1.0
    assert doc["scenarios"]["under-demand"]["bound"]["capture"] >= policies["oracle"]["capture"]


def test_table_for_chosen_policies(quick, capsys):
    args = ["simulate", "--scenario", "bursty-fleet,broken-slot", "--seeds", "1"]
    assert main([*args, "--policy", "default", "--policy", "sticky,oracle", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "bursty-fleet:" in out and "broken-slot:" in out
    rows = [line.split()[0] for line in out.splitlines() if line[:1].islower() and ":" not in line]
    assert rows == ["policy", "default", "sticky", "oracle"] * 2


def test_bad_arguments_exit_2_with_one_line(capsys):
    assert main(["simulate", "--policy", "nope"]) == 2
    assert main(["simulate", "--scenario", "nope"]) == 2
    assert main(["simulate", "--seeds", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("gptme-subscription simulate:") for line in err)


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("no matplotlib here")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "use.png"
    assert main(["simulate", "--scenario", "under-demand", "--plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'gptme-subscription-plugin[plot]'" in err and not out.exists()


def test_plot_draws_a_png(quick, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "use.png"
    args = ["simulate", "--scenario", "staggered-resets", "--seeds", "1", "--policy", "pace"]
    assert main([*args, "--plot", str(out), "--workers", "1"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "policy pace" in capsys.readouterr().err


def test_cli_module_stays_light():
    import subprocess

    code = (
        "import sys, gptme_subscription_plugin.cli as c; c.build_parser(); "
        "print(any(m.startswith('gptme_subscription_plugin.sim') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
