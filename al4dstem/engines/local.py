"""Local streaming inference: read -> preprocess -> network in one pass over the scan.

Three stages overlap: a reading thread (a memory-mapped file is read with ``pread`` into a
small pool of reused buffers, ``READ_AHEAD`` batches ahead), a preprocessing thread (at most
``PREFETCH`` batches ahead of the network) and the network on the caller's thread. Every queue
is bounded, so only the output array grows with the scan. Pages of a memory map read directly
(other views) are unmapped once their batch is preprocessed: the file stays in the page cache,
but not in this process's resident memory.

Patterns holding NaN or inf are not classifiable: their ``valid`` flag is False and their
probabilities NaN, as ``CNNClassifier.predict_proba`` gives them (files written by
``al4dstem.maps.write_prediction`` store them as uniform 1/3 rows plus a validity mask).

An engine is one function, ``predict_dataset(model, dataset, ...) -> (probs, valid)``
(``al4dstem.base.Engine``); the model is an ``al4dstem.base.PatternModel``, whose
``classify_preprocessed`` applies the NaN/valid rule. Other engines (``al4dstem.integrations.libertem``)
are chosen by name through ``al4dstem.engines.get_engine``.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from al4dstem.data import Dataset, finite_mask, open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.streaming import prefetch

N_CLASSES = 3
DEFAULT_BATCH_SIZE = 256
PREFETCH = 2  # preprocessed batches waiting for the network, at most
READ_AHEAD = 1  # raw batches read ahead of the preprocessing, at most
Progress = Callable[[int, int], None]  # (positions done, positions in all)


def default_threads() -> tuple[int, int]:
    """``(torch intra-op threads, preprocessing threads)`` for this machine.

    The network and the preprocessing run at the same time on different threads, so each
    gets part of the cores: measured on 2 cores, one each beats two each (they only compete).
    """
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
    except AttributeError:
        cores = os.cpu_count() or 1
    if cores <= 2:
        return 1, 1
    pre = max(1, cores // 4)
    return cores - pre, pre


def predict_dataset(model, dataset, batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None,
                    n_threads: int | None = None, timings: dict | None = None,
                    device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities for every scan position, streamed.

    Parameters
    ----------
    model : an ``al4dstem.base.PatternModel`` (a ``TrainedNetwork``), or a fitted ``CNNClassifier``
        (adapted by ``as_pattern_model``).
    dataset : a ``Dataset`` or anything ``open_dataset`` takes.
    batch_size : patterns per batch, at most (memory, not the result).
    progress : called as ``progress(done, total)`` after each batch.
    n_threads : torch intra-op threads (None: ``default_threads()``); preprocessing keeps its own.
    timings : if a dict is given, filled with seconds spent reading + preprocessing
        (``read_preprocess``), in the network (``network``), waiting for input (``wait``), ``total``.
    device : ``cpu``, ``cuda`` or ``auto`` (a GPU when torch sees one); None leaves the model where
        it is. Only a model with ``to(device)`` (``TrainedNetwork``) can move.

    Returns
    -------
    probs : float32 ``(rows, cols, 3)``, order none, vertical, horizontal; NaN where not valid.
    valid : bool ``(rows, cols)``, False where a pattern held NaN/inf (or the network gave non-finite output).
    """
    import torch

    from al4dstem.models.trained import as_pattern_model

    dataset = open_dataset(dataset)
    model.check_compatible(dataset)  # before any work
    if int(batch_size) < 1:
        raise Al4dstemError(f"batch size must be at least 1, got {batch_size}")
    if device is not None:
        if not hasattr(model, "to"):
            raise Al4dstemError(f"{type(model).__name__} cannot move to a device; load it as a TrainedNetwork")
        model.to(device)
    model = as_pattern_model(model)
    torch_threads, pre_threads = default_threads()
    if n_threads is not None:
        torch_threads = max(1, int(n_threads))
    preprocessing = dataclasses.replace(model.preprocessing_, n_threads=pre_threads)

    n = dataset.n_positions
    probs = np.empty((n, N_CLASSES), dtype=np.float32)  # flat, scan order
    valid = np.empty(n, dtype=bool)
    spent = {"read_preprocess": 0.0, "network": 0.0, "wait": 0.0}
    start = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with torch.inference_mode():
            done = 0
            for index, x, ok in _prefetch(_preprocessed(dataset, preprocessing, int(batch_size), spent), spent):
                t = time.perf_counter()
                probs[index], valid[index] = model.classify_preprocessed(x, ok)
                spent["network"] += time.perf_counter() - t
                done += len(x)
                if progress:
                    progress(done, n)
    finally:
        torch.set_num_threads(old_threads)
    if timings is not None:
        timings.update(spent, total=time.perf_counter() - start)
    rows, cols = dataset.scan_shape
    return probs.reshape(rows, cols, N_CLASSES), valid.reshape(rows, cols)


