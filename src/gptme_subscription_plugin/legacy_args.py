"""0.1.0 command lines (gptme-contrib's `gptme-subscription`) turned into ours.

Cron entries, systemd units and wrapper scripts written for 0.1.0 pass flags only
(`--slots a,b --usage-script S --execute`); ours name a subcommand (`evaluate --execute`).
0.1.0 had no positional argument at all, so an argv holding a positional is ours and passes
unchanged, and so does any argv asking for help (`--help` shows our form). Everything else is
translated here, before our parser sees it: pure (argv and environment in, argv and notes
out), no file read, nothing decided about slots. `docs/migrating-from-0.1.md` lists the
mapping; a 0.1.0 command line that cannot keep its meaning (`--probe` without `--check-auth`,
a `--primary` that is not one of the slots) is a `LegacyArgsError` naming what to use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

PROG = "gptme-subscription"

# Options taking a value: 0.1.0's and our global ones (both may appear in a 0.1.0-style argv).
VALUE_OPTIONS = frozenset(
    {
        # 0.1.0
        "--slots",
        "--fallback-order",
        "--primary",
        "--creds-dir",
        "--state-dir",
        "--usage-script",
        "--lock-glob",
        "--rate-limit-file",
        "--switch",
        "--baseline-identity",
        "--reauth-instructions",
        # ours only
        "--claude-dir",
        "--api-base",
        "--poll-interval",
    }
)
FLAG_OPTIONS = frozenset(
    {
        "--status",
        "--execute",
        "--dry-run",
        "--json",
        "--check-identity",
        "--heal-drift",
        "--check-auth",
        "--probe",
    }
)
SHORT_ALIASES = {"-n": "--dry-run"}
HELP = frozenset({"-h", "--help"})
# Our global options that mean the same as in 0.1.0 (or exist only in ours): passed as they are.
PASSED_THROUGH = (
    "--state-dir",
    "--usage-script",
    "--lock-glob",
    "--rate-limit-file",
    "--api-base",
    "--poll-interval",
)
# 0.1.0's actions in the order its `main` tried them: the first one given runs.
ACTIONS = (
    "--reauth-instructions",
    "--check-auth",
    "--check-identity",
    "--baseline-identity",
    "--heal-drift",
    "--status",
    "--switch",
)


class LegacyArgsError(ValueError):
    """A 0.1.0 command line we cannot run with the same meaning; one line, exit 2."""


@dataclass(frozen=True)
class Translation:
    argv: list[str]
    notes: tuple[str, ...] = ()  # one line each, for stderr
    legacy: bool = False  # True when argv was rewritten from the 0.1.0 form


@dataclass
class _Parsed:
    values: dict[str, str] = field(default_factory=dict)  # last value wins, as in argparse
    flags: set[str] = field(default_factory=set)


def _resolve(name: str) -> str | None:
    """Exact option name, a short alias, or (as argparse allows) a unique long prefix."""
    if name in SHORT_ALIASES:
        return SHORT_ALIASES[name]
    known = VALUE_OPTIONS | FLAG_OPTIONS
    if name in known:
        return name
    if not name.startswith("--") or len(name) < 3:
        return None
    matches = [k for k in known if k.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def _scan(argv: Sequence[str]) -> _Parsed | None:
    """The options of a flags-only argv; None when argv is ours (a positional, help, unknown)."""
    parsed = _Parsed()
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in HELP or token == "--" or not token.startswith("-") or token == "-":
            return None
        raw, eq, inline = token.partition("=")
        name = _resolve(raw)
        if name is None:
            return None  # not a 0.1.0 option: our parser reports it in its own words
        if name in VALUE_OPTIONS:
            if eq:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                value = argv[i]
            else:
                raise LegacyArgsError(f"{name} expects a value")
            parsed.values[name] = value
        elif eq:
            raise LegacyArgsError(f"{name} takes no value")
        else:
            parsed.flags.add(name)
        i += 1
    return parsed


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _preference(parsed: _Parsed, env: Mapping[str, str]) -> list[str] | None:
    """0.1.0's slot preference as our `fallback_order`: its primary first, then its fallbacks.

    0.1.0 took the primary from `--primary`, else the first of its slots (`--slots`, else
    $GPTME_SUBSCRIPTION_SLOTS), and fell back in `--fallback-order`
    ($GPTME_SUBSCRIPTION_FALLBACK_ORDER), else in the order of the other slots. Ours ranks
    slots by their quota and uses `fallback_order` where readings tie.
    """
    if "--slots" in parsed.values:
        slots = _split(parsed.values["--slots"])
    else:
        slots = _split(env.get("GPTME_SUBSCRIPTION_SLOTS", ""))
    primary = parsed.values.get("--primary")
    if primary is not None:
        if slots and primary not in slots:
            raise LegacyArgsError(f"--primary {primary!r} is not one of the slots {slots}")
    elif slots:
        primary = slots[0]
    if primary is None:
        return None
    if "--fallback-order" in parsed.values:
        fallbacks = _split(parsed.values["--fallback-order"])
    elif env.get("GPTME_SUBSCRIPTION_FALLBACK_ORDER", "").strip():
        fallbacks = _split(env["GPTME_SUBSCRIPTION_FALLBACK_ORDER"])
    else:
        fallbacks = slots or []
    return [primary, *[s for s in fallbacks if s != primary]]


def _command(parsed: _Parsed, action: str | None) -> tuple[list[str], list[str]]:
    """Our subcommand and its flags for 0.1.0's action, and the notes to print."""
    values, flags = parsed.values, parsed.flags
    execute = "--execute" in flags and "--dry-run" not in flags  # 0.1.0: --dry-run wins
    as_json = ["--json"] if "--json" in flags else []
    notes: list[str] = []
    if "--probe" in flags and action != "--check-auth":
        raise LegacyArgsError(f"--probe goes with --check-auth: `{PROG} check-auth --probe`")
    if action == "--reauth-instructions":
        return ["reauth", values[action]], notes  # text only, as in 0.1.0
    if action == "--check-auth":
        return ["check-auth", *(["--probe"] if "--probe" in flags else []), *as_json], notes
    if action == "--check-identity":
        return ["identity", "check", *as_json], notes
    if action == "--baseline-identity":
        return ["identity", "baseline", values[action], *as_json], notes
    if action == "--heal-drift":
        return ["heal", *([] if execute else ["--dry-run"]), *as_json], notes
    if action == "--status":
        return ["status", *as_json], notes
    if action == "--switch":
        slot = values[action]
        if not execute:  # a preview of the operator switch `--execute` would make
            return ["switch", slot, "--force", "--dry-run", *as_json], notes
        notes.append(
            f"`--switch {slot} --execute` (0.1.0) is `{PROG} switch {slot} --force` here: "
            "an operator switch, applied now even while other sessions are mid-turn"
        )
        return ["switch", slot, "--force", *as_json], notes
    return ["evaluate", *(["--execute"] if execute else []), *as_json], notes


