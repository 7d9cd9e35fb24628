"""Drawing diffraction patterns and the scan overview in a terminal, with rich.

Pure functions from arrays to rich renderables; nothing here reads keys or talks to the
loop. Images are drawn with the upper half block: one character cell holds two pixels
stacked (foreground = upper, background = lower), so pixels come out roughly square.
rich picks truecolor, 256 or 16 colours to suit the terminal.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from al4dstem.labels import CLASSES

# Paper Fig. 7 colours: none light blue, vertical orange, horizontal pink.
CLASS_RGB = ((110, 200, 255), (255, 150, 30), (255, 90, 200))
CURRENT_RGB = (60, 255, 60)
_INFERNO = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                     (245, 125, 21), (250, 193, 39), (252, 255, 164)], dtype=float)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO)), _INFERNO[:, k])
                     for k in range(3)], axis=1).round().astype(np.uint8)


class HalfBlocks:
    """An RGB image ``(h, w, 3)`` uint8 as ``w`` columns by ``ceil(h / 2)`` lines."""

    def __init__(self, rgb: np.ndarray):
        rgb = np.asarray(rgb, dtype=np.uint8)
        if len(rgb) % 2:
            rgb = np.concatenate([rgb, np.zeros_like(rgb[:1])])
        self.rgb = rgb

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        styles: dict[tuple, Style] = {}
        for top, bottom in zip(self.rgb[0::2], self.rgb[1::2], strict=True):
            for t, b in zip(map(tuple, top), map(tuple, bottom), strict=True):
                key = t + b
                style = styles.get(key)
                if style is None:
                    style = styles[key] = Style(color=f"rgb({t[0]},{t[1]},{t[2]})",
                                                bgcolor=f"rgb({b[0]},{b[1]},{b[2]})")
                yield Segment("\u2580", style)
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.rgb.shape[1], self.rgb.shape[1])


# ---------------------------------------------------------------- image maths


def resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average ``image`` down to ``shape`` (or repeat pixels up to it)."""
    out = np.asarray(image, dtype=np.float64)
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        if n >= m:
            out = np.take(out, np.arange(n) * m // n, axis=axis)
        else:
            edges = np.arange(n) * m // n
            counts = np.diff(np.append(edges, m)).reshape([-1 if a == axis else 1 for a in range(2)])
            out = np.add.reduceat(out, edges, axis=axis) / counts
    return out


def stretch(image: np.ndarray, low: float = 1.0, high: float = 99.9, log: bool = True) -> np.ndarray:
    """``image`` mapped to [0, 1]: log-scaled, then clipped at the ``low``/``high`` percentiles.

    Percentiles rather than min/max so a few hot pixels or the central beam do not push
    the faint ghost disks into black.
    """
    img = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if log:
        img = np.log1p(np.maximum(img, 0))
    lo, hi = np.percentile(img, [low, high])
    if hi <= lo:
        hi = img.max()
    if hi <= lo:
        return np.zeros_like(img)
    return np.clip((img - lo) / (hi - lo), 0, 1)


def colourise(values01: np.ndarray) -> np.ndarray:
    """[0, 1] values -> ``(h, w, 3)`` uint8 through the inferno-like colour map."""
    return COLORMAP[np.round(np.clip(values01, 0, 1) * 255).astype(np.intp)]


def zoom_window(pattern: np.ndarray) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: a square around the central beam reaching just past the brightest
    disk beside it, where the half-order ghost disks lie (halfway to the first Bragg disks).
    """
    from scipy.ndimage import uniform_filter

    img = np.log1p(np.maximum(np.nan_to_num(np.asarray(pattern, dtype=np.float64)), 0))
    kr, kc = img.shape
    smooth = uniform_filter(img, size=max(3, min(kr, kc) // 32))
    cy, cx = np.unravel_index(np.argmax(smooth), smooth.shape)
    yy, xx = np.mgrid[0:kr, 0:kc]
    dist = np.hypot(yy - cy, xx - cx)
    beside = np.where(dist > min(kr, kc) / 16, smooth, -np.inf)
    by, bx = np.unravel_index(np.argmax(beside), beside.shape)
    half = int(np.clip(1.25 * dist[by, bx], min(kr, kc) / 8, min(kr, kc) / 2))
    r0 = int(np.clip(cy - half, 0, max(0, kr - 2 * half)))
    c0 = int(np.clip(cx - half, 0, max(0, kc - 2 * half)))
    return r0, min(kr, r0 + 2 * half), c0, min(kc, c0 + 2 * half)


def pattern_rgb(pattern: np.ndarray, size: int, zoom: bool = False) -> tuple[np.ndarray, str]:
    """A pattern drawn ``size`` x ``size`` pixels, and a note of what was done to it.

    A 3 x 3 median removes hot pixels and most shot noise first. The zoomed view is smoothed
    a little more and stretched on its own from the median background to the 90th
    percentile: the Bragg disks saturate and the faint ghosts between them take the colours.
    """
    from scipy.ndimage import median_filter, uniform_filter

    clean = median_filter(np.nan_to_num(np.asarray(pattern, dtype=np.float32)), size=3)
    if zoom:
        r0, r1, c0, c1 = zoom_window(clean)
        crop = resample(uniform_filter(clean[r0:r1, c0:c1], size=3), (size, size))
        return colourise(stretch(crop, 50, 90)), f"zoom rows {r0}-{r1 - 1}, cols {c0}-{c1 - 1}"
    return colourise(stretch(resample(clean, (size, size)))), "log, 1-99.9 %"


_DRAWN: OrderedDict = OrderedDict()


def _drawn(pattern: np.ndarray, size: int, zoom: bool) -> tuple[np.ndarray, str]:
    """``pattern_rgb`` remembered for the last few patterns: a key press redraws the screen,
    and filtering a 512 x 512 frame takes tens of milliseconds."""
    key = (hash(np.ascontiguousarray(pattern).tobytes()), pattern.shape, size, zoom)
    if key not in _DRAWN:
        _DRAWN[key] = pattern_rgb(pattern, size, zoom)
        if len(_DRAWN) > 32:
            _DRAWN.popitem(last=False)
    _DRAWN.move_to_end(key)
    return _DRAWN[key]


def overview_scale(scan_shape, max_width: int, max_height: int) -> tuple[int, int, tuple[int, int]]:
    """``(down, up, shape)``: scan positions per pixel, pixels per position for small scans
    (one of them is 1), and the downsampled shape before ``up`` is applied."""
    rows, cols = scan_shape
    down = max(1, -(-cols // max(1, max_width)), -(-rows // max(1, max_height)))
    shape = (-(-rows // down), -(-cols // down))
    return down, max(1, min(max_width // shape[1], max_height // shape[0])), shape


def overview_rgb(background: np.ndarray, labels: dict, current: tuple[int, int] | None,
                 max_width: int, max_height: int) -> np.ndarray:
    """The scan seen from above: the virtual image in grey, labelled positions in their class
    colour, the current position in green. Scaled by a whole factor to fit the box.
    """
    f, up, shape = overview_scale(background.shape, max_width, max_height)
    grey = stretch(resample(background, shape), 2, 98, log=False)
    rgb = np.repeat((40 + 120 * grey)[..., None], 3, axis=2).astype(np.uint8)  # dim, so colours stand out
    for (x, y), c in labels.items():
        rgb[y // f, x // f] = CLASS_RGB[c]
    if current is not None:
        rgb[current[1] // f, current[0] // f] = CURRENT_RGB
    return rgb.repeat(up, axis=0).repeat(up, axis=1)


# ---------------------------------------------------------------- the labelling screen


@dataclass
class ScreenState:
    """Everything the labelling screen shows; built by the terminal oracle."""

    position: tuple[int, int]
    pattern: np.ndarray
    done: int  # confirmed labels so far
    budget: int | None
    overview: np.ndarray  # virtual image (rows, cols)
    labels: dict  # {(x, y): class} to colour on the overview
    examples: dict = field(default_factory=dict)  # {class: (position, pattern)} last labelled
    guess: np.ndarray | None = None  # model probabilities in CLASSES order
    zoom: bool = False
    message: str = ""


KEY_HELP = "[h] horizontal  [v] vertical  [n] none  [s] skip  [u] undo  [z] zoom  [q] quit"


def layout_sizes(width: int, height: int, scan_shape: tuple[int, int]) -> tuple[int, int, int]:
    """Pixel sizes ``(pattern, overview_width, overview_height)`` that fit a terminal."""
    ov_w, ov_h = max(8, width - 2), 16  # at most 8 lines of overview
    _, up, shape = overview_scale(scan_shape, ov_w, ov_h)
    ov_lines = (shape[0] * up + 1) // 2
    spare_lines = height - ov_lines - 7  # header, titles, legend, keys, message
    size = min(2 * spare_lines, int((width - 8) / 2.5), 96)
    return max(8, size - size % 2), ov_w, ov_h


def labelling_screen(state: ScreenState, width: int, height: int) -> Group:
    """The whole screen: header, pattern beside the last example of each class, overview, keys."""
    x, y = state.position
    size, ov_w, ov_h = layout_sizes(width, height, state.overview.shape)
    head = Text.assemble(("al4dstem label", "bold"), f"  x={x} y={y}  ",
                         (f"{state.done} of {state.budget} labelled" if state.budget
                          else f"{state.done} labelled", "bold cyan"))
    if state.guess is not None:
        best = int(np.argmax(state.guess))
        head.append(f"  model: {CLASSES[best]} {100 * state.guess[best]:.0f}%", style="magenta")

    rgb, note = _drawn(state.pattern, size, state.zoom)
    grid = Table.grid(padding=(0, 2))
    panels = [Group(Text(f"x={x} y={y}  {note}", no_wrap=True, overflow="ellipsis"), HalfBlocks(rgb))]
    thumb = max(8, (size // 2) - (size // 2) % 2)
    for c, name in enumerate(CLASSES):
        if c in state.examples:
            (ex, ey), pat = state.examples[c]
            title = Text(f"last {name} x={ex} y={ey}", style=f"rgb{CLASS_RGB[c]}", no_wrap=True,
                         overflow="ellipsis")
            panels.append(Group(title, HalfBlocks(_drawn(pat, thumb, state.zoom)[0])))
        else:
            panels.append(Text(f"no {name} yet", style="dim", no_wrap=True))
    for _ in panels:
        grid.add_column(no_wrap=True)
    grid.add_row(*panels)

    legend = Text("scan: ")
    for c, name in enumerate(CLASSES):
        legend.append("\u25a0 ", style=f"rgb{CLASS_RGB[c]}").append(f"{name}  ")
    legend.append("\u25a0 ", style=f"rgb{CURRENT_RGB}").append("current")
    overview = HalfBlocks(overview_rgb(state.overview, state.labels, state.position, ov_w, ov_h))
    foot = Text(KEY_HELP, style="bold")
    parts = [head, grid, legend, overview, foot]
    if state.message:
        parts.append(Text(state.message, style="yellow"))
    return Group(*parts)
