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
