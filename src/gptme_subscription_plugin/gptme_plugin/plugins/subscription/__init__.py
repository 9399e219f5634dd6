"""gptme folder plugin `subscription`: the tool in `tools/`, the hooks in `hooks/`.

gptme imports this directory as the top-level package `subscription` (it puts the parent
directory on sys.path); everything here re-exports `gptme_subscription_plugin.gptme_plugin`, so
the package must be installed in gptme's Python environment.
"""
