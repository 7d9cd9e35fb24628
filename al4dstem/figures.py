"""The sampling-pattern figure (paper Fig. 7): labelled positions coloured by class over the
scan's virtual image, written as PNG with matplotlib's Agg canvas (no display needed)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from al4dstem.colors import SKIPPED_RGB, class_hex, to_hex
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES, Label

# The labeller's class colours (al4dstem.colors): close to the paper's Fig. 7 hues (none light
# blue, vertical orange-yellow, horizontal pink-red) but colour-blind safe.
CLASS_COLOURS = class_hex("class")


def plot_sampling_pattern(out: str | os.PathLike, rows: Iterable[Label], scan_shape: tuple[int, int],
                          background: np.ndarray | None = None, title: str | None = None) -> Path:
    """Write the sampling pattern of a label file to ``out`` (PNG) and return the path.

    ``rows`` are label-file rows (skips drawn as small grey crosses); ``scan_shape`` is
    ``(rows, cols)``; ``background`` a ``(rows, cols)`` image (e.g. the virtual bright field).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_rows, n_cols = scan_shape
    if background is not None and np.shape(background) != (n_rows, n_cols):
        raise Al4dstemError(f"background image {np.shape(background)} does not match the scan {scan_shape}")
    rows = list(rows)
    width = 9.0
    fig = Figure(figsize=(width, max(2.5, width * n_rows / n_cols + 1.2)), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if background is not None:
        lo, hi = np.percentile(background, [1, 99])
        ax.imshow(background, cmap="gray", vmin=lo, vmax=hi if hi > lo else None, origin="upper",
                  interpolation="nearest")
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_aspect("equal")
    for c, name in enumerate(CLASSES):
        pts = np.array([(r.x, r.y) for r in rows if r.label == c]).reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=14, color=CLASS_COLOURS[c], edgecolors="black",
                   linewidths=0.3, label=f"{name} ({len(pts)})")
    skips = np.array([(r.x, r.y) for r in rows if r.label is None]).reshape(-1, 2)
    if len(skips):
        ax.scatter(skips[:, 0], skips[:, 1], s=10, marker="x", color=to_hex(SKIPPED_RGB), linewidths=0.8,
                   label=f"skipped ({len(skips)})")
    ax.set_xlabel("x (scan column)")
    ax.set_ylabel("y (scan row)")
    ax.set_title(title or f"{sum(r.label is not None for r in rows)} labelled positions")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25 if n_rows / n_cols < 0.5 else -0.12),
              ncol=4, frameon=False, fontsize="small")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


# ---------------------------------------------------------------- map decorations


def scale_bar_length(step: float, n: int, fraction: float = 0.2) -> float:
    """A round length (1, 2 or 5 x 10^k) of at most ``fraction`` of a side of ``n`` steps of ``step``
    (at least one step)."""
    import math

    want = max(step, step * n * fraction)
    power = 10.0 ** math.floor(math.log10(want))
    for m in (5, 2, 1):
        if m * power <= want * (1 + 1e-9):
            return m * power
    return power


def add_scale_bar(ax, step: float, units: str, n_cols: int, n_rows: int) -> float:
    """Draw a scale bar in the lower left of an image axes whose pixels are ``step`` ``units`` wide
    (data coordinates are pixel indices, as ``imshow`` draws them). Returns the bar's length in units."""
    from matplotlib.patches import Rectangle
    from matplotlib.patheffects import withStroke

    length = scale_bar_length(step, n_cols)
    width = length / step
    height = max(0.35, 0.035 * n_rows)
    x0 = -0.5 + max(0.5, 0.03 * n_cols)
    y0 = n_rows - 0.5 - max(0.5, 0.08 * n_rows)
    ax.add_patch(Rectangle((x0, y0 - height), width, height, facecolor="white", edgecolor="black", linewidth=0.6,
                           zorder=5))
    ax.text(x0 + width / 2, y0 - height - max(0.3, 0.02 * n_rows), f"{length:g} {units}", ha="center", va="bottom",
            color="white", fontsize=7, zorder=6, path_effects=[withStroke(linewidth=1.8, foreground="black")])
    return length


def draw_ternary_key(ax, scheme: str = "paper", resolution: int = 120) -> None:
    """The colour of every mixture of the three classes, as a triangle with a class at each corner
    (the key of a map whose positions mix classes: walls, uncertain patterns)."""
    from al4dstem.colors import probabilities_rgb

    height = np.sqrt(3) / 2
    xs = np.linspace(0.0, 1.0, resolution)
    ys = np.linspace(0.0, height, int(resolution * height))
    gx, gy = np.meshgrid(xs, ys)
    # barycentric weights of the corners none (0, 0), vertical (1, 0), horizontal (1/2, sqrt(3)/2)
    horizontal = gy / height
    vertical = gx - horizontal / 2
    none = 1.0 - vertical - horizontal
    weights = np.stack([none, vertical, horizontal], axis=-1)
    inside = (weights >= -1e-9).all(axis=-1)
    rgba = np.zeros((*gx.shape, 4))
    rgba[inside, :3] = probabilities_rgb(np.clip(weights[inside], 0, 1), scheme) / 255.0
    rgba[inside, 3] = 1.0
    ax.imshow(rgba, origin="lower", extent=(0, 1, 0, height), interpolation="bilinear")
    ax.plot([0, 1, 0.5, 0], [0, 0, height, 0], color="black", linewidth=0.6)
    labels = ((0, -0.05, "none", "center", "top"), (1, -0.05, "vertical", "center", "top"),
              (0.5, height + 0.04, "horizontal", "center", "bottom"))
    for x, y, name, ha, va in labels:
        ax.text(x, y, name, ha=ha, va=va, fontsize=7)
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(-0.2, height + 0.18)
    ax.set_aspect("equal")
    ax.axis("off")
