"""The terminal labelling screen (al4dstem.oracles.render): colours, layouts, warnings."""

import io

import numpy as np
import pytest
from rich.console import Console
from rich.errors import StyleSyntaxError
from rich.style import Style

from al4dstem.colors import CURRENT_RGB, class_rgb, class_style
from al4dstem.oracles.render import (
    HalfBlocks,
    ScreenState,
    _style,
    color_system,
    labelling_screen,
    layout,
)


def pattern(side=256, seed=0):
    """A 256 x 256 pattern: central beam, Bragg disks every 37 px, horizontal ghosts between."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    mean = np.full((side, side), 0.3)
    c, step = (side - 1) / 2, 37
    for i in range(-3, 4):
        for j in range(-3, 4):
            mean[np.hypot(yy - c - j * step, xx - c - i * step) <= 4] += 800 if (i, j) == (0, 0) else 25
            mean[np.hypot(yy - c - j * step, xx - c - i * step - step / 2) <= 4] += 1.0
    return rng.poisson(mean).astype(np.uint16)


def state(zoom=False, examples=True):
    pat = pattern()
    return ScreenState(position=(3, 1), pattern=pat, done=3, budget=10,
                       overview=np.random.default_rng(1).random((6, 9)),
                       labels={(0, 0): 0, (1, 0): 1, (2, 0): 2},
                       examples={c: ((c, 0), pattern(seed=c + 1)) for c in range(3)} if examples else {},
                       guess=np.array([0.1, 0.2, 0.7]), zoom=zoom)


def draw(screen_state, width, height, colours="truecolor"):
    console = Console(file=io.StringIO(), width=width, height=height, record=True, color_system=colours,
                      force_terminal=True)
    console.print(labelling_screen(screen_state, width, height), crop=True)
    return console.export_text(clear=False), console.export_text(styles=True)


def truecolor(rgb, ground=38):
    return f"{ground};2;{rgb[0]};{rgb[1]};{rgb[2]}"


def test_class_colours_reach_the_terminal_in_legend_and_titles():
    text, styled = draw(state(), 200, 60)
    assert "last none x=0 y=0" in text and "last horizontal x=2 y=0" in text
    for rgb in (*class_rgb("class"), CURRENT_RGB):  # the legend's coloured squares
        assert f"{truecolor(rgb)}m\u25a0" in styled
    # the titles themselves are coloured (the old "rgb(1, 2, 3)" styles were dropped silently)
    title = styled.index("last vertical")
    assert truecolor(class_rgb("class")[1]) in styled[title - 40:title]


def test_overview_shows_label_colours_and_current_position():
    _, styled = draw(state(), 200, 60)
    for rgb in (*class_rgb("class"), CURRENT_RGB):  # as half-block foreground or background
        assert truecolor(rgb, 38) in styled or truecolor(rgb, 48) in styled


def test_styles_with_spaces_are_refused_not_dropped():
    with pytest.raises(StyleSyntaxError):
        _style("rgb(110, 200, 255)")
    for c in range(3):
        assert _style(class_style(c, bold=True)) == Style(color=class_style(c), bold=True)


def test_small_terminal_warns_and_gives_the_pattern_the_room():
    text, _ = draw(state(), 80, 24)
    flat = " ".join(text.split())
    assert "terminal too small: 80 x 24 cells for a 256 x 256 pattern; enlarge the window or press z to zoom" in flat
    assert "last vertical" not in text and "scan:" not in text  # examples and overview dropped
    assert len(text.splitlines()) <= 24
    big, _ = draw(state(), 200, 60)
    assert "terminal too small" not in big and "last vertical" in big and "scan:" in big


def test_zoom_needs_less_room_so_no_warning():
    text, _ = draw(state(zoom=True), 80, 24)
    assert "terminal too small" not in text and "zoom rows" in text


def test_layout_drops_examples_before_the_overview():
    full = layout(200, 60, (34, 206), view_side=256, disk_radius=4)
    assert full.thumb and full.overview_width and not full.warning
    narrow = layout(110, 60, (34, 206), view_side=256, disk_radius=4)  # too narrow for four panels
    assert not narrow.thumb and narrow.overview_width and narrow.pattern >= 64 and not narrow.warning
    tiny = layout(80, 24, (34, 206), view_side=256, disk_radius=4, detector_shape=(256, 256))
    assert not tiny.thumb and not tiny.overview_width and tiny.warning
    zoomed = layout(80, 24, (34, 206), view_side=96, disk_radius=4, zoom=True)
    assert not zoomed.warning
    tiny_disks = layout(80, 24, (34, 206), view_side=96, disk_radius=0.5, detector_shape=(96, 96), zoom=True)
    assert tiny_disks.warning.endswith("enlarge the window")  # zoomed already: no "press z"


def test_fewer_colours_than_truecolor_are_pointed_out():
    text, _ = draw(state(), 200, 60, colours="256")
    assert "faint disks lose shades" in text
    text, _ = draw(state(), 200, 60, colours="truecolor")
    assert "faint disks lose shades" not in text


@pytest.mark.parametrize("env, expected", [
    ({"COLORTERM": "truecolor"}, "truecolor"),
    ({"COLORTERM": "24bit", "TERM": "xterm"}, "truecolor"),
    ({"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}, "truecolor"),
    ({"TERM": "xterm-direct"}, "truecolor"),
    ({"WT_SESSION": "x"}, "truecolor"),
    ({"TERM": "xterm-256color"}, None),
    ({"COLORTERM": "truecolor", "NO_COLOR": "1"}, None),
    ({}, None),
])
def test_color_system_recognises_truecolor_terminals(env, expected):
    assert color_system(env) == expected


def test_half_blocks_merge_equal_cells_without_changing_the_picture():
    rgb = np.zeros((4, 10, 3), np.uint8)
    rgb[0, 3] = (255, 0, 0)
    rgb[3, 9] = (0, 0, 255)
    con = Console(file=io.StringIO(), width=40, force_terminal=True, color_system="truecolor")
    segments = list(con.render(HalfBlocks(rgb)))
    assert "".join(s.text for s in segments).count("\u2580") == 20
    assert sum(s.text.startswith("\u2580") for s in segments) == 5  # runs: 3 on line 1, 2 on line 2
    con.print(HalfBlocks(rgb))
    out = con.file.getvalue()
    assert "38;2;255;0;0" in out and "48;2;0;0;255" in out
