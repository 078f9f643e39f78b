"""One way to write tables and figures for every report (summary, report, compare, ab, al_report).

Tables are markdown (what report.md, comparison.md and al_report.md hold and what the console
prints); an HTML page is that markdown rendered by the `markdown` package, with the figures inlined.
Figures are matplotlib PNGs whose caption carries what a reader needs to weigh them: the units,
the sample size, the interval's level and the date; never a path of the machine that drew them.
"""

import base64
import datetime
import html
import io
import math
from collections.abc import Iterable

import markdown as markdown_package

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
    "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
)
# The page checks itself: data-figures on <body> says how many figures decoded, data-errors any
# script error (what the browser test reads).
SELF_CHECK = (
    "<script>window.addEventListener('error',e=>{document.body.dataset.errors=(document.body.dataset.errors||'')"
    "+e.message+';'});window.addEventListener('load',()=>{const i=[...document.images];"
    "document.body.dataset.figures=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>"
)


def short_value(value) -> str:
    """A config value for one line: floats to 4 significant digits, strings quoted."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


def interval(low: float, high: float, spec: str = ".4f") -> str:
    """ "[low, high]", or a statement that there is none (one value: no spread to estimate)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "[n/a: one value]"
    return f"[{low:{spec}}, {high:{spec}}]"


def table(header: Iterable, rows: Iterable[Iterable]) -> list[str]:
    """A markdown table, one line per row; cells are written as given (format numbers before), and a
    `|` inside a cell is escaped so it cannot split the row."""
    header = [_cell(h) for h in header]
    lines = [_line(header), "|" + "---|" * len(header)]
    for row in rows:
        cells = [_cell(c) for c in row]
        if len(cells) != len(header):
            raise ValueError(f"a row of {len(cells)} cells under a header of {len(header)}: {cells}")
        lines.append(_line(cells))
    return lines


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _line(cells: list[str]) -> str:
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def html_page(text: str, images: dict[str, bytes], title: str) -> str:
    """A self-contained page: the markdown rendered (tables, lists, code), every `![](NAME)` figure
    whose NAME is in `images` inlined as a PNG data URI."""
    body = markdown_package.markdown(text, extensions=["tables", "sane_lists"], output_format="html")
    for name, data in images.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        body = body.replace(f'src="{html.escape(name)}"', f'src="{uri}"')
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style>{SELF_CHECK}</head><body>\n{body}\n</body></html>\n"
    )


def caption(what: str, sample: str, interval: str | None = None, when: datetime.date | None = None) -> str:
    """A figure's caption: what it shows (with units), the sample it was measured on, the interval's
    level and method, and the date. E.g. caption("relative effect vs random, %", "10,000 users",
    "Bonferroni 95% Welch intervals")."""
    parts = [what, sample] + ([interval] if interval else [])
    parts.append((when or datetime.date.today()).isoformat())
    return "; ".join(parts)


def png(fig, note: str = "", dpi: int = 100) -> bytes:
    """The figure as PNG bytes, with `note` (a caption()) written under the axes."""
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, ha="left", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
    else:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
