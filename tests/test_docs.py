"""The docs cannot drift from the code: the tables that name code are checked against it.

- docs/architecture.md has one row per module of both packages, and no row for a module
  that does not exist;
- docs/configuration.md has one row per `Config` field, and none for a field that is gone;
- every relative link in the README, CONTRIBUTING, CHANGELOG and docs/ points at a file that
  exists (and at a heading that exists, when it names one);
- the README stays a page;
- the tournament tables in docs/simulator.md (link mode; link vs profile mode) sit between
  their markers and are what benchmarks/docs_tables.py renders from saved results.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from gptme_subscription_plugin.config import Config
from gptme_subscription_plugin.sim.scenarios import SCENARIOS
from gptme_subscription_plugin.sim.tournament import ScenarioSummary, to_json

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
DOCS = REPO / "docs"
README = REPO / "README.md"
README_MAX_LINES = 160
SAVED_TOURNAMENT = REPO / "benchmarks" / "results" / "tournament.json"


FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!\!)\[[^\]\n]*\]\(([^)\s]+)\)")
ROW_NAME = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.M)


def load_docs_tables() -> ModuleType:
    """benchmarks/docs_tables.py, imported by path (benchmarks/ is not a package)."""
    path = REPO / "benchmarks" / "docs_tables.py"
    spec = importlib.util.spec_from_file_location("docs_tables", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block(text: str, name: str) -> str:
    """What lies between `<!-- name:begin -->` and `<!-- name:end -->` (exactly one pair)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    assert text.count(begin) == 1 and text.count(end) == 1, f"markers {begin} / {end}"
    return text.split(begin, 1)[1].split(end, 1)[0]


def modules(package: str) -> set[str]:
    root = SRC / package
    return {p.relative_to(root).as_posix() for p in root.rglob("*.py")}


def table_names(text: str, name: str) -> list[str]:
    return ROW_NAME.findall(block(text, name))


# ---------------------------------------------------------------- the module tables


def test_the_architecture_table_names_every_module_of_the_plugin_and_no_other() -> None:
    listed = table_names((DOCS / "architecture.md").read_text(), "modules")
    actual = modules("gptme_subscription_plugin")

    assert sorted(set(listed)) == sorted(listed), "a module is listed twice"
    assert not actual - set(listed), f"add a row to docs/architecture.md for {actual - set(listed)}"
    phantom = set(listed) - actual
    assert not phantom, f"docs/architecture.md lists modules that do not exist: {phantom}"


def test_the_architecture_table_names_every_module_of_the_0_1_api_and_no_other() -> None:
    listed = table_names((DOCS / "architecture.md").read_text(), "compat-modules")

    assert sorted(listed) == sorted(modules("gptme_subscription"))


# ---------------------------------------------------------------- the settings table


def test_the_settings_table_has_one_row_per_config_field() -> None:
    text = (DOCS / "configuration.md").read_text()
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed = ROW_NAME.findall(section)
    fields = [f.name for f in dataclasses.fields(Config)]

    assert sorted(listed) == sorted(fields), (
        f"missing: {set(fields) - set(listed)}; not a Config field: {set(listed) - set(fields)}"
    )


# ---------------------------------------------------------------- links


