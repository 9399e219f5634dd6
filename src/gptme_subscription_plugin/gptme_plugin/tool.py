"""The `subscription` ToolSpec: markdown blocks, XML tags and native tool calls alike.

The work is in `answers.py`; this file only adapts gptme's `execute(code, args, kwargs)` to it
and describes the tool to the model.
"""

from __future__ import annotations

import os
from collections.abc import Generator

from gptme.message import Message
from gptme.tools.base import Parameter, ToolSpec, ToolUse

from ..config import ConfigError
from ..fsutil import ForeignPathError
from ..manager import SubscriptionManager
from .answers import ACTIONS, CommandError, error_answer, parse_command, run
from .hooks import LIFECYCLE, load_from_gptme
from .settings import PLUGIN_NAME

INSTRUCTIONS = """\
Which Claude subscription slot (account) the Claude Code processes you start should use.
- status: each slot's 5-hour, weekly and per-model use with resets, pressure, credential health
- recommend [model=NAME] [work=SIZE]: the slot to use now and why; work = expected share of one
  5-hour window (25% or small/medium/large)
- switch SLOT: make SLOT live; while another session is mid-turn it is only recorded as pending
  and lands at the next turn boundary where everyone is idle (the answer says which)
- check: credential problems and what to do
- explain [N]: the last decisions and switches with their reasons
- assign [K]: K Claude Code workers spread over the slots' profiles, with each one's launch
  line; reserved, so other agents asking at once spread too
Answers: one plain-text summary first, then a compact JSON block.
"""

INSTRUCTIONS_TOOL = (
    "Parameters: action (required); slot for switch; model and work for recommend; count "
    "for explain and assign."
)


def examples(tool_format: str) -> str:
    def call(args: list[str], kwargs: dict[str, str]) -> str:
        if tool_format == "tool":
            return ToolUse(PLUGIN_NAME, None, None, kwargs=kwargs).to_output("tool")
        if tool_format == "xml":
            words = " ".join(args)
            return f'<tool-use>\n<{PLUGIN_NAME} args="{words}"></{PLUGIN_NAME}>\n</tool-use>'
        return f"```{PLUGIN_NAME} {' '.join(args)}\n```"

    return f"""\
> User: which account should the next Claude Code run use? it is a big refactor
> Assistant: Let me ask.
{call(["recommend", "work=large"], {"action": "recommend", "work": "large"})}
> System: subscription recommend: use bob (live: alice): alice 5-hour window at 84%; \
switching to bob
pending switch: none
to move now: switch bob
> Assistant: Switching before I start.
{call(["switch", "bob"], {"action": "switch", "slot": "bob"})}
> System: subscription switch: switched to bob (was alice); ...
"""


def execute(
    code: str | None, args: list[str] | None, kwargs: dict[str, str] | None
) -> Generator[Message, None, None]:
    yield Message("system", answer_text(code, args, kwargs))


def answer_text(code: str | None, args: list[str] | None, kwargs: dict[str, str] | None) -> str:
    """Parse, load settings, answer; every failure is an answer too (never an exception)."""
    try:
        command = parse_command(code, args, kwargs)
    except CommandError as exc:
        return error_answer(str(exc)).render()
    session = LIFECYCLE.current_session()
    workspace = session.workspace if session is not None else None
    try:
        config, _ = load_from_gptme(workspace)
        manager = SubscriptionManager(config)
    except (ConfigError, ForeignPathError) as exc:
        return error_answer(str(exc)).render()
    try:
        answer = run(
            command,
            manager,
            manager.clock(),
            os.environ,
            workspace,
            session.session_id if session is not None else None,
        )
    except Exception as exc:  # noqa: BLE001 - lock busy, disk trouble: tell the agent, go on
        lines = str(exc).strip().splitlines()
        detail = lines[0][:300] if lines else type(exc).__name__
        answer = error_answer(f"{command.action} failed: {detail}")
    return answer.render()


tool = ToolSpec(
    name=PLUGIN_NAME,
    desc="Which Claude subscription slot to use, quota pressure per slot, guarded switching",
    instructions=INSTRUCTIONS,
    instructions_format={"tool": INSTRUCTIONS_TOOL},
    examples=examples,
    execute=execute,
    block_types=[PLUGIN_NAME],
    parameters=[
        Parameter(
            name="action",
            type="string",
            description="status | recommend | switch | check | explain | assign",
            enum=list(ACTIONS),
            required=True,
        ),
        Parameter(name="slot", type="string", description="slot name, for switch"),
        Parameter(
            name="model",
            type="string",
            description="for recommend: the model the work will use (sonnet, opus)",
        ),
        Parameter(
            name="work",
            type="string",
            description="for recommend: expected share of a 5-hour window "
            "(25% or small/medium/large)",
        ),
        Parameter(
            name="count",
            type="integer",
            description="for explain: how many events; for assign: how many workers",
        ),
    ],
)

__all__ = ["answer_text", "execute", "tool"]
