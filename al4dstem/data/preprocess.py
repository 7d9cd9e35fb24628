"""One configurable preprocessing pipeline, stored with every model.

raw patterns ``(n, det_rows, det_cols)`` (any dtype, any detector shape)
  -> optional crop ``(top, bottom, left, right)`` pixels removed from each edge
  -> binning to ``size x size`` counts: whole factors sum blocks; other ratios resample by
     area (each output pixel sums the input area it covers, so counts are conserved either way)
  -> ``log`` (log1p), ``sqrt`` or ``linear`` scaling (negative values count as 0 for log/sqrt)
  -> per-pattern normalisation: ``max`` (divide by the pattern's maximum, so [0, 1] for
     non-negative data), ``standard`` (zero mean, unit std) or ``none``
  -> non-finite pixels (NaN, inf) count as 0; ``finite_mask`` tells which patterns had any

Speed (the hot path is 512 x 512 uint16 -> 256 x 256 float32): integer data with whole bin
factors is summed in the smallest unsigned type that cannot overflow (the batch's peak decides),
and scaling plus normalisation is a table lookup on those integer counts followed by one
in-cache division. Work runs in small chunks (a few patterns, so intermediates stay in the
CPU cache) on a persistent thread pool, with per-thread scratch buffers (numpy releases the
GIL in its loops). Counts above the table (hot pixels) are computed exactly; other data
(float, negative integers, non-integer ratios) take a float64 binning path.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from al4dstem.errors import Al4dstemError

SCALINGS = ("log", "sqrt", "linear")
NORMALISATIONS = ("max", "standard", "none")
CHUNK_BYTES = 2 << 20  # raw bytes per task: ~4 frames of 512 x 512 uint16 (measured best on 2 cores)
MAX_CHUNK = 64  # patterns per task at most (small detectors)
LUT_SIZE = 1 << 16  # integer counts below this are scaled by table lookup


@dataclass(frozen=True)
class Preprocessing:
    """Raw detector frames -> float32 model input ``(n, size, size)``.

    Parameters
    ----------
    size : output side in pixels (square).
    crop : pixels removed from (top, bottom, left, right) before binning, or None.
    scaling : "log", "sqrt" or "linear".
    normalise : "max", "standard" or "none".
    n_threads : worker threads (None: all cores, at most 4).
    """

    size: int = 128
    crop: tuple[int, int, int, int] | None = None
    scaling: str = "log"
    normalise: str = "max"
    n_threads: int | None = None

    def __post_init__(self):
        # validation only (no derived state), so a bad stored config fails loudly and early
        if self.scaling not in SCALINGS:
            raise Al4dstemError(f"unknown scaling {self.scaling!r} (one of {', '.join(SCALINGS)})")
        if self.normalise not in NORMALISATIONS:
            raise Al4dstemError(f"unknown normalisation {self.normalise!r} (one of {', '.join(NORMALISATIONS)})")
        if int(self.size) < 4:
            raise Al4dstemError(f"preprocessing size must be >= 4, got {self.size}")
        if self.crop is not None and (len(self.crop) != 4 or min(self.crop) < 0):
            raise Al4dstemError(f"crop must be four non-negative margins (top, bottom, left, right), got {self.crop}")
        if self.n_threads is not None and int(self.n_threads) < 1:
            raise Al4dstemError(f"n_threads must be >= 1, got {self.n_threads}")

    # ------------------------------------------------------------------ config
    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop"] = list(self.crop) if self.crop is not None else None
        d.pop("n_threads")  # a property of the machine, not of the model
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        if d.get("crop") is not None:
            d["crop"] = tuple(int(c) for c in d["crop"])
        return cls(**d)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (int(self.size), int(self.size))

    def cropped_shape(self, detector_shape) -> tuple[int, int]:
        kr, kc = (int(s) for s in detector_shape)
        if self.crop is None:
            return kr, kc
        t, b, left, r = self.crop
        shape = (kr - t - b, kc - left - r)
        if min(shape) < 1:
            raise Al4dstemError(f"crop {self.crop} leaves nothing of a {kr} x {kc} detector")
        return shape

    # ------------------------------------------------------------------ apply
    def __call__(self, patterns: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Preprocess a batch ``(n, det_rows, det_cols)`` (or one pattern) into float32.

        ``out``: an optional float32 C-contiguous ``(n, size, size)`` array to write into and
        return. Reusing one across batches saves the page faults of a fresh output array
        (tens of microseconds per 256 x 256 pattern, far more when the kernel compacts memory).
        """
        patterns = np.asarray(patterns)
        single = patterns.ndim == 2
        if single:
            patterns = patterns[None]
        if patterns.ndim != 3:
            raise Al4dstemError(f"expected patterns (n, det_rows, det_cols), got shape {patterns.shape}")
        if patterns.dtype.kind not in "uif":
            raise Al4dstemError(f"cannot preprocess patterns of dtype {patterns.dtype}")
        if self.crop is not None:
            kr, kc = self.cropped_shape(patterns.shape[1:])
            t, _, left, _ = self.crop
            patterns = patterns[:, t:t + kr, left:left + kc]
        n = len(patterns)
        shape = self.output_shape if single else (n, *self.output_shape)
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}, got {out.dtype} {out.shape}")
        work = out.reshape(n, *self.output_shape)  # a view
        if n == 0:
            return out
        binning = _Binning.for_shapes(patterns.shape[1:], self.output_shape)
        threads = int(self.n_threads or min(4, os.cpu_count() or 1))
        per_pattern = max(1, patterns[0].nbytes)
        chunk = max(1, min(MAX_CHUNK, CHUNK_BYTES // per_pattern, -(-n // threads)))
        chunks = [slice(i, min(n, i + chunk)) for i in range(0, n, chunk)]
        if threads > 1 and len(chunks) > 1:
            list(_pool(threads).map(lambda s: self._chunk(patterns[s], work[s], binning), chunks))
        else:
            for s in chunks:
                self._chunk(patterns[s], work[s], binning)
        return out

    def _chunk(self, raw: np.ndarray, out: np.ndarray, binning: _Binning) -> None:
        counts = _bin_counts(raw, binning) if raw.dtype.kind in "ui" and binning.whole else None
        if counts is not None:
            peaks = _lookup(counts, self.scaling, out)
        else:
            binned = _bin_float(raw, binning)
            big = np.finfo(np.float32).max
            if binned.size and np.abs(binned).max() > big:  # finite counts beyond float32 (1e300): clip, don't overflow
                binned = np.clip(binned, -big, big)
            out[:] = binned
            _scale_float(out, self.scaling)
            peaks = None
        _normalise(out, self.normalise, peaks)


def finite_mask(patterns: np.ndarray) -> np.ndarray:
    """``(n,)`` True where a pattern has no NaN or inf (always True for integer data)."""
    patterns = np.asarray(patterns)
    if patterns.dtype.kind in "uib":
        return np.ones(len(patterns), dtype=bool)
    return np.isfinite(patterns.reshape(len(patterns), -1)).all(axis=1)


# ---------------------------------------------------------------- threads and scratch memory

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
_SCRATCH = threading.local()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A persistent pool per thread count (recreated in a forked child, whose threads are gone)."""
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="al4dstem-preprocess")
        return _POOLS[key]


def _scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable per-thread buffer (allocating large arrays per chunk costs page faults)."""
    dtype = np.dtype(dtype)
    cache = _SCRATCH.__dict__.setdefault("buffers", {})
    size = int(np.prod(shape)) * dtype.itemsize
    buf = cache.get(name)
    if buf is None or buf.nbytes < size:
        buf = cache[name] = np.empty(size, dtype=np.uint8)
    return buf[:size].view(dtype).reshape(shape)


# ---------------------------------------------------------------- binning


@dataclass(frozen=True)
class _Binning:
    """How a ``(kr, kc)`` detector maps onto the output: whole factors, or area weights per axis."""

    factors: tuple[int, int]  # (0, 0) when either ratio is not a whole number
    rows: tuple[np.ndarray, np.ndarray]  # area band (indices, weights) along detector rows
    cols: tuple[np.ndarray, np.ndarray]

    @property
    def whole(self) -> bool:
        return self.factors != (0, 0)

    @classmethod
    def for_shapes(cls, detector_shape, output_shape) -> _Binning:
        (kr, kc), (sr, sc) = (int(v) for v in detector_shape), (int(v) for v in output_shape)
        whole = kr % sr == 0 and kc % sc == 0
        factors = (kr // sr, kc // sc) if whole else (0, 0)
        if whole:
            return cls(factors, _EMPTY_BAND, _EMPTY_BAND)
        return cls(factors, _area_band(kr, sr), _area_band(kc, sc))


_EMPTY_BAND = (np.zeros((0, 0), np.intp), np.zeros((0, 0)))


def _area_band(k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Area resampling of ``k`` input pixels onto ``s`` output pixels along one axis.

    Output pixel ``i`` covers ``[i k/s, (i+1) k/s)`` in input-pixel units and sums each input
    pixel times the fraction of it that lies inside. Returns ``(indices, weights)``, both
    ``(s, m)``, ``m`` the most input pixels any output pixel touches (unused slots weigh 0).
    Exact: edges are compared in units of ``1/s`` with integers.
    """
    lo = np.arange(s) * k  # output edges, in units of 1/s input pixels
    hi = lo + k
    first = lo // s
    last = -(-hi // s)  # exclusive
    m = int((last - first).max())
    idx = first[:, None] + np.arange(m)[None, :]
    pix_lo = idx * s
    overlap = np.minimum(hi[:, None], pix_lo + s) - np.maximum(lo[:, None], pix_lo)
    weights = np.clip(overlap, 0, None) / s
    idx = np.minimum(idx, k - 1)  # unused slots point at a real pixel with weight 0
    return idx.astype(np.intp), weights


def _accumulator(bound: int):
    """The smallest unsigned type holding every value up to ``bound``, or None."""
    for t in (np.uint16, np.uint32, np.uint64):
        if bound <= np.iinfo(t).max:
            return np.dtype(t)
    return None


def _bin_counts(raw: np.ndarray, binning: _Binning) -> np.ndarray | None:
    """Sum fr x fc blocks of integer data exactly in an unsigned type; None if it cannot.

    Negative data and sums that would overflow uint64 return None (the float path handles them).
    """
    if raw.dtype.kind == "i":
        if raw.min() < 0:
            return None
        raw = raw.view(raw.dtype.str.replace("i", "u"))  # same bits, same values
    fr, fc = binning.factors
    acc = _accumulator(int(raw.max()) * fr * fc)
    if acc is None:
        return None
    n, kr, kc = raw.shape
    if fr == 1:
        rows_summed = raw
    else:
        rows = raw.reshape(n, kr // fr, fr, kc)
        rows_summed = _scratch("rows", (n, kr // fr, kc), acc)
        np.add(rows[:, :, 0], rows[:, :, 1], out=rows_summed, dtype=acc)
        for i in range(2, fr):
            np.add(rows_summed, rows[:, :, i], out=rows_summed, dtype=acc)
    if fc == 1:
        return rows_summed
    cols = rows_summed.reshape(n, kr // fr, kc // fc, fc)
    counts = _scratch("counts", (n, kr // fr, kc // fc), acc)
    np.add(cols[..., 0], cols[..., 1], out=counts, dtype=acc)
    for j in range(2, fc):
        np.add(counts, cols[..., j], out=counts, dtype=acc)
    return counts


def _bin_float(raw: np.ndarray, binning: _Binning) -> np.ndarray:
    """Binned counts in float64; non-finite pixels count as 0."""
    x = raw.astype(np.float64, copy=False)
    binned = _bin_values(x, binning)
    if not np.isfinite(binned).all():  # NaN / inf propagate through sums: redo without them
        binned = _bin_values(np.where(np.isfinite(x), x, 0.0), binning)
    return binned


def _bin_values(x: np.ndarray, binning: _Binning) -> np.ndarray:
    n, kr, kc = x.shape
    if binning.whole:
        fr, fc = binning.factors
        if fr == fc == 1:
            return x
        return x.reshape(n, kr // fr, fr, kc // fc, fc).sum(axis=(2, 4))
    (ri, rw), (ci, cw) = binning.rows, binning.cols
    by_cols = x[:, :, ci[:, 0]] * cw[:, 0]
    for j in range(1, ci.shape[1]):
        by_cols += x[:, :, ci[:, j]] * cw[:, j]
    out = by_cols[:, ri[:, 0], :] * rw[:, 0, None]
    for j in range(1, ri.shape[1]):
        out += by_cols[:, ri[:, j], :] * rw[:, j, None]
    return out


# ---------------------------------------------------------------- scaling and normalisation

_LUTS: dict[str, np.ndarray] = {}


def _scale_exact(values: np.ndarray, scaling: str) -> np.ndarray:
    """float64 scaling of non-negative values, rounded once to float32."""
    v = np.asarray(values, dtype=np.float64)
    if scaling == "log":
        return np.log1p(v).astype(np.float32)
    if scaling == "sqrt":
        return np.sqrt(v).astype(np.float32)
    return v.astype(np.float32)


def _lut(scaling: str) -> np.ndarray:
    """The scaling of every count below ``LUT_SIZE`` (256 KiB of float32, cache resident)."""
    if scaling not in _LUTS:
        _LUTS[scaling] = _scale_exact(np.arange(LUT_SIZE), scaling)
    return _LUTS[scaling]


def _lookup(counts: np.ndarray, scaling: str, out: np.ndarray) -> np.ndarray:
    """``out = scaling(counts)`` by table lookup; returns each pattern's scaled maximum.

    Counts at or above ``LUT_SIZE`` (hot pixels) are looked up clipped, then overwritten
    with their exact value.
    """
    lut = _lut(scaling)
    idx = _scratch("index", counts.shape, np.intp)
    if counts.dtype.itemsize <= 2:
        np.copyto(idx, counts)
        big = None
    else:
        np.minimum(counts, LUT_SIZE - 1, out=idx, casting="unsafe")
        big = counts >= LUT_SIZE
    np.take(lut, idx, out=out, mode="wrap")  # "wrap": no buffered copy of out (indices are in range)
    peak_counts = counts.reshape(len(counts), -1).max(axis=1)
    if big is not None and big.any():
        out[big] = _scale_exact(counts[big], scaling)
    return _scale_exact(peak_counts, scaling)  # scalings are monotonic: scale(max) = max(scale)


def _scale_float(out: np.ndarray, scaling: str) -> None:
    """In-place float32 scaling; negative values count as 0 for log and sqrt."""
    if scaling == "linear":
        return
    np.maximum(out, 0, out=out)
    if scaling == "sqrt":
        np.sqrt(out, out=out)
    else:
        _log1p_f32(out)


def _log1p_f32(x: np.ndarray) -> None:
    """In-place float32 log1p, accurate to ~1 ulp for x >= 0 (numpy's own float32 log1p is
    scalar and ~8x slower). Goldberg's trick: with u = fl(1 + x), log1p(x) = log(u) * x / (u - 1).
    """
    u = np.add(x, np.float32(1))
    d = np.subtract(u, np.float32(1))
    tiny = d == 0  # x below half an ulp of 1: log1p(x) == x in float32
    np.log(u, out=u)
    np.divide(x, np.where(tiny, np.float32(1), d), out=d)
    np.multiply(u, d, out=u)
    np.copyto(x, u, where=~tiny)


def _normalise(out: np.ndarray, how: str, peaks: np.ndarray | None = None) -> None:
    """Per-pattern normalisation in place; ``peaks`` are the patterns' maxima if known."""
    if how == "none":
        return
    flat = out.reshape(len(out), -1)
    if how == "max":
        if peaks is None:
            peaks = flat.max(axis=1)
        peaks = np.asarray(peaks, dtype=np.float32)
        np.divide(flat, np.where(peaks > 0, peaks, np.float32(1))[:, None], out=flat)
    else:
        mean = flat.mean(axis=1, dtype=np.float64)
        std = flat.std(axis=1, dtype=np.float64)
        flat -= mean.astype(np.float32)[:, None]
        flat /= np.where(std > 0, std, 1.0).astype(np.float32)[:, None]