def _preprocessed(dataset: Dataset, preprocessing, batch_size: int, spent: dict) -> Iterator:
    """``(flat scan index, model input, finite mask)`` per batch of at most ``batch_size`` patterns.

    Batches come in the file's storage order (``Dataset.iter_batches(order="storage")``: a memory
    map sequentially, whole rows when they fit and pieces of a row wider than ``batch_size``; a
    chunked file whole chunks at a time, each read once), so memory does not grow with the scan.
    """
    release_pages = _page_releaser(dataset.array)
    reader = _FileReader(dataset.array)
    with reader:
        # reading runs on its own thread, READ_AHEAD batches ahead: the disk works while the CPUs do
        batches = dataset.iter_batches(batch_size, order="storage")
        raws = prefetch(((batch, reader.read(batch.patterns)) for batch in batches), READ_AHEAD)
        try:
            t = time.perf_counter()
            for batch, raw in raws:
                ok = finite_mask(raw)
                x = preprocessing(raw)
                release_pages(raw)
                reader.release(raw)
                spent["read_preprocess"] += time.perf_counter() - t
                yield batch.index, x, ok
                t = time.perf_counter()
        finally:
            reader.stop()  # wakes a reading thread waiting for a free buffer
            raws.close()  # and joins it


def _prefetch(items: Iterator, spent: dict, depth: int = PREFETCH) -> Iterator:
    """``streaming.prefetch``, adding the consumer's waiting time to ``spent["wait"]``."""

    def waited(seconds: float) -> None:
        spent["wait"] += seconds

    return prefetch(items, depth, waited)


# ---------------------------------------------------------------- page release

_PAGE = mmap.PAGESIZE


