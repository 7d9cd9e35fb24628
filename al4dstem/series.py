"""In-situ series: many scans of one area (a biasing or heating run), mapped with one model.

A series is given as a 5-D array ``(frames, scan_rows, scan_cols, det_rows, det_cols)`` (a ``.npy``
or HDF5 file, or an array), a list of scan files, or a folder of scans (one file per frame, in
natural order: ``frame_2`` before ``frame_10``). Every frame must have the same scan and detector
shape. ``map_series`` maps every frame through an engine; ``wall_profile`` measures, per frame, the
domain wall's position and the width of the ``none`` band; ``write_series`` writes the stack of
maps, an animated map (GIF, and MP4 when imageio-ffmpeg is installed) and the plot of both against
the frame.

Wall measurement: in every scan row, the ``none`` positions (argmax none, classified) give a
width (their count) and a position (their mean column ``x``); a frame's position is the median,
its width the mean, over the rows that hold any. That suits a wall crossing the scan rows (the
simulator's moving wall); a wall along the rows (the paper's bands) is measured down the columns
instead (``axis="y"``). ``axis="auto"`` takes the direction in which more lines cross the band.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from al4dstem.errors import Al4dstemError

N_CLASSES = 3
NOT_SCANS = {".hdr", ".xml", ".png", ".csv", ".json", ".txt", ".yaml", ".yml", ".pt", ".gif", ".mp4"}


@dataclass
class Series:
    """The frames of a series, each an al4dstem ``Dataset`` (lazy), and where they came from."""

    frames: list
    source: str

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def scan_shape(self) -> tuple[int, int]:
        return self.frames[0].scan_shape


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _five_d(path: Path, dataset: str | None):
    """The 5-D array in ``path`` (a memory map or an h5py dataset), or None."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None  # open_dataset says what is wrong with it
        return array if array.ndim == 5 else None
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError:
            return None
        if dataset is not None:
            obj = f.get(dataset)
            return obj if isinstance(obj, h5py.Dataset) and obj.ndim == 5 else None
        found = []
        f.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.ndim == 5 else None)
        return found[0] if len(found) == 1 else None
    return None


def _scan_files(folder: Path) -> list[Path]:
    """The scan files of a folder of scans (empty for a folder that is one scan, such as PNG patterns)."""
    if folder.suffix.lower() == ".zspy" or any(folder.glob("*_*.png")):
        return []
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() not in NOT_SCANS
                   and (p.is_file() or p.suffix.lower() == ".zspy")), key=_natural_key)


def open_series(inputs, dataset: str | None = None, scan_shape=None) -> Series | None:
    """The series ``inputs`` name, or None when they name a single scan.

    ``inputs``: a path or a list of paths (several files: one scan each; one 5-D file; one folder
    of scan files), or a 5-D numpy array.
    """
    from al4dstem.data import Dataset, open_dataset

    if isinstance(inputs, np.ndarray):
        if inputs.ndim != 5:
            return None
        return _check_frames(Series([Dataset(inputs[i], f"<array> frame {i}") for i in range(len(inputs))],
                                    "<array>"))
    paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else list(inputs))]
    if len(paths) > 1:
        return _check_frames(Series([open_dataset(p, dataset, scan_shape=scan_shape) for p in paths],
                                    f"{len(paths)} files"))
    path = paths[0]
    if path.is_dir():
        files = _scan_files(path)
        if not files:
            return None
        return _check_frames(Series([open_dataset(p, dataset, scan_shape=scan_shape) for p in files], str(path)))
    array = _five_d(path, dataset) if path.is_file() else None
    if array is None:
        return None
    frames = [Dataset(_Frame(array, i), f"{path} frame {i}", "npy" if path.suffix == ".npy" else "HDF5",
                      path=str(path)) for i in range(array.shape[0])]
    return _check_frames(Series(frames, str(path)))


class _Frame:
    """Frame ``i`` of a 5-D array, sliced lazily (an h5py dataset reads only what is asked)."""

    def __init__(self, array, i: int):
        self.array, self.i = array, i
        self.shape = tuple(int(s) for s in array.shape[1:])
        self.dtype = np.dtype(array.dtype)
        self.ndim = 4

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        return self.array[(self.i, *key)]


