"""The `gptme-subscription` command line for people (and scripts, with --json).

The grammar (flags, commands, exit codes) is in `cli_parser.py`; here are `main` and one
handler per command. The handlers stay together in this one module although it runs past 500
lines: each is a short adapter from parsed flags to the manager and a printout, and
`install` and `doctor` import both surfaces, which only an outer module such as this one may
(tests/test_architecture.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .cli_dashboard import cmd_dashboard
from .cli_launch import cmd_env, cmd_run
from .cli_parser import (
    EXIT_BUSY,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    build_parser,
    config_from_args,
)
from .cli_usage import cmd_usage

if TYPE_CHECKING:  # imported where used: `--help` and the hook path stay light
    from .manager import SubscriptionManager, SwitchOutcome


class InstallReport(Protocol):
    """What `report_install` prints of an install or uninstall, whichever surface it was for
    (the Claude Code settings installer or the gptme.toml one)."""

    @property
    def path(self) -> Path: ...
    @property
    def changed(self) -> bool: ...
    @property
    def backup(self) -> Path | None: ...
    @property
    def notes(self) -> list[str]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def change_lines(self) -> list[str]: ...


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hook"]:
        from .claude_code.dispatch import main as hook_main

        return hook_main(argv[1:])
    from .legacy_args import LegacyArgsError, translate

    try:  # a 0.1.0 command line (flags only) runs as its equivalent here
        legacy = translate(argv, os.environ)
    except LegacyArgsError as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for note in legacy.notes:
        print(f"gptme-subscription: {note}", file=sys.stderr)
    argv = legacy.argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "simulate":
        from .sim.cli import run_simulate

        return run_simulate(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(keep=args.keep, as_json=args.json)
    if args.command == "reauth":
        return cmd_reauth(args)
    if args.command == "statusline":
        from .claude_code.statusline import main as statusline_main

        return statusline_main(args.wrap, os.environ)
    from .config import ConfigError
    from .fsutil import ForeignPathError

    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ForeignPathError as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    from .claude_locks import ClaudeLockBusy
    from .installfiles import InstallError
    from .manager import SubscriptionManager
    from .rate_limit_file import RateLimitFileError
    from .slots import SlotError
    from .state import StateBusy

    handler: Callable[[SubscriptionManager, argparse.Namespace], int] = COMMANDS[args.command]
    try:
        return handler(SubscriptionManager(config), args)
    except ForeignPathError as exc:  # a dir or file someone else could write: nothing done
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except InstallError as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except RateLimitFileError as exc:  # read before anything is written
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ClaudeLockBusy, StateBusy) as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except SlotError as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except OSError as exc:
        print(f"gptme-subscription: {exc.strerror or exc} ({exc.filename or ''})", file=sys.stderr)
        return EXIT_PROBLEM


# ---------------------------------------------------------------- commands


def cmd_status(m: SubscriptionManager, args: argparse.Namespace) -> int:
    from .render import decision_line, status_table

    snap = m.status_snapshot(refresh=args.refresh)
    if args.json:
        _print_json(snap.to_dict())
        return EXIT_OK
    if not snap.reports:
        print(f"no slots in {snap.claude_dir}; add one with `gptme-subscription slot add NAME`")
        return EXIT_PROBLEM
    print(status_table(snap.reports, snap.now, snap.pending, snap.busy))
    if snap.drift is not None:
        print(f"drift: {snap.drift.detail} (run `gptme-subscription heal`)")
    login = snap.pending_login
    if login is not None:
        print(
            f"pending login (refresh {login.refresh_fingerprint}): a login of an account in no "
            "slot; take it with `gptme-subscription slot add NAME`"
        )
    for note in snap.notes:
        print(f"note: {note}")
    print(f"policy: {decision_line(snap.decision)}")
    return EXIT_OK


def cmd_check_auth(m: SubscriptionManager, args: argparse.Namespace) -> int:
    rows = []
    ok = True
    names = m.slot_names()
    infos = {name: m.slots.check(name) for name in names}
    probes = m.probe(names=[n for n in names if infos[n].health.usable]) if args.probe else {}
    for name in names:
        info = infos[name]
        row: dict[str, Any] = {"slot": name, **info.to_dict()}
        ok = ok and info.health.usable
        probe = probes.get(name)
        if probe is not None:
            row["probe"] = probe.to_dict()
            ok = ok and probe.ok
        rows.append(row)
    if args.json:
        _print_json({"ok": ok, "slots": rows})
    else:
        for row in rows:
            probe = row.get("probe")
            extra = f"; probe: {probe['status']} ({probe['detail']})" if probe else ""
            dead = row["needs_reauth"] or (probe is not None and probe["needs_login"])
            hint = f" -> gptme-subscription reauth {row['slot']}" if dead else ""
            print(f"{row['slot']:<12} {row['health']:<17} {row['detail']}{extra}{hint}")
        if not rows:
            print("no slots found")
    return EXIT_OK if ok and rows else EXIT_PROBLEM


def cmd_switch(m: SubscriptionManager, args: argparse.Namespace) -> int:
    if args.dry_run:
        return switch_preview(m, args)
    outcome = m.switch_to(args.slot, reason="switched by hand", mode="manual", force=args.force)
    clear_rate_limit_file(args, outcome)
    if args.json:
        _print_json(outcome.to_dict())
    else:
        print(outcome.detail)
        if outcome.heal is not None and outcome.heal.healed:
            print(f"healed first: {outcome.heal.detail}")
        if outcome.status == "pending":
            print(
                "it will be applied at the next turn boundary with every session idle "
                "(use --force to flip now)"
            )
    return EXIT_PROBLEM if outcome.status == "refused" else EXIT_OK


def switch_preview(m: SubscriptionManager, args: argparse.Namespace) -> int:
    """What `switch SLOT` would do now, from the same checks, with nothing written."""
    from .manager import standing_rejection

    slot, live = args.slot, m.get_active_subscription()
    info = m.slots.check(slot)  # a name that is not a slot name: SlotError, exit 1
    blockers = m.busy_sessions()
    drift = m.slots.detect_drift()
    rejected = standing_rejection(m.rotation(), slot, info)
    home_problem = _home_problem(m, slot)
    if slot not in m.slot_names():
        status, detail = "refused", f"no slot named {slot}"
    elif home_problem is not None:
        status, detail = "refused", home_problem
    elif not info.health.usable:
        status, detail = "refused", f"slot {slot} is {info.health.value} ({info.detail})"
    elif rejected is not None and not args.force:
        status, detail = "refused", f"Anthropic refused {slot}'s credential; add --force"
    elif live == slot and drift is None:
        status, detail = "unchanged", f"{slot} is already live"
    elif blockers and not args.force:
        status = "pending"
        detail = f"would record a switch to {slot}: {len(blockers)} other session(s) mid-turn"
    else:
        status, detail = "would-switch", f"would switch from {live or 'no slot'} to {slot}"
    if drift is not None and status != "refused":
        detail += f", healing first ({drift.detail})"
    if args.json:
        _print_json(
            {
                "status": status,
                "slot": slot,
                "previous": live,
                "detail": detail,
                "blockers": list(blockers),
                "heal": None,
                "dry_run": True,
            }
        )
    else:
        print(f"dry run: {detail}; nothing changed")
    return EXIT_PROBLEM if status == "refused" else EXIT_OK


def _home_problem(m: SubscriptionManager, slot: str) -> str | None:
    """Why the live link may not serve `slot` (it lives in its profile), or None."""
    from .slots import SlotError

    try:
        m.slots.require_link_home(slot, "linked")
    except SlotError as exc:
        return str(exc)
    return None


def rate_limit_from_file(m: SubscriptionManager, args: argparse.Namespace) -> None:
    """0.1.0's `--rate-limit-file`: while it names a future time, the live slot is limited
    until then, recorded as a hook's rate limit is. Content that is not a time is ignored with
    a note (as 0.1.0 ignored it); a path that is not a regular file is a RateLimitFileError."""
    from .rate_limit_file import NotATime, limited_until

    path = getattr(args, "rate_limit_file", None)
    if path is None:
        return
    try:
        until = limited_until(path, m.clock())
    except NotATime as exc:
        print(f"gptme-subscription: {exc}; ignored", file=sys.stderr)
        return
    live = m.get_active_subscription()
    if until is not None and live is not None:
        m.record_rate_limit(live, until)


def clear_rate_limit_file(args: argparse.Namespace, outcome: SwitchOutcome | None) -> None:
    """After a switch away from the slot it was about, the rate-limit file goes (0.1.0 did)."""
    from .rate_limit_file import clear

    path = getattr(args, "rate_limit_file", None)
    if path is not None and outcome is not None and outcome.status == "switched":
        clear(path)


def cmd_evaluate(m: SubscriptionManager, args: argparse.Namespace) -> int:
    from .render import decision_line

    rate_limit_from_file(m, args)
    decision = m.evaluate(refresh=not args.no_refresh, model=args.model)
    outcome = m.apply(decision) if args.execute else None
    clear_rate_limit_file(args, outcome)
    if args.json:
        _print_json(
            {
                "decision": decision.to_dict(),
                "outcome": outcome.to_dict() if outcome is not None else None,
            }
        )
    else:
        print(decision_line(decision))
        if outcome is not None:
            print(outcome.detail)
        elif decision.wants_switch and not args.execute:
            print("(dry run: add --execute to apply)")
    return EXIT_PROBLEM if outcome is not None and outcome.status == "refused" else EXIT_OK


def cmd_heal(m: SubscriptionManager, args: argparse.Namespace) -> int:
    if args.dry_run:  # detection only: it reads the live path and recorded identities
        drift = m.slots.detect_drift()
        detail = "no drift" if drift is None else f"{drift.detail}; `heal` would repair it"
        if args.json:
            _print_json(
                {
                    "healed": False,
                    "detail": detail,
                    "owner": None,
                    "method": None,
                    "remaining_drift": drift.kind if drift else None,
                    "dry_run": True,
                }
            )
        else:
            print(f"dry run: {detail}; nothing changed")
        return EXIT_OK
    result = m.heal()
    drift = m.slots.detect_drift()
    if args.json:
        _print_json(
            {
                "healed": result.healed,
                "detail": result.detail,
                "owner": result.owner,
                "method": result.method,
                "remaining_drift": drift.kind if drift else None,
            }
        )
    else:
        print(result.detail)
    return EXIT_OK if drift is None else EXIT_PROBLEM


def cmd_reauth(args: argparse.Namespace) -> int:
    import tempfile

    from .names import validate_slot_name

    try:
        name = validate_slot_name(args.slot)
    except ValueError as exc:
        print(f"gptme-subscription: {exc}", file=sys.stderr)
        return EXIT_USAGE
    profile = _profile_home(args, name)
    if profile is not None:
        print(profile_reauth_instructions(name, profile))
        return EXIT_OK
    try:  # fresh and 0700: a fixed /tmp name could be pre-planted by anyone on the machine
        login_dir = Path(tempfile.mkdtemp(prefix=f"gptme-subscription-reauth-{name}-"))
    except OSError as exc:
        print(f"gptme-subscription: cannot create a private temp dir ({exc})", file=sys.stderr)
        return EXIT_PROBLEM
    print(reauth_instructions(name, login_dir))
    return EXIT_OK


def reauth_instructions(name: str, login_dir: Path) -> str:
    """Log in in an isolated config dir, then import: the live link and other slots stay put.

    `login_dir` is a fresh private dir (mkdtemp) made for this one login.
    """
    return "\n".join(
        [
            f"Re-login for slot {name} (nothing else is touched until step 2):",
            f"  1. CLAUDE_CONFIG_DIR={login_dir} claude auth login",
            f"     sign in as the account that belongs to {name}.",
            "     Do not run /logout in any other session: it can revoke that account's token.",
            f"  2. gptme-subscription slot add {name} --from {login_dir}/.credentials.json --force",
            "     (the old slot content is kept in the backup ring)",
            f"  3. rm -rf {login_dir}",
            f"  4. gptme-subscription identity baseline {name}",
        ]
    )


def _profile_home(args: argparse.Namespace, name: str) -> Path | None:
    """Slot `name`'s profile dir when its credential lives there (no manager: reauth must
    work when nothing else does)."""
    from .config import ConfigError
    from .slot_files import LIVE_NAME, trusted_profile_file

    try:
        profile = config_from_args(args).profiles_path / name
    except ConfigError:
        return None
    return profile if trusted_profile_file(profile / LIVE_NAME) else None


def profile_reauth_instructions(name: str, profile: Path) -> str:
    """A slot in its profile logs in there: Claude Code writes the new login into the slot's
    one home under that dir's own lock, and nothing else is touched."""
    return "\n".join(
        [
            f"Re-login for slot {name}, which lives in its profile {profile}:",
            f"  1. CLAUDE_CONFIG_DIR={profile} claude auth login",
            f"     sign in as the account that belongs to {name}.",
            "     Do not run /logout in any other session: it can revoke that account's token.",
            f"  2. gptme-subscription identity baseline {name}",
        ]
    )


