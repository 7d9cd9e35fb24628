"""Reading through rosettasciio (the hyperspy ecosystem's I/O library): shared by the format modules.

``open_with_rsciio`` calls ``rsciio.<plugin>.file_reader(path, lazy=True, ...)``, picks the one
4-D signal (or a frame stack, for ``--scan-shape``), or asks for ``--dataset`` naming the choices,
and keeps the axes' calibrations. Dask arrays are read through ``LazyFrames`` in chunks of at
most ``CHUNK_BYTES`` along the scan (whole patterns), so streaming holds one batch in memory.

rosettasciio and dask are imported here only, on the first read of such a file.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import warnings

import numpy as np

from al4dstem.data.arrays import LazyFrames
from al4dstem.data.calibration import Calibration, beam_energy_from_metadata
from al4dstem.data.formats import Format, Request, first_line, make_dataset
from al4dstem.errors import Al4dstemError

CHUNK_BYTES = 16 << 20  # a chunk of patterns read at once: a few batches' worth, whatever the scan


def rsciio_version() -> str:
    try:
        import rsciio
    except ImportError:
        return "not installed"
    return str(getattr(rsciio, "__version__", "?"))


@contextlib.contextmanager
def quiet():
    """rosettasciio logs and warns as it reads (a missing numba, a missing .hdr); stdout and stderr
    are for al4dstem's own output and its one-line errors."""
    logger = logging.getLogger("rsciio")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def reader_of(plugin: str, path):
    """``rsciio.<plugin>.file_reader``; a missing rosettasciio (or optional dependency) is one line."""
    try:
        with quiet():
            module = importlib.import_module(f"rsciio.{plugin}")
    except ImportError as e:
        raise Al4dstemError(f"{path}: reading this format needs rosettasciio with its {plugin} support "
                            f"(pip install 'rosettasciio[{_extra(plugin)}]'): {first_line(e)}") from None
    return module.file_reader


def _extra(plugin: str) -> str:
    return {"zspy": "zspy", "blockfile": "blockfile", "arina": "arina", "topspin": "app5"}.get(plugin, "hdf5")


def read_signals(plugin: str, path, **kwargs) -> list[dict]:
    """The signal dictionaries of ``path``, read lazily where the reader can; errors are one line."""
    reader = reader_of(plugin, path)
    accepted = inspect.signature(reader).parameters
    if "lazy" in accepted:
        kwargs.setdefault("lazy", True)
    try:
        with quiet():
            signals = reader(str(path), **kwargs)
    except Al4dstemError:
        raise
    except MemoryError:
        raise Al4dstemError(f"{path}: rosettasciio cannot read this file without loading it whole, and it does "
                            f"not fit in memory") from None
    except Exception as e:  # readers raise anything on a file they do not understand
        raise Al4dstemError(f"{path}: rosettasciio could not read it ({type(e).__name__}: {first_line(e)})") from None
    if isinstance(signals, dict):
        signals = [signals]
    return list(signals or [])


def describe_signal(i: int, s: dict) -> str:
    title = _title(s)
    return f"{i}" + (f" {title!r}" if title else "") + f" {tuple(s['data'].shape)}"


def _title(s: dict) -> str:
    try:
        return str(s["metadata"]["General"]["title"] or "")
    except (KeyError, TypeError):
        return ""


def _is_scan(s: dict) -> bool:
    """A 4-D signal whose last two axes are the detector: not a spectrum image with a time axis."""
    data = s.get("data")
    if getattr(data, "ndim", 0) != 4 or np.dtype(data.dtype).kind not in "uif":
        return False
    flags = [a.get("navigate") for a in s.get("axes", [])]
    if len(flags) == 4 and all(f is not None for f in flags) and any(flags):
        return flags == [True, True, False, False]
    return True


def _is_stack(s: dict) -> bool:
    data = s.get("data")
    return getattr(data, "ndim", 0) == 3 and np.dtype(data.dtype).kind in "uif"


