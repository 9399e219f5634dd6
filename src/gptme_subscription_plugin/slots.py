"""The slot store: one credential file per account, a relative symlink to the live one.

Mechanisms only; the manager decides *when* to flip. Every change to the live path or a slot
happens under Claude Code's own credential locks, every slot write keeps the previous content
in a backup ring, and drift (Claude Code replacing the link with a regular file after a token
refresh or /login) is healed into the slot that owns the credential, decided by
`ownership.owner_of`. A credential whose owner is not certain is kept aside in the pending-login
file, never copied over a slot. The file mechanics (paths, the live link, the slot metadata,
the backup ring) are in `slot_files.py`; here is what decides ownership.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from . import fsutil
from .crashpoints import crash_point
from .credentials import (
    AccountIdentity,
    Credential,
    CredentialError,
    CredentialInfo,
    Health,
    content_fingerprint,
    load_credential,
    parse_credential,
    read_credential_bytes,
)
from .names import validate_slot_name
from .ownership import Verdict, owner_of
from .slot_files import (
    BACKUP_DIR_NAME,
    IDENTITY_SOURCE,
    LINEAGE_KEEP,
    LIVE_NAME,
    META_DOC,
    ORPHAN_PREFIX,
    PENDING_LOGIN_NAME,
    SLOT_PREFIX,
    LiveKind,
    LiveState,
    SlotError,
    SlotFiles,
    refresh_fingerprint_at,
)


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


class SlotStore(SlotFiles):
    """The slot files plus what decides ownership: drift, heal, flip, add, remove."""

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

    # ------------------------------------------------------------ drift and heal

    def detect_drift(self) -> Drift | None:
        """Is the live path anything but a healthy link to the slot owning its credential?"""
        live = self.live_state()
        if live.kind is LiveKind.MISSING or self.profile_of_dir() is not None:
            return None  # in a profile the regular file is the slot's one home
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

    # ------------------------------------------------------------ operations

    def flip(self, name: str) -> FlipResult:
        """Make `name` the live slot: heal first, refuse a broken slot, relink, touch."""
        self.require_link_home(name, "linked")
        info = self.check(name)
        if not info.health.usable:
            raise SlotError(f"slot {name} is {info.health.value} ({info.detail}); not linked")
        self.prefetch_identity()
        with self.locked():
            previous = self.active_slot()
            heal = self._heal_locked() if self.detect_drift() else None
            self.require_link_home(name, "linked")  # re-check under the lock
            info = self.check(name)
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

    def require_link_home(self, name: str, what: str, *, ambiguous: bool = True) -> None:
        """A slot in its profile is refreshed there, under that dir's lock: linking or writing
        it from the main dir would give its chain a second, unsynchronized home."""
        home = self.home_of(name)
        if home == "profile":
            raise SlotError(
                f"slot {name} lives in its profile {self.profile_dir(name)}; not {what} "
                f"(`gptme-subscription profile disable {name}` brings it back to the link)"
            )
        if home == "ambiguous" and ambiguous:
            raise SlotError(f"{self.two_homes(name)}; not {what}: keep the newer, remove the other")

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
        if refresh_fingerprint_at(self.pending_login_path) == fp:
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
        self.require_link_home(name, "replaced")
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
            self.require_link_home(name, "replaced")
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
            if refresh_fingerprint_at(self.pending_login_path) == cred.refresh_fingerprint:
                self.pending_login_path.unlink()
        return self.check(name)

    def remove(self, name: str) -> Path | None:
        """Delete a slot (its last content stays in the backup ring); never the live one."""
        path = self.main_slot_path(name)
        with self.locked():
            # removing the main-dir file of a slot with two homes is how a person keeps one
            self.require_link_home(name, "removed", ambiguous=False)
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


def global_config_for(claude_dir: Path, home: Path) -> Path:
    """`.claude.json` beside a custom config dir, else in HOME (Claude Code's rule)."""
    from .credentials import global_config_path

    default_dir = home / ".claude"
    env_dir = None if claude_dir == default_dir else str(claude_dir)
    return global_config_path(claude_dir, home, env_dir)


__all__ = [
    "BACKUP_DIR_NAME",
    "IDENTITY_SOURCE",
    "LINEAGE_KEEP",
    "LIVE_NAME",
    "META_DOC",
    "ORPHAN_PREFIX",
    "PENDING_LOGIN_NAME",
    "SLOT_PREFIX",
    "Drift",
    "FlipResult",
    "HealResult",
    "Health",
    "LiveKind",
    "LiveState",
    "SlotError",
    "SlotFiles",
    "SlotStore",
    "global_config_for",
]
