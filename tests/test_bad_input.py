"""Property-based fuzzing of every input the tool reads from outside.

Hook stdin for every event, the config loader (env and config.toml), slot names. No
traceback escapes, hooks return 0, and input that is rejected changes nothing on disk.
(The credential, usage-endpoint, statusline and usage-script parsers are fuzzed next to
their unit tests.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptme_subscription_plugin.claude_code import dispatch
from gptme_subscription_plugin.config import Config, ConfigError, load_config
from gptme_subscription_plugin.manager import SubscriptionManager
from gptme_subscription_plugin.slots import SlotError

from .support.sandbox import Sandbox, tree

EVENTS = sorted(dispatch.EVENTS)
SLOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)
hook_keys = st.sampled_from(
    [
        "session_id",
        "hook_event_name",
        "cwd",
        "transcript_path",
        "tool_name",
        "tool_input",
        "error",
        "source",
        "reason",
        "prompt",
        "stop_hook_active",
        "rate_limits",
    ]
)
payloads = st.dictionaries(hook_keys, json_value | st.text(max_size=80), max_size=8)
raw_inputs = (
    st.binary(max_size=300)
    | json_value.map(json.dumps)
    | payloads.map(json.dumps)
    | st.text(max_size=200)
)


# One sandbox shared by the examples (hypothesis runs many): slots a (live) and b.
SANDBOX = Sandbox(
    Path(tempfile.mkdtemp(prefix="gsp-fuzz-")), ("a", "b"), poll_timeout="0.2", lock_wait=None
)


@contextlib.contextmanager
def sandbox_environment() -> Iterator[None]:
    """This process sees the sandbox's env for one example (the `monkeypatch` fixture would
    last the whole test, across hypothesis's examples)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in SANDBOX.env.items():
            mp.setenv(key, value)
        yield


def run_hook(event: str, raw: bytes) -> tuple[int, str, str]:
    """dispatch.main in this process, as Claude Code would call it, with `raw` on stdin."""
    stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(sys, "stdin", stdin)
        with contextlib.redirect_stderr(err):
            code = dispatch.main([event])
    return code, out.getvalue(), err.getvalue()


def is_rejected(raw: bytes) -> bool:
    """Input a hook must ignore: not a JSON object."""
    try:
        return not isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=st.sampled_from(EVENTS), raw=raw_inputs)
def test_every_hook_survives_any_stdin(event, raw):
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    original_detach = dispatch.detach

    def inline(worker: str, payload: dict) -> None:  # run the worker here, not detached
        dispatch.run(worker, payload, os.environ)

    dispatch.detach = inline  # type: ignore[assignment]
    try:
        with sandbox_environment():
            before = tree(SANDBOX.root)
            code, out, err = run_hook(event, data)
            after = tree(SANDBOX.root)
    finally:
        dispatch.detach = original_detach  # type: ignore[assignment]
    assert code == 0
    assert "Traceback" not in err and err.count("\n") <= 1
    assert out == "" or isinstance(json.loads(out), dict)
    assert "sk-ant" not in out + err
    if is_rejected(data):
        assert after == before, "rejected input changed files on disk"


config_keys = st.sampled_from(
    sorted(f.upper() for f in Config.__dataclass_fields__) + ["CREDS_DIR", "BOGUS"]
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(config_keys, st.text(max_size=40), max_size=5))
def test_config_env_fuzz_only_ever_raises_config_error(values):
    env = {"HOME": "/nonexistent-home", **{f"GPTME_SUBSCRIPTION_{k}": v for k, v in values.items()}}
    try:
        config = load_config(env=env)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert isinstance(config, Config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(max_size=200)
    | st.dictionaries(
        st.sampled_from(sorted(Config.__dataclass_fields__) + ["nope"]),
        json_leaf | st.lists(st.text(max_size=8), max_size=3),
        max_size=4,
    ).map(lambda d: "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items()))
)
def test_config_file_fuzz_only_ever_raises_config_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "gptme-subscription" / "config.toml"
        cfg.parent.mkdir()
        cfg.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(env={"HOME": tmp, "XDG_CONFIG_HOME": tmp})
        except ConfigError as exc:
            assert "\n" not in str(exc)


names = st.text(max_size=80) | st.sampled_from(
    ["..", "../x", "a/b", "a\x00b", "x" * 65, "é", "slot.1", " a", "-a", ""]
)


@settings(max_examples=200, deadline=None)
@given(names)
def test_slot_names_are_refused_unless_plain(name):
    manager = SubscriptionManager(load_config(env=SANDBOX.env))
    before = tree(SANDBOX.root)
    if SLOT_RE.fullmatch(name):
        manager.slots.slot_path(name)  # accepted: plain identifier
        return
    try:
        manager.slots.slot_path(name)
    except SlotError as exc:
        assert "invalid slot name" in str(exc)
    else:
        raise AssertionError(f"{name!r} accepted")
    outcome = manager.switch_to(name)
    assert outcome.status == "refused"
    after = tree(SANDBOX.root)
    assert {k: v for k, v in after.items() if "events" not in k} == {
        k: v for k, v in before.items() if "events" not in k
    }


def test_hook_in_process_leaves_signal_dispositions_as_it_found_them() -> None:
    """A detached hook ignores SIGTERM while it runs; the caller's handlers come back after.

    Otherwise every child the calling process forks later (a pool worker, a subprocess)
    inherits an ignored SIGTERM and cannot be terminated.
    """
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    before[signal.SIGALRM] = signal.getsignal(signal.SIGALRM)
    run_hook("stop-failure", b"{}")
    after = {sig: signal.getsignal(sig) for sig in before}
    assert after == before


def test_a_home_of_a_user_that_does_not_exist_is_a_config_error() -> None:
    """`~0` names user "0"'s home, which does not exist: one line naming the key, not a
    RuntimeError from `Path.expanduser` (found by the fuzz test above)."""
    env = {"HOME": "/nonexistent-home", "GPTME_SUBSCRIPTION_CLAUDE_DIR": "~0"}
    with pytest.raises(ConfigError, match="GPTME_SUBSCRIPTION_CLAUDE_DIR: cannot expand"):
        load_config(env=env)
