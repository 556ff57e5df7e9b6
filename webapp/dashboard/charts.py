"""Server-rendered SVG charts: rates over time with 95 % interval bands, a confusion heat map.

No JavaScript: the markup is the chart, so it prints, screenshots and reads the same
everywhere. Points under the minimum cell size are left out (the line breaks there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2")
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 28


@dataclass(frozen=True)
class Point:
    period: date
    value: float | None  # None: not enough data
    low: float | None = None
    high: float | None = None


def _x(index: int, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + (span / 2 if count <= 1 else span * index / (count - 1))


def _y(value: float, top: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top if top else 1)


def line_chart(
    title: str, series: dict[str, list[Point]], *, percent: bool = True, top: float | None = None
) -> Markup:
    """One line per model version with its interval band; y from 0 to ``top``."""
    periods = sorted({p.period for points in series.values() for p in points})
    values = [v for pts in series.values() for p in pts for v in (p.value, p.high) if v is not None]
    top = top if top is not None else (max(values) * 1.1 if values else 1.0) or 1.0
    where = {period: i for i, period in enumerate(periods)}
    parts = [_frame(title, top, percent, periods)]
    for number, (version, points) in enumerate(series.items()):
        colour = PALETTE[number % len(PALETTE)]
        shown = [p for p in points if p.value is not None]
        parts.append(_band(shown, where, len(periods), top, colour))
        parts.append(_line(shown, where, len(periods), top, colour, version, percent))
    parts.append(_legend(list(series)))
    if not any(p.value is not None for pts in series.values() for p in pts):
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">'
            "not enough data</text>"
        )
    label = escape(title)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        + "".join(parts)
        + "</svg>"
    )


def _frame(title: str, top: float, percent: bool, periods: list[date]) -> str:
    out = [f"<title>{escape(title)}</title>"]
    for step in range(5):
        value = top * step / 4
        y = _y(value, top)
        text = f"{value:.0%}" if percent else f"{value:,.0f}"
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{text}</text>'
        )
    ticks = periods if len(periods) <= 8 else periods[:: max(1, len(periods) // 6)]
    for period in ticks:
        x = _x(periods.index(period), len(periods))
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="tick">'
            f"{period.strftime('%b %d')}</text>"
        )
    return "".join(out)


def _band(points: list[Point], where: dict[date, int], count: int, top: float, colour: str) -> str:
    banded = [p for p in points if p.low is not None and p.high is not None]
    if not banded:
        return ""
    upper = [f"{_x(where[p.period], count):.1f},{_y(p.high, top):.1f}" for p in banded]  # type: ignore[arg-type]
    lower = [f"{_x(where[p.period], count):.1f},{_y(p.low, top):.1f}" for p in reversed(banded)]  # type: ignore[arg-type]
    return f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" class="band"/>'


def _line(
    points: list[Point],
    where: dict[date, int],
    count: int,
    top: float,
    colour: str,
    version: str,
    percent: bool,
) -> str:
    coords = [(_x(where[p.period], count), _y(p.value, top), p) for p in points]  # type: ignore[arg-type]
    out = []
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
        out.append(f'<polyline points="{path}" stroke="{colour}" class="line"/>')
    for x, y, p in coords:
        value = f"{p.value:.1%}" if percent else f"{p.value:,.1f}"
        tip = f"{version} {p.period}: {value}"
        if p.low is not None:
            tip += f" (95 % CI {p.low:.1%}–{p.high:.1%})" if percent else ""
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    return "".join(out)


def _legend(versions: list[str]) -> str:
    out = []
    for number, version in enumerate(versions):
        x = LEFT + 8 + number * 110
        colour = PALETTE[number % len(PALETTE)]
        out.append(f'<rect x="{x}" y="2" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14}" y="11" class="legend">{escape(version or "—")}</text>')
    return "".join(out)


def heatmap(cells: dict[tuple[str, str], int], *, cell: int = 44) -> Markup:
    """Model output (rows) × settled label (columns); darker = more items."""
    outputs = sorted({o for o, _ in cells})
    labels = sorted({t for _, t in cells})
    if not cells:
        return Markup('<p class="empty">not enough data</p>')
    peak = max(cells.values())
    left, top = 90, 70
    width, height = left + cell * len(labels) + 4, top + cell * len(outputs) + 4
    parts = [
        f'<svg class="heatmap" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="confusion matrix: model output by settled label">'
    ]
    for j, label in enumerate(labels):
        x = left + j * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 6}" transform="rotate(-40 {x} {top - 6})" '
            f'class="tick">{escape(label)}</text>'
        )
    for i, output in enumerate(outputs):
        y = top + i * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end" class="tick">'
            f"{escape(output)}</text>"
        )
        for j, label in enumerate(labels):
            parts.append(
                _cell(
                    left + j * cell, y, cell, cells.get((output, label), 0), peak, output == label
                )
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _cell(x: float, y: float, size: int, count: int, peak: int, diagonal: bool) -> str:
    strength = count / peak if peak else 0.0
    hue = "5,150,105" if diagonal else "220,38,38"
    ink = "#fff" if strength > 0.55 else "#111"
    return (
        f'<rect x="{x}" y="{y}" width="{size - 2}" height="{size - 2}" '
        f'fill="rgba({hue},{0.08 + 0.92 * strength:.2f})"><title>{count}</title></rect>'
        f'<text x="{x + size / 2 - 1}" y="{y + size / 2 + 4}" text-anchor="middle" '
        f'fill="{ink}" class="count">{count}</text>'
    )
