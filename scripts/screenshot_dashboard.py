"""Save docs/dashboard.png: the dashboard on `demo --keep`'s sandbox, as Debian's headless
Chromium renders it, so the README can show the page before anyone installs it.

Usage: python scripts/screenshot_dashboard.py [--out docs/dashboard.png] [--size 1280x900]

Everything is real and local: `gptme-subscription demo --keep` leaves its three synthetic
slots, events and transcripts in a temp dir, `gptme-subscription ... dashboard --port 0` serves
them on 127.0.0.1, and the browser harness of the tests (tests/support/browser.py: Debian's
chromium through its chromedriver, nothing downloaded) loads the page. The script waits until
the page shows every slot, the events, the chart and the demo's last session, which a
real UserPromptSubmit hook run marks mid-turn again, checks that no token of the sandbox is in
the page, saves the PNG and removes the sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.browser import CHROMEDRIVER, CHROMIUM, chromium, wait_until  # noqa: E402
from tests.support.dashboard import serving_dashboard  # noqa: E402
from tests.support.sandbox import run_ours  # noqa: E402


def _prompt(claude_dir: Path) -> dict[str, str]:
    """The UserPromptSubmit payload Claude Code would send for the next prompt of the demo's
    most recent session (its id and cwd from its transcript), so the page can show that
    session's project, model and last turns."""
    transcript = max((claude_dir / "projects").glob("*/*.jsonl"), key=lambda p: p.stat().st_mtime)
    first = json.loads(transcript.read_text().splitlines()[0])
    return {
        "session_id": first["sessionId"],
        "hook_event_name": "UserPromptSubmit",
        "cwd": first["cwd"],
        "transcript_path": str(transcript),
        "prompt": "next step, please",
    }


def _flags_as_env(flags: list[str]) -> dict[str, str]:
    """`--claude-dir X --state-dir Y ...` as the `GPTME_SUBSCRIPTION_*` variables that say
    the same to a process that takes no flags."""
    pairs = zip(flags[::2], flags[1::2], strict=True)
    return {f"GPTME_SUBSCRIPTION_{k[2:].replace('-', '_').upper()}": v for k, v in pairs}


def _tokens(claude_dir: Path) -> list[str]:
    """Every token in the sandbox's credential files and their backups (none may be on the
    page)."""
    found: list[str] = []
    for path in claude_dir.rglob("*"):
        if path.is_symlink() or not path.is_file() or "projects" in path.parts:
            continue
        try:
            oauth = json.loads(path.read_text()).get("claudeAiOauth") or {}
        except (ValueError, AttributeError):
            continue
        found += [t for t in (oauth.get("accessToken"), oauth.get("refreshToken")) if t]
    return found


def _viewport(driver: Any, width: int, height: int) -> None:
    """The page's own area (not the window's) `width` x `height`, the PNG's size."""
    driver.set_window_size(width, height)
    inner_w, inner_h = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * width - inner_w, 2 * height - inner_h)


def _ready(driver: Any, slots: int, project: str) -> bool:
    """The first snapshot has been drawn: every slot's row with its weekly figure, the events,
    the chart, the live marker and the busy session with its project."""
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#accounts tbody tr[data-slot]")
    return (
        len(rows) == slots
        and all("%" in row.text for row in rows)
        and bool(driver.find_elements(By.CSS_SELECTOR, "#accounts tbody tr.live"))
        and bool(driver.find_elements(By.CSS_SELECTOR, "#events li"))
        and bool(driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr.busy[data-session]"))
        and project in driver.find_element(By.ID, "sessions").text  # its transcript, read
        and bool(driver.find_element(By.ID, "updated").text.strip())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--size", default="1280x900", help="window size WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.lower().split("x"))
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        print(
            f"screenshot: {', '.join(missing)} missing (scripts/install-chromium.sh)",
            file=sys.stderr,
        )
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="gsp-screenshot-"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "TMPDIR": str(tmp)}
    try:
        demo = run_ours(["demo", "--keep", "--json"], env, timeout=300)
        if demo.returncode != 0:
            print(f"screenshot: demo --keep failed: {demo.stderr.strip()}", file=sys.stderr)
            return 1
        doc = json.loads(demo.stdout)
        words = shlex.split(doc["summary"]["dashboard"])  # gptme-subscription FLAGS dashboard
        flags = words[1:-1]
        claude_dir = Path(flags[flags.index("--claude-dir") + 1])
        status = run_ours([*flags, "status", "--json"], env)
        slots = len(json.loads(status.stdout)["slots"])
        # one session mid-turn, as Claude Code's UserPromptSubmit hook marks it
        hook_env = {**env, **_flags_as_env(flags)}  # a hook takes no flags, only env
        prompt = _prompt(claude_dir)
        project = Path(prompt["cwd"]).name
        hook = run_ours(["hook", "UserPromptSubmit"], hook_env, stdin=json.dumps(prompt))
        if hook.returncode != 0:
            print(f"screenshot: the hook failed: {hook.stderr.strip()}", file=sys.stderr)
            return 1
        with serving_dashboard(flags, (), env) as dash, chromium() as driver:
            _viewport(driver, width, height)
            driver.get(dash.url)
            wait_until(driver, lambda d: _ready(d, slots, project), timeout=30)
            page = driver.page_source
            tokens = _tokens(claude_dir)
            leaked = [t for t in tokens if t in page]
            if leaked:
                print(f"screenshot: {len(leaked)} token(s) on the page: not saved", file=sys.stderr)
                return 1
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(args.out)):
                print(f"screenshot: the browser saved nothing to {args.out}", file=sys.stderr)
                return 1
        print(
            f"screenshot: {args.out} ({width}x{height}, {slots} slots, "
            f"{len(tokens)} tokens checked absent, {dash.url})"
        )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
