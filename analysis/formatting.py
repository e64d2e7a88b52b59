"""One number format for the whole report, and tables rendered without index columns or blank header rows."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import pandas as pd

from .runs import _T975, format_ci

NBSP = "\u00a0"  # joins "mean ± half-width" so a table cell or a sentence never breaks inside it


def num(value: float, digits: int = 3) -> str:
    """A number as every table and sentence of the report prints it."""
    if isinstance(value, int | bool) or (isinstance(value, float) and value.is_integer() and digits == 0):
        return f"{int(value):,}"
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def ci(values: Iterable[float], digits: int = 3) -> str:
    """`mean ± half-width` of the two-sided 95% Student-t interval over seeds; the value alone for one seed."""
    return format_ci(values, digits)


def table_html(frame: pd.DataFrame, wrap: Iterable[str] = ()) -> str:
    """A plain HTML table: the frame's columns as one header row, no index, floats through `num`."""
    wrap = set(wrap)

    def cell(tag: str, column: str, value) -> str:
        text = num(value) if isinstance(value, float) else str(value)
        cls = ' class="wrap"' if column in wrap else ""
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", c, c) for c in frame.columns)
    rows = [
        "<tr>" + "".join(cell("td", c, v) for c, v in zip(frame.columns, row, strict=False)) + "</tr>"
        for row in frame.values
    ]
    return f'<table class="data">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody>\n</table>"


def show(frame: pd.DataFrame, wrap: Iterable[str] = ()) -> None:
    """Display a table in the report (Quarto and the offline renderer both pass the HTML through)."""
    from IPython.display import HTML, display

    display(HTML(table_html(frame, wrap)))


def md(text: str) -> None:
    """Display generated markdown: read by Pandoc like the report's own prose."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def t975(n: int) -> float:
    """The Student-t quantile behind every interval of the report, for n seeds."""
    return _T975.get(n - 1, 1.96)
