"""Probability maps -> RGB domain maps, confidence maps, figures, and accuracy against a truth.

Conventions (docs/design.md §1): probability maps are float32 ``(rows, cols, 3)`` in class order
none, vertical, horizontal, painted R = none, G = vertical, B = horizontal (paper Fig. 5:
``[0, 255, 0]`` is pure vertical). Positions that could not be classified (``valid`` False,
or a non-finite probability row) are painted black: a probability row sums to 1, so at least
one channel of a classified position is >= 85 and black cannot be mistaken for a class.

In memory, a position that could not be classified has NaN probabilities. On disk a prediction
``PREFIX`` is ``PREFIX.npy`` (float32, finite everywhere: a uniform 1/3 row where not
classifiable, so every row sums to 1), ``PREFIX_valid.npy`` (bool ``(rows, cols)``, False there),
``PREFIX.png`` (the RGB map, scaled up) and ``PREFIX_figure.png`` (map, confidence, labelled
positions); ``load_prediction`` turns the file back into NaN rows.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from al4dstem.colors import INVALID_RGB, class_hex, probabilities_rgb
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES, as_arrays, read_labels

MIN_LONG_SIDE = 800  # PNG maps are scaled up (nearest neighbour) until the long side reaches this
MAX_SCALE = 32


# ---------------------------------------------------------------- maps


def _check_probs(probs) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[2] != len(CLASSES):
        raise Al4dstemError(f"expected probabilities of shape (rows, cols, {len(CLASSES)}), got {probs.shape}")
    return probs


def valid_mask(probs, valid=None) -> np.ndarray:
    """``(rows, cols)`` True where a position was classified: ``valid`` and a finite row."""
    probs = _check_probs(probs)
    ok = np.isfinite(probs).all(axis=2)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != ok.shape:
            raise Al4dstemError(f"validity mask of shape {valid.shape} does not match the map {ok.shape}")
        ok &= valid
    return ok


def rgb_map(probs, valid=None, scheme: str = "paper") -> np.ndarray:
    """uint8 ``(rows, cols, 3)``; unclassified black. ``scheme="paper"``: R = none, G = vertical,
    B = horizontal (the probabilities as channels); ``"class"``: the class colours of
    ``al4dstem.colors`` (colour-blind safe), mixed by probability."""
    probs = _check_probs(probs)
    ok = valid_mask(probs, valid)
    rgb = np.zeros(probs.shape, dtype=np.uint8)
    rgb[ok] = probabilities_rgb(probs[ok], scheme)
    rgb[~ok] = INVALID_RGB
    return rgb


def entropy_map(probs, valid=None) -> np.ndarray:
    """Normalised Shannon entropy, float32 ``(rows, cols)`` in [0, 1] (1 = uniform); NaN where unclassified."""
    probs = _check_probs(probs)
    ok = valid_mask(probs, valid)
    p = np.clip(np.where(ok[..., None], probs, 1.0), 0.0, 1.0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=2) / math.log(len(CLASSES))
    return np.where(ok, np.clip(h, 0.0, 1.0), np.nan).astype(np.float32)


def confidence_map(probs, valid=None) -> np.ndarray:
    """``1 - entropy_map``: 1 for a certain prediction, 0 for a uniform one; NaN where unclassified."""
    return 1.0 - entropy_map(probs, valid)


def auto_scale(scan_shape) -> int:
    """Whole-number zoom so the long side reaches ``MIN_LONG_SIDE`` px (206 x 34 -> 4), at most ``MAX_SCALE``."""
    return int(min(MAX_SCALE, max(1, math.ceil(MIN_LONG_SIDE / max(scan_shape)))))


def save_map_png(probs, path, valid=None, scale: int | None = None, scheme: str = "paper") -> Path:
    """Write the RGB map (``rgb_map``, in ``scheme``) as an RGB PNG, each position a ``scale x scale``
    block (nearest neighbour)."""
    from PIL import Image

    rgb = rgb_map(probs, valid, scheme)
    scale = auto_scale(rgb.shape[:2]) if scale is None else int(scale)
    if scale < 1:
        raise Al4dstemError(f"map scale must be at least 1, got {scale}")
    big = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    path = Path(path)
    try:
        Image.fromarray(big).save(path, format="PNG")  # (h, w, 3) uint8: RGB
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def save_figure(probs, path, valid=None, labels=None, title: str | None = None, scheme: str = "paper",
                calibration=None, key: bool = True) -> Path:
    """A PNG figure: the domain map (``rgb_map`` in ``scheme``) and the confidence map (stacked for
    wide scans), labels marked.

    ``labels`` are ``(positions (n, 2) as (x, y), classes (n,))``; each labelled position is a
    dot in its class colour in the map's own ``scheme`` with a black rim (a dot that stands out
    from the map beneath it is a label the map disagrees with).
    ``calibration`` (the scan's ``Calibration``): a scale bar in the file's units, and pixels as
    wide as the scan steps. ``key``: a triangle beside the map giving the colour of every mixture
    of the classes (walls, uncertain positions).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from al4dstem.figures import add_scale_bar, draw_ternary_key

    probs = _check_probs(probs)
    rows, cols = probs.shape[:2]
    # the map's colours, not the labeller's: with the paper's R/G/B, a red dot must mean none
    colours = np.array(class_hex(scheme))
    step_y, step_x, units = _scan_steps(calibration)
    aspect = step_y / step_x if units else 1.0  # a pixel as tall as a scan row is long
    stacked = cols >= 2 * rows * aspect  # wide scans: map above confidence; others side by side
    panel_w = 9.5 if stacked else 4.6
    panel_h = min(6.0, max(1.0, panel_w * rows * aspect / cols))
    size = (11.0, 2 * panel_h + 1.3) if stacked else (11.0, panel_h + 1.4)
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    if stacked:
        grid = fig.add_gridspec(2, 2, width_ratios=[1, 0.13])
        ax_map, ax_conf = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
        ax_key, ax_bar = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    else:
        grid = fig.add_gridspec(1, 4, width_ratios=[1, 0.32, 1, 0.05])
        ax_map, ax_key = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        ax_conf, ax_bar = fig.add_subplot(grid[0, 2]), fig.add_subplot(grid[0, 3])
    ax_conf.sharex(ax_map)
    ax_conf.sharey(ax_map)
    ax_map.imshow(rgb_map(probs, valid, scheme), interpolation="nearest", aspect=aspect)
    legend = ("R none, G vertical, B horizontal" if scheme == "paper"
              else "cyan none, yellow vertical, red horizontal")
    ax_map.set_title(f"domain map: {legend}\n(black: not classifiable)", fontsize=8, loc="left")
    conf = ax_conf.imshow(confidence_map(probs, valid), cmap="viridis", vmin=0, vmax=1,
                          interpolation="nearest", aspect=aspect)
    ax_conf.set_title("confidence: 1 - normalised entropy\n(white: not classifiable)", fontsize=8, loc="left")
    if stacked:  # a slim colour bar in the lower cell, beside the confidence map
        ax_bar.set_axis_off()
        fig.colorbar(conf, ax=ax_bar, fraction=0.25, location="left")
    else:
        fig.colorbar(conf, cax=ax_bar)
    if key:
        draw_ternary_key(ax_key, scheme)
    else:
        ax_key.set_axis_off()
    if units:
        for ax in (ax_map, ax_conf):
            add_scale_bar(ax, step_x, units, cols, rows)
    if labels is not None:
        pos, cls = (np.asarray(a) for a in labels)
        if len(pos):
            for ax in (ax_map, ax_conf):
                ax.scatter(pos[:, 0], pos[:, 1], c=colours[cls], s=14, edgecolors="black", linewidths=0.7)
            handles = [Line2D([], [], marker="o", ls="", color=colours[i], markeredgecolor="black", label=name)
                       for i, name in enumerate(CLASSES)]
            ax_map.legend(handles=handles, title=f"{len(pos)} labelled positions", fontsize=7, title_fontsize=7,
                          ncols=3, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
                          borderaxespad=0.1)
    for ax in (ax_map, ax_conf):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4 if stacked else "auto", integer=True))
        ax.set_xlabel("x (scan column)")
        ax.set_ylabel("y (scan row)")
    if stacked:
        ax_map.tick_params(labelbottom=False)
        ax_map.set_xlabel("")
    else:
        ax_conf.tick_params(labelleft=False)
        ax_conf.set_ylabel("")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _scan_steps(calibration) -> tuple[float, float, str | None]:
    """``(row step, column step, units)`` of a calibrated scan (units None when it is not, or when the
    two axes are in different units)."""
    if calibration is None:
        return 1.0, 1.0, None
    rows_axis, cols_axis = calibration.scan
    if not (rows_axis.calibrated and cols_axis.calibrated) or rows_axis.units != cols_axis.units:
        return 1.0, 1.0, None
    if not (rows_axis.scale > 0 and cols_axis.scale > 0):
        return 1.0, 1.0, None
    return float(rows_axis.scale), float(cols_axis.scale), cols_axis.units


