"""The one way the scheduler's commands print a table: plain columns, two spaces apart.

A library (tabulate, rich) was weighed: tabulate pads its header row by two more spaces than
its cells and re-reads numeric-looking text unless told not to, rich needs pygments and
markdown-it; both would join the serving install for twenty lines of code.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

GAP = "  "


def render(
    headers: Sequence[str] | None,
    rows: Sequence[Sequence[object]],
    *,
    right: Collection[int] = (),
    indent: str = "",
) -> str:
    """``rows`` (cells turned to text) under ``headers``; columns in ``right`` right-aligned."""
    lines = [tuple(headers)] if headers else []
    lines += [tuple(str(cell) for cell in row) for row in rows]
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def aligned(line: tuple[str, ...]) -> str:
        cells = (
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        return (indent + GAP.join(cells)).rstrip()

    return "\n".join(aligned(line) for line in lines)
