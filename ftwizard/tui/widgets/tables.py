"""Filling a DataTable with columns sized from the rows themselves, at once.

A DataTable measures its auto-width columns later, on idle; on a loaded machine a screen
could be drawn before that, so a column sized for its header cut the data ("qlo" for
"qlora-pilot", row "31" for 311). Here each column gets an explicit width from its
widest cell before any row is added, so what is drawn never depends on timing. When
the columns are wider than the table, the table's border says that it scrolls sideways.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

SCROLL_HINT = "← → scroll"


def _width(cell) -> int:
    if isinstance(cell, Text):
        return max((Text(line).cell_len for line in cell.plain.splitlines()), default=0)
    return max((len(line) for line in str(cell).splitlines()), default=0)


def fill_table(table: DataTable, columns: list[str], rows: list[tuple[list, str | None]],
               max_width: dict[int, int] | None = None) -> None:
    """Replace the table's columns and rows; `rows` is [(cells, key)]. `max_width` caps a column
    (by index) whose cells are long prose (they stay whole in the detail pane)."""
    keep = table.cursor_row
    widths = [_width(c) for c in columns]
    for cells, _key in rows:
        for i, cell in enumerate(cells):
            widths[i] = max(widths[i], _width(cell))
    for i, cap in (max_width or {}).items():
        widths[i] = min(widths[i], max(cap, _width(columns[i])))
    table.clear(columns=True)
    for label, width in zip(columns, widths):
        table.add_column(label, width=width)
    for cells, key in rows:
        table.add_row(*cells, key=key)
    if rows:
        table.move_cursor(row=min(max(keep, 0), len(rows) - 1))
    total = sum(widths) + 2 * table.cell_padding * len(widths)
    wide = total > (table.scrollable_content_region.width or table.size.width or 10_000)
    table.border_subtitle = SCROLL_HINT if wide else None