def cmd_identity(m: SubscriptionManager, args: argparse.Namespace) -> int:
    from . import accounts

    names = [args.slot] if args.slot else m.slot_names()
    if args.action == "baseline":
        rows = accounts.baseline(m.slots, names)
        m.events.append("identity-baseline", m.clock(), slots=[r.slot for r in rows])
    else:
        rows = accounts.check(m.slots, names)
    code = accounts.exit_code(rows)
    if args.json:
        _print_json({"slots": [r.to_dict() for r in rows], "exit_code": code})
    else:
        for r in rows:
            print(f"{r.slot:<12} {r.status:<12} {r.account or '-':<28} {r.detail}")
    return code


def cmd_capacity(m: SubscriptionManager, args: argparse.Namespace) -> int:
    from .policy import format_duration
    from .render import capacity

    now = m.clock()
    verdict = capacity(
        m.view(m.check_usage(refresh=True), model=args.model), m.config.thresholds, now
    )
    if args.json:
        _print_json(verdict.to_dict(now))
    else:
        reset = (
            ""
            if verdict.soonest_reset is None
            else f"; soonest reset in {format_duration(verdict.soonest_reset - now)}"
        )
        print(
            f"{verdict.verdict}: {verdict.reason}; weekly quota left: "
            f"{verdict.headroom:.1f} slot-weeks{reset}"
        )
    return verdict.exit_code


