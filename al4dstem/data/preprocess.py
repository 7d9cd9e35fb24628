"""One configurable preprocessing pipeline, stored with every model.

raw patterns ``(n, det_rows, det_cols)`` (any dtype)
  -> optional crop ``(top, bottom, left, right)`` pixels removed from each edge
  -> binning to ``size x size`` (integer factors by summing blocks; otherwise area averaging)
  -> ``log`` (log1p), ``sqrt`` or ``linear`` scaling
  -> per-pattern normalisation: ``max`` (to [0, 1]), ``standard`` (zero mean, unit std) or ``none``
  -> non-finite pixels set to 0 (``finite_mask`` tells which patterns had any)

Speed matters (thousands of 512 x 512 patterns a second on two cores): integer data with
an integer bin factor is summed in its own integer type when that cannot overflow and the
scaling is a lookup table on the integer counts; chunks run on a small thread pool
(numpy releases the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from al4dstem.errors import Al4dstemError

SCALINGS = ("log", "sqrt", "linear")
NORMALISATIONS = ("max", "standard", "none")
_CHUNK = 16  # patterns per task: keeps a chunk's intermediates in cache


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
    def __call__(self, patterns: np.ndarray) -> np.ndarray:
        """Preprocess a batch ``(n, det_rows, det_cols)`` (or one pattern) into float32."""
        patterns = np.asarray(patterns)
        single = patterns.ndim == 2
        if single:
            patterns = patterns[None]
        if patterns.ndim != 3:
            raise Al4dstemError(f"expected patterns (n, det_rows, det_cols), got shape {patterns.shape}")
        if self.crop is not None:
            kr, kc = self.cropped_shape(patterns.shape[1:])
            t, _, left, _ = self.crop
            patterns = patterns[:, t:t + kr, left:left + kc]
        n = len(patterns)
        out = np.empty((n, *self.output_shape), dtype=np.float32)
        chunks = [slice(i, min(n, i + _CHUNK)) for i in range(0, n, _CHUNK)]
        threads = self.n_threads or min(4, os.cpu_count() or 1)
        if threads > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda s: self._chunk(patterns[s], out[s]), chunks))
        else:
            for s in chunks:
                self._chunk(patterns[s], out[s])
        return out[0] if single else out

    def _chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        fr, fc = self._factors(raw.shape[1:])
        binned = _bin_integer(raw, fr, fc) if fr and fc and raw.dtype.kind in "ui" else None
        if binned is not None and binned.dtype == np.uint16 and self.scaling != "linear":
            np.take(_lut(self.scaling, binned.dtype), binned, out=out)
        else:
            if binned is not None:
                out[:] = binned
            elif fr and fc:
                out[:] = _bin_float(raw, fr, fc)
            else:
                out[:] = _area_resample(raw, self.output_shape)
            if self.scaling == "log":
                np.log1p(np.maximum(out, 0, out=out), out=out)
            elif self.scaling == "sqrt":
                np.sqrt(np.maximum(out, 0, out=out), out=out)
        if out.dtype.kind == "f" and raw.dtype.kind == "f":
            np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        _normalise(out, self.normalise)

    def _factors(self, shape) -> tuple[int, int]:
        """Integer bin factors per axis, or (0, 0) when the ratio is not a whole number."""
        (kr, kc), s = shape, int(self.size)
        if kr % s or kc % s:
            return 0, 0
        return kr // s, kc // s


def finite_mask(patterns: np.ndarray) -> np.ndarray:
    """``(n,)`` True where a pattern has no NaN or inf (always True for integer data)."""
    patterns = np.asarray(patterns)
    if patterns.dtype.kind in "ui":
        return np.ones(len(patterns), dtype=bool)
    return np.isfinite(patterns.reshape(len(patterns), -1)).all(axis=1)


# ---------------------------------------------------------------- kernels


def _bin_integer(raw: np.ndarray, fr: int, fc: int) -> np.ndarray | None:
    """Sum fr x fc blocks in an unsigned type that cannot overflow; None for negative data."""
    if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
        return None
    peak = int(raw.max()) if raw.size else 0
    acc = np.uint16 if peak * fr * fc < 2**16 else np.uint32 if peak * fr * fc < 2**32 else None
    if acc is None:
        return None
    n, kr, kc = raw.shape
    rows = raw.reshape(n, kr // fr, fr, kc)
    summed = rows[:, :, 0].astype(acc)  # always a copy: never add into the caller's data
    for i in range(1, fr):
        summed += rows[:, :, i]
    cols = summed.reshape(n, kr // fr, kc // fc, fc)
    out = cols[..., 0].copy()
    for j in range(1, fc):
        out += cols[..., j]
    return out


def _bin_float(raw: np.ndarray, fr: int, fc: int) -> np.ndarray:
    n, kr, kc = raw.shape
    x = raw.astype(np.float32, copy=False).reshape(n, kr // fr, fr, kc // fc, fc)
    return x.sum(axis=(2, 4))


def _area_resample(raw: np.ndarray, shape) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))[:, None]
    y = torch.nn.functional.adaptive_avg_pool2d(x, shape)[:, 0]
    # keep counts per output pixel comparable with block summing
    return y.numpy() * (raw.shape[1] * raw.shape[2] / (shape[0] * shape[1]))


_LUTS: dict = {}


def _lut(scaling: str, dtype) -> np.ndarray:
    """log1p / sqrt of every value an integer accumulator can hold (uint16: 256 KiB)."""
    key = (scaling, np.dtype(dtype).str)
    if key not in _LUTS:
        v = np.arange(2 ** (8 * np.dtype(dtype).itemsize), dtype=np.float64)
        _LUTS[key] = (np.log1p(v) if scaling == "log" else np.sqrt(v)).astype(np.float32)
    return _LUTS[key]


def _normalise(out: np.ndarray, how: str) -> None:
    if how == "none":
        return
    flat = out.reshape(len(out), -1)
    if how == "max":
        peak = flat.max(axis=1)
        flat *= (1.0 / np.where(peak > 0, peak, 1.0)).astype(np.float32)[:, None]
    else:
        mean = flat.mean(axis=1, keepdims=True)
        std = flat.std(axis=1, keepdims=True)
        flat -= mean
        flat /= np.where(std > 0, std, 1.0)