# ---------------------------------------------------------------- prediction files


def output_paths(prefix, format: str = "npy", provenance: bool = False) -> dict[str, Path]:
    """The files of a prediction ``PREFIX`` (a trailing ``.npy`` / ``.hspy`` / ``.zspy`` / ``.emd`` is dropped):
    probs (``PREFIX.npy``, or the map as ``PREFIX.hspy|zspy|emd``), valid (``.npy`` only: the exported
    formats mark unclassified positions NaN), png, figure, and with ``provenance`` ``PREFIX.json``."""
    from al4dstem.export import EXTENSIONS, check_format

    format = check_format(format)
    prefix = Path(prefix)
    if prefix.name in ("", ".", "..") or (prefix.is_dir() and prefix.suffix.lower() != ".zspy"):
        # `--out .` or `--out results/`: a folder, no name
        raise Al4dstemError(f"{prefix}: is a folder, expected a file prefix such as {os.path.join(prefix, 'map')}")
    if prefix.suffix.lower() in EXTENSIONS.values():
        prefix = prefix.with_suffix("")
    name = prefix.name
    paths = {"probs": prefix.with_name(f"{name}{EXTENSIONS[format]}")}
    if format == "npy":
        paths["valid"] = prefix.with_name(f"{name}_valid.npy")
    paths.update(png=prefix.with_name(f"{name}.png"), figure=prefix.with_name(f"{name}_figure.png"))
    if provenance:
        paths["provenance"] = prefix.with_name(f"{name}.json")
    return paths


