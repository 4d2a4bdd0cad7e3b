"""Plot `benchmarks.load --find-max` reports: gateway CPU and p99 send-time error against concurrent calls.

    python -m benchmarks.plot_load asyncio.json uvloop.json --output docs/images/load.png

Drawn with Pillow (a dependency already), one series per report (per event loop); a hollow marker is a step
that did not hold.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1200, 520
PANEL_MARGIN = (80, 60, 30, 70)  # left, top, right, bottom
COLOURS = {"asyncio": (31, 119, 180), "uvloop": (214, 39, 40)}
FALLBACK_COLOURS = [(44, 160, 44), (148, 103, 189), (140, 86, 75)]
GRID = (225, 225, 225)
INK = (30, 30, 30)
TARGET = (120, 120, 120)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value`."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if factor * power >= value:
            return float(factor * power)
    return float(10 * power)


def panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    title: str,
    y_label: str,
    series: list[tuple[str, list[tuple[float, float, bool]]]],
    x_max: float,
    y_max: float,
    target: float | None,
) -> None:
    left, top, right, bottom = box
    x0, y0 = left + PANEL_MARGIN[0], top + PANEL_MARGIN[1]
    x1, y1 = right - PANEL_MARGIN[2], bottom - PANEL_MARGIN[3]
    small, normal = font(14), font(17)

    def at(x: float, y: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * x / x_max, y1 - (y1 - y0) * min(y, y_max) / y_max

    draw.text(((x0 + x1) / 2, top + 20), title, fill=INK, font=normal, anchor="mm")
    for i in range(6):
        y = y_max * i / 5
        _, py = at(0, y)
        draw.line([(x0, py), (x1, py)], fill=GRID)
        draw.text((x0 - 8, py), f"{y:g}", fill=INK, font=small, anchor="rm")
    for i in range(6):
        x = x_max * i / 5
        px, _ = at(x, 0)
        draw.line([(px, y0), (px, y1)], fill=GRID)
        draw.text((px, y1 + 8), f"{x:g}", fill=INK, font=small, anchor="mt")
    draw.rectangle([x0, y0, x1, y1], outline=INK)
    draw.text(((x0 + x1) / 2, bottom - 22), "concurrent calls", fill=INK, font=small, anchor="mm")
    draw.text((left + 14, (y0 + y1) / 2), y_label, fill=INK, font=small, anchor="lm")
    if target is not None:
        _, py = at(0, target)
        for sx in range(int(x0), int(x1), 12):
            draw.line([(sx, py), (min(sx + 6, x1), py)], fill=TARGET, width=2)
        draw.text((x1 - 6, py - 4), f"target {target:g}", fill=TARGET, font=small, anchor="rb")
    for index, (name, points) in enumerate(series):
        colour = COLOURS.get(name, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])
        pixels = [at(x, y) for x, y, _ in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=3)
        for (px, py), (_, _, held) in zip(pixels, points, strict=True):
            r = 5
            draw.ellipse(
                [px - r, py - r, px + r, py + r], outline=colour, width=2, fill=colour if held else None
            )
        lx, ly = x0 + 12, y0 + 12 + 22 * index
        draw.line([(lx, ly), (lx + 24, ly)], fill=colour, width=3)
        draw.text((lx + 32, ly), name, fill=INK, font=small, anchor="lm")


def plot(reports: list[dict[str, Any]], output: Path) -> None:
    cpu: list[tuple[str, list[tuple[float, float, bool]]]] = []
    p99: list[tuple[str, list[tuple[float, float, bool]]]] = []
    for report in reports:
        steps = [s for s in report["steps"] if s["send_error_ms"]["p99"] is not None]
        name = str(report["loop"])
        cpu.append((name, [(s["calls"], s["gateway_cpu_percent"], s["held"]) for s in steps]))
        p99.append((name, [(s["calls"], s["send_error_ms"]["p99"], s["held"]) for s in steps]))
    x_max = nice_ceiling(max(x for _, pts in cpu for x, _, _ in pts))
    p99_max = nice_ceiling(max(6.0, *(y for _, pts in p99 for _, y, _ in pts)))
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    half = WIDTH // 2
    panel(draw, (0, 0, half, HEIGHT), "Gateway CPU (one core)", "%", cpu, x_max, 100.0, None)
    panel(
        draw,
        (half, 0, WIDTH, HEIGHT),
        "p99 RTP send-time error",
        "ms",
        p99,
        x_max,
        p99_max,
        5.0,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    image.save(output, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports of benchmarks.load --find-max")
    parser.add_argument("--output", type=Path, default=Path("docs/images/load.png"))
    args = parser.parse_args()
    plot([json.loads(path.read_text()) for path in args.reports], args.output)
    print(args.output)


if __name__ == "__main__":
    main()
