"""The one naming rule for slots and the state documents named after them.

A name becomes part of a file name (`.credentials.json.<slot>`, `usage/<slot>.json`,
`<state dir>/<name>.json`), so it is a plain identifier: 1-64 ASCII letters, digits, `-` or
`_`, not starting with `-` or `_`; never a dot, a slash or a space. This module imports nothing
but `re`, so the hook fast paths and the usage cache check names without loading the config
(pydantic) or the slot store.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RULE = "use 1-64 letters, digits, '-' or '_' (no dots, slashes or spaces)"


def is_valid_name(name: object) -> bool:
    """True for a name the rule allows (anything but a str is not a name)."""
    return isinstance(name, str) and NAME_RE.fullmatch(name) is not None


def check_name(name: str, what: str) -> str:
    """`name` itself, or ValueError: "invalid <what> '<name>': <the rule>" (shown cut short)."""
    if not is_valid_name(name):
        raise ValueError(f"invalid {what} {repr(name)[:40]}: {RULE}")
    return name


def validate_slot_name(name: str) -> str:
    """A slot name, checked: slot names become file name suffixes, never a path."""
    return check_name(name, "slot name")
