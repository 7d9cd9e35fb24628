"""Drawing diffraction patterns and the scan overview in a terminal, with rich.

Pure functions from arrays to rich renderables; nothing here reads keys or talks to the
loop. The image maths (contrast, zoom, resampling) is ``al4dstem.display``, shared with the
browser labeller; the class colours are ``al4dstem.colors``. Images are drawn with the upper
half block: one character cell holds two pixels stacked (foreground = upper, background =
lower), so pixels come out roughly square. Faint ghost disks need truecolor: with 256 colours
neighbouring shades merge, and the screen says so.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from al4dstem import display
from al4dstem.colors import CURRENT_RGB, class_rgb, class_style, to_hex
from al4dstem.display import COLORMAP, colourise, overview_scale, resample, stretch, zoom_window
from al4dstem.labels import CLASSES

__all__ = ["CLASS_RGB", "COLORMAP", "CURRENT_RGB", "HalfBlocks", "KEY_HELP", "Layout", "ScreenState",
           "colourise", "color_system", "labelling_screen", "layout", "overview_rgb", "overview_scale",
           "pattern_rgb", "resample", "stretch", "zoom_window"]

CLASS_RGB = class_rgb("class")
MIN_DISK_PX = 2.0  # a disk drawn smaller than this merges with its neighbours: warn
MAX_PATTERN_PX = 128  # drawing cost grows with the square; 128 px shows a 256 x 256 pattern at 1:2
TRUECOLOR_TERMINALS = ("iTerm.app", "WezTerm", "vscode", "Hyper", "ghostty", "WarpTerminal", "Tabby")


_STYLES: dict[int, Style] = {}  # (upper, lower) colour pair -> Style, shared by every drawing


class HalfBlocks:
    """An RGB image ``(h, w, 3)`` uint8 as ``w`` columns by ``ceil(h / 2)`` lines.

    Runs of equal cells are one segment: the dark background of a pattern is most of it, and
    rich's cost grows with the number of segments.
    """

    def __init__(self, rgb: np.ndarray):
        rgb = np.asarray(rgb, dtype=np.uint8)
        if len(rgb) % 2:
            rgb = np.concatenate([rgb, np.zeros_like(rgb[:1])])
        self.rgb = rgb
        packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
        self.keys = (packed[0::2] << 24) | packed[1::2]  # (lines, width): upper and lower colour of each cell

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = self.keys.shape[1]
        for line in self.keys:
            starts = np.flatnonzero(np.diff(line, prepend=-1))
            for start, stop in zip(starts.tolist(), [*starts[1:].tolist(), width], strict=True):
                yield Segment("\u2580" * (stop - start), _cell_style(int(line[start]), console.color_system))
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.rgb.shape[1], self.rgb.shape[1])


def _cell_style(key: int, system: str | None) -> Style:
    # one Style per colour system: rich caches a Style's escape codes for the first console
    # that renders it, so sharing one between a truecolor and a 16-colour console mixes them up
    style = _STYLES.get((key, system))
    if style is None:
        top, bottom = key >> 24, key & 0xFFFFFF
        style = Style(color=f"#{top:06x}", bgcolor=f"#{bottom:06x}")
        if len(_STYLES) > 100_000:  # bounded: a long session sees many colours
            _STYLES.clear()
        _STYLES[(key, system)] = style
    return style


def color_system(environ: Mapping[str, str] | None = None) -> str | None:
    """``"truecolor"`` where the terminal can show it but may not say so in ``COLORTERM`` (which
    rich reads), e.g. iTerm2, WezTerm, VS Code, Windows Terminal, or a ``*-direct`` TERM;
    None otherwise: let rich decide. Use as ``Console(color_system=color_system() or "auto")``."""
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return None
    if env.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "truecolor"
    term = env.get("TERM", "")
    if term.endswith("-direct") or "truecolor" in term or term in ("xterm-kitty", "alacritty", "foot"):
        return "truecolor"
    if env.get("TERM_PROGRAM", "") in TRUECOLOR_TERMINALS or env.get("WT_SESSION") or env.get("KONSOLE_VERSION"):
        return "truecolor"
    return None


def _style(spec: str) -> Style:
    """A rich Style from a string, refusing what rich would drop silently (e.g. ``"rgb(1, 2, 3)"``)."""
    return Style.parse(spec)  # raises StyleSyntaxError on a bad spec instead of drawing it uncoloured


# ---------------------------------------------------------------- patterns, cached


def pattern_rgb(pattern: np.ndarray, size: int, zoom: bool = False, lattice=None) -> tuple[np.ndarray, str]:
    """A pattern drawn ``size`` x ``size`` pixels, and a note of what was done to it (``al4dstem.display``)."""
    return display.pattern_rgb(pattern, size, zoom, lattice)


_PREPARED: OrderedDict = OrderedDict()  # a few MB each for a 512 x 512 frame: keep few
_DRAWN: OrderedDict = OrderedDict()  # small RGB arrays


def _key(pattern: np.ndarray, *rest) -> tuple:
    return (hash(np.ascontiguousarray(pattern).tobytes()), pattern.shape, *rest)


def _remember(cache: OrderedDict, size: int, key, make):
    """The last few results: a key press redraws the screen, and preparing a 512 x 512 frame
    takes tens of milliseconds."""
    if key not in cache:
        cache[key] = make()
        if len(cache) > size:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return cache[key]


def _prepared(pattern: np.ndarray, zoom: bool, lattice=None) -> display.Prepared:
    """The pattern cleaned and measured once, however many sizes it is drawn at."""
    return _remember(_PREPARED, 8, _key(pattern, zoom, id(lattice)), lambda: display.prepare(pattern, zoom, lattice))


def _drawn(pattern: np.ndarray, size: int, zoom: bool, lattice=None) -> tuple[np.ndarray, str]:
    def draw():
        view = display.pattern_view(_prepared(pattern, zoom, lattice), size)
        return colourise(view.values), view.note

    return _remember(_DRAWN, 48, _key(pattern, size, zoom, id(lattice)), draw)


def overview_rgb(background: np.ndarray, labels: dict, current: tuple[int, int] | None,
                 max_width: int, max_height: int) -> np.ndarray:
    """The scan seen from above (``al4dstem.display.overview_rgb``) in the class colours."""
    return display.overview_rgb(background, labels, current, max_width, max_height, scheme="class")


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
    lattice: object | None = None  # an al4dstem.lattice.Lattice: places the zoom window exactly


KEY_HELP = "[h] horizontal  [v] vertical  [n] none  [s] skip  [u] undo  [z] zoom  [q] quit"


@dataclass(frozen=True)
class Layout:
    """Sizes of the screen's parts, in pixels (two per character line); 0 where a part is dropped."""

    pattern: int
    thumb: int  # the last example of each class
    overview_width: int
    overview_height: int
    warning: str  # empty when the pattern is drawn large enough


