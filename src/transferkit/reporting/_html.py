"""The small HTML pieces every page of :mod:`transferkit.reporting` is written with: escaped text, numbers, tables
and embedded images (base64 data URIs: a page loads nothing)."""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Sequence


def escape(value: Any) -> str:
    """``value`` as text safe inside HTML elements and attribute values."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A table cell's number: integers with thousands separators, floats to ``digits`` significant digits."""
    if isinstance(value, bool) or value is None:
        return escape(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else escape(value)
    return escape(value)


def image_tag(data: bytes, alt: str, mime: str = "image/png", css: str = "plot") -> str:
    """An ``<img>`` holding ``data`` as a data URI."""
    return (f'<img class="{css}" alt="{escape(alt)}" src="data:{mime};base64,'
            f'{base64.b64encode(data).decode("ascii")}">')


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of ``rows`` under ``columns``; numbers right-aligned."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            cells.append(f'<td class="num">{number(value)}</td>' if numeric else f"<td>{escape(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
