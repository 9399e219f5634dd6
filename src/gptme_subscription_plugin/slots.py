"""The slot store: one credential file per account, a relative symlink to the live one.

Mechanisms only; the manager decides *when* to flip. Every change to the live path or a slot
happens under Claude Code's own credential locks, every slot write keeps the previous content
in a backup ring, and drift (Claude Code replacing the link with a regular file after a token
refresh or /login) is healed into the slot that owns the credential, never blindly into
"the current slot".
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsutil
from .claude_locks import claude_credential_lock, reclaim_dead_locks
from .config import validate_slot_name
from .crashpoints import crash_point
from .credentials import (
    AccountIdentity,
    Credential,
    CredentialError,
    CredentialInfo,
    Health,
    check_credential_file,
    content_fingerprint,
    load_credential,
    parse_credential,
    read_credential_bytes,
)
from .state import StateStore

LIVE_NAME = ".credentials.json"
SLOT_PREFIX = LIVE_NAME + "."
BACKUP_DIR_NAME = ".gptme-subscription-backups"
META_DOC = "slots"
LINEAGE_KEEP = 50
ORPHAN_PREFIX = "_orphan"  # not a valid slot name, so never pruned as a slot's backup


class SlotError(Exception):
    """A slot operation that was refused; the message is one line, safe to print."""


class LiveKind(str, enum.Enum):
    LINK = "link"  # symlink to an existing slot: healthy
    REGULAR_FILE = "regular-file"  # Claude Code replaced the link (refresh or /login)
    BROKEN_LINK = "broken-link"  # points at a slot that no longer exists
    FOREIGN_LINK = "foreign-link"  # points somewhere that is not one of our slots
    MISSING = "missing"
    OTHER = "other"  # a directory, a fifo...: refuse to touch


@dataclass(frozen=True)
class LiveState:
    kind: LiveKind
    slot: str | None = None  # the slot the link names, when it names one
    link_target: str | None = None


@dataclass(frozen=True)
class Drift:
    """Why the live path is not a healthy link to the slot that owns its credential."""

    kind: str  # regular-file | broken-link | foreign-link | identity-changed | other
    detail: str
    slot: str | None = None


@dataclass
class HealResult:
    healed: bool
    detail: str
    owner: str | None = None
    method: str | None = None  # lineage | identity | last-live
    actions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlipResult:
    slot: str
    previous: str | None
    heal: HealResult | None


class SlotStore:
    """Slot files, the live link, backups and slot metadata (identity, refresh lineage)."""

    def __init__(
        self,
        claude_dir: Path,
        state: StateStore,
        global_config: Path,
        backup_keep: int = 5,
        lock_wait: float = 9.0,
        clock: Callable[[], float] | None = None,
    ):
        import time

        self.claude_dir = claude_dir
        self.state = state
        self.global_config = global_config
        self.backup_keep = backup_keep
        self.lock_wait = lock_wait
        self.clock = clock or time.time

    # ------------------------------------------------------------ paths and listing

    @property
    def live_path(self) -> Path:
        return self.claude_dir / LIVE_NAME

    @property
    def backup_dir(self) -> Path:
        """The backup ring's dir; ForeignPathError if it is a planted link or not ours."""
        path = self.claude_dir / BACKUP_DIR_NAME
        fsutil.check_private(path, "backup dir", follow=False)
        return path

    def slot_path(self, name: str) -> Path:
        try:
            validate_slot_name(name)
        except ValueError as exc:
            raise SlotError(str(exc)) from None
        return self.claude_dir / f"{SLOT_PREFIX}{name}"

    def list_slots(self) -> list[str]:
        """Names of slot files present (anything not a valid slot name is ignored)."""
        names = []
        try:
            entries = list(self.claude_dir.iterdir())
        except OSError:
            return []
        for entry in entries:
            if not entry.name.startswith(SLOT_PREFIX):
                continue
            name = entry.name[len(SLOT_PREFIX) :]
            with contextlib.suppress(ValueError):
                names.append(validate_slot_name(name))
        return sorted(names)

    def check(self, name: str) -> CredentialInfo:
        return check_credential_file(self.slot_path(name), self.clock())

    # ------------------------------------------------------------ live path

    def live_state(self) -> LiveState:
        path = self.live_path
        try:
            st = path.lstat()
        except FileNotFoundError:
            return LiveState(LiveKind.MISSING)
        except OSError:
            return LiveState(LiveKind.OTHER)
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            name = target[len(SLOT_PREFIX) :] if target.startswith(SLOT_PREFIX) else None
            if name is None or "/" in target:
                # an absolute link to our own slot file still counts as ours
                resolved = Path(os.path.normpath(self.claude_dir / target))
                if resolved.parent == self.claude_dir and resolved.name.startswith(SLOT_PREFIX):
                    name = resolved.name[len(SLOT_PREFIX) :]
                else:
                    return LiveState(LiveKind.FOREIGN_LINK, link_target=target)
            try:
                validate_slot_name(name)
            except ValueError:
                return LiveState(LiveKind.FOREIGN_LINK, link_target=target)
            if not self.slot_path(name).exists():
                return LiveState(LiveKind.BROKEN_LINK, slot=name, link_target=target)
            return LiveState(LiveKind.LINK, slot=name, link_target=target)
        if stat.S_ISREG(st.st_mode):
            return LiveState(LiveKind.REGULAR_FILE)
        return LiveState(LiveKind.OTHER)

    def active_slot(self) -> str | None:
        """The slot the live link points at, or None when the link is not healthy."""
        live = self.live_state()
        return live.slot if live.kind is LiveKind.LINK else None

    # ------------------------------------------------------------ metadata

    def metadata(self) -> dict[str, Any]:
        return self.state.read(META_DOC)

    def identity_of(self, name: str) -> AccountIdentity | None:
        entry = self.metadata().get("slots", {}).get(name, {})
        return AccountIdentity.from_dict(entry.get("identity"))

    def last_live(self) -> str | None:
        value = self.metadata().get("last_live")
        return value if isinstance(value, str) else None

    def _remember(
        self,
        name: str,
        cred: Credential | None,
        identity: AccountIdentity | None = None,
        live: bool = False,
    ) -> None:
        """Record a slot's refresh-token lineage and identity (fingerprints only)."""

        def update(doc: dict[str, Any]) -> None:
            slots = doc.setdefault("slots", {})
            entry = slots.setdefault(name, {})
            if cred is not None and cred.refresh_fingerprint:
                lineage = [fp for fp in entry.get("lineage", []) if fp != cred.refresh_fingerprint]
                lineage.append(cred.refresh_fingerprint)
                entry["lineage"] = lineage[-LINEAGE_KEEP:]
            if identity is not None and identity.known:
                entry["identity"] = identity.to_dict()
            entry["updated_at"] = self.clock()
            if live:
                doc["last_live"] = name

        self.state.update(META_DOC, update)

    def _forget(self, name: str) -> None:
        def update(doc: dict[str, Any]) -> None:
            doc.get("slots", {}).pop(name, None)
            if doc.get("last_live") == name:
                doc.pop("last_live", None)

        self.state.update(META_DOC, update)

    def owner_by_lineage(self, refresh_fp: str | None, exclude: str | None = None) -> str | None:
        if not refresh_fp:
            return None
        for name, entry in self.metadata().get("slots", {}).items():
            if (
                name != exclude
                and refresh_fp in entry.get("lineage", [])
                and name in self.list_slots()
            ):
                return name
        return None

    def owner_by_identity(self, identity: AccountIdentity | None) -> str | None:
        """The one slot whose recorded identity matches; None when none or ambiguous."""
        if identity is None or not identity.known:
            return None
        present = set(self.list_slots())
        matches = [
            name
            for name, entry in self.metadata().get("slots", {}).items()
            if name in present
            and (ident := AccountIdentity.from_dict(entry.get("identity"))) is not None
            and ident.matches(identity)
        ]
        return matches[0] if len(matches) == 1 else None

    def live_identity(self) -> AccountIdentity | None:
        from .credentials import read_account_identity

        return read_account_identity(self.global_config)

    # ------------------------------------------------------------ writes

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Claude Code's credential locks: no refresh interleaves with our change."""
        fsutil.ensure_private_dir(self.claude_dir)
        with claude_credential_lock(self.claude_dir, wait_s=self.lock_wait):
            self.repair()
            yield

    def repair(self) -> list[Path]:
        """Clean up after a crashed run of ours: temp files whose writer died, dead locks."""
        removed = reclaim_dead_locks(self.claude_dir)
        for directory in (self.claude_dir, self.backup_dir):
            removed += fsutil.sweep_dead_temp_files(directory)
        return removed

    def _backup(self, name: str) -> Path | None:
        """Copy the slot's current bytes into its backup ring before it is overwritten."""
        path = self.slot_path(name)
        try:
            data = read_credential_bytes(path)
        except CredentialError:
            return None
        fsutil.private_subdir(self.claude_dir, BACKUP_DIR_NAME)
        ms = int(self.clock() * 1000)
        target = self.backup_dir / f"{name}.{ms}.{content_fingerprint(data)}"
        fsutil.atomic_write_bytes(target, data)
        self._prune_backups(name)
        return target

    def backups(self, name: str) -> list[Path]:
        """Backups of one slot, oldest first."""
        try:
            entries = list(self.backup_dir.iterdir())
        except OSError:
            return []
        mine = []
        for entry in entries:
            parts = entry.name.split(".")
            if len(parts) == 3 and parts[0] == name and parts[1].isdigit():
                mine.append((int(parts[1]), entry))
        return [p for _, p in sorted(mine)]

    def _prune_backups(self, name: str) -> None:
        for old in self.backups(name)[: -self.backup_keep]:
            with contextlib.suppress(OSError):
                old.unlink()

    def write_slot(self, name: str, data: bytes) -> bool:
        """Atomically store `data` as slot `name` (backing up what was there); False if same."""
        path = self.slot_path(name)
        try:
            if read_credential_bytes(path) == data:
                return False
        except CredentialError:
            pass
        self._backup(name)
        crash_point("slot:backed-up")
        fsutil.ensure_private_dir(self.claude_dir)
        fsutil.atomic_write_bytes(path, data)
        return True

    def _link(self, name: str) -> None:
        fsutil.atomic_symlink(f"{SLOT_PREFIX}{name}", self.live_path)
        crash_point("link:before-touch")
        # Claude Code re-reads the credential when the mtime it last saw changes
        os.utime(self.slot_path(name))

    def observe(self) -> None:
        """Note which slot is live and its refresh token, so a later heal knows the owner.

        Slots linked by hand (or before this tool ran) have no metadata; recording the healthy
        link at every boundary means that when Claude Code later replaces it with a regular
        file, the lineage or "the slot that was live" still identifies the owner.
        """
        name = self.active_slot()
        if name is None:
            return
        try:
            cred = load_credential(self.slot_path(name))
        except CredentialError:
            return
        meta = self.metadata()
        lineage = meta.get("slots", {}).get(name, {}).get("lineage", [])
        if meta.get("last_live") != name or (
            cred.refresh_fingerprint and cred.refresh_fingerprint not in lineage
        ):
            self._remember(name, cred, live=True)

    # ------------------------------------------------------------ drift and heal

    def detect_drift(self) -> Drift | None:
        """Is the live path anything but a healthy link to the slot owning its credential?"""
        live = self.live_state()
        if live.kind is LiveKind.MISSING:
            return None
        if live.kind is LiveKind.REGULAR_FILE:
            return Drift("regular-file", "the live credential is a regular file, not a link")
        if live.kind is LiveKind.BROKEN_LINK:
            return Drift(
                "broken-link", f"the live link points at missing slot {live.slot}", slot=live.slot
            )
        if live.kind is LiveKind.FOREIGN_LINK:
            return Drift("foreign-link", "the live link points outside the slot files")
        if live.kind is LiveKind.OTHER:
            return Drift("other", "the live path is neither a file nor a link")
        assert live.slot is not None
        return self._identity_drift(live.slot)

    def _identity_drift(self, name: str) -> Drift | None:
        """A login written through the link: the slot now holds another account's credential."""
        recorded = self.identity_of(name)
        current = self.live_identity()
        if recorded is None or current is None or recorded.matches(current):
            return None
        try:
            cred = load_credential(self.slot_path(name))
        except CredentialError:
            return None
        entry = self.metadata().get("slots", {}).get(name, {})
        if cred.refresh_fingerprint in entry.get("lineage", []):
            return None  # still our lineage: the identity record lags, not the slot
        return Drift(
            "identity-changed", f"slot {name} now holds a login of another account", slot=name
        )

    def heal(self) -> HealResult:
        """Put the live credential back into the slot that owns it and restore the link."""
        with self.locked():
            return self._heal_locked()

    def _heal_locked(self) -> HealResult:
        drift = self.detect_drift()
        if drift is None:
            return HealResult(False, "no drift")
        if drift.kind == "regular-file":
            return self._heal_regular_file()
        if drift.kind == "broken-link":
            fallback = self.last_live()
            if fallback and fallback != drift.slot and self.check(fallback).health.usable:
                self._link(fallback)
                return HealResult(
                    True,
                    f"relinked to {fallback} (link target was gone)",
                    owner=fallback,
                    method="last-live",
                )
            return HealResult(False, drift.detail + "; switch to a slot to repair")
        if drift.kind == "identity-changed":
            return self._heal_identity_change(drift)
        return HealResult(False, drift.detail + "; fix it by hand (nothing changed)")

    def _heal_regular_file(self) -> HealResult:
        try:
            data = read_credential_bytes(self.live_path)
            cred = parse_credential(data)
        except CredentialError as exc:
            return HealResult(
                False, f"live credential is {exc.health.value} ({exc}); not copied over any slot"
            )
        if not cred.refresh_token:
            return HealResult(
                False, "live credential has no refresh token; not copied over any slot"
            )
        identity = self.live_identity()
        owner, method = self._owner_of(cred, identity)
        if owner is None or method is None:
            return HealResult(
                False,
                "cannot tell whose credential is live; "
                "capture it with `gptme-subscription slot add NAME`",
            )
        changed = self.write_slot(owner, data)
        crash_point("heal:slot-written")
        self._link(owner)
        # trust oauthAccount for a slot only when it picked the owner or nothing is on record
        trusted = identity if method == "identity" or self.identity_of(owner) is None else None
        self._remember(owner, cred, trusted, live=True)
        verb = "copied live credential into" if changed else "relinked"
        actions = ([f"write {owner}"] if changed else []) + [f"link {owner}"]
        return HealResult(
            True, f"{verb} {owner} (by {method})", owner=owner, method=method, actions=actions
        )

    def _owner_of(
        self, cred: Credential, identity: AccountIdentity | None
    ) -> tuple[str | None, str | None]:
        """Whose credential is this: refresh-token lineage, then identity, then last live."""
        by_lineage = self.owner_by_lineage(cred.refresh_fingerprint)
        if by_lineage is not None:
            return by_lineage, "lineage"
        by_identity = self.owner_by_identity(identity)
        if by_identity is not None:
            return by_identity, "identity"
        last = self.last_live()
        if last is not None and last in self.list_slots():
            return last, "last-live"
        return None, None

    def _heal_identity_change(self, drift: Drift) -> HealResult:
        name = drift.slot
        assert name is not None
        identity = self.live_identity()
        other = self.owner_by_identity(identity)
        data = read_credential_bytes(self.slot_path(name))
        cred = parse_credential(data)
        actions = []
        if other is not None and other != name:
            self.write_slot(other, data)
            self._remember(other, cred, identity)
            actions.append(f"write {other}")
        restored = self._restore_from_backup(name)
        if restored:
            actions.append(f"restore {name}")
        if other is not None:
            self._link(other)
            self._remember(other, cred, identity, live=True)
            actions.append(f"link {other}")
            detail = f"login for {other} found in {name}; moved to {other}"
            detail += ", restored " + name if restored else f"; {name} needs a new login"
            return HealResult(True, detail, owner=other, method="identity", actions=actions)
        return HealResult(
            False,
            f"slot {name} holds a login of an unknown account; "
            f"add it with `slot add` or log in again as {name}",
        )

    def _restore_from_backup(self, name: str) -> bool:
        """Bring back the newest backup of `name` whose refresh token is from its lineage."""
        lineage = self.metadata().get("slots", {}).get(name, {}).get("lineage", [])
        for backup in reversed(self.backups(name)):
            try:
                cred = load_credential(backup)
            except CredentialError:
                continue
            if cred.refresh_fingerprint in lineage and cred.health(self.clock()).usable:
                fsutil.atomic_write_bytes(self.slot_path(name), cred.raw)
                return True
        return False

    # ------------------------------------------------------------ operations

    def flip(self, name: str) -> FlipResult:
        """Make `name` the live slot: heal first, refuse a broken slot, relink, touch."""
        info = self.check(name)
        if not info.health.usable:
            raise SlotError(f"slot {name} is {info.health.value} ({info.detail}); not linked")
        with self.locked():
            previous = self.active_slot()
            heal = self._heal_locked() if self.detect_drift() else None
            info = self.check(name)  # re-check under the lock
            if not info.health.usable:
                raise SlotError(f"slot {name} is {info.health.value} ({info.detail}); not linked")
            if previous is None and heal is not None and heal.owner:
                previous = heal.owner
            self._refuse_to_discard_live()
            crash_point("flip:before-link")
            self._link(name)
            crash_point("flip:linked")
            with contextlib.suppress(CredentialError):
                self._remember(name, load_credential(self.slot_path(name)), live=True)
            return FlipResult(slot=name, previous=previous, heal=heal)

    def _refuse_to_discard_live(self) -> None:
        """Replacing the live path must never drop the only copy of a refresh token.

        After heal, a live regular file whose refresh token is in no slot belongs to nobody we
        know (a login or refresh we could not attribute). It is kept as an orphan backup and
        the flip is refused, whatever the caller's force: a person attributes it with
        `slot add NAME` (or `heal` once its owner is known).
        """
        if self.live_state().kind is not LiveKind.REGULAR_FILE:
            return
        try:
            data = read_credential_bytes(self.live_path)
            cred = parse_credential(data)
        except CredentialError:
            return  # nothing usable to lose (e.g. emptied by invalid_grant)
        fp = cred.refresh_fingerprint
        if fp is None or any(_refresh_fp(self.slot_path(n)) == fp for n in self.list_slots()):
            return
        fsutil.private_subdir(self.claude_dir, BACKUP_DIR_NAME)
        digest = content_fingerprint(data)
        kept = sorted(self.backup_dir.glob(f"{ORPHAN_PREFIX}.*.{digest}"))
        orphan = (
            kept[0]
            if kept
            else self.backup_dir / f"{ORPHAN_PREFIX}.{int(self.clock() * 1000)}.{digest}"
        )
        if not kept:
            fsutil.atomic_write_bytes(orphan, data)
        raise SlotError(
            "the live credential (refresh token " + fp + ") is in no slot and its owner is "
            "unknown; not replaced (copy kept in " + str(orphan) + "). Capture it with "
            "`gptme-subscription slot add NAME`"
        )

    def add(self, name: str, source: Path | None = None, force: bool = False) -> CredentialInfo:
        """Capture the live credential (or `source`) into a new slot and link to it if live."""
        path = self.slot_path(name)
        from_live = source is None
        with self.locked():
            src = self.live_path if from_live else source
            assert src is not None
            try:
                data = read_credential_bytes(src)
                cred = parse_credential(data)
            except CredentialError as exc:
                raise SlotError(f"cannot add {name}: {src} is {exc.health.value} ({exc})") from None
            if not cred.refresh_token:
                raise SlotError(f"cannot add {name}: the credential has no refresh token")
            if path.exists() and not force:
                raise SlotError(
                    f"slot {name} already exists (use --force to replace it; "
                    "the old content is kept in the backup ring)"
                )
            twin = self.owner_by_lineage(cred.refresh_fingerprint, exclude=name)
            if twin is None:
                twin = next(
                    (
                        s
                        for s in self.list_slots()
                        if s != name and _refresh_fp(self.slot_path(s)) == cred.refresh_fingerprint
                    ),
                    None,
                )
            if twin is not None:
                raise SlotError(
                    f"cannot add {name}: that login is already slot {twin} "
                    "(two slots sharing one refresh token would revoke each other)"
                )
            identity = self.live_identity() if from_live else None
            self.write_slot(name, data)
            crash_point("add:slot-written")
            live = self.live_state()
            make_live = from_live and live.kind is LiveKind.REGULAR_FILE
            if make_live:
                self._link(name)
            self._remember(name, cred, identity, live=make_live)
        return self.check(name)

    def remove(self, name: str) -> Path | None:
        """Delete a slot (its last content stays in the backup ring); never the live one."""
        path = self.slot_path(name)
        with self.locked():
            if not path.exists() and not path.is_symlink():
                raise SlotError(f"no slot named {name}")
            if self.live_state().slot == name:
                raise SlotError(f"slot {name} is live; switch to another slot first")
            backup = self._backup(name)
            path.unlink()
            self._forget(name)
        return backup


def _refresh_fp(path: Path) -> str | None:
    try:
        return load_credential(path).refresh_fingerprint
    except CredentialError:
        return None


def global_config_for(claude_dir: Path, home: Path) -> Path:
    """`.claude.json` beside a custom config dir, else in HOME (Claude Code's rule)."""
    from .credentials import global_config_path

    default_dir = home / ".claude"
    env_dir = None if claude_dir == default_dir else str(claude_dir)
    return global_config_path(claude_dir, home, env_dir)


__all__ = [
    "Drift",
    "FlipResult",
    "HealResult",
    "Health",
    "LiveKind",
    "LiveState",
    "SlotError",
    "SlotStore",
    "global_config_for",
]