def _check_frames(series: Series) -> Series:
    if not series.frames:
        raise Al4dstemError(f"{series.source}: a series without frames")
    first = series.frames[0]
    for ds in series.frames[1:]:
        if ds.scan_shape != first.scan_shape or ds.detector_shape != first.detector_shape:
            raise Al4dstemError(f"{ds.source}: shape {ds.shape} differs from the first frame's {first.shape} "
                                f"({first.source}): every frame of a series must have the same scan and detector")
    return series


def map_series(model, series: Series, engine: str = "local", progress: Callable[[int, int], None] | None = None,
               **options) -> tuple[np.ndarray, np.ndarray]:
    """``(probs (frames, rows, cols, 3) float32, valid (frames, rows, cols) bool)``: every frame through
    ``engine`` (``al4dstem.engines``) with one model, pooled as it was trained."""
    from al4dstem.engines import run_engine
    from al4dstem.models.neighbourhood import model_dataset

    rows, cols = series.scan_shape
    probs = np.empty((len(series), rows, cols, N_CLASSES), dtype=np.float32)
    valid = np.empty((len(series), rows, cols), dtype=bool)
    per_frame = rows * cols
    total = per_frame * len(series)
    for f, ds in enumerate(series.frames):
        def frame_progress(done, _total, f=f):
            if progress is not None:
                progress(f * per_frame + done, total)

        probs[f], valid[f] = run_engine(engine, model, model_dataset(model, ds), progress=frame_progress, **options)
    return probs, valid


def wall_profile(probs, valid=None, axis: str = "x") -> tuple[np.ndarray, np.ndarray]:
    """``(position, width)`` per frame, in scan positions, over scan rows (``axis="x"``, a wall
    crossing the rows) or columns (``"y"``): the median of the ``none`` band's mean coordinate and
    the mean of its width; NaN for a frame without any ``none`` position."""
    probs = np.asarray(probs)
    if probs.ndim == 3:
        probs = probs[None]
    if probs.ndim != 4 or probs.shape[-1] != N_CLASSES:
        raise Al4dstemError(f"expected maps (frames, rows, cols, 3), got shape {probs.shape}")
    if axis not in ("x", "y", "auto"):
        raise Al4dstemError(f"wall axis {axis!r}: x, y or auto")
    ok = np.isfinite(probs).all(-1) if valid is None else np.asarray(valid, bool).reshape(probs.shape[:3])
    none = (np.argmax(np.nan_to_num(probs, nan=-1), axis=-1) == 0) & ok
    if axis == "auto":
        axis = wall_axis(none)
    if axis == "y":
        none = none.transpose(0, 2, 1)
    coords = np.arange(none.shape[2], dtype=float)
    counts = none.sum(axis=2).astype(float)  # (frames, lines)
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = (none * coords).sum(axis=2) / counts
    position = np.full(len(none), np.nan)
    width = np.full(len(none), np.nan)
    for f in range(len(none)):
        lines = counts[f] > 0
        if lines.any():
            position[f] = float(np.median(centres[f][lines]))
            width[f] = float(np.mean(counts[f][lines]))  # a mean: band widths are whole positions per line
    return position, width


def wall_axis(none: np.ndarray) -> str:
    """``"x"`` when the ``none`` band (bool ``(frames, rows, cols)``) crosses a larger share of the scan
    rows than of the columns (a wall across the rows), else ``"y"``."""
    rows_crossed = none.any(axis=2).mean() if none.size else 0.0
    cols_crossed = none.any(axis=1).mean() if none.size else 0.0
    return "x" if rows_crossed >= cols_crossed else "y"