def translate(argv: Sequence[str], env: Mapping[str, str]) -> Translation:
    """Our argv for `argv`: unchanged when it is ours, else 0.1.0's meaning in our form."""
    argv = list(argv)
    parsed = _scan(argv)
    if parsed is None:
        return Translation(argv)
    given = [a for a in ACTIONS if a in parsed.values or a in parsed.flags]
    action = given[0] if given else None
    out: list[str] = []
    if "--creds-dir" in parsed.values:
        out += ["--claude-dir", parsed.values["--creds-dir"]]
    if "--claude-dir" in parsed.values:
        out += ["--claude-dir", parsed.values["--claude-dir"]]
    if "--slots" in parsed.values:
        out += ["--slots", parsed.values["--slots"]]
    preference = _preference(parsed, env)
    if preference is not None:
        out += ["--fallback-order", ",".join(preference)]
    elif "--fallback-order" in parsed.values:
        out += ["--fallback-order", parsed.values["--fallback-order"]]
    for option in PASSED_THROUGH:
        if option in parsed.values:
            out += [option, parsed.values[option]]
    command, notes = _command(parsed, action)
    if len(given) > 1:
        ignored = ", ".join(given[1:])
        notes.insert(0, f"{action} runs and {ignored} is ignored (as in 0.1.0: one action a call)")
    return Translation(out + command, tuple(notes), legacy=True)
