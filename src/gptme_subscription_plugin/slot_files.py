"""The slot files as they are: paths, the live link, the slot metadata, the backup ring.

The part of the slot store that reads and writes without deciding whose a credential is;
`slots.SlotStore` builds drift detection, heal, flip, add and remove on top of it, and
`slots` re-exports the names here.
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import fsutil
from .claude_locks import claude_credential_lock, reclaim_dead_locks
from .crashpoints import crash_point
from .credentials import (
    AccountIdentity,
    Credential,
    CredentialError,
    CredentialInfo,
    check_credential_file,
    content_fingerprint,
    load_credential,
    read_account_identity,
    read_credential_bytes,
)
from .identity import IdentityResolver
from .names import validate_slot_name
from .ownership import SlotRecord
from .state import StateStore

LIVE_NAME = ".credentials.json"
SLOT_PREFIX = LIVE_NAME + "."
BACKUP_DIR_NAME = ".gptme-subscription-backups"
PENDING_LOGIN_NAME = ".gptme-subscription-pending-login"
META_DOC = "slots"
LINEAGE_KEEP = 50
IDENTITY_SOURCE = "profile"  # the only identity we record; older records had none and are ignored
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


class SlotFiles:
    """Slot files, the live link, backups and slot metadata (identity, refresh lineage)."""

    def __init__(
        self,
        claude_dir: Path,
        state: StateStore,
        global_config: Path,
        backup_keep: int = 5,
        lock_wait: float = 9.0,
        clock: Callable[[], float] | None = None,
        resolver: IdentityResolver | None = None,
        profiles_dir: Path | None = None,
    ):
        import time

        self.claude_dir = claude_dir
        self.state = state
        self.global_config = global_config
        self.backup_keep = max(2, backup_keep)  # the ring holds the old and the new content
        self.lock_wait = lock_wait
        self.clock = clock or time.time
        self.resolver = resolver
        self.profiles_dir = profiles_dir  # None: no slot lives in a profile

    # ------------------------------------------------------------ paths and listing

    @property
    def _dir_normal(self) -> Path:
        """The claude dir without `..` parts, to compare link targets against."""
        return Path(os.path.normpath(self.claude_dir))

    @property
    def live_path(self) -> Path:
        return self.claude_dir / LIVE_NAME

    @property
    def backup_dir(self) -> Path:
        """The backup ring's dir; ForeignPathError if it is a planted link or not ours."""
        path = self.claude_dir / BACKUP_DIR_NAME
        fsutil.check_private(path, "backup dir", follow=False)
        return path

    @property
    def pending_login_path(self) -> Path:
        """The login kept aside; ForeignPathError if a link or another user's file is there."""
        path = self.claude_dir / PENDING_LOGIN_NAME
        fsutil.check_private(path, "pending-login file", follow=False)
        return path

    def slot_path(self, name: str) -> Path:
        """The file holding slot `name`: its main-dir file (an alias names its target), else
        its profile's credential when that is its one home (`home_of`)."""
        try:
            validate_slot_name(name)
        except ValueError as exc:
            raise SlotError(str(exc)) from None
        path = self.claude_dir / f"{SLOT_PREFIX}{name}"
        target = self._alias_target(path)
        if target:
            return self.claude_dir / f"{SLOT_PREFIX}{target}"
        if not os.path.lexists(path) and self.home_of(name) == "profile":
            return self.profiles_dir / name / LIVE_NAME  # type: ignore[operator]
        return path

    def main_slot_path(self, name: str) -> Path:
        """Slot `name`'s own file in the main dir: not an alias's target, not its profile."""
        try:
            return self.claude_dir / f"{SLOT_PREFIX}{validate_slot_name(name)}"
        except ValueError as exc:
            raise SlotError(str(exc)) from None

    def two_homes(self, name: str) -> str:
        """How every refusal of a slot found in both places names it (`home_of` "ambiguous")."""
        return (
            f"slot {name} has two homes ({self.main_slot_path(name)} and "
            f"{self.profile_credential(name)})"
        )

    def profile_dir(self, name: str) -> Path | None:
        """Slot `name`'s own config dir, when profiles are configured."""
        if self.profiles_dir is None:
            return None
        try:
            return self.profiles_dir / validate_slot_name(name)
        except ValueError as exc:
            raise SlotError(str(exc)) from None

    def profile_of_dir(self) -> str | None:
        """The slot whose profile this claude dir is (a session's `CLAUDE_CONFIG_DIR`), or None.

        There the credential is a regular file by design, the slot's one home that Claude
        Code refreshes in place: never drift to heal, never a path to link.
        """
        if self.profiles_dir is None:
            return None
        here = Path(os.path.realpath(self.claude_dir))
        if here.parent != Path(os.path.realpath(self.profiles_dir)):
            return None
        try:
            return validate_slot_name(here.name)
        except ValueError:
            return None

    def profile_credential(self, name: str) -> Path | None:
        directory = self.profile_dir(name)
        return None if directory is None else directory / LIVE_NAME

    def home_of(self, name: str) -> str | None:
        """Where slot `name`'s token chain lives: "link" (its main-dir file, reached through
        the live link), "profile" (its profile's credential), "ambiguous" (both: two
        refreshers of one chain, so neither moves until a person keeps one), or None.

        A profile credential that is not a regular file ours alone, in a dir ours alone, is
        no home: it is never read as a slot.
        """
        profiled = self.profile_credential(name)  # SlotError on a bad name
        in_main = os.path.lexists(self.main_slot_path(name))
        in_profile = profiled is not None and os.path.lexists(profiled)
        if in_main and in_profile:
            return "ambiguous"
        if in_profile and trusted_profile_file(profiled):  # type: ignore[arg-type]
            return "profile"
        return "link" if in_main else None

    def profile_slots(self) -> list[str]:
        """Slots whose one home is their profile (an ambiguous slot is not one)."""
        if self.profiles_dir is None:
            return []
        try:
            entries = list(self.profiles_dir.iterdir())
        except OSError:
            return []
        names = []
        for entry in entries:
            try:
                name = validate_slot_name(entry.name)
            except ValueError:
                continue
            if self.home_of(name) == "profile":
                names.append(name)
        return sorted(names)

    def _alias_target(self, path: Path) -> str | None:
        """The slot a slot file links to, when it is a link to another slot of this dir."""
        try:
            if not path.is_symlink():
                return None
            resolved = Path(os.path.normpath(self._dir_normal / os.readlink(path)))
        except OSError:
            return None
        if resolved.parent != self._dir_normal or not resolved.name.startswith(SLOT_PREFIX):
            return None
        name = resolved.name[len(SLOT_PREFIX) :]
        try:
            validate_slot_name(name)
        except ValueError:
            return None
        return name if resolved.is_file() and not resolved.is_symlink() else None

    def list_slots(self) -> list[str]:
        """Every slot, each account once: main-dir slot files (aliases of another slot left
        out) and slots whose home is their profile."""
        return sorted(set(self._main_slots()) | set(self.profile_slots()))

    def _main_slots(self) -> list[str]:
        names = []
        try:
            entries = list(self.claude_dir.iterdir())
        except OSError:
            return []
        for entry in entries:
            if not entry.name.startswith(SLOT_PREFIX) or self._alias_target(entry):
                continue
            name = entry.name[len(SLOT_PREFIX) :]
            with contextlib.suppress(ValueError):
                names.append(validate_slot_name(name))
        return sorted(names)

    def check(self, name: str) -> CredentialInfo:
        return check_credential_file(self.slot_path(name), self.clock())

    def pending_login(self) -> CredentialInfo | None:
        """The login kept aside for `slot add`, if there is one."""
        if not self.pending_login_path.exists():
            return None
        return check_credential_file(self.pending_login_path, self.clock())

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
            resolved = Path(os.path.normpath(self._dir_normal / target))
            if resolved.parent != self._dir_normal or not resolved.name.startswith(SLOT_PREFIX):
                return LiveState(LiveKind.FOREIGN_LINK, link_target=target)
            name = resolved.name[len(SLOT_PREFIX) :]
            try:
                validate_slot_name(name)
            except ValueError:
                return LiveState(LiveKind.FOREIGN_LINK, link_target=target)
            name = self._alias_target(resolved) or name
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

    def _entry(self, name: str) -> dict[str, Any]:
        entry = self.metadata().get("slots", {}).get(name)
        return entry if isinstance(entry, dict) else {}

    def lineage(self, name: str) -> list[str]:
        value = self._entry(name).get("lineage")
        return [fp for fp in value if isinstance(fp, str)] if isinstance(value, list) else []

    def identity_of(self, name: str) -> AccountIdentity | None:
        """The slot's account as the profile endpoint named it; None when never confirmed."""
        entry = self._entry(name)
        if entry.get("identity_source") != IDENTITY_SOURCE:
            return None  # recorded from ~/.claude.json by an earlier version: not evidence
        return AccountIdentity.from_dict(entry.get("identity"))

    def last_live(self) -> str | None:
        value = self.metadata().get("last_live")
        return value if isinstance(value, str) else None

    def records(self) -> dict[str, SlotRecord]:
        """What ownership decisions see of every present slot."""
        return {
            name: SlotRecord(self.identity_of(name), tuple(self.lineage(name)))
            for name in self.list_slots()
        }

    def _remember(
        self,
        name: str,
        cred: Credential | None,
        identity: AccountIdentity | None = None,
        live: bool = False,
    ) -> None:
        """Record a slot's refresh-token lineage and profile identity (fingerprints only).

        Making a slot live also notes the `oauthAccount` uuid seen now, so a later change of
        it (a /login) can be told from a refresh, which never touches it.
        """
        seen = self._oauth_uuid() if live else None

        def update(doc: dict[str, Any]) -> None:
            slots = doc.setdefault("slots", {})
            entry = slots.setdefault(name, {})
            if cred is not None and cred.refresh_fingerprint:
                lineage = [fp for fp in entry.get("lineage", []) if fp != cred.refresh_fingerprint]
                lineage.append(cred.refresh_fingerprint)
                entry["lineage"] = lineage[-LINEAGE_KEEP:]
            if identity is not None and identity.known:
                entry["identity"] = identity.to_dict()
                entry["identity_source"] = IDENTITY_SOURCE
            elif entry.get("identity_source") != IDENTITY_SOURCE:
                entry.pop("identity", None)  # an unconfirmed record misleads; drop it
            entry["updated_at"] = self.clock()
            if live:
                doc["last_live"] = name
                if seen:
                    doc["oauth_seen"] = seen

        self.state.update(META_DOC, update)

    def _forget(self, name: str) -> None:
        def update(doc: dict[str, Any]) -> None:
            doc.get("slots", {}).pop(name, None)
            if doc.get("last_live") == name:
                doc.pop("last_live", None)

        self.state.update(META_DOC, update)

    def _oauth_uuid(self) -> str | None:
        ident = read_account_identity(self.global_config)
        return ident.account_uuid or ident.email if ident else None

    def login_seen(self) -> bool:
        """Did `~/.claude.json` change account since a slot was last made live (a /login)?"""
        seen = self.metadata().get("oauth_seen")
        now = self._oauth_uuid()
        return isinstance(seen, str) and now is not None and now != seen

    def owner_by_lineage(self, refresh_fp: str | None, exclude: str | None = None) -> str | None:
        if not refresh_fp:
            return None
        for name in self.list_slots():
            if name != exclude and refresh_fp in self.lineage(name):
                return name
        return None

    def holder_of(self, refresh_fp: str | None, exclude: str | None = None) -> str | None:
        """The slot whose file holds this refresh token right now."""
        if not refresh_fp:
            return None
        return next(
            (
                n
                for n in self.list_slots()
                if n != exclude and refresh_fingerprint_at(self.slot_path(n)) == refresh_fp
            ),
            None,
        )

    def record_lineage(self, name: str, cred: Credential) -> None:
        """Note `cred`'s refresh token as the newest of slot `name` (and keep a copy of it)."""
        self._remember(name, cred)
        with contextlib.suppress(OSError):
            self._keep_copy(name, cred.raw)

    def _record_identity(self, name: str, identity: AccountIdentity) -> None:
        def update(doc: dict[str, Any]) -> None:
            entry = doc.setdefault("slots", {}).setdefault(name, {})
            entry["identity"] = identity.to_dict()
            entry["identity_source"] = IDENTITY_SOURCE

        self.state.update(META_DOC, update)

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

    def _ring(self, name: str) -> list[tuple[int, str, Path]]:
        """(sequence, content fingerprint, path) of one slot's backups, oldest first."""
        try:
            entries = list(self.backup_dir.iterdir())
        except OSError:
            return []
        mine = []
        for entry in entries:
            parts = entry.name.split(".")
            if len(parts) == 3 and parts[0] == name and parts[1].isdigit():
                mine.append((int(parts[1]), parts[2], entry))
        return sorted(mine)

    def backups(self, name: str) -> list[Path]:
        """Backups of one slot, oldest first (by sequence number, never by the clock)."""
        return [path for _, _, path in self._ring(name)]

    def _keep_copy(self, name: str, data: bytes) -> Path | None:
        """Add `data` to the slot's backup ring unless it is already the newest copy."""
        ring = self._ring(name)
        digest = content_fingerprint(data)
        if ring and ring[-1][1] == digest:
            return ring[-1][2]
        fsutil.private_subdir(self.claude_dir, BACKUP_DIR_NAME)
        seq = ring[-1][0] + 1 if ring else 1
        target = self.backup_dir / f"{name}.{seq}.{digest}"
        fsutil.atomic_write_bytes(target, data)
        for _, _, old in ring[: max(0, len(ring) + 1 - self.backup_keep)]:
            with contextlib.suppress(OSError):
                old.unlink()
        return target

    def _backup(self, name: str) -> Path | None:
        """Copy the slot's current bytes into its backup ring."""
        try:
            data = read_credential_bytes(self.slot_path(name))
        except CredentialError:
            return None
        return self._keep_copy(name, data)

    def write_slot(self, name: str, data: bytes) -> bool:
        """Atomically store `data` as slot `name`; the ring keeps old and new. False if same."""
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
        self._keep_copy(name, data)
        return True

    def _link(self, name: str) -> None:
        owner = self.profile_of_dir()
        if owner is not None:
            raise SlotError(
                f"{self.claude_dir} is the profile of slot {owner}: its credential is never "
                "replaced by a link"
            )
        fsutil.atomic_symlink(f"{SLOT_PREFIX}{name}", self.live_path)
        crash_point("link:before-touch")
        # Claude Code re-reads the credential when the mtime it last saw changes
        os.utime(self.slot_path(name))

    def _restore_latest(self, name: str) -> bool:
        """Bring back the slot's newest known login, and only that one.

        Any older refresh token of the lineage is spent: restoring it would make the next
        refresh reuse it, which revokes the whole token family.
        """
        lineage = self.lineage(name)
        if not lineage:
            return False
        for backup in reversed(self.backups(name)):
            try:
                cred = load_credential(backup)
            except CredentialError:
                continue
            if cred.refresh_fingerprint == lineage[-1]:
                fsutil.atomic_write_bytes(self.slot_path(name), cred.raw)
                return True
        return False

    def _retire(self, name: str) -> None:
        """Drop the refresh token from a slot whose token now lives in another slot.

        Two files refreshing one token chain revoke each other; the slot stays, asks for a
        new login, and is never linked (no refresh token: not usable).
        """
        import json

        try:
            doc = json.loads(read_credential_bytes(self.slot_path(name)))
        except (CredentialError, ValueError):
            return
        oauth = doc.get("claudeAiOauth")
        if isinstance(oauth, dict):
            oauth.pop("refreshToken", None)
            fsutil.atomic_write_bytes(self.slot_path(name), json.dumps(doc, indent=2).encode())

    def observe_profile(self, name: str) -> None:
        """Note a profile slot's newest refresh token (lineage and backup ring), as `observe`
        does for the live slot: Claude Code refreshes a profile's credential in place, so the
        ring would otherwise hold only the pair it had when it moved in."""
        if self.home_of(name) != "profile":
            return
        try:
            cred = load_credential(self.slot_path(name))
        except CredentialError:
            return
        if cred.refresh_fingerprint and cred.refresh_fingerprint not in self.lineage(name):
            self.record_lineage(name, cred)

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
        lineage = self.lineage(name)
        if meta.get("last_live") != name or (
            cred.refresh_fingerprint and cred.refresh_fingerprint not in lineage
        ):
            self._remember(name, cred, live=True)


def trusted_profile_file(path: Path) -> bool:
    """A profile credential we may read: a regular file, ours alone, in a dir ours alone
    that is not a link (anything else is never taken for a slot's home)."""
    try:
        st = path.lstat()
        dst = path.parent.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or not stat.S_ISDIR(dst.st_mode):
        return False
    return fsutil.untrusted_reason(st) is None and fsutil.untrusted_reason(dst) is None


def refresh_fingerprint_at(path: Path) -> str | None:
    """The refresh-token fingerprint of the credential at `path`; None when unreadable."""
    try:
        return load_credential(path).refresh_fingerprint
    except CredentialError:
        return None
