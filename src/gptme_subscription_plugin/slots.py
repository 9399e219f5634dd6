"""The slot store: one credential file per account, a relative symlink to the live one.

Mechanisms only; the manager decides *when* to flip. Every change to the live path or a slot
happens under Claude Code's own credential locks, every slot write keeps the previous content
in a backup ring, and drift (Claude Code replacing the link with a regular file after a token
refresh or /login) is healed into the slot that owns the credential, decided by
`ownership.owner_of`. A credential whose owner is not certain is kept aside in the pending-login
file, never copied over a slot.
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
    read_account_identity,
    read_credential_bytes,
)
from .identity import IdentityResolver
from .names import validate_slot_name
from .ownership import SlotRecord, Verdict, owner_of
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


@dataclass(frozen=True)
class Drift:
    """Why the live path is not a healthy link to the slot that owns its credential."""

    kind: str  # regular-file | broken-link | foreign-link | slot-changed | other
    detail: str
    slot: str | None = None


@dataclass
class HealResult:
    healed: bool
    detail: str
    owner: str | None = None
    method: str | None = None  # profile | lineage | last-live | same-token
    actions: list[str] = field(default_factory=list)
    kept_aside: bool = False  # the credential went to the pending-login file


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
        resolver: IdentityResolver | None = None,
    ):
        import time

        self.claude_dir = claude_dir
        self.state = state
        self.global_config = global_config
        self.backup_keep = max(2, backup_keep)  # the ring holds the old and the new content
        self.lock_wait = lock_wait
        self.clock = clock or time.time
        self.resolver = resolver

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
        """The file holding slot `name`; an alias (a link to another slot) names its target."""
        try:
            validate_slot_name(name)
        except ValueError as exc:
            raise SlotError(str(exc)) from None
        path = self.claude_dir / f"{SLOT_PREFIX}{name}"
        target = self._alias_target(path)
        return self.claude_dir / f"{SLOT_PREFIX}{target}" if target else path

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
        """Names of slot files present, each account once (aliases of another slot left out)."""
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
                if n != exclude and _refresh_fp(self.slot_path(n)) == refresh_fp
            ),
            None,
        )

    # ------------------------------------------------------------ identities

    def _identity(self, cred: Credential, *, ask: bool) -> AccountIdentity | None:
        """The profile identity of `cred`: cached only, or asked when `ask` (never under lock)."""
        if self.resolver is None:
            return None
        return self.resolver.resolve(cred) if ask else self.resolver.cached(cred)

    def prefetch_identity(self) -> None:
        """Ask the profile endpoint now, before a heal takes Claude Code's lock.

        A network call must not hold the lock every Claude Code process waits on; under the
        lock only the cached answer is read.
        """
        live = self.live_state()
        path = None
        if live.kind is LiveKind.REGULAR_FILE:
            path = self.live_path
        elif live.kind is LiveKind.LINK and live.slot is not None and self.identity_of(live.slot):
            # only a slot with a confirmed account can be found holding another one
            path = self.slot_path(live.slot)
            with contextlib.suppress(CredentialError):
                if load_credential(path).refresh_fingerprint in self.lineage(live.slot):
                    path = None
        if path is not None:
            with contextlib.suppress(CredentialError):
                self._identity(load_credential(path), ask=True)

    def learn_identities(
        self, names: list[str] | None = None, limit: int | None = None, retry: bool = False
    ) -> dict[str, AccountIdentity | None]:
        """Ask the profile endpoint who owns each slot with no confirmed identity (or `names`).

        Identities recorded by earlier versions (from `~/.claude.json`) count as unknown and
        are replaced here. `limit` bounds the requests, so a hook asks about one slot at most.
        """
        if self.resolver is None:
            return {}
        targets = (
            names
            if names is not None
            else [n for n in self.list_slots() if self.identity_of(n) is None]
        )
        learned: dict[str, AccountIdentity | None] = {}
        asked = 0
        for name in targets:
            try:
                cred = load_credential(self.slot_path(name))
            except CredentialError:
                continue
            known = self.resolver.cached(cred)
            if known is None and not retry and not self.resolver.askable(cred):
                continue  # failed lately or expired: not worth one of the `limit` requests
            if known is None and limit is not None:
                if asked >= limit:
                    break
                asked += 1
            identity = known or self.resolver.resolve(cred, retry_failures=retry)
            learned[name] = identity
            if identity is not None:
                self._record_identity(name, identity)
        return learned

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
        lineage = self.lineage(name)
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
        return self._slot_changed(live.slot)

    def _slot_changed(self, name: str) -> Drift | None:
        """A login written through the link: the profile names another account than the slot's."""
        recorded = self.identity_of(name)
        lineage = self.lineage(name)
        if recorded is None or not lineage:
            return None
        try:
            cred = load_credential(self.slot_path(name))
        except CredentialError:
            return None
        if cred.refresh_fingerprint in lineage:
            return None
        current = self._identity(cred, ask=False)
        if current is None or recorded.matches(current):
            return None
        who = current.email or current.account_uuid
        return Drift("slot-changed", f"slot {name} now holds a login of {who}", slot=name)

    def heal(self) -> HealResult:
        """Put the live credential back into the slot that owns it and restore the link."""
        self.prefetch_identity()
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
        if drift.kind == "slot-changed":
            return self._heal_slot_changed(drift)
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
        identity = self._identity(cred, ask=False)
        holder = self.holder_of(cred.refresh_fingerprint)
        if holder is not None:
            verdict = Verdict(holder, "same-token", "that slot holds the same refresh token")
        else:
            verdict = owner_of(
                cred.refresh_fingerprint,
                identity,
                self.records(),
                self.last_live(),
                self.login_seen(),
            )
        if verdict.owner is None:
            return self._keep_aside(data, verdict)
        owner = verdict.owner
        lineage = self.lineage(owner)
        if verdict.method == "lineage" and lineage and lineage[-1] != cred.refresh_fingerprint:
            # an older token of the slot's own chain: the slot already holds a newer login
            self._keep_copy(owner, data)
            self._link(owner)
            self._remember(owner, None, identity, live=True)
            return HealResult(
                True,
                f"relinked {owner} (the live file held an older login of {owner})",
                owner=owner,
                method="lineage",
                actions=[f"link {owner}"],
            )
        changed = self.write_slot(owner, data)
        crash_point("heal:slot-written")
        self._link(owner)
        self._remember(owner, cred, identity, live=True)
        verb = "copied live credential into" if changed else "relinked"
        actions = ([f"write {owner}"] if changed else []) + [f"link {owner}"]
        return HealResult(
            True,
            f"{verb} {owner} (by {verdict.method})",
            owner=owner,
            method=verdict.method,
            actions=actions,
        )

    def _keep_aside(self, data: bytes, verdict: Verdict) -> HealResult:
        """Save a login no slot is known to own; the live file stays as Claude Code wrote it.

        Until `slot add` takes it, flips are refused (`_refuse_to_discard_live`): the session
        keeps running on the login the person chose.
        """
        try:
            fresh = read_credential_bytes(self.pending_login_path) != data
        except CredentialError:
            fresh = True
        if fresh:
            fsutil.atomic_write_bytes(self.pending_login_path, data)
        return HealResult(
            False,
            f"a login that belongs to no known slot ({verdict.detail}) is kept aside in "
            f"{self.pending_login_path.name}; take it with `gptme-subscription slot add NAME`",
            method=verdict.method,
            actions=["keep aside"] if fresh else [],
            kept_aside=True,
        )

    def _heal_slot_changed(self, drift: Drift) -> HealResult:
        """Save the login written through the link first, then give the slot its own back."""
        name = drift.slot
        assert name is not None
        data = read_credential_bytes(self.slot_path(name))
        cred = parse_credential(data)
        identity = self._identity(cred, ask=False)
        others = [
            n
            for n in self.list_slots()
            if n != name and (known := self.identity_of(n)) and identity and known.matches(identity)
        ]
        other = others[0] if len(others) == 1 else None
        actions = []
        if other is not None:
            self.write_slot(other, data)
            actions.append(f"write {other}")
        else:
            fsutil.atomic_write_bytes(self.pending_login_path, data)
            actions.append("keep aside")
        crash_point("heal:login-saved")
        restored = self._restore_latest(name)
        if restored:
            actions.append(f"restore {name}")
        if other is not None:
            self._link(other)
            self._remember(other, cred, identity, live=True)
            actions.append(f"link {other}")
            if not restored:
                self._retire(name)
                actions.append(f"retire {name}")
            detail = f"login for {other} found in {name}; moved to {other}"
            detail += f", restored {name}" if restored else f"; {name} needs a new login"
            return HealResult(True, detail, owner=other, method="profile", actions=actions)
        if not restored:
            with contextlib.suppress(OSError):
                self.pending_login_path.unlink()  # the slot file is its only other copy
            return HealResult(
                False,
                f"{drift.detail} and no backup of its own login is left; log in again as {name}",
            )
        return HealResult(
            True,
            f"{drift.detail}: kept aside (take it with `slot add NAME`), restored {name}",
            owner=name,
            method="profile",
            actions=actions,
            kept_aside=True,
        )

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

    # ------------------------------------------------------------ operations

    def flip(self, name: str) -> FlipResult:
        """Make `name` the live slot: heal first, refuse a broken slot, relink, touch."""
        info = self.check(name)
        if not info.health.usable:
            raise SlotError(f"slot {name} is {info.health.value} ({info.detail}); not linked")
        self.prefetch_identity()
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
        know. It is kept (the pending-login file, or an orphan backup) and the flip is refused,
        whatever the caller's force: a person attributes it with `slot add NAME`.
        """
        if self.live_state().kind is not LiveKind.REGULAR_FILE:
            return
        try:
            data = read_credential_bytes(self.live_path)
            cred = parse_credential(data)
        except CredentialError:
            return  # nothing usable to lose (e.g. emptied by invalid_grant)
        fp = cred.refresh_fingerprint
        if fp is None or self.holder_of(fp) is not None:
            return
        if _refresh_fp(self.pending_login_path) == fp:
            kept = self.pending_login_path
        else:
            fsutil.private_subdir(self.claude_dir, BACKUP_DIR_NAME)
            digest = content_fingerprint(data)
            found = sorted(self.backup_dir.glob(f"{ORPHAN_PREFIX}.*.{digest}"))
            kept = found[0] if found else self.backup_dir / f"{ORPHAN_PREFIX}.1.{digest}"
            if not found:
                fsutil.atomic_write_bytes(kept, data)
        raise SlotError(
            "the live credential (refresh token " + fp + ") is in no slot and its owner is "
            "unknown; not replaced (copy kept in " + str(kept) + "). Capture it with "
            "`gptme-subscription slot add NAME`"
        )

    def add(self, name: str, source: Path | None = None, force: bool = False) -> CredentialInfo:
        """Capture a login into a new slot: `source`, else a login kept aside, else the live one.

        The live credential is linked to the new slot when it was a regular file; the slot's
        identity is asked of the profile endpoint before the lock is taken.
        """
        path = self.slot_path(name)
        src = source
        if src is None:
            live_file = self.live_state().kind is LiveKind.REGULAR_FILE
            src = (
                self.pending_login_path
                if self.pending_login_path.exists() and not live_file
                else self.live_path
            )
        try:
            cred = parse_credential(read_credential_bytes(src))
        except CredentialError as exc:
            raise SlotError(f"cannot add {name}: {src} is {exc.health.value} ({exc})") from None
        identity = self.resolver.resolve(cred, retry_failures=True) if self.resolver else None
        with self.locked():
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
            twin = self.owner_by_lineage(cred.refresh_fingerprint, exclude=name) or self.holder_of(
                cred.refresh_fingerprint, exclude=name
            )
            if twin is not None:
                raise SlotError(
                    f"cannot add {name}: that login is already slot {twin} "
                    "(two slots sharing one refresh token would revoke each other)"
                )
            self.write_slot(name, data)
            crash_point("add:slot-written")
            make_live = src == self.live_path and self.live_state().kind is LiveKind.REGULAR_FILE
            if make_live:
                self._link(name)
            self._remember(name, cred, identity, live=make_live)
            if _refresh_fp(self.pending_login_path) == cred.refresh_fingerprint:
                self.pending_login_path.unlink()
        return self.check(name)

    def remove(self, name: str) -> Path | None:
        """Delete a slot (its last content stays in the backup ring); never the live one."""
        path = self.claude_dir / f"{SLOT_PREFIX}{validate_slot_name_or_fail(name)}"
        with self.locked():
            if not path.exists() and not path.is_symlink():
                raise SlotError(f"no slot named {name}")
            if self.live_state().slot == name:
                raise SlotError(f"slot {name} is live; switch to another slot first")
            alias = self._alias_target(path) is not None
            backup = None if alias else self._backup(name)
            path.unlink()
            if not alias:
                self._forget(name)
        return backup


def validate_slot_name_or_fail(name: str) -> str:
    try:
        return validate_slot_name(name)
    except ValueError as exc:
        raise SlotError(str(exc)) from None


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