def cmd_slot(m: SubscriptionManager, args: argparse.Namespace) -> int:
    if args.slot_command == "add":
        had_pending = m.slots.pending_login() is not None
        info = m.slots.add(args.name, source=args.source, force=args.force)
        m.events.append(
            "slot-add", m.clock(), slot=args.name, refresh_fingerprint=info.refresh_fingerprint
        )
        identity = m.slots.identity_of(args.name)
        taken = had_pending and m.slots.pending_login() is None
        source = str(args.source) if args.source else ("pending login" if taken else "live")
        account = identity.email or identity.account_uuid if identity else None
        out = {
            "slot": args.name,
            **info.to_dict(),
            "live": m.get_active_subscription(),
            "source": source,
            "account": account,
        }
        if args.json:
            _print_json(out)
        else:
            print(
                f"added slot {args.name} from {source} ({info.health.value}, "
                f"refresh {info.refresh_fingerprint}, account {account or 'unconfirmed'})"
            )
        return EXIT_OK
    if args.slot_command == "remove":
        backup = m.slots.remove(args.name)
        m.events.append("slot-remove", m.clock(), slot=args.name)
        if args.json:
            _print_json({"removed": args.name, "backup": str(backup) if backup else None})
        else:
            print(
                f"removed slot {args.name}"
                + (f" (last content kept in {backup})" if backup else "")
            )
        return EXIT_OK
    live = m.get_active_subscription()
    rows = [{"slot": n, "live": n == live, **m.slots.check(n).to_dict()} for n in m.slot_names()]
    if args.json:
        _print_json({"slots": rows})
    else:
        for r in rows:
            print(
                f"{'*' if r['live'] else ' '} {r['slot']:<12} {r['health']:<17} "
                f"refresh {r['refresh_fingerprint'] or '-'}"
            )
        if not rows:
            print(f"no slots in {m.config.claude_dir}")
    return EXIT_OK


