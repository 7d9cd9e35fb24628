"""What ``al4dstem info`` shows: a summary of a dataset, and a scan-sized image (e.g. a
virtual bright field) drawn in the terminal with rich.

On a colour terminal each character cell shows two pixels stacked with the upper half block
(foreground = upper pixel, background = lower), in grey; rich reduces the colours to what the
terminal has. Without colour (a pipe, a file, ``NO_COLOR``) it falls back to a character ramp,
one character per pixel across and two pixel rows per line, so the text still shows the
picture. Pixels that are NaN (e.g. broken patterns) are drawn red, or ``!`` in text.
The image is block-averaged down (or repeated up) to fit the width it is given.
"""

from __future__ import annotations

import warnings

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

from al4dstem.data.dataset import Dataset, Survey

RAMP = " .:-=+*#%@"  # dark -> bright
BAD_RGB = (230, 40, 40)
MAX_UPSCALE = 4


class ScanImage:
    """A rich renderable of a 2-D float image (NaN marks bad pixels)."""

    def __init__(self, image: np.ndarray, max_lines: int = 40):
        self.image = np.asarray(image, dtype=np.float64)
        if self.image.ndim != 2:
            raise ValueError(f"ScanImage needs a 2-D image, got shape {self.image.shape}")
        self.max_lines = max_lines

    def fitted(self, max_width: int) -> np.ndarray:
        """The image scaled to at most ``max_width`` pixels across and ``2 max_lines`` down."""
        return resize(self.image, *fitted_scale(self.image.shape, max_width, 2 * self.max_lines))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = self.fitted(options.max_width).shape[1]
        return Measurement(width, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        grey = to_unit(self.fitted(options.max_width))
        if console.color_system is None:
            yield from _ramp_lines(grey)
        else:
            yield from _half_block_lines(grey)


def fitted_scale(shape, max_width: int, max_height: int) -> tuple[int, int]:
    """``(down, up)``: integer block size to average, or repeat count, that fits the box."""
    rows, cols = (int(s) for s in shape)
    max_width, max_height = max(1, int(max_width)), max(1, int(max_height))
    down = max(-(-cols // max_width), -(-rows // max_height))
    if down > 1:
        return down, 1
    return 1, max(1, min(MAX_UPSCALE, max_width // cols, max_height // rows))


def resize(image: np.ndarray, down: int = 1, up: int = 1) -> np.ndarray:
    """Average ``down x down`` blocks (NaN if any pixel of a block is NaN), then repeat ``up`` times."""
    if down > 1:
        rows, cols = image.shape
        out_rows, out_cols = -(-rows // down), -(-cols // down)
        pad = ((0, out_rows * down - rows), (0, out_cols * down - cols))
        padded = np.pad(image, pad, constant_values=np.inf)  # inf marks padding
        blocks = padded.reshape(out_rows, down, out_cols, down).transpose(0, 2, 1, 3)
        blocks = blocks.reshape(out_rows, out_cols, -1)
        real = ~np.isinf(blocks)
        good = real & ~np.isnan(blocks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            image = np.where(good, blocks, 0.0).sum(axis=2) / good.sum(axis=2)
        image[(np.isnan(blocks) & real).any(axis=2)] = np.nan
    if up > 1:
        image = np.repeat(np.repeat(image, up, axis=0), up, axis=1)
    return image


def to_unit(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> np.ndarray:
    """Finite values stretched to [0, 1] between two percentiles; NaN stays NaN."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.full(image.shape, np.nan)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.where(np.isfinite(image), 0.5, np.nan)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0)


def _ramp_lines(grey: np.ndarray) -> RenderResult:
    rows = grey.shape[0]
    if rows % 2:
        grey = np.vstack([grey, grey[-1:]])
    for top, bottom in zip(grey[0::2], grey[1::2], strict=True):
        chars = []
        for t, b in zip(top, bottom, strict=True):
            if np.isnan(t) or np.isnan(b):
                chars.append("!")
            else:
                chars.append(RAMP[min(len(RAMP) - 1, int((t + b) / 2 * len(RAMP)))])
        yield Segment("".join(chars).rstrip())
        yield Segment.line()


def _half_block_lines(grey: np.ndarray) -> RenderResult:
    if grey.shape[0] % 2:
        grey = np.vstack([grey, np.full((1, grey.shape[1]), -1.0)])  # -1: nothing below
    styles: dict[tuple, Style] = {}
    for top, bottom in zip(grey[0::2], grey[1::2], strict=True):
        for t, b in zip(top, bottom, strict=True):
            key = (_rgb(t), None if b < 0 else _rgb(b))
            style = styles.get(key)
            if style is None:
                fg, bg = key
                style = styles[key] = Style(color=f"rgb{fg}", bgcolor=None if bg is None else f"rgb{bg}")
            yield Segment("\u2580", style)
        yield Segment.line()


def _rgb(v: float) -> tuple[int, int, int]:
    if np.isnan(v):
        return BAD_RGB
    g = int(round(v * 255))
    return (g, g, g)


# ---------------------------------------------------------------- the summary


def describe(ds: Dataset, survey: Survey) -> list[tuple[str, str]]:
    """``(key, value)`` lines about a dataset: format, shape, dtype, size, calibration, broken patterns."""
    rows, cols = ds.scan_shape
    disk = human_bytes(ds.size_on_disk) if ds.size_on_disk is not None else "unknown"
    bad = len(survey.nonfinite)
    lines = [
        ("data", ds.source),
        ("format", ds.format + (f" (read by {ds.reader})" if ds.reader else "")),
        ("scan", f"{cols} x {rows} (cols x rows), {ds.n_positions:,} positions"),
        ("detector", f"{ds.detector_shape[0]} x {ds.detector_shape[1]} pixels (rows x cols)"),
        ("array", f"{ds.shape} = (scan rows, scan cols, detector rows, detector cols)"),
        ("dtype", ds.dtype.name + (" (big-endian)" if ds.dtype.byteorder == ">" else "")),
        ("size", f"{disk} on disk, {human_bytes(ds.nbytes)} as an array"),
        *ds.calibration.describe(),
        ("non-finite", nonfinite_note(survey) if bad else "0 patterns"),
    ]
    lines += [("note", note) for note in ds.notes]
    return lines


def nonfinite_note(survey: Survey) -> str:
    """``3 patterns hold NaN or inf, e.g. x=7, y=3; ...`` (for a survey that found some)."""
    bad = len(survey.nonfinite)
    x, y = survey.nonfinite[0]
    return (f"{bad:,} pattern{'s hold' if bad != 1 else ' holds'} NaN or inf, e.g. x={x}, y={y}; "
            f"preprocessing counts those pixels as 0")


def human_bytes(n: float) -> str:
    """``1,234 B``, ``12.3 MiB``, ... for people."""
    if n < 1024:
        return f"{int(n):,} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} TiB"
