"""The `subscription` tool through gptme's own parsing and execution, in all three formats.

Real slot files in a temp HOME, usage from the loopback fake API, gptme 0.35.1's `ToolUse` and
`execute_msg` (markdown blocks, XML tags, native tool calls with parameters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("gptme")

from gptme.config import Config as GptmeConfig  # noqa: E402
from gptme.config import UserConfig, get_project_config, set_config  # noqa: E402
from gptme.hooks import clear_hooks  # noqa: E402
from gptme.message import Message  # noqa: E402
from gptme.tools import ToolUse, clear_tools, execute_msg, set_tool_format, set_tools  # noqa: E402

from gptme_subscription_plugin.gptme_plugin.answers import (  # noqa: E402
    CommandError,
    parse_command,
    parse_work,
)
from gptme_subscription_plugin.gptme_plugin.hooks import LIFECYCLE  # noqa: E402
from gptme_subscription_plugin.gptme_plugin.tool import tool  # noqa: E402

from .support.credentials import credential_bytes, write_slot  # noqa: E402
from .support.sandbox import GptmeSandbox  # noqa: E402

FIRST_LINE = re.compile(r"^subscription (status|recommend|switch|check|explain|assign|error): ")


@pytest.fixture
def sb(tmp_path: Path, fake_server, monkeypatch) -> Iterator[GptmeSandbox]:
    box = GptmeSandbox(tmp_path, fake_server)
    box.apply_env(monkeypatch)
    set_config(GptmeConfig(user=UserConfig(), project=None))
    clear_hooks()
    clear_tools()
    set_tools([tool])
    set_tool_format("markdown")
    yield box
    LIFECYCLE.close_all()
    clear_tools()
    clear_hooks()
    set_tool_format("markdown")


def use_workspace_config(sb: GptmeSandbox, toml: str) -> None:
    (sb.ws / "gptme.toml").write_text(toml)
    set_config(GptmeConfig(user=UserConfig(), project=get_project_config(sb.ws, quiet=True)))


def split(text: str) -> tuple[str, dict]:
    """The plain-text part and the JSON block of one answer (and the shape checks)."""
    assert FIRST_LINE.match(text), text
    assert "sk-ant" not in text
    head, _, rest = text.partition("\n\n```json\n")
    blob, _, tail = rest.partition("\n```")
    assert tail == "" and "\n" not in blob  # one compact line, and nothing after the block
    return head, json.loads(blob)


def run_md(body: str) -> tuple[str, dict]:
    """An assistant message with a markdown block, executed as the chat loop does."""
    set_tool_format("markdown")
    msgs = list(execute_msg(Message("assistant", f"Checking.\n{body}\n")))
    assert len(msgs) == 1 and msgs[0].role == "system"
    return split(msgs[0].content)


# ---------------------------------------------------------------- the three formats


def test_markdown_block_with_args(sb):
    head, data = run_md("```subscription status\n```")
    assert head.startswith("subscription status: live alice; 2 slot(s); no pending switch")
    assert "[subscription] live slot alice: 5h 10%" in head  # the shared agent summary
    assert "* alice: 5h 10%" in head and "  bob: 5h 5%" in head
    assert data["action"] == "status" and data["ok"] and data["live"] == "alice"
    alice = next(s for s in data["slots"] if s["name"] == "alice")
    assert alice["live"] and alice["health"] == "valid"
    assert alice["usage"]["five_hour"]["used"] == 0.1
    assert alice["usage"]["weekly"]["used"] == 0.3
    assert alice["usage"]["weekly"]["resets_in_s"] > 2 * 86400


def test_markdown_block_with_a_body(sb):
    head, data = run_md("```subscription\nswitch bob\n```")
    assert data["status"] == "switched" and sb.live() == "bob"
    assert head.startswith("subscription switch: switched to bob (was alice)")


def test_xml_tag_with_args_attribute(sb):
    set_tool_format("xml")
    content = (
        'Switching.\n<tool-use>\n<subscription args="switch bob"></subscription>\n</tool-use>\n'
    )
    msgs = list(execute_msg(Message("assistant", content)))
    head, data = split(msgs[0].content)
    assert data["status"] == "switched" and sb.live() == "bob"


def test_xml_tag_with_the_command_as_text(sb):
    set_tool_format("xml")
    content = "<tool-use>\n<subscription>recommend model=sonnet</subscription>\n</tool-use>"
    msgs = list(execute_msg(Message("assistant", content)))
    head, data = split(msgs[0].content)
    assert data["action"] == "recommend" and data["model"] == "sonnet"


def test_native_tool_call_with_parameters(sb):
    set_tool_format("tool")
    call = '@subscription(call_42): {"action": "switch", "slot": "bob"}'
    msgs = list(execute_msg(Message("assistant", call)))
    assert len(msgs) == 1 and msgs[0].call_id == "call_42"
    head, data = split(msgs[0].content)
    assert data["status"] == "switched" and sb.live() == "bob"


def test_native_tool_call_with_json_numbers(sb):
    set_tool_format("tool")
    call = '@subscription(call_7): {"action": "recommend", "work": 0.25, "model": "opus"}'
    msgs = list(execute_msg(Message("assistant", call)))
    head, data = split(msgs[0].content)
    assert data["work"] == 0.25 and data["model"] == "opus" and msgs[0].call_id == "call_7"


def test_direct_tooluse_in_each_format(sb):
    answers = [
        ToolUse("subscription", ["check"], "").execute(),
        ToolUse("subscription", ["check"], "", _format="xml").execute(),
        ToolUse("subscription", None, None, kwargs={"action": "check"}, call_id="c1").execute(),
    ]
    for gen in answers:
        (msg,) = list(gen)
        head, data = split(msg.content)
        assert data["action"] == "check" and data["ok"], head


def test_tool_spec_describes_itself_for_every_format(sb):
    assert tool.block_types == ["subscription"]
    assert [p.name for p in tool.parameters] == ["action", "slot", "model", "work", "count"]
    assert tool.parameters[0].required and tool.parameters[0].enum == [
        "status",
        "recommend",
        "switch",
        "check",
        "explain",
        "assign",
    ]
    assert len(tool.get_instructions("tool")) < 1024  # OpenAI's limit for the native format
    for fmt in ("markdown", "xml", "tool"):
        assert "switch" in tool.get_examples(fmt)
    assert "```subscription recommend work=large" in tool.get_examples("markdown")
    assert '<subscription args="switch bob"></subscription>' in tool.get_examples("xml")
    assert '"slot": "bob"' in tool.get_examples("tool")


# ---------------------------------------------------------------- answers


def test_recommend_stays_when_the_live_slot_has_room(sb):
    head, data = run_md("```subscription recommend\n```")
    assert head.startswith("subscription recommend: stay on alice: alice healthy")
    assert data["recommended"] == "alice" and not data["switch_needed"]
    assert data["pending"] is None and "pending switch: none" in head


def test_recommend_moves_off_a_hot_five_hour_window(sb):
    sb.set_usage("alice", five=85, week=30)
    head, data = run_md("```subscription recommend\n```")
    assert head.startswith("subscription recommend: use bob (live: alice)")
    assert "to move now: switch bob" in head
    assert data["recommended"] == "bob" and data["switch_needed"]
    assert sb.live() == "alice"  # recommend never flips


def test_recommend_for_a_large_piece_of_work(sb):
    sb.set_usage("alice", five=60, week=30)  # 30 % of the window left before the 90 % limit
    head, data = run_md("```subscription recommend work=large\n```")
    assert data["recommended"] == "bob" and data["fits_work"] is True
    assert "needs about 40%" in data["reason"] and data["five_hour_left"]["alice"] == 0.3
    small, sdata = run_md("```subscription recommend work=10%\n```")
    assert sdata["recommended"] == "alice" and sdata["work"] == 0.1


def test_recommend_for_a_model_with_a_spent_weekly_window(sb):
    sb.set_usage("alice", five=10, week=30, models={"sonnet": 97})
    head, data = run_md("```subscription recommend --model sonnet\n```")
    assert data["recommended"] == "bob" and "sonnet" in data["reason"]
    other, odata = run_md("```subscription recommend model=opus\n```")
    assert odata["recommended"] == "alice"


def test_recommend_when_nothing_can_serve(sb):
    sb.set_usage("alice", five=95, week=100)
    sb.set_usage("bob", five=95, week=100)
    head, data = run_md("```subscription recommend\n```")
    assert head.startswith("subscription recommend: no slot can serve now")
    assert data["recommended"] is None and data["ok"] is False


def test_switch_is_pending_while_another_session_is_mid_turn(sb):
    sb.registry().mark_busy("cc-other", __import__("time").time())
    head, data = run_md("```subscription switch bob\n```")
    assert head.startswith("subscription switch: NOT switched yet: switch to bob pending")
    assert "recorded as pending" in head and "next turn boundary" in head
    assert "gptme-subscription switch bob --force" in head
    assert data["status"] == "pending" and data["blockers"] == ["cc-other"]
    assert sb.live() == "alice"
    assert sb.rotation()["pending"]["slot"] == "bob"
    assert sb.rotation()["pending"]["mode"] == "manual"  # the same mode as the CLI
    status, sdata = run_md("```subscription status\n```")
    assert "pending switch to bob" in status and sdata["sessions_mid_turn"] == ["cc-other"]


def test_switch_refuses_unknown_broken_and_path_like_slots(sb):
    write_slot(sb.claude, "carol", credential_bytes("carol", refresh=False))
    for slot, why in (
        ("nobody", "no slot named nobody"),
        ("carol", "no-refresh-token"),
        ("../etc", "invalid slot name"),
    ):
        head, data = run_md(f"```subscription switch {slot}\n```")
        assert data["status"] == "refused" and not data["ok"], slot
        assert head.startswith("subscription switch: refused: ") and why in head
    assert sb.live() == "alice"


def test_switch_to_the_live_slot_is_a_no_op(sb):
    head, data = run_md("```subscription switch alice\n```")
    assert data["status"] == "unchanged" and "nothing to do" in head


def test_check_reports_what_to_do(sb, monkeypatch):
    write_slot(sb.claude, "carol", credential_bytes("carol", refresh=False))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-secret-value")
    head, data = run_md("```subscription check\n```")
    assert not data["ok"] and len(data["problems"]) == 2
    assert "carol is no-refresh-token" in head and "gptme-subscription reauth carol" in head
    assert "ANTHROPIC_API_KEY is set in this gptme process" in head
    assert "env -u ANTHROPIC_API_KEY" in head
    assert "secret-value" not in json.dumps(data)


def test_explain_lists_switches_and_their_reasons(sb):
    run_md("```subscription switch bob\n```")
    head, data = run_md("```subscription explain 5\n```")
    assert head.startswith("subscription explain: live bob; last switch")
    assert "manual hold on bob" in head
    assert "switch: alice -> bob [manual]: switched by a gptme agent" in head
    kinds = [e["kind"] for e in data["events"]]
    assert "switch" in kinds and data["now_decision"]["mode"] == "manual-hold"


def test_explain_collapses_repeated_decisions(sb):
    from gptme_subscription_plugin.config import load_config
    from gptme_subscription_plugin.manager import SubscriptionManager

    m = SubscriptionManager(load_config())
    for _ in range(4):
        m.evaluate(refresh=False)
    head, data = run_md("```subscription explain\n```")
    assert "decision (x4): stay" in head
    assert [e.get("repeat") for e in data["events"]] == [4]


def test_bad_calls_get_a_usage_answer_not_an_exception(sb):
    for body, why in (
        ("```subscription fly\n```", "unknown action 'fly'"),
        ("```subscription switch\n```", "switch needs a slot name"),
        ("```subscription recommend work=lots\n```", "work 'lots'"),
        ("```subscription\n{not json\n```", "not valid JSON"),
        ("```subscription status extra\n```", "unexpected 'extra'"),
    ):
        head, data = run_md(body)
        assert data["action"] == "error" and not data["ok"], body
        assert why in head and data["usage"].startswith("status | recommend"), body


def test_no_token_ever_reaches_the_output(sb, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-leak")
    outputs = []
    for body in ("status", "recommend", "check", "explain", "switch bob", "switch alice"):
        msgs = list(execute_msg(Message("assistant", f"x\n```subscription {body}\n```\n")))
        outputs += [m.content for m in msgs]
    assert outputs and all("sk-ant" not in text for text in outputs)


# ---------------------------------------------------------------- settings from gptme.toml


def test_plugin_settings_outrank_the_environment(sb, monkeypatch):
    monkeypatch.setenv("GPTME_SUBSCRIPTION_SLOTS", "alice,bob")
    use_workspace_config(sb, '[plugin.subscription]\nslots = ["alice"]\n')
    head, data = run_md("```subscription status\n```")
    assert [s["name"] for s in data["slots"]] == ["alice"]


def test_relative_paths_in_gptme_toml_resolve_against_the_workspace(sb):
    (sb.ws / "creds").symlink_to(sb.claude)
    use_workspace_config(sb, '[plugin.subscription]\nclaude_dir = "creds"\nslots = "bob"\n')
    head, data = run_md("```subscription check\n```")
    assert [s["name"] for s in data["slots"]] == ["bob"] and data["ok"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[plugin.subscription]\npoll_interval = "soon"\n',
            "gptme.toml [plugin.subscription] poll_interval: ",
        ),
        (
            '[plugin.subscription]\nslots = ["a/b"]\n',
            "gptme.toml [plugin.subscription] slots: invalid slot name",
        ),
        (
            '[plugin.subscription]\nturn_scope = "forever"\n',
            "gptme.toml [plugin.subscription] turn_scope: must be one of turn, tool, off",
        ),
        (
            "[plugin.subscription]\npoll_intervall = 5\n",
            "gptme.toml [plugin.subscription] poll_intervall: unknown setting",
        ),
    ],
)
def test_a_bad_setting_names_the_gptme_toml_key(sb, toml, message):
    use_workspace_config(sb, toml)
    head, data = run_md("```subscription status\n```")
    assert data["action"] == "error" and message in data["error"], data["error"]


def test_env_errors_still_name_the_env_variable(sb, monkeypatch):
    monkeypatch.setenv("GPTME_SUBSCRIPTION_POLL_INTERVAL", "-1")
    head, data = run_md("```subscription status\n```")
    assert data["error"].startswith("GPTME_SUBSCRIPTION_POLL_INTERVAL: ")


# ---------------------------------------------------------------- parsing (no gptme involved)


@pytest.mark.parametrize(
    ("code", "args", "kwargs", "expected"),
    [
        (None, None, None, ("status", None, None, None)),
        ("", ["switch", "bob"], None, ("switch", "bob", None, None)),
        ("", ["switch bob"], None, ("switch", "bob", None, None)),  # xml args attribute
        ("switch bob", [], None, ("switch", "bob", None, None)),
        ('{"action": "switch", "slot": "bob"}', [], None, ("switch", "bob", None, None)),
        (None, None, {"action": "recommend", "model": "opus"}, ("recommend", None, "opus", None)),
        ("", ["recommend", "sonnet", "25%"], None, ("recommend", None, "sonnet", 0.25)),
        ("", ["recommend", "--work", "large"], None, ("recommend", None, None, 0.4)),
        ("", ["RECOMMEND", "work=0.5"], None, ("recommend", None, None, 0.5)),
        (
            None,
            None,
            {"action": "switch", "slot": "bob", "model": None},
            ("switch", "bob", None, None),
        ),
    ],
)
def test_parse_command(code, args, kwargs, expected):
    c = parse_command(code, args, kwargs)
    assert (c.action, c.slot, c.model, c.work) == expected


def test_parse_explain_count_and_limits():
    assert parse_command(None, ["explain", "7"], None).count == 7
    assert parse_command(None, None, {"action": "explain", "count": 500}).count == 50
    with pytest.raises(CommandError):
        parse_command(None, ["explain", "many"], None)
    with pytest.raises(CommandError):
        parse_command(None, None, {"action": "status", "force": True})


@pytest.mark.parametrize(
    ("value", "share"), [("25%", 0.25), ("25", 0.25), ("0.25", 0.25), (0.4, 0.4), ("small", 0.05)]
)
def test_parse_work(value, share):
    assert parse_work(value) == pytest.approx(share)


@pytest.mark.parametrize("value", ["0", "-5%", "250%", True, "lots", None])
def test_parse_work_refuses_nonsense(value):
    with pytest.raises(CommandError):
        parse_work(value)


# ---------------------------------------------------------------- assigning workers


def test_assign_spreads_workers_over_the_profiles_and_reserves_them(sb):
    for name in ("carol", "dave"):
        write_slot(sb.claude, name, credential_bytes(name))
        sb.set_usage(name, five=5, week=20)
    sb.run("profile", "enable", code=0)  # bob, carol, dave: alice stays on the live link

    head, data = run_md("```subscription assign 4\n```")

    slots = [w["slot"] for w in data["workers"]]
    assert len(slots) == 4 and len(set(slots)) >= 2
    assert max(slots.count(s) for s in set(slots)) <= 2  # the launch rule's spread
    for worker in data["workers"]:
        line = f"gptme-subscription run --slot {worker['slot']} -- claude -p TASK"
        assert line in head
        assert worker["env"] == {
            "CLAUDE_CONFIG_DIR": str(sb.home / ".claude-profiles" / worker["slot"])
        }
    # a second agent asking at once sees the first one's four reservations: it starts on the
    # slot they left emptiest, where without them it would pick what the first one picked
    _, again = run_md("```subscription assign 1\n```")
    emptiest = min(("bob", "carol", "dave"), key=slots.count)
    assert [w["slot"] for w in again["workers"]] == [emptiest]


def test_assign_without_profiles_says_what_a_person_must_do(sb):
    head, data = run_md("```subscription assign 3\n```")
    assert not data["ok"] and "profile enable" in head
