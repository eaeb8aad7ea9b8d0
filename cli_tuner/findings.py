"""What a check found: one type for every check that can pass, warn or stop a run.

A `Check` names what was checked, says what was found and, when it failed, the fix. `level`
says how much a failure matters: an `error` stops the command, a `warning` is printed, `info`
only describes. Checks are returned, never printed: `lines()` gives the text for the console.
"""

from __future__ import annotations

from dataclasses import dataclass

LEVEL_TAGS = {"error": ("error", "red"), "warning": ("warn", "yellow"), "info": ("info", "cyan")}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    level: str     # "error", "warning" or "info": how much a failure matters
    detail: str
    fix: str = ""

    @property
    def failed_error(self) -> bool:
        return not self.ok and self.level == "error"

    @property
    def failed(self) -> bool:
        return not self.ok and self.level in ("error", "warning")

    def line(self) -> str:
        return f"{self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix and not self.ok else "")


def first_error(checks: list[Check]) -> Check | None:
    return next((c for c in checks if c.failed_error), None)


def summary_line(source: str, checks: list[Check]) -> str | None:
    """`source: first error's line (and N more above)`, or None when nothing failed."""
    errors = [c for c in checks if c.failed_error]
    if not errors:
        return None
    more = f" (and {len(errors) - 1} more above)" if len(errors) > 1 else ""
    return f"{source}: {errors[0].line()}{more}"


def markup_lines(checks: list[Check]) -> list[str]:
    """One rich-markup line per check, its fix on the next line when it failed."""
    from rich.markup import escape

    lines = []
    for check in checks:
        tag, style = ("ok", "green") if check.ok else LEVEL_TAGS[check.level]
        line = f"[{style}]{tag:<5}[/{style}] {escape(check.name)}: {escape(check.detail)}"
        if not check.ok and check.fix:
            line += f"\n      fix: {escape(check.fix)}"
        lines.append(line)
    return lines