def doc_files() -> list[Path]:
    pages = [README, REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]
    return [p for p in pages if p.exists()]


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans (links in code are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a markdown file (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def test_the_doc_set_is_what_the_readme_promises() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    for page in (
        "policy.md",
        "cli.md",
        "configuration.md",
        "hooks.md",
        "gptme.md",
        "simulator.md",
        "reliability.md",
        "architecture.md",
        "facts.md",
        "migrating-from-0.1.md",
    ):
        assert page in names


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_points_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert broken == []


def test_the_readme_links_every_doc_page() -> None:
    linked = {t.partition("#")[0] for t in relative_links(README)}
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}

    assert not pages - linked, f"the README does not link {pages - linked}"


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    """The checker itself: a link to a missing file or heading is found, code is not a link."""
    (tmp_path / "a.md").write_text("# Top\n\n## Part two\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md) [ok](a.md#part-two) [gone](missing.md) [bad](a.md#nope) "
        "[web](https://example.invalid/x) `[code](nothing.md)`\n"
        "```\n[fenced](nothing.md)\n```\n"
    )

    assert relative_links(page) == ["a.md", "a.md#part-two", "missing.md", "a.md#nope"]
    assert anchors(tmp_path / "a.md") == {"top", "part-two"}


# ---------------------------------------------------------------- the README


def test_the_readme_is_a_page() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_the_readme_starts_with_the_demo_and_the_test_command() -> None:
    """`.ci/run` and reviewers run these two, in this order, before anything else."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.M | re.S)

    assert blocks[0].strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && "
        ".venv/bin/gptme-subscription demo"
    )
    assert blocks[1].strip() == "make test"


# ---------------------------------------------------------------- the tournament table


def summary(name: str, captures: dict[str, float], stalls: dict[str, float]) -> ScenarioSummary:
    s = ScenarioSummary(name, f"{name} fleet", 8, 0.99, 1.0, {"default": 8})
    for policy, capture in captures.items():
        s.policies[policy] = {
            "capture": capture,
            "oracle_ratio": capture / captures["oracle"],
            "stalls": stalls[policy],
            "swaps_per_day": 6.54,
            "violations": 0.0,
        }
    return s


def test_the_tournament_table_is_rendered_from_the_tournament_json(tmp_path: Path) -> None:
    tables = load_docs_tables()
    policies = ["default", "sticky", "soonest-reset", "oracle"]
    doc = to_json(
        [
            summary(
                "b-scenario",
                {"default": 0.758, "sticky": 0.70, "soonest-reset": 0.755, "oracle": 0.764},
                {"default": 171.4, "sticky": 185.0, "soonest-reset": 190.0, "oracle": 160.0},
            ),
            summary(
                "a-scenario",
                {"default": 0.5, "sticky": 0.4, "soonest-reset": 0.4, "oracle": 0.5},
                {"default": 10.0, "sticky": 12.0, "soonest-reset": 12.0, "oracle": 9.0},
            ),
        ],
        8,
        policies,
    )

    rendered = tables.render_tournament(json.loads(doc)).splitlines()

    assert rendered[0] == tables.HEADER
    assert rendered[2:] == [
        "| a-scenario | 50.0 % | 100.0 % | 40.0 % (sticky) | 10 | 12 (sticky) | 6.5 | 0 |",
        "| b-scenario | 75.8 % | 99.2 % | 75.5 % (soonest-reset) | 171 | 185 (sticky) | 6.5 | 0 |",
    ]

    saved = tmp_path / "results.json"
    saved.write_text(doc)
    page = tmp_path / "simulator.md"
    page.write_text(f"before\n{tables.BEGIN}\nold table\n{tables.END}\nafter\n")
    argv = ["--tournament", str(saved), "--doc", str(page)]
    assert tables.main([*argv, "--check"]) == 1
    assert "old table" in page.read_text()  # --check changes nothing
    assert tables.main(argv) == 0
    assert block(page.read_text(), "tournament").strip().splitlines() == rendered
    assert page.read_text().startswith("before\n") and page.read_text().endswith("\nafter\n")
    assert tables.main([*argv, "--check"]) == 0


def test_the_profile_table_puts_link_mode_next_to_profile_mode_and_names_each_miss() -> None:
    tables = load_docs_tables()
    s = ScenarioSummary("fleet-mixed", "a fleet", 8, 0.9, 1.0, {"default": 8})
    metrics = {
        # policy: (capture, stalls)
        "default": (0.80, 1000.0),
        "profile": (0.84, 600.0),
        "profile:pace": (0.85, 700.0),
        "profile:least-loaded": (0.70, 500.0),
    }
    for policy, (capture, stalls) in metrics.items():
        s.policies[policy] = {
            "capture": capture,
            "bound_ratio": capture / 0.9,
            "stalls": stalls,
            "resumes": 300.0,
            "mid_turn_swaps": 0.0,
            "lost_chains": 0.0,
        }
    doc = json.loads(to_json([s], 8, list(metrics)))

    rows = tables.render_profiles(doc).splitlines()

    assert rows[0].split(" | ")[1:5] == ["link (default)", "profile (ours)", "pace", "least-loaded"]
    assert rows[2] == (
        "| fleet-mixed | 1000 / 88.9 % | 600 / 93.3 % | 700 / 94.4 % | 500 / 77.8 % | 300 | 0, 0 "
        "| stalls 0.60 x link's; capture 93.3 % of bound; capture 1.0 points under pace |"
    )
    with pytest.raises(tables.TableError):  # no link-mode rival in this file
        tables.render_tournament(doc)


def test_a_results_file_that_is_no_tournament_changes_nothing(tmp_path: Path) -> None:
    tables = load_docs_tables()
    saved = tmp_path / "results.json"
    saved.write_text('{"scenarios": {}}')
    page = tmp_path / "simulator.md"
    page.write_text(f"{tables.BEGIN}\nold\n{tables.END}\n")

    assert tables.main(["--tournament", str(saved), "--doc", str(page)]) == 2
    assert page.read_text() == f"{tables.BEGIN}\nold\n{tables.END}\n"


def test_the_simulator_page_has_one_tournament_table_between_its_markers() -> None:
    rows = block((DOCS / "simulator.md").read_text(), "tournament").strip().splitlines()

    assert rows[0] == load_docs_tables().HEADER
    assert len(rows) == 2 + len(SCENARIOS)  # header, rule, one row per scenario


def test_the_simulator_page_matches_the_saved_tournament_results() -> None:
    """Once results are saved (make docs-tables), the page must be their rendering."""
    if not SAVED_TOURNAMENT.exists():
        pytest.skip("no saved tournament results yet: make docs-tables RERUN=1 saves them")
    tables = load_docs_tables()
    rendered = tables.render_tournament(json.loads(SAVED_TOURNAMENT.read_text()))

    assert block((DOCS / "simulator.md").read_text(), "tournament").strip() == rendered.strip()
    profiles = tables.render_profiles(json.loads(SAVED_TOURNAMENT.read_text()))
    assert block((DOCS / "simulator.md").read_text(), "profiles").strip() == profiles.strip()
