"""Replace one generated Markdown table in a doc, found by its header line, with a script's output."""

from __future__ import annotations

from pathlib import Path


def replace_table(doc: Path, header: str, table: str) -> None:
    """The rows from `header` to the first line that is not a table row are replaced by `table`."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = table.splitlines()
    doc.write_text("\n".join(lines) + "\n", encoding="utf-8")