def series_paths(prefix) -> dict[str, Path]:
    """Every file ``write_series`` writes for ``prefix`` (the MP4 only when imageio-ffmpeg is installed)."""
    prefix = Path(prefix)
    base = prefix.name
    paths = {"probs": prefix.with_name(f"{base}_series.npy"), "valid": prefix.with_name(f"{base}_series_valid.npy"),
             "movie": prefix.with_name(f"{base}.gif"), "walls": prefix.with_name(f"{base}_walls.png"),
             "walls_csv": prefix.with_name(f"{base}_walls.csv"), "provenance": prefix.with_name(f"{base}.json")}
    if mp4_available():
        paths["mp4"] = prefix.with_name(f"{base}.mp4")
    return paths


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def write_series(prefix, probs, valid, scheme: str = "paper", fps: float = 4.0, provenance: dict | None = None,
                 axis: str = "auto") -> dict[str, Path]:
    """Write the stack of maps, the movie and the wall plot; returns ``series_paths(prefix)``."""
    paths = series_paths(prefix)
    if axis == "auto":
        probs_ok = np.asarray(valid, bool)
        axis = wall_axis((np.argmax(np.nan_to_num(probs, nan=-1), axis=-1) == 0) & probs_ok)
    position, width = wall_profile(probs, valid, axis)
    try:
        np.save(paths["probs"], np.where(np.asarray(valid)[..., None], probs, np.float32(1 / 3)).astype(np.float32))
        np.save(paths["valid"], np.asarray(valid, bool))
        frames = _movie_frames(probs, valid, scheme)
        _write_gif(paths["movie"], frames, fps)
        if "mp4" in paths:
            _write_mp4(paths["mp4"], frames, fps)
        with open(paths["walls_csv"], "w") as f:
            f.write(f"frame,wall_position_{axis},none_width\n")
            for i, (p, w) in enumerate(zip(position, width, strict=True)):
                f.write(f"{i},{'' if np.isnan(p) else f'{p:.3f}'},{'' if np.isnan(w) else f'{w:.3f}'}\n")
        _plot_walls(paths["walls"], position, width, axis)
        record = {**(provenance or {}), "frames": int(len(probs)), "wall_position": _plain(position),
                  "none_width": _plain(width), "wall_axis": axis}
        paths["provenance"].write_text(json.dumps(record, indent=1, default=str) + "\n")
    except OSError as e:
        raise Al4dstemError(f"{prefix}: cannot write ({e.strerror or e})") from None
    return paths


def _plain(values) -> list:
    return [None if np.isnan(v) else round(float(v), 4) for v in values]


def _movie_frames(probs, valid, scheme: str) -> np.ndarray:
    """uint8 ``(frames, H, W, 3)``: each map enlarged as ``predict``'s PNG, sides rounded up to 16
    (video codecs work in 16-pixel blocks), a white frame counter bar below."""
    from al4dstem.maps import auto_scale, rgb_map

    rows, cols = probs.shape[1:3]
    scale = auto_scale((rows, cols))
    h, w = rows * scale, cols * scale
    bar = 6
    H, W = -(-(h + bar) // 16) * 16, -(-w // 16) * 16
    out = np.zeros((len(probs), H, W, 3), dtype=np.uint8)
    for f in range(len(probs)):
        rgb = rgb_map(probs[f], valid[f], scheme)
        out[f, :h, :w] = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
        done = int(round(W * (f + 1) / len(probs)))  # progress bar: which frame of the series this is
        out[f, H - bar:, :done] = 255
    return out


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    try:
        import imageio.v3 as iio
    except ImportError:  # installed with scikit-image (py4DSTEM's dependency); say so if it is missing
        raise Al4dstemError("the series movie needs imageio: pip install imageio") from None

    iio.imwrite(path, list(frames), extension=".gif", duration=int(round(1000 / fps)), loop=0)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, frames, extension=".mp4", plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=16)


def _plot_walls(path: Path, position, width, axis: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.arange(len(position))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(frames, position, "o-", color="tab:red")
    top.set_ylabel(f"wall position, scan {'column x' if axis == 'x' else 'row y'}")
    bottom.plot(frames, width, "s-", color="tab:gray")
    bottom.set_ylabel("none-band width, positions")
    bottom.set_xlabel("frame")
    top.set_title("domain wall against frame (median over scan lines)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
