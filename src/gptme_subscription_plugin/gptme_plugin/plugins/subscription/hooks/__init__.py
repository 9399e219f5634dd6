"""Hook modules of the folder plugin: gptme imports this package and calls `register()`."""

from .subscription import register

__all__ = ["register"]
