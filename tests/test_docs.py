"""The README leads to the pod: short, "On a pod" on its first screen, and every link in it and in
docs/ points at a file that exists."""

from __future__ import annotations

import re

import pytest

from conftest import REPO

README = REPO / "README.md"
FIRST_SCREEN = 40  # lines of an ordinary terminal or a repository page above the fold


def test_the_readme_is_short_and_shows_the_pod_on_its_first_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, len(lines)
    assert "## On a pod" in lines[:FIRST_SCREEN]
    pod = "\n".join(lines[lines.index("## On a pod"):])
    pod = pod[:pod.index("\n## ", 1)]
    for step in ("TRAIN_CONFIG", "/workspace", "doctor", "validate", "smoke", "full", "docs/runpod.md"):
        assert step in pod, step


def test_the_commands_table_has_one_row_per_verb():
    from cli_tuner import commands

    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", text[text.index("## Commands"):text.index("## Configs")], re.M)
    assert sorted(rows) == sorted(module.NAME for module in commands.ALL)


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file(page):
    missing = [link for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
               if not link.startswith(("http://", "https://", "mailto:")) and not (page.parent / link).exists()]
    assert missing == []
