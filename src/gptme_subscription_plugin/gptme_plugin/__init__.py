"""The gptme surface: the `subscription` tool, gptme turn-boundary hooks, the gptme.toml installer.

Only `tool.py`, `hooks.py` and `plugin.py` import gptme. Everything else here (`settings`,
`answers`, `lifecycle`, `installer`) is plain Python over the core, so the CLI can install the
plugin, and tests can exercise the answers, without gptme installed. Keep this `__init__`
free of imports: the CLI imports `gptme_plugin.installer`, which runs this file first.

Loading routes (both end up with the same ToolSpec object and the same hook functions):

- entry point `gptme.plugins: subscription = gptme_subscription_plugin.gptme_plugin.plugin:plugin`
- folder plugin `gptme_plugin/plugins/subscription/` (found through `[plugins] paths`)
"""