def pick_signal(signals: list[dict], request: Request) -> tuple[int, dict]:
    """``(index, signal)``: the one 4-D scan, ``--dataset``'s choice (index or title), or the one frame
    stack when there is no scan; otherwise an error naming what the file holds."""
    path = request.path
    listed = ", ".join(describe_signal(i, s) for i, s in enumerate(signals)) or "nothing"
    if request.dataset is not None:
        want = str(request.dataset).strip()
        for i, s in enumerate(signals):
            if want == str(i) or (want and want == _title(s)):
                if not (_is_scan(s) or _is_stack(s)):
                    raise Al4dstemError(f"{path}: --dataset {want!r} has shape {tuple(s['data'].shape)}, not a "
                                        f"4-D scan or a frame stack (datasets: {listed})")
                return i, s
        raise Al4dstemError(f"{path}: --dataset {want!r}: no such dataset (give the number or title of one of: "
                            f"{listed})")
    scans = [(i, s) for i, s in enumerate(signals) if _is_scan(s)]
    if len(scans) == 1:
        return scans[0]
    if len(scans) > 1:
        names = ", ".join(describe_signal(i, s) for i, s in scans)
        raise Al4dstemError(f"{path}: {len(scans)} 4-D datasets ({names}); pick one with --dataset")
    stacks = [(i, s) for i, s in enumerate(signals) if _is_stack(s)]
    if len(stacks) == 1:
        return stacks[0]  # without --scan-shape, make_dataset asks for one, naming the frame count
    if len(stacks) > 1:
        names = ", ".join(describe_signal(i, s) for i, s in stacks)
        raise Al4dstemError(f"{path}: no 4-D dataset, {len(stacks)} frame stacks ({names}); pick one with --dataset "
                            f"and give --scan-shape")
    raise Al4dstemError(f"{path}: no 4-D dataset in this file (found {listed})")


def scan_chunks(shape, itemsize: int) -> tuple:
    """Chunks along the scan for a 4-D ``shape`` (or a 3-D frame stack): whole patterns, at most
    ``CHUNK_BYTES``, never more than one scan row."""
    frame = int(np.prod(shape[-2:])) * itemsize
    per_chunk = max(1, CHUNK_BYTES // max(frame, 1))
    if len(shape) == 4:
        return (1, min(per_chunk, shape[1]), shape[2], shape[3])
    return (min(per_chunk, shape[0]), shape[1], shape[2])


def open_with_rsciio(request: Request, fmt: Format, plugin: str, *, kwargs: dict | None = None,
                     rechunk_kwargs=None, calibration_hook=None, notes=()) -> object:
    """A ``Dataset`` of ``request.path`` read by ``rsciio.<plugin>``.

    ``rechunk_kwargs(signal) -> dict`` gives the reader's arguments for a second, lazier read with
    smaller chunks (``chunks=`` plus whatever saves work the second time); ``calibration_hook(signal,
    calibration) -> Calibration`` adds what rosettasciio leaves in the original metadata.
    """
    path = request.path
    kwargs = dict(kwargs or {})
    signals = read_signals(plugin, path, **kwargs)
    index, signal = pick_signal(signals, request)
    data = signal["data"]
    takes_chunks = "chunks" in inspect.signature(reader_of(plugin, path)).parameters
    if _is_dask(data) and rechunk_kwargs is not None and takes_chunks:
        wanted = scan_chunks(data.shape, np.dtype(data.dtype).itemsize)
        if _chunk_bytes(data) > CHUNK_BYTES:  # the reader's own chunks would load far more than a batch
            again = read_signals(plugin, path, **{**kwargs, **rechunk_kwargs(signal), "chunks": wanted})
            signal = again[index] if index < len(again) else signal
            data = signal["data"]
    calibration = signal_calibration(signal)
    if calibration_hook is not None:
        calibration = calibration_hook(signal, calibration)
    array = LazyFrames(data) if _is_dask(data) else np.asarray(data)
    how = f"rosettasciio {rsciio_version()}, " + ("lazy" if _is_dask(data) else "in memory")
    source = str(path) if len(signals) == 1 else f"{path}:{index}" + (f" {_title(signal)!r}" if _title(signal) else "")
    return make_dataset(array, request, fmt, source=source, calibration=calibration, reader=how, notes=notes)


def signal_calibration(signal: dict) -> Calibration:
    """The calibration of a 4-D signal, or of the detector axes of a frame stack."""
    axes = list(signal.get("axes") or [])
    energy = beam_energy_from_metadata(signal.get("metadata"))
    if len(axes) == 4:
        return Calibration.from_rsciio(axes, signal.get("metadata"), energy)
    if len(axes) == 3:  # a stack: its first axis is time or frames, not the scan
        return Calibration.from_rsciio([{"name": "y"}, {"name": "x"}, *axes[1:]], None, energy)
    return Calibration(beam_energy_kev=energy)


def _is_dask(data) -> bool:
    return type(data).__module__.startswith("dask")


def _chunk_bytes(data) -> int:
    biggest = [max(c) if c else 0 for c in data.chunks]
    return int(np.prod(biggest)) * np.dtype(data.dtype).itemsize
