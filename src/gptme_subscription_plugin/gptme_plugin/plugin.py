"""The `gptme.plugins` entry point (`subscription = ...gptme_plugin.plugin:plugin`).

`[plugins] enabled = ["subscription"]` (or no allowlist at all) turns it on. The folder plugin
in `plugins/subscription/` hands gptme the same tool and the same `register()`.
"""

from __future__ import annotations

from gptme.plugins.plugin import GptmePlugin

from .hooks import register
from .settings import PLUGIN_NAME
from .tool import tool

plugin = GptmePlugin(name=PLUGIN_NAME, tools=[tool], register_hooks=register)

__all__ = ["plugin"]