def cmd_profile(m: SubscriptionManager, args: argparse.Namespace) -> int:
    """`profile enable|disable [SLOT...]`: a refusal is a ProfileError (one line, exit 1)."""
    from .profiles import Profiles

    # a slot changes home only while no session anywhere (link or profile) is mid-turn
    profiles = Profiles(m.slots, lambda: m.busy_sessions(everywhere=True))
    act = profiles.enable if args.profile_command == "enable" else profiles.disable
    changes = act(args.names, dry_run=args.dry_run)
    if not args.dry_run:
        for c in changes:
            m.events.append(
                f"profile-{args.profile_command}",
                m.clock(),
                slot=c.slot,
                refresh_fingerprint=c.refresh_fingerprint,
            )
    if args.json:
        _print_json(
            {
                "action": args.profile_command,
                "dry_run": args.dry_run,
                "profiles_dir": str(m.config.profiles_path),
                "slots": [c.to_dict() for c in changes],
            }
        )
        return EXIT_OK
    if not changes:
        print(f"nothing to {args.profile_command}")
    for c in changes:
        verb = c.action.replace("would-", "would ")
        shared = f"; shared: {', '.join(c.linked)}" if c.linked else ""
        print(f"{verb} {c.slot}: {c.profile} (refresh {c.refresh_fingerprint or '-'}){shared}")
        for note in c.notes:
            print(f"note: {note}")
    if args.dry_run:
        print("dry run: nothing changed")
    return EXIT_OK


