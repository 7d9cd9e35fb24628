"""Preprocessing: invariants and exactness against an independent float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al4dstem.data import Preprocessing, finite_mask
from al4dstem.errors import Al4dstemError

# ---------------------------------------------------------------- the reference


def area_resample_axis(x: np.ndarray, s: int, axis: int) -> np.ndarray:
    """Area resampling by supersampling: split every input pixel into ``s`` equal parts, then
    sum runs of ``k`` parts (exact for any ratio; block sums when ``s`` divides ``k``)."""
    k = x.shape[axis]
    parts = np.repeat(x, s, axis=axis) / s
    shape = list(parts.shape)
    shape[axis:axis + 1] = [s, k]
    return parts.reshape(shape).sum(axis=axis + 1)


def reference(patterns, size, crop=None, scaling="log", normalise="max") -> np.ndarray:
    x = np.asarray(patterns, dtype=np.float64)
    if crop is not None:
        t, b, left, r = crop
        x = x[:, t:x.shape[1] - b, left:x.shape[2] - r]
    x = np.where(np.isfinite(x), x, 0.0)
    x = area_resample_axis(area_resample_axis(x, size, 1), size, 2)
    if scaling == "log":
        x = np.log1p(np.maximum(x, 0))
    elif scaling == "sqrt":
        x = np.sqrt(np.maximum(x, 0))
    flat = x.reshape(len(x), -1)
    if normalise == "max":
        peak = flat.max(axis=1, keepdims=True)
        flat = flat / np.where(peak > 0, peak, 1)
    elif normalise == "standard":
        std = flat.std(axis=1, keepdims=True)
        flat = (flat - flat.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1)
    return flat.reshape(x.shape).astype(np.float32)


def assert_close(got, want, normalise):
    # float32 results: a few ulps of the value, or of the pattern's scale for centred data
    scale = np.abs(want).reshape(len(want), -1).max(axis=1).reshape(-1, 1, 1) if want.size else 1
    atol = 1e-6 * np.maximum(scale, 1e-30) if normalise != "max" else 1e-7
    assert np.all(np.abs(got.astype(np.float64) - want) <= 2e-6 * np.abs(want) + atol)


def make_patterns(rng, n, shape, dtype, hot=False, nonfinite=False, negative=False):
    counts = rng.poisson(rng.uniform(0.05, 20), size=(n, *shape))
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    counts = counts + 200 * (((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2) < (min(shape) / 6) ** 2)
    x = counts.astype(dtype)
    if hot:
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
        x.reshape(n, -1)[:, rng.integers(0, x[0].size)] = info.max if info else 1e30
    if negative:
        x.reshape(n, -1)[:, rng.integers(0, x[0].size)] = -5
    if nonfinite:
        x.reshape(n, -1)[:, rng.integers(0, x[0].size, size=2)] = [np.nan, np.inf]
    return x


DTYPES = [np.uint8, np.uint16, np.uint32, np.int16, np.int32, np.uint64, np.float32, np.float64]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 6),
    det=st.tuples(st.integers(8, 40), st.integers(8, 40)),
    size=st.integers(4, 16),
    whole=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    scaling=st.sampled_from(["log", "sqrt", "linear"]),
    normalise=st.sampled_from(["max", "standard", "none"]),
    crop=st.one_of(st.none(), st.tuples(*[st.integers(0, 3)] * 4)),
    hot=st.booleans(),
    threads=st.sampled_from([1, 2]),
)
def test_matches_float64_reference(seed, n, det, size, whole, dtype, scaling, normalise, crop, hot, threads):
    rng = np.random.default_rng(seed)
    if whole:  # whole bin factors (the integer lookup path), possibly different per axis
        det = (size * (1 + det[0] % 4), size * (1 + det[1] % 4))
        crop = None
    raw = make_patterns(rng, n, det, dtype, hot=hot)
    before = raw.copy()
    p = Preprocessing(size=size, crop=crop, scaling=scaling, normalise=normalise, n_threads=threads)
    got = p(raw)
    assert got.shape == (n, size, size) and got.dtype == np.float32
    assert np.all(np.isfinite(got))
    assert_close(got, reference(raw, size, crop, scaling, normalise), normalise)
    np.testing.assert_array_equal(raw, before)  # the caller's data is never modified
    if normalise == "max":
        assert got.min() >= 0 and got.max() <= 1
        peaks = got.reshape(n, -1).max(axis=1)
        assert np.all((peaks == 1) | (peaks == 0))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]),
       size=st.sampled_from([8, 10, 16]), scaling=st.sampled_from(["log", "sqrt", "linear"]))
def test_nonfinite_pixels_count_as_zero(seed, dtype, size, scaling):
    rng = np.random.default_rng(seed)
    raw = make_patterns(rng, 4, (32, 32), dtype, nonfinite=True)
    raw[1] = np.nan_to_num(raw[1], nan=0.0, posinf=0.0)  # one clean pattern
    got = Preprocessing(size=size, scaling=scaling)(raw)
    assert np.all(np.isfinite(got))
    assert_close(got, reference(raw, size, None, scaling, "max"), "max")
    np.testing.assert_array_equal(finite_mask(raw), [False, True, False, False])


def test_finite_mask_integer_data_is_all_true():
    assert finite_mask(np.zeros((3, 4, 4), np.uint16)).tolist() == [True] * 3


@pytest.mark.parametrize("dtype,value", [
    (np.uint16, 65535),            # 4 x 65535 overflows uint16: uint32 accumulator, exact hot-pixel path
    (np.uint16, 20000),            # > LUT via the sum of a 2 x 2 block
    (np.uint32, 2**32 - 1),        # uint64 accumulator
    (np.uint64, 2**64 - 1),        # cannot be summed in any integer type: float path
    (np.int16, -3),                # negative counts: float path, clamped to 0 by log
])
def test_overflow_and_sign_fallbacks(dtype, value):
    rng = np.random.default_rng(1)
    raw = rng.poisson(3, (3, 32, 32)).astype(dtype)
    raw[0, 5, 5] = value
    raw[2, 0:2, 0:2] = value
    for scaling in ("log", "sqrt", "linear"):
        got = Preprocessing(size=16, scaling=scaling, normalise="none")(raw)
        assert_close(got, reference(raw, 16, None, scaling, "none"), "none")


def test_crop_equals_preprocessing_the_slice():
    raw = make_patterns(np.random.default_rng(2), 5, (40, 44), np.uint16)
    cropped = Preprocessing(size=16, crop=(4, 4, 2, 10))(raw)
    np.testing.assert_array_equal(cropped, Preprocessing(size=16)(raw[:, 4:36, 2:34]))
    with pytest.raises(Al4dstemError, match="leaves nothing"):
        Preprocessing(size=8, crop=(20, 20, 0, 0))(raw)


def test_area_resampling_conserves_counts_and_handles_rectangles():
    raw = make_patterns(np.random.default_rng(3), 4, (50, 37), np.uint16)
    got = Preprocessing(size=16, scaling="linear", normalise="none")(raw)
    np.testing.assert_allclose(got.sum(axis=(1, 2)), raw.sum(axis=(1, 2)), rtol=1e-5)
    # upsampling is area resampling too: each output pixel gets its share
    small = Preprocessing(size=16, scaling="linear", normalise="none")(raw[:, :8, :8])
    np.testing.assert_allclose(small.sum(axis=(1, 2)), raw[:, :8, :8].sum(axis=(1, 2)), rtol=1e-5)


def test_threads_and_chunking_do_not_change_results():
    raw = make_patterns(np.random.default_rng(4), 37, (64, 64), np.uint16, hot=True)
    one = Preprocessing(size=32, n_threads=1)(raw)
    for threads in (2, 3):
        np.testing.assert_array_equal(Preprocessing(size=32, n_threads=threads)(raw), one)
    np.testing.assert_array_equal(np.stack([Preprocessing(size=32)(r) for r in raw[:5]]), one[:5])


def test_single_pattern_big_endian_and_memmap(tmp_path):
    raw = make_patterns(np.random.default_rng(5), 3, (32, 32), np.uint16)
    p = Preprocessing(size=16)
    want = p(raw)
    assert p(raw[1]).shape == (16, 16)
    np.testing.assert_array_equal(p(raw[1]), want[1])
    np.testing.assert_array_equal(p(raw.astype(">u2")), want)
    np.save(tmp_path / "raw.npy", raw)
    np.testing.assert_array_equal(p(np.load(tmp_path / "raw.npy", mmap_mode="r")), want)


def test_constant_patterns_do_not_divide_by_zero():
    raw = np.zeros((2, 16, 16), np.uint16)
    raw[1] = 7
    for normalise in ("max", "standard"):
        got = Preprocessing(size=8, normalise=normalise)(raw)
        assert np.all(np.isfinite(got))
    assert Preprocessing(size=8)(raw)[0].max() == 0
    assert np.all(Preprocessing(size=8)(raw)[1] == 1)
    assert np.all(Preprocessing(size=8, normalise="standard")(raw) == 0)


def test_config_round_trip_and_validation():
    p = Preprocessing(size=64, crop=(1, 2, 3, 4), scaling="sqrt", normalise="standard", n_threads=2)
    d = p.to_dict()
    assert "n_threads" not in d and d["crop"] == [1, 2, 3, 4]
    assert Preprocessing.from_dict(d) == Preprocessing(size=64, crop=(1, 2, 3, 4), scaling="sqrt",
                                                       normalise="standard")
    for bad in (dict(scaling="cube"), dict(normalise="minmax"), dict(size=2), dict(crop=(1, 2)),
                dict(crop=(0, 0, -1, 0)), dict(n_threads=0)):
        with pytest.raises(Al4dstemError):
            Preprocessing(**bad)
    with pytest.raises(Al4dstemError, match="expected patterns"):
        Preprocessing()(np.zeros((2, 2, 8, 8)))


def test_out_buffer_is_filled_and_returned():
    raw = make_patterns(np.random.default_rng(6), 6, (32, 32), np.uint16)
    p = Preprocessing(size=16)
    buf = np.full((6, 16, 16), -1, np.float32)
    assert p(raw, out=buf) is buf
    np.testing.assert_array_equal(buf, p(raw))
    one = np.empty((16, 16), np.float32)
    assert p(raw[2], out=one) is one
    np.testing.assert_array_equal(one, buf[2])
    for bad in (np.empty((5, 16, 16), np.float32), np.empty((6, 16, 16)), np.empty((6, 16, 32), np.float32)[..., ::2]):
        with pytest.raises(ValueError, match="out must be"):
            p(raw, out=bad)


def test_finite_counts_beyond_float32_stay_finite_without_warnings():
    """1e300 is a finite (if absurd) count: it must not overflow to inf in the float32 input
    (which would mark the pattern invalid) nor print numpy's overflow warnings."""
    import warnings

    raw = np.random.default_rng(0).poisson(3, (3, 32, 32)).astype(np.float64)
    raw[1] *= 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Preprocessing(size=16)(raw)
    assert np.isfinite(out).all() and out[1].max() == pytest.approx(1.0)