def _overview_lines(scan_shape: tuple[int, int], width: int, height: int) -> int:
    _, up, shape = overview_scale(scan_shape, width, height)
    return (shape[0] * up + 1) // 2


def _even(size: int) -> int:
    return max(8, size - size % 2)


def layout(width: int, height: int, scan_shape: tuple[int, int], view_side: int, disk_radius: float,
           detector_shape: tuple[int, int] | None = None, zoom: bool = False) -> Layout:
    """How to fill a ``width`` x ``height`` terminal.

    ``view_side`` detector pixels are shown across (the zoom window when zoomed), with disks of
    ``disk_radius``. The full screen has the pattern, the last example of each class and the
    scan overview; where that would draw the disks under ``MIN_DISK_PX`` across, the examples
    go, then the overview; where even the pattern alone is too small, a warning says so.
    """
    needed = min(view_side, MIN_DISK_PX * view_side / max(2 * disk_radius, 1e-9))  # px for MIN_DISK_PX disks
    ov_w, ov_h = max(8, width - 2), 16  # at most 8 lines of overview
    ov_lines = _overview_lines(scan_shape, ov_w, ov_h)
    # full: header, titles, legend, keys, message, colour note around pattern and overview
    size = _even(min(2 * (height - ov_lines - 8), int((width - 8) / 2.5), MAX_PATTERN_PX))
    if size >= needed:
        return Layout(size, _even((size // 2) - (size // 2) % 2), ov_w, ov_h, "")
    size = _even(min(2 * (height - ov_lines - 8), width - 1, MAX_PATTERN_PX))  # no examples
    if size >= needed:
        return Layout(size, 0, ov_w, ov_h, "")
    rows, cols = detector_shape or (view_side, view_side)
    hint = "enlarge the window" if zoom else "enlarge the window or press z to zoom"
    warning = f"terminal too small: {width} x {height} cells for a {rows} x {cols} pattern; {hint}"
    warning_lines = -(-len(warning) // max(1, width))
    size = _even(min(2 * (height - 5 - warning_lines), width - 1, MAX_PATTERN_PX))  # the pattern alone
    return Layout(size, 0, 0, 0, warning if size < needed else "")


class _ColourNote:
    """A line saying that faint shades are lost, shown only when the console has fewer than
    truecolor's colours (decided when drawn: only then is the console known)."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        system = console.color_system
        if system is None or system == "truecolor":
            return
        yield Text(f"{system} colours: faint disks lose shades; use a truecolor terminal (COLORTERM=truecolor)",
                   style="dim", no_wrap=True, overflow="ellipsis")


def labelling_screen(state: ScreenState, width: int, height: int) -> Group:
    """The whole screen: header, pattern beside the last example of each class, overview, keys.

    Where the terminal is too small to show the disks, the examples and then the overview give
    the pattern their room, and a warning says when even that is not enough.
    """
    x, y = state.position
    pattern = np.asarray(state.pattern)
    prep = _prepared(pattern, state.zoom, state.lattice)
    plan = layout(width, height, state.overview.shape, prep.side, prep.beam.radius, pattern.shape, state.zoom)
    head = Text.assemble(("al4dstem label", "bold"), f"  x={x} y={y}  ",
                         (f"{state.done} of {state.budget} labelled" if state.budget
                          else f"{state.done} labelled", "bold cyan"))
    if state.guess is not None:
        best = int(np.argmax(state.guess))
        head.append(f"  model: {CLASSES[best]} {100 * state.guess[best]:.0f}%", style=_style(class_style(best)))

    rgb, note = _drawn(pattern, plan.pattern, state.zoom, state.lattice)
    current = Group(Text(f"x={x} y={y}  {note}", no_wrap=True, overflow="ellipsis"), HalfBlocks(rgb))
    parts: list = [head]
    if plan.warning:
        parts.append(Text(plan.warning, style="bold yellow"))
    if plan.thumb:
        grid = Table.grid(padding=(0, 2))
        panels = [current]
        for c, name in enumerate(CLASSES):
            if c in state.examples:
                (ex, ey), pat = state.examples[c]
                title = Text(f"last {name} x={ex} y={ey}", style=_style(class_style(c, bold=True)), no_wrap=True,
                             overflow="ellipsis")
                panels.append(Group(title, HalfBlocks(_drawn(np.asarray(pat), plan.thumb, state.zoom,
                                                             state.lattice)[0])))
            else:
                panels.append(Text(f"no {name} yet", style="dim", no_wrap=True))
        for _ in panels:
            grid.add_column(no_wrap=True)
        grid.add_row(*panels)
        parts.append(grid)
    else:
        parts.append(current)
    if plan.overview_width:
        legend = Text("scan: ")
        for c, name in enumerate(CLASSES):
            legend.append("\u25a0 ", style=_style(class_style(c))).append(f"{name}  ")
        legend.append("\u25a0 ", style=_style(to_hex(CURRENT_RGB))).append("current")
        parts.append(legend)
        parts.append(HalfBlocks(overview_rgb(state.overview, state.labels, state.position,
                                             plan.overview_width, plan.overview_height)))
    parts.append(Text(KEY_HELP, style="bold"))
    if state.message:
        parts.append(Text(state.message, style="yellow"))
    parts.append(_ColourNote())
    return Group(*parts)