def cmd_install(m: SubscriptionManager, args: argparse.Namespace) -> int:
    if args.target == "gptme":
        return cmd_install_gptme(m, args)
    from .claude_code import installer

    project = (args.project_dir or Path.cwd()).resolve()
    path = installer.settings_path(args.scope, m.config.claude_dir, project)
    if args.command == "install":
        result = installer.install(path, dry_run=args.dry_run)
        m.slots.observe()  # remember the live slot now, so a later refresh can be attributed
    else:
        result = installer.uninstall(path, dry_run=args.dry_run)
    return report_install(m, args, result)


def cmd_install_gptme(m: SubscriptionManager, args: argparse.Namespace) -> int:
    """The gptme plugin into (or out of) a workspace's gptme.toml; never imports gptme."""
    from .gptme_plugin import installer

    workspace = (args.workspace or Path.cwd()).resolve()
    if not workspace.is_dir():
        print(f"gptme-subscription: workspace {workspace} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "install":
        result = installer.install(workspace, dry_run=args.dry_run)
        m.slots.observe()  # remember the live slot now, so a later refresh can be attributed
    else:
        result = installer.uninstall(workspace, dry_run=args.dry_run)
    return report_install(m, args, result)


def report_install(m: SubscriptionManager, args: argparse.Namespace, result: InstallReport) -> int:
    """Log and print an install or uninstall, whatever it edited: the path and our entries
    added or removed, never the file's content (settings may hold secrets in `env`)."""
    m.events.append(
        args.command,
        m.clock(),
        target=args.target,
        path=str(result.path),
        changed=result.changed,
        dry_run=args.dry_run,
    )
    if args.json:
        _print_json({**result.to_dict(), "dry_run": args.dry_run})
        return EXIT_OK
    verb = "installed into" if args.command == "install" else "removed from"
    if not result.changed:
        print(f"nothing to do: {result.path} is already up to date")
    elif args.dry_run:
        print(f"dry run: would write {result.path}:")
    else:
        print(f"{verb} {result.path}" + (f" (backup: {result.backup})" if result.backup else ""))
    if result.changed:
        for line in result.change_lines():
            print(f"  {line}")
    for note in result.notes:
        print(f"note: {note}")
    return EXIT_OK


def cmd_doctor(m: SubscriptionManager, args: argparse.Namespace) -> int:
    from .claude_code.doctor import run_checks

    checks = run_checks(m, os.environ, (args.project_dir or Path.cwd()).resolve())
    failed = any(c.status == "FAIL" for c in checks)
    if args.json:
        _print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            fix = f"  -> {c.fix}" if c.fix and c.status != "OK" else ""
            print(f"{c.status:<4} {c.name:<22} {c.detail}{fix}")
    return EXIT_PROBLEM if failed else EXIT_OK


COMMANDS: dict[str, Callable[[SubscriptionManager, argparse.Namespace], int]] = {
    "install": cmd_install,
    "uninstall": cmd_install,
    "doctor": cmd_doctor,
    "status": cmd_status,
    "check-auth": cmd_check_auth,
    "switch": cmd_switch,
    "evaluate": cmd_evaluate,
    "heal": cmd_heal,
    "identity": cmd_identity,
    "capacity": cmd_capacity,
    "slot": cmd_slot,
    "profile": cmd_profile,
    "run": cmd_run,
    "env": cmd_env,
    "dashboard": cmd_dashboard,
    "usage": cmd_usage,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
