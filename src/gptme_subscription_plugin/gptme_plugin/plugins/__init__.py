"""Folder plugins for gptme. `[plugins] paths` points at `plugins/subscription` itself.

(Not at this directory: gptme treats a search path that has an `__init__.py` as one plugin.)
"""