class _FileReader:
    """Reads batches of a read-only memory-mapped file with ``pread`` into a pool of reused buffers.

    Faulting a mapped file in page by page costs more than reading it: ``pread`` of whole batches
    (with the kernel's sequential read-ahead) streams at the disk's speed, and the process's
    resident size stays a few batches, whatever the file's size. (``O_DIRECT`` was tried on a
    25.5 GiB file on the 2-core VM: 7-9 us of CPU per 128 KiB frame instead of 21-87 us
    buffered, the whole pass ~110 instead of 120-200 us per pattern, but with 2 or 4 requests
    of 32 MiB in flight the maps came 10-30 % slower than with the kernel's read-ahead.)

    ``read(patterns)`` returns a batch in one of ``buffers`` buffers; ``release(batch)`` gives the
    buffer back (a reader waits for one when all are lent). Anything else (arrays, HDF5, lazy
    readers, non-contiguous views) passes through ``read`` unchanged.

    ``drop_cache``: drop what was read from the page cache (``POSIX_FADV_DONTNEED``) as soon as
    it is copied; None: when the file is larger than this machine's memory. Such a file cannot
    stay cached for a next pass anyway, and pages dropped here spare the kernel reclaiming them
    under memory pressure while the pass streams, which costs CPU the network needs.
    """

    def __init__(self, array, buffers: int | None = None, drop_cache: bool | None = None):
        self.array = array
        self.buffers = buffers
        self.drop_cache = drop_cache

    def __enter__(self) -> _FileReader:
        self.fd = None
        self._stopped = threading.Event()
        self._free: queue.Queue = queue.Queue()
        self._lent: dict[int, tuple[np.ndarray, bytearray]] = {}
        self._lock = threading.Lock()
        self._root = root = _mapped_root(self.array)
        if root is None:
            return self
        try:
            self.fd = os.open(root.filename, os.O_RDONLY)
        except (OSError, TypeError):
            self._root = None
            return self
        fadvise = hasattr(os, "posix_fadvise")
        if fadvise:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        drop = self.drop_cache if self.drop_cache is not None else root.nbytes > _memory_bytes()
        self._drop = bool(drop and fadvise)
        self._lo = root.__array_interface__["data"][0]
        self._hi = self._lo + root.nbytes
        # every batch a reader, the queue and the preprocessing can hold at once
        for _ in range(self.buffers or READ_AHEAD + 3):
            self._free.put(None)  # allocated on first use, sized to the batch
        return self

    def read(self, patterns: np.ndarray) -> np.ndarray:
        root = self._root
        if root is None:
            return patterns
        start = patterns.__array_interface__["data"][0]
        if not (patterns.flags.c_contiguous and self._lo <= start and start + patterns.nbytes <= self._hi):
            return patterns
        buffer = self._take()
        if buffer is None or len(buffer) < patterns.nbytes:
            buffer = bytearray(patterns.nbytes)
        try:
            self._pread(memoryview(buffer)[:patterns.nbytes], int(root.offset) + (start - self._lo))
        except BaseException:
            self._free.put(buffer)
            raise
        batch = np.frombuffer(buffer, dtype=patterns.dtype, count=patterns.size).reshape(patterns.shape)
        with self._lock:
            self._lent[id(batch)] = (batch, buffer)
        return batch

    def release(self, batch: np.ndarray) -> None:
        """Give back the buffer of a batch ``read`` returned (anything else: nothing to do)."""
        with self._lock:
            lent = self._lent.pop(id(batch), None)
        if lent is not None:
            self._free.put(lent[1])

    def stop(self) -> None:
        """Readers waiting for a buffer give up (the consumer has stopped)."""
        self._stopped.set()

    def _take(self):
        while True:
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                if self._stopped.is_set():
                    raise Al4dstemError("reading stopped") from None

    def _pread(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            got = os.preadv(self.fd, [view[done:]], offset + done)
            if got == 0:
                raise Al4dstemError(f"{self._root.filename}: the file ends early (cut short while being read?)")
            done += got
        if self._drop:  # whole pages: the kernel keeps a page that is only partly in the range
            first = offset - offset % _PAGE
            os.posix_fadvise(self.fd, first, -(-(offset + len(view) - first) // _PAGE) * _PAGE,
                             os.POSIX_FADV_DONTNEED)

    def __exit__(self, *exc):
        self._stopped.set()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _memory_bytes() -> int:
    """The memory this process may fill: the machine's, or its container's (cgroup) limit if
    smaller. Where neither can be told, an unreachable size (then nothing is dropped)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 0
    sizes = [physical] if physical > 0 else []
    for path in _CGROUP_LIMITS:  # a batch job's or container's limit ("max": none)
        try:
            with open(path) as f:
                sizes.append(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    sizes = [s for s in sizes if s > 0]
    return min(sizes) if sizes else 1 << 62


def _mapped_root(array):
    """The ``np.memmap`` that maps ``array``'s file (``array`` itself or the one it views), read-only and
    mapped from its ``offset``; None for anything else."""
    if not (isinstance(array, np.memmap) and array.mode == "r" and hasattr(os, "preadv")):
        return None
    root = array
    while isinstance(root.base, np.memmap):
        root = root.base
    if not isinstance(root.base, mmap.mmap) or not getattr(root, "filename", None):
        return None
    return root


def _page_releaser(array) -> Callable[[np.ndarray], None]:
    """A function that unmaps the pages behind a batch read from a read-only memory map.

    ``MADV_DONTNEED`` on a shared read-only file mapping only drops this process's page-table
    entries (the data stay in the page cache and are faulted back in if read again), so the
    resident size does not grow with the scan. A no-op for anything else.
    """
    dontneed = getattr(mmap, "MADV_DONTNEED", None)
    if not (isinstance(array, np.memmap) and array.mode == "r" and sys.platform.startswith("linux") and dontneed):
        return lambda patterns: None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return lambda patterns: None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    lo = array.__array_interface__["data"][0]
    hi = lo + array.nbytes

    def release(patterns: np.ndarray) -> None:
        start = patterns.__array_interface__["data"][0]
        if not (lo <= start and start + patterns.nbytes <= hi and patterns.flags.c_contiguous):
            return  # a copy, not the map itself
        first = start - start % _PAGE
        last = -(-(start + patterns.nbytes) // _PAGE) * _PAGE
        madvise(first, last - first, dontneed)

    return release