def check_writable(prefix, format: str = "npy", provenance: bool = False) -> dict[str, Path]:
    """The output paths of ``prefix``, after checking their folder exists and can be written."""
    from al4dstem.export import is_zarr_folder

    paths = output_paths(prefix, format, provenance)
    folder = paths["probs"].parent
    if not folder.is_dir():
        raise Al4dstemError(f"{prefix}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise Al4dstemError(f"{prefix}: folder {folder} is not writable")
    for k, p in paths.items():
        if p.is_dir() and not (k == "probs" and p.suffix == ".zspy" and is_zarr_folder(p)):
            raise Al4dstemError(f"{p}: is a folder, expected a file name")
    return paths


def write_prediction(prefix, probs, valid=None, labels=None, figure: bool = True, format: str = "npy",
                     calibration=None, provenance: dict | None = None, scheme: str = "paper") -> dict[str, Path]:
    """Write the map ``PREFIX.npy`` (+ ``PREFIX_valid.npy``) or ``PREFIX.hspy|zspy|emd``, ``PREFIX.png`` and
    (if ``figure``) ``PREFIX_figure.png``; with ``provenance`` also ``PREFIX.json``.

    In ``.npy``, positions not classified (``valid`` False or a non-finite row) are stored as uniform
    1/3 rows; the exported formats (``al4dstem.export``) hold NaN there, with the scan's
    ``calibration`` on the navigation axes and the provenance in their metadata. Every file is
    written beside its final name and renamed into place once all are written, so an interrupted
    run leaves no half-written file (and no mix of old and new maps). Without ``figure``, a figure
    left by an earlier run under the same prefix is removed.
    """
    import json

    from al4dstem.export import remove, replace, temporary_path, write_map

    paths = check_writable(prefix, format, provenance is not None)
    probs = _check_probs(probs)
    valid = valid_mask(probs, valid)
    if not figure:
        paths.pop("figure").unlink(missing_ok=True)
    temps = {k: temporary_path(p) for k, p in paths.items()}
    try:
        try:
            if format == "npy":
                stored = np.where(valid[..., None], probs, np.float32(1 / len(CLASSES))).astype(np.float32)
                np.save(temps["probs"], stored)
                np.save(temps["valid"], valid)
            if provenance is not None:
                temps["provenance"].write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
        except OSError as e:
            raise Al4dstemError(f"{paths['probs']}: cannot write ({e.strerror or e})") from None
        if format != "npy":
            write_map(temps["probs"], format, probs, valid, calibration, provenance)
        save_map_png(probs, temps["png"], valid, scheme=scheme)
        if figure:
            save_figure(probs, temps["figure"], valid, labels, scheme=scheme, calibration=calibration)
        for k, p in paths.items():
            replace(temps[k], p)
    finally:
        for t in temps.values():
            remove(t)
    return paths


def load_prediction(path) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, valid)`` of ``PREFIX.npy``; with ``PREFIX_valid.npy`` beside it, rows it marks False become NaN."""
    paths = output_paths(path)
    path = Path(path)
    if not path.exists():
        raise Al4dstemError(f"{path}: no such file")
    try:
        probs = _check_probs(_load_npy(path)).astype(np.float32, copy=False)
    except Al4dstemError as e:
        raise Al4dstemError(f"{path}: {e}") if not str(e).startswith(str(path)) else e from None
    if paths["valid"].exists():
        valid = _load_npy(paths["valid"])
        if valid.shape != probs.shape[:2] or valid.dtype != bool:
            raise Al4dstemError(f"{paths['valid']}: expected a bool mask of shape {probs.shape[:2]}, "
                                f"got {valid.dtype} {valid.shape}")
        probs = np.where(valid[..., None], probs, np.float32(np.nan))
    return probs, valid_mask(probs)


def _load_npy(path: Path) -> np.ndarray:
    from al4dstem.data.readers import check_npy

    check_npy(path)  # FIFOs, .npz archives and forged headers: one line, before numpy reads anything
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt ({first})") from None


# ---------------------------------------------------------------- evaluation


def truth_grid(path, scan_shape) -> np.ndarray:
    """Class per position from a label file, int ``(rows, cols)``, -1 where the file has none.

    A file that labels every position of another grid (at least 4 positions, from x = y = 0)
    is the truth of another scan: refused, naming both shapes.
    """
    rows, cols = (int(s) for s in scan_shape)
    pos, cls = as_arrays(read_labels(path, (rows, cols)))
    grid = np.full((rows, cols), -1, dtype=np.int64)
    grid[pos[:, 1], pos[:, 0]] = cls
    if len(pos):
        extent = (int(pos[:, 1].max()) + 1, int(pos[:, 0].max()) + 1)
        if extent != (rows, cols) and len(pos) >= 4 and len(pos) == extent[0] * extent[1]:
            raise Al4dstemError(f"{path}: the truth covers a {extent[1]} x {extent[0]} scan (cols x rows), "
                                f"the prediction is {cols} x {rows}")
    return grid


def exclusion_mask(labels, scan_shape) -> np.ndarray:
    """Bool ``(rows, cols)``: True at the positions given as a label file, ``(n, 2)`` (x, y), or a mask."""
    rows, cols = (int(s) for s in scan_shape)
    if isinstance(labels, (str, os.PathLike)):
        labels = as_arrays(read_labels(labels, (rows, cols)))[0]
    arr = np.asarray(labels)
    if arr.dtype == bool:
        if arr.shape != (rows, cols):
            raise Al4dstemError(f"exclusion mask of shape {arr.shape} does not match the scan {(rows, cols)}")
        return arr.copy()
    pos = arr.astype(np.int64).reshape(-1, 2)
    if len(pos) and ((pos < 0).any() or pos[:, 0].max() >= cols or pos[:, 1].max() >= rows):
        raise Al4dstemError(f"excluded positions fall outside the {cols} x {rows} scan")
    mask = np.zeros((rows, cols), dtype=bool)
    mask[pos[:, 1], pos[:, 0]] = True
    return mask


def evaluate(probs, truth, exclude=None, valid=None) -> dict:
    """Accuracy and per-class scores of a probability map against a truth grid.

    ``truth`` is int ``(rows, cols)`` (-1: unknown, not evaluated); ``exclude`` positions (e.g.
    the training labels; see ``exclusion_mask``) and unclassified positions are left out.
    Returns ``accuracy``, ``n_evaluated``, ``n_excluded``, ``n_unclassified``, ``per_class``
    (``{name: {precision, recall, f1, support}}``) and ``confusion_matrix`` (rows = truth,
    columns = prediction, class order of ``classes``).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    probs = _check_probs(probs)
    truth = np.asarray(truth)
    if truth.shape != probs.shape[:2]:
        raise Al4dstemError(f"the truth is a {truth.shape[1]} x {truth.shape[0]} scan (cols x rows), "
                            f"the prediction {probs.shape[1]} x {probs.shape[0]}")
    known = (truth >= 0) & (truth < len(CLASSES))
    excluded = known & (exclusion_mask(exclude, truth.shape) if exclude is not None else False)
    ok = valid_mask(probs, valid)
    unclassified = known & ~excluded & ~ok
    use = known & ~excluded & ok
    y_true = truth[use].astype(np.int64)
    y_pred = np.argmax(probs[use], axis=1) if use.any() else np.empty(0, np.int64)
    labels = list(range(len(CLASSES)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "classes": list(CLASSES),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "n_evaluated": int(use.sum()),
        "n_excluded": int(excluded.sum()),
        "n_unclassified": int(unclassified.sum()),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(s[i])} for i, name in enumerate(CLASSES)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
