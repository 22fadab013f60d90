"""HTML building blocks for report.html: escaped text, tables, images, sections and the page itself. Everything
inline (style, images as data URIs): the file opens from disk with no network."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.6em; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.highlight td { background: #fff3cd; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
pre { background: #f6f8fa; padding: 0.6em; overflow-x: auto; font-size: 0.8em; max-height: 30em; }
p.na { color: #777; font-style: italic; }
p.failed { color: #a00; font-weight: bold; }
nav a { margin-right: 1em; }
"""


def text(value: object) -> str:
    return html.escape(str(value), quote=True)


def paragraph(content: str) -> str:
    """A paragraph of already-escaped HTML."""
    return f"<p>{content}</p>"


def heading(title: str) -> str:
    return f"<h3>{text(title)}</h3>"


def number(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return text(value if value is not None else "")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value == value else "nan"
    return text(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], highlight: Iterable[int] = ()) -> str:
    """Cells are numbers (formatted here) or text (escaped here); rows at ``highlight`` positions are marked."""
    marked = set(highlight)
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="highlight"' if i in marked else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{number(cell)}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def image(uri: str, alt: str) -> str:
    return f'<img src="{text(uri)}" alt="{text(alt)}">'


def preformatted(content: str) -> str:
    return f"<pre>{text(content)}</pre>"


def not_available(why: str) -> str:
    return f'<p class="na">not available: {text(why)}</p>'


def failed(what: str) -> str:
    return f'<p class="failed">this section could not be drawn: {text(what)} (see the training log)</p>'


def section(section_id: str, title: str, body: str) -> str:
    return f'<section><h2 id="{text(section_id)}">{text(title)}</h2>\n{body}\n</section>'


def document(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The page: a title, a table of contents, then each (id, title, body) section."""
    nav = " ".join(f'<a href="#{text(sid)}">{text(stitle)}</a>' for sid, stitle, _ in sections)
    parts = [section(sid, stitle, body) for sid, stitle, body in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{text(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{text(title)}</h1>\n<p>{text(subtitle)}</p>\n<nav>{nav}</nav>\n" + "\n".join(parts)
            + "\n</body>\n</html>\n")
