"""Print the table of the `cli_tuner:` settings in docs/settings.md, generated from cli_tuner/settings.py.

    .venv/bin/python scripts/settings_table.py          # print it
    .venv/bin/python scripts/settings_table.py --write  # replace the table in docs/settings.md

tests/test_settings.py fails while that table differs from this output.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli_tuner.settings import markdown_table  # noqa: E402
from scripts.doc_table import replace_table  # noqa: E402

TABLE_DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
HEADER = "| key | type | default | range | environment | what it does |"


def write() -> None:
    replace_table(TABLE_DOC, HEADER, markdown_table())


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        print(markdown_table())
