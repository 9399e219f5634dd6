"""Shared fixtures: a real loopback fake Anthropic API per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gptme_subscription_plugin.fake_api import FakeAnthropicServer


@pytest.fixture
def fake_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server
