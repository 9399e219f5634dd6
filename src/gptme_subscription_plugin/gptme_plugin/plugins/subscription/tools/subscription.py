"""The `subscription` ToolSpec, for gptme's folder-plugin discovery."""

from gptme_subscription_plugin.gptme_plugin.tool import tool

__all__ = ["tool"]
