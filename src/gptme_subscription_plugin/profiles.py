"""Profiles: a Claude Code config dir per slot, so sessions on different accounts run at once.

A process started with `CLAUDE_CONFIG_DIR=<profiles>/<slot>` reads, refreshes and rewrites only
`<profile>/.credentials.json`, under that dir's own locks (docs/facts.md, facts 11-12). So a
slot's token chain has exactly one home at a time: either its slot file in the main claude dir
(reachable through the live link) or its profile's credential, a regular 0600 file. Two homes
would be two unsynchronized refreshers of one single-use chain, and one of them would get
`invalid_grant`.

`enable` moves a slot's credential into its profile, `disable` moves it back; each move holds
the main dir's Claude Code lock pair and then the profile's (fixed order), and happens only
while no session is mid-turn. Everything but the credential and `.claude.json` is shared with
the main dir by symlinks (settings, CLAUDE.md, commands, agents, skills, plugins, projects:
facts 14-15); `.claude.json` is per profile (its `oauthAccount` names the profile's account),
seeded with onboarding, project trust and MCP servers from the main one (fact 13).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import fsutil
from .claude_locks import claude_credential_lock
from .credentials import CredentialError, load_credential, parse_credential, read_credential_bytes
from .slot_files import LIVE_NAME, SlotError
from .slots import SlotStore, validate_slot_name_or_fail

GLOBAL_CONFIG_NAME = ".claude.json"
# Entries of the main claude dir a profile shares by a symlink, when the main dir has them.
SHARED_ENTRIES = (
    "settings.json",
    "CLAUDE.md",
    "commands",
    "agents",
    "skills",
    "plugins",
    "projects",
)
# Shared entries made in the main dir (0700) when it has none yet: a profile session's
# transcripts must land where a session in any other dir finds them with --resume (fact 14).
MADE_ENTRIES = ("projects",)
# Keys of the main `.claude.json` a new profile starts with; never `oauthAccount` (per account).
SEED_KEYS = ("hasCompletedOnboarding", "lastOnboardingVersion", "mcpServers")
SEED_PROJECT_KEYS = (
    "hasTrustDialogAccepted",
    "hasCompletedProjectOnboarding",
    "mcpServers",
    "enabledMcpjsonServers",
    "disabledMcpjsonServers",
)

Home = Literal["link", "profile", "ambiguous"]


class ProfileError(SlotError):
    """A profile operation refused before anything changed; one line, safe to print."""


@dataclass
class ProfileChange:
    """What enable or disable did (or, in a dry run, would do) for one slot."""

    slot: str
    action: str  # enabled | disabled | would-enable | would-disable
    profile: Path
    refresh_fingerprint: str | None = None
    linked: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seeded: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "action": self.action,
            "profile": str(self.profile),
            "refresh_fingerprint": self.refresh_fingerprint,
            "linked": list(self.linked),
            "removed": list(self.removed),
            "seeded": self.seeded,
            "notes": list(self.notes),
        }


class Profiles:
    """The profiles dir over one slot store; `busy` says who is mid-turn (the turn registry)."""

    def __init__(self, store: SlotStore, busy: Callable[[], Sequence[str]]) -> None:
        if store.profiles_dir is None:
            raise ProfileError("no profiles dir is configured")
        self.store = store
        self.dir = store.profiles_dir
        self.busy = busy

    # ------------------------------------------------------------ where a chain lives

    def profile_dir(self, slot: str) -> Path:
        return self.dir / validate_slot_name_or_fail(slot)

    def credential_path(self, slot: str) -> Path:
        return self.profile_dir(slot) / LIVE_NAME

    def home_of(self, slot: str) -> Home | None:
        """Where the slot's chain lives: its main-dir slot file, its profile, both, or nowhere."""
        return self.store.home_of(slot)  # type: ignore[return-value]

    def enabled(self) -> list[str]:
        """Slots whose credential is in a profile, and those with two homes."""
        try:
            names = sorted(p.name for p in self.dir.iterdir() if p.is_dir() and not p.is_symlink())
        except OSError:
            return []
        out = []
        for name in names:
            with contextlib.suppress(SlotError):
                if self.home_of(name) in ("profile", "ambiguous"):
                    out.append(name)
        return out

    # ------------------------------------------------------------ enable

    def enable(self, slots: Sequence[str], dry_run: bool = False) -> list[ProfileChange]:
        """Move each slot's credential into its own profile dir; all checked before any moves.

        No slot named: every slot whose home is the main dir, except the live one.
        """
        if not slots:
            live = self.store.active_slot()
            slots = [n for n in self.store.list_slots() if n != live]
        names = _unique(slots)
        self._check_dirs()
        for name in names:
            self._check_enable(name)
        self._check_idle()
        if dry_run:
            return [self._preview_enable(n) for n in names]
        return [self._enable_one(n) for n in names]

    def _check_enable(self, name: str) -> None:
        validate_slot_name_or_fail(name)
        home = self.home_of(name)
        if home == "ambiguous":
            raise self._ambiguous(name)
        if home == "profile":
            raise ProfileError(f"slot {name} is already in its profile {self.profile_dir(name)}")
        main = self.store.main_slot_path(name)
        if home is None:
            raise ProfileError(f"no slot named {name}")
        if not stat.S_ISREG(main.lstat().st_mode):
            raise ProfileError(f"slot {name} is an alias or not a regular file; not moved")
        if self.store.active_slot() == name:
            raise ProfileError(
                f"slot {name} is live (its home is the live link); switch to another slot first"
            )
        drift = self.store.detect_drift()
        if drift is not None:
            raise ProfileError(f"{drift.detail}; run `gptme-subscription heal` first")
        try:
            cred = load_credential(main)
        except CredentialError as exc:
            raise ProfileError(f"slot {name} is {exc.health.value} ({exc}); not moved") from None
        if not cred.refresh_token:
            raise ProfileError(f"slot {name} has no refresh token; not moved")
        self._check_profile_dir(name)

    def _preview_enable(self, name: str) -> ProfileChange:
        change = ProfileChange(name, "would-enable", self.profile_dir(name))
        with contextlib.suppress(CredentialError):
            change.refresh_fingerprint = load_credential(
                self.store.main_slot_path(name)
            ).refresh_fingerprint
        change.linked = [
            e
            for e in SHARED_ENTRIES
            if _lexists(self.store.claude_dir / e)
            or (e in MADE_ENTRIES and not _lexists(self.profile_dir(name) / e))
        ]
        change.seeded = not _lexists(self.profile_dir(name) / GLOBAL_CONFIG_NAME)
        return change

    def _enable_one(self, name: str) -> ProfileChange:
        profile = self.profile_dir(name)
        made = [d for d in (self.dir, profile) if not _lexists(d)]
        fsutil.ensure_private_dir(self.dir, "profiles dir")
        fsutil.ensure_private_dir(profile, "profile dir", follow=False)
        change = ProfileChange(name, "enabled", profile)
        try:
            with self._both_locked(profile):
                self._check_enable(name)  # again, under the locks
                self._check_idle()
                main = self.store.main_slot_path(name)
                data = read_credential_bytes(main)
                cred = parse_credential(data)
                self.store.record_lineage(name, cred)  # the backup ring keeps a copy
                _move_file(main, profile / LIVE_NAME)
                change.refresh_fingerprint = cred.refresh_fingerprint
                change.seeded = self._seed_global_config(profile)
                self._link_shared(profile, change)
        except BaseException:
            for directory in reversed(made):  # rmdir: only what is still empty goes
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        return change

    def _seed_global_config(self, profile: Path) -> bool:
        """Start the profile's `.claude.json` from the main one's onboarding, trust and MCP keys.

        One already there is left alone: Claude Code keeps the profile's own account in it.
        """
        target = profile / GLOBAL_CONFIG_NAME
        if _lexists(target):
            return False
        doc = seed_global_config(_read_json(self.store.global_config))
        fsutil.atomic_write_text(target, json.dumps(doc, indent=2) + "\n")
        return True

    def _link_shared(self, profile: Path, change: ProfileChange) -> None:
        for entry in SHARED_ENTRIES:
            source = self.store.claude_dir / entry
            link = profile / entry
            if entry in MADE_ENTRIES and not _lexists(source) and not _lexists(link):
                source.mkdir(mode=fsutil.DIR_MODE)
            if not _lexists(source):
                continue
            if link.is_symlink() and os.readlink(link) == str(source):
                continue
            if _lexists(link):
                change.notes.append(
                    f"{link} exists and is not a link to {source}; left as it is "
                    "(merge it into the main dir by hand to share it)"
                )
                continue
            fsutil.atomic_symlink(str(source), link)
            change.linked.append(entry)

    # ------------------------------------------------------------ disable

    def disable(self, slots: Sequence[str], dry_run: bool = False) -> list[ProfileChange]:
        """Move each slot's credential back to its main-dir slot file and take its profile down.

        No slot named: every slot in a profile.
        """
        names = _unique(slots) if slots else self.enabled()
        self._check_dirs()
        for name in names:
            self._check_disable(name)
        self._check_idle()
        if dry_run:
            return [self._preview_disable(n) for n in names]
        return [self._disable_one(n) for n in names]

    def _check_disable(self, name: str) -> None:
        validate_slot_name_or_fail(name)
        home = self.home_of(name)
        if home == "ambiguous":
            raise self._ambiguous(name)
        if home != "profile":
            raise ProfileError(f"slot {name} is not in a profile")
        self._check_profile_dir(name)
        path = self.credential_path(name)
        fsutil.check_private(path, "profile credential", follow=False)
        try:
            load_credential(path)
        except CredentialError as exc:
            raise ProfileError(
                f"the credential in {path} is {exc.health.value} ({exc}); not moved"
            ) from None

    def _preview_disable(self, name: str) -> ProfileChange:
        profile = self.profile_dir(name)
        change = ProfileChange(name, "would-disable", profile)
        with contextlib.suppress(CredentialError):
            change.refresh_fingerprint = load_credential(profile / LIVE_NAME).refresh_fingerprint
        change.removed = self._ours_to_remove(profile)
        return change

    def _disable_one(self, name: str) -> ProfileChange:
        profile = self.profile_dir(name)
        change = ProfileChange(name, "disabled", profile)
        with self._both_locked(profile):
            self._check_disable(name)  # again, under the locks
            self._check_idle()
            source = profile / LIVE_NAME
            cred = parse_credential(read_credential_bytes(source))  # refreshed in place
            self.store.record_lineage(name, cred)  # the backup ring keeps a copy
            _move_file(source, self.store.main_slot_path(name))  # one step: never two homes
            change.refresh_fingerprint = cred.refresh_fingerprint
            for entry in self._ours_to_remove(profile):
                (profile / entry).unlink()
                change.removed.append(entry)
        # the profile's own locks live inside it: the dir can go only once they are released
        try:
            profile.rmdir()
        except OSError:
            left = sorted(p.name for p in profile.iterdir())
            change.notes.append(f"{profile} kept: it still holds {', '.join(left)}")
        return change

    def _ours_to_remove(self, profile: Path) -> list[str]:
        """Our links to the main dir, and the profile's `.claude.json` when it is ours alone."""
        out = []
        for entry in SHARED_ENTRIES:
            link = profile / entry
            if link.is_symlink() and os.readlink(link) == str(self.store.claude_dir / entry):
                out.append(entry)
        config = profile / GLOBAL_CONFIG_NAME
        try:
            st = config.lstat()
        except OSError:
            return out
        if stat.S_ISREG(st.st_mode) and fsutil.untrusted_reason(st) is None:
            out.append(GLOBAL_CONFIG_NAME)
        return out

    # ------------------------------------------------------------ checks and locks

    def _check_dirs(self) -> None:
        fsutil.check_private(self.dir, "profiles dir")

    def _check_profile_dir(self, name: str) -> None:
        """A profile dir that is a link, not a dir, or not ours alone is never used."""
        profile = self.profile_dir(name)
        fsutil.check_private(profile, "profile dir", follow=False)
        if _lexists(profile) and not profile.is_dir():
            raise ProfileError(f"profile dir {profile} is not a directory; refusing to use it")

    def _check_idle(self) -> None:
        busy = list(self.busy())
        if busy:
            raise ProfileError(
                f"{len(busy)} session(s) mid-turn ({', '.join(busy[:3])}); "
                "a slot changes home only while every session is between turns, retry then"
            )

    def _ambiguous(self, name: str) -> ProfileError:
        return ProfileError(
            f"{self.store.two_homes(name)}; nothing done: keep the newer one and remove the other"
        )

    @contextlib.contextmanager
    def _both_locked(self, profile: Path) -> Iterator[None]:
        """The main dir's Claude Code lock pair, then the profile's (fact 11), always this order."""
        with self.store.locked(), claude_credential_lock(profile, wait_s=self.store.lock_wait):
            yield


def seed_global_config(main: dict[str, Any]) -> dict[str, Any]:
    """A profile's first `.claude.json`: the main one's onboarding, project trust and MCP keys."""
    doc = {key: main[key] for key in SEED_KEYS if key in main}
    projects = main.get("projects")
    if isinstance(projects, dict):
        kept = {}
        for path, entry in projects.items():
            if isinstance(entry, dict):
                picked = {k: entry[k] for k in SEED_PROJECT_KEYS if k in entry}
                if picked:
                    kept[path] = picked
        if kept:
            doc["projects"] = kept
    return doc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _move_file(source: Path, target: Path) -> None:
    """Move a credential to `target` as a regular 0600 file with one link (fact 12).

    A rename within one filesystem is one atomic step; across filesystems the bytes are
    written atomically at `target` first and the source removed after.
    """
    try:
        if os.lstat(source).st_nlink != 1:
            raise OSError(errno.EXDEV, "hard-linked")
        os.rename(source, target)
        os.chmod(target, fsutil.FILE_MODE)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        fsutil.atomic_write_bytes(target, source.read_bytes())
        source.unlink()
    fsutil.fsync_dir(target.parent)
    fsutil.fsync_dir(source.parent)


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))
