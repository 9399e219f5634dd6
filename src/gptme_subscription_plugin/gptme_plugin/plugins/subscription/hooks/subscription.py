"""The gptme hooks of the `subscription` plugin, for gptme's folder-plugin discovery."""

from gptme_subscription_plugin.gptme_plugin.hooks import register

__all__ = ["register"]
