"""Print (or write into README.md) the configuration reference generated from the config dataclasses.

    python -m rlhi_hpc.tools.config_doc            # print the Markdown table
    python -m rlhi_hpc.tools.config_doc --write    # replace the reference section of README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rlhi_hpc.config import iter_field_docs, load_config, to_tree

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
README = Path(__file__).resolve().parent.parent.parent / "README.md"


def _default(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= 40 else text[:37] + "..."


def reference() -> str:
    """Markdown table: key, type, default, description — one row per config leaf."""
    resolved = to_tree(load_config([]))
    lines = ["| key | type | default (resolved) | description |", "|---|---|---|---|"]
    for key, tname, _, doc in iter_field_docs():
        value: object = resolved
        for part in key.split("."):
            value = value[part]  # type: ignore[index]
        tname = tname.replace("|", "or")  # `float | None` would split the table cell
        lines.append(f"| `{key}` | {tname} | `{_default(value)}` | {doc.replace('|', '/')} |")
    return "\n".join(lines)


def render_readme(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{reference()}\n{END}{tail}"


def main() -> int:
    if "--write" in sys.argv[1:]:
        README.write_text(render_readme(README.read_text()))
        print(f"updated {README}")
    else:
        print(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
