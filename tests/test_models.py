"""Models: networks, physics-aware augmentation, training, ``CNNClassifier``, checkpoints, modAL.

Synthetic data throughout: 32 x 32 uint16 Poisson patterns with a central disk, plus two bright
ghost spots along the detector rows' direction (kx, the column axis) for horizontal polarization,
along the columns' direction (ky, the row axis) for vertical, none for none. The spots sit
symmetrically about the detector centre, so the noise-free patterns of the three classes map onto
each other exactly under the eight symmetries of the square.
"""

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from al4dstem.data import Preprocessing, open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES
from al4dstem.models import CNNClassifier, checkpoint
from al4dstem.models.augment import (
    ROTATIONS,
    SWAP,
    Augmenter,
    Finish,
    d4_views,
    rotate90,
    symmetric_views,
    transform,
)
from al4dstem.models.classifier import torch_threads
from al4dstem.models.networks import (
    PaperNet,
    build_network,
    count_parameters,
    inference_network,
    network_config,
)
from al4dstem.models.training import (
    MIN_LABELS,
    TrainConfig,
    auto_epochs,
    check_labels,
    class_weights,
    evaluate,
    stratified_split,
    train_network,
)

DET = 32  # detector side
SIZE = 16  # network input side (preprocessing size)
SCAN = 8  # scan side (SCAN x SCAN positions)
NONE, VERTICAL, HORIZONTAL = 0, 1, 2
FAST = settings(max_examples=40, deadline=None)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: OpenMP threads on 2 shared cores cost far more than the work (100x seen)."""
    with torch_threads(1):
        yield


# ---------------------------------------------------------------- synthetic data


def expected_patterns(labels, det=DET, spot=60.0):
    """Noise-free intensities ``(n, det, det)``: disk at the centre, ghost spots by class."""
    labels = np.asarray(labels)
    yy, xx = np.mgrid[0:det, 0:det]
    c = (det - 1) / 2
    lam = np.ones((len(labels), det, det))
    lam[:, (yy - c) ** 2 + (xx - c) ** 2 <= det * det / 80] += 200.0
    band = slice(det // 2 - 2, det // 2 + 2)  # 4 central rows/cols, symmetric about c
    near, far = slice(det // 8, det // 8 + 3), slice(det - det // 8 - 3, det - det // 8)  # mirror images
    for i, label in enumerate(labels):
        for arm in (near, far):
            if label == HORIZONTAL:  # ghosts along kx: same rows, different columns
                lam[i, band, arm] += spot
            elif label == VERTICAL:  # ghosts along ky: same columns, different rows
                lam[i, arm, band] += spot
    return lam


def make_patterns(labels, seed=0, det=DET):
    return np.random.default_rng(seed).poisson(expected_patterns(labels, det)).astype(np.uint16)


def visible_class(img, det=DET):
    """The class a person sees in one (possibly transformed) pattern: which arm is bright."""
    img = np.asarray(img, dtype=float)
    band = slice(det // 2 - 2, det // 2 + 2)
    arms = [slice(det // 8, det // 8 + 3), slice(det - det // 8 - 3, det - det // 8)]
    horizontal = np.mean([img[band, a].mean() for a in arms])
    vertical = np.mean([img[a, band].mean() for a in arms])
    background = np.median(img)
    if max(horizontal, vertical) < background + 20:
        return NONE
    return HORIZONTAL if horizontal > vertical else VERTICAL


def scan_labels(seed=3):
    """A SCAN x SCAN class map (rows = y, cols = x) holding every class."""
    return np.random.default_rng(seed).integers(0, 3, size=(SCAN, SCAN))


def make_scan(seed=3, det=DET, dtype=np.uint16):
    labels = scan_labels(seed)
    data = make_patterns(labels.ravel(), seed=seed, det=det).astype(dtype).reshape(SCAN, SCAN, det, det)
    return data, labels


def all_positions():
    yy, xx = np.mgrid[0:SCAN, 0:SCAN]
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int64)  # (x, y), scan order


def classifier(**kwargs):
    params = {"preprocessing": Preprocessing(size=SIZE), "epochs": 4, "n_threads": 1, "random_state": 0}
    return CNNClassifier(**{**params, **kwargs})


@pytest.fixture(scope="module")
def scan():
    return make_scan()


@pytest.fixture(scope="module")
def split(scan):
    """Labelled training positions (the first 30 in scan order) and the unlabelled pool."""
    _, labels = scan
    pos = all_positions()
    y = labels[pos[:, 1], pos[:, 0]]
    return pos[:30], y[:30], pos[30:], y[30:]


@pytest.fixture(scope="module")
def trained(scan, split):
    """A classifier trained on positions of the scan (module-wide, read-only for the tests)."""
    with torch_threads(1):
        data, _ = scan
        pos, y, _, _ = split
        return classifier(dataset=data, epochs=8).fit(pos, y)


def test_synthetic_classes_are_visible():
    """The test data mean what they say (every later test relies on it)."""
    y = np.array([NONE, VERTICAL, HORIZONTAL] * 4)
    assert [visible_class(p) for p in make_patterns(y)] == y.tolist()
    lam = expected_patterns([VERTICAL, HORIZONTAL])
    assert np.array_equal(lam[0].T, lam[1])  # the classes are transposes of each other
    labels = scan_labels().ravel()
    assert set(labels[:30]) == set(labels[30:]) == {NONE, VERTICAL, HORIZONTAL}  # training and pool


# ---------------------------------------------------------------- networks


def test_paper_network_is_the_papers():
    net = PaperNet(256)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 16), (16, 32), (32, 64)]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    pools = [m for m in net.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.modules()) == 4
    linears = [m for m in net.classifier if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64 * 32 * 32, 128), (128, 3)]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert 8.3e6 < count_parameters(net) < 8.5e6  # 8.4 M at 256 x 256
    assert 2.05e6 < count_parameters(build_network("paper", 128)) < 2.2e6  # 2.1 M at 128 x 128
    with torch.no_grad():
        assert build_network("paper", 32)(torch.rand(5, 1, 32, 32)).shape == (5, 3)


@pytest.mark.parametrize("size", [16, 24, 40, 64, 128])
def test_default_network_outputs_three_logits_at_any_size(size):
    net = build_network("default", size).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 1, size, size))
    assert out.shape == (3, 3) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert 20_000 < count_parameters(net) < 30_000  # ~25 k, independent of the input size


def test_network_errors_are_al4dstem_errors():
    with pytest.raises(Al4dstemError, match="unknown network 'resnet'.*default, paper"):
        build_network("resnet", 64)
    with pytest.raises(Al4dstemError, match="multiple of 8"):
        build_network("paper", 100)
    with pytest.raises(Al4dstemError, match="at least 16 pixels"):
        build_network("default", 8)
    with pytest.raises(Al4dstemError, match="unknown network"):
        classifier(network="resnet").fit(make_patterns([0, 1, 2, 0, 1]), np.array([0, 1, 2, 0, 1]))


@pytest.mark.parametrize("name", ["default", "paper"])
def test_network_config_rebuilds_the_same_network(name):
    net = build_network(name, 32)
    again = build_network(name, **network_config(net))
    again.load_state_dict(net.state_dict())  # same architecture: every tensor fits
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), again.eval()(x))


@pytest.mark.parametrize("name", ["default", "paper"])
def test_inference_network_equals_eval_and_leaves_net_alone(name):
    torch.manual_seed(1)
    net = build_network(name, 32)
    for m in net.modules():  # batch norm statistics and affine parameters far from the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fused = inference_network(net)
    assert net.training  # the original keeps its mode ...
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # ... and its weights
    assert all(p.requires_grad for p in net.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not fused.training and not any(p.requires_grad for p in fused.parameters())
    x = torch.rand(6, 1, 32, 32)
    with torch.no_grad():
        expected = net.eval()(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- augmentation


def test_transpose_and_rotation_swap_vertical_and_horizontal():
    lam = torch.from_numpy(expected_patterns([NONE, VERTICAL, HORIZONTAL])).float()
    y = torch.tensor([NONE, VERTICAL, HORIZONTAL])
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.0, 0.25, 0.75]])
    x_t, y_t = transform(lam, y, transpose=True, flip_rows=False, flip_cols=False)
    assert y_t.tolist() == [NONE, HORIZONTAL, VERTICAL]
    assert torch.equal(x_t, lam[[0, 2, 1]])  # a transposed vertical pattern is a horizontal one
    _, soft_t = transform(lam, soft, True, False, False)
    assert torch.equal(soft_t, soft[:, [0, 2, 1]])
    for k in (1, 3, -1):
        x_r, y_r = rotate90(lam, y, k)
        assert y_r.tolist() == [NONE, HORIZONTAL, VERTICAL]
        assert torch.equal(x_r, lam[[0, 2, 1]])
        assert torch.equal(rotate90(lam, soft, k)[1], soft[:, [0, 2, 1]])
    for k in (2, 4):
        assert torch.equal(rotate90(lam, y, k)[1], y) and torch.equal(rotate90(lam, soft, k)[1], soft)


@pytest.mark.parametrize("flip_rows, flip_cols", [(True, False), (False, True), (True, True)])
def test_flips_keep_labels(flip_rows, flip_cols):
    lam = torch.from_numpy(expected_patterns([NONE, VERTICAL, HORIZONTAL])).float()
    y = torch.tensor([NONE, VERTICAL, HORIZONTAL])
    soft = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.0, 0.25, 0.75]])
    x_f, y_f = transform(lam, y, False, flip_rows, flip_cols)
    assert torch.equal(y_f, y) and torch.equal(transform(lam, soft, False, flip_rows, flip_cols)[1], soft)
    assert torch.equal(x_f, lam)  # the noise-free patterns are mirror symmetric
    noisy = torch.rand(3, 1, 5, 7)
    dims = [d for d, f in ((-2, flip_rows), (-1, flip_cols)) if f]
    assert torch.equal(transform(noisy, y, False, flip_rows, flip_cols)[0], torch.flip(noisy, dims))


def test_rotation_is_transpose_then_row_flip():
    x = torch.rand(4, 1, 6, 6)
    y = torch.tensor([0, 1, 2, 1])
    xr, yr = rotate90(x, y, 1)
    xt, yt = transform(x, y, transpose=True, flip_rows=True, flip_cols=False)
    assert torch.equal(xr, xt) and torch.equal(yr, yt)


def test_d4_views_are_eight_labelled_views():
    y = np.array([NONE, VERTICAL, HORIZONTAL, HORIZONTAL])
    x = torch.from_numpy(make_patterns(y, seed=5).astype(np.float32))[:, None]
    xv, yv = d4_views(x, torch.from_numpy(y))
    assert xv.shape == (8 * len(y), 1, DET, DET) and yv.shape == (8 * len(y),)
    assert [visible_class(v[0].numpy()) for v in xv] == yv.tolist()  # labels follow the ghosts
    assert np.bincount(yv.numpy(), minlength=3).tolist() == [8, 12, 12]  # each view swaps or keeps
    views = {tuple(v.flatten().tolist()) for v in xv[0::len(y)]}  # the eight views of the first pattern
    assert len(views) == 8  # the eight symmetries of a noisy pattern are all different
    soft = torch.tensor([[0.5, 0.3, 0.2]] * len(y))
    _, sv = d4_views(x, soft)
    assert sv.shape == (8 * len(y), 3)
    assert torch.equal(sv[4 * len(y):], soft[:, SWAP].repeat(4, 1)) and torch.equal(sv[:4 * len(y)], soft.repeat(4, 1))


@FAST
@given(transpose=st.booleans(), flip_rows=st.booleans(), flip_cols=st.booleans(),
       rows=st.integers(1, 6), cols=st.integers(1, 6), soft=st.booleans(), seed=st.integers(0, 2**16))
def test_transform_has_an_inverse(transpose, flip_rows, flip_cols, rows, cols, soft, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 1, rows, cols, generator=g)
    y = torch.softmax(torch.rand(3, 3, generator=g), 1) if soft else torch.randint(0, 3, (3,), generator=g)
    x1, y1 = transform(x, y, transpose, flip_rows, flip_cols)
    # the inverse of "transpose, then flip" is "transpose, then the flips with the axes exchanged"
    inv = (True, flip_cols, flip_rows) if transpose else (False, flip_rows, flip_cols)
    x2, y2 = transform(x1, y1, *inv)
    assert torch.equal(x2, x) and torch.equal(y2, y)
    if not transpose:  # a pure flip is its own inverse
        x3, y3 = transform(*transform(x, y, False, flip_rows, flip_cols), False, flip_rows, flip_cols)
        assert torch.equal(x3, x) and torch.equal(y3, y)


@FAST
@given(k=st.integers(-5, 5), side=st.integers(1, 6), soft=st.booleans(), seed=st.integers(0, 2**16))
def test_rotation_by_k_then_minus_k_is_identity(k, side, soft, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, side, side, generator=g)
    y = torch.softmax(torch.rand(2, 3, generator=g), 1) if soft else torch.randint(0, 3, (2,), generator=g)
    x1, y1 = rotate90(x, y, k)
    x2, y2 = rotate90(x1, y1, -k)
    assert torch.equal(x2, x) and torch.equal(y2, y)
    x4, y4 = x, y
    for _ in range(4):
        x4, y4 = rotate90(x4, y4, k)
    assert torch.equal(x4, x) and torch.equal(y4, y)


def _soft_batch(n=12, seed=0):
    y = np.arange(n) % 3
    x = torch.from_numpy(make_patterns(y, seed=seed).astype(np.float32))[:, None]
    return x, torch.nn.functional.one_hot(torch.from_numpy(y), 3).float()


def test_augmenter_is_deterministic_per_seed_and_leaves_input_alone():
    x, t = _soft_batch()
    x0, t0 = x.clone(), t.clone()
    aug = Augmenter(shift=0.1)
    a = aug(x, t, np.random.default_rng(42))
    b = aug(x, t, np.random.default_rng(42))
    c = aug(x, t, np.random.default_rng(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(x, x0) and torch.equal(t, t0)
    assert a[0].shape == x.shape and a[1].shape == t.shape
    assert torch.allclose(a[1].sum(1), torch.ones(len(t))) and (a[1] >= 0).all()


def test_augmenter_symmetry_labels_follow_the_ghosts():
    x, t = _soft_batch(n=24, seed=1)
    xa, ta = Augmenter(mix=0.0, dose=(1.0, 1.0), resample=0.0, shift=0.0)(x, t, np.random.default_rng(0))
    assert torch.equal(ta.sum(1), torch.ones(len(t)))  # no mixing: labels stay one-hot
    assert [visible_class(p[0].numpy()) for p in xa] == ta.argmax(1).tolist()
    swapped = (ta.argmax(1) != t.argmax(1))
    assert swapped.any() and (t.argmax(1)[swapped] != NONE).all()  # some were transposed, none lost class


def test_augmenter_mixing_mixes_patterns_and_labels_alike():
    n = 9
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone() + 1  # value = index + 1
    t = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    xa, ta = Augmenter(symmetry=False, mix=1.0, dose=(1.0, 1.0), resample=0.0, shift=0.0)(
        x, t, np.random.default_rng(7))
    assert torch.allclose(ta.sum(1), torch.ones(n))
    v = xa[:, 0, 0, 0]
    assert torch.equal(xa, v.view(n, 1, 1, 1).expand(n, 1, 4, 4))  # a mix of two constant patterns
    for i in range(n):  # v = w (i + 1) + (1 - w) (p + 1) for some partner p and the label's own weight w
        ok = []
        for p in range(n):
            if p == i or (p % 3 == i % 3):
                continue
            w = float(ta[i, i % 3])
            ok.append(abs(w * (i + 1) + (1 - w) * (p + 1) - float(v[i])) < 1e-4)
        assert any(ok) or float(ta[i].max()) == 1.0


def test_augmenter_mixes_about_the_requested_share():
    n = 400
    x = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    t = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    aug = Augmenter(symmetry=False, mix=0.3, dose=(1.0, 1.0), resample=0.0, shift=0.0)
    xa, _ = aug(x, t, np.random.default_rng(0))
    unchanged = (xa == x).flatten(1).all(1).float().mean().item()
    assert 0.6 < unchanged < 0.8  # 70 % kept as they are


@FAST
@given(seed=st.integers(0, 2**32 - 1), lo=st.floats(0.1, 1.0), span=st.floats(1.0, 5.0),
       resample=st.sampled_from([0.0, 0.5, 1.0]))
def test_dose_jitter_keeps_counts_non_negative_and_finite(seed, lo, span, resample):
    x, t = _soft_batch(n=6)
    aug = Augmenter(symmetry=False, mix=0.0, dose=(lo, lo * span), resample=resample, shift=0.0)
    xa, ta = aug(x, t, np.random.default_rng(seed))
    assert torch.isfinite(xa).all() and (xa >= 0).all()
    assert torch.equal(ta, t)
    if resample == 0.0:  # a pure intensity factor, drawn in the range
        k = xa.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
        assert torch.allclose(xa, x * k.view(-1, 1, 1, 1), rtol=1e-5)
        assert ((k >= lo * (1 - 1e-5)) & (k <= lo * span * (1 + 1e-5))).all()
    if resample == 1.0:  # all Poisson-resampled: whole counts
        assert torch.equal(xa, xa.round())


@pytest.mark.parametrize("scaling", ["log", "sqrt", "linear"])
@pytest.mark.parametrize("normalise", ["max", "standard", "none"])
def test_finish_on_binned_counts_equals_preprocessing(scaling, normalise):
    """Training (Finish on binned counts) and inference (Preprocessing) see the same input."""
    raw = make_patterns([0, 1, 2, 2], seed=9)
    prep = Preprocessing(size=SIZE, scaling=scaling, normalise=normalise)
    counts = Preprocessing(size=SIZE, scaling="linear", normalise="none")(raw)
    got = Finish(scaling, normalise)(torch.from_numpy(counts)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(got, prep(raw), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- training: schedule, split, weights


@FAST
@given(y=st.lists(st.integers(0, 2), min_size=MIN_LABELS, max_size=120), seed=st.integers(0, 1000))
def test_stratified_split(y, seed):
    y = np.array(y)
    if len(np.unique(y)) < 2:
        with pytest.raises(Al4dstemError):
            check_labels(y)
        return
    check_labels(y)  # what training accepts, the split must serve
    train, val = stratified_split(y, seed)
    again = stratified_split(y, seed)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])  # deterministic
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))  # a partition
    assert np.array_equal(train, np.sort(train)) and np.array_equal(val, np.sort(val))
    assert len(val) >= 1
    for c in np.unique(y):
        assert (y[train] == c).any(), f"class {c} lost its training patterns"
    assert abs(len(val) - 0.2 * len(y)) <= 1.5  # ~20 %, each class rounded
    for c in np.unique(y):
        n_c, k_c = (y == c).sum(), (y[val] == c).sum()
        assert abs(k_c - 0.2 * n_c) <= 0.5 or (n_c <= 2 and len(val) == 1) or k_c == n_c - 1


def test_stratified_split_depends_on_the_seed():
    y = np.arange(60) % 3
    splits = {tuple(stratified_split(y, s)[1]) for s in range(5)}
    assert len(splits) > 1
    train, val = stratified_split(y, 0)
    assert len(val) == 12 and np.bincount(y[val]).tolist() == [4, 4, 4]


def test_check_labels_says_what_is_needed():
    with pytest.raises(Al4dstemError, match=r"at least 2 classes, got 7 vertical"):
        check_labels(np.ones(7, np.int64))
    with pytest.raises(Al4dstemError, match=r"at least 2 classes, got no labels"):
        check_labels(np.zeros(0, np.int64))
    with pytest.raises(Al4dstemError, match=rf"4 given, at least {MIN_LABELS} needed"):
        check_labels(np.array([0, 1, 2, 1]))
    check_labels(np.array([0, 1, 0, 1, 0]))  # enough


def test_auto_epochs_halve_per_tenfold_labels():
    # the paper's schedule halves the epochs per tenfold labels (400 for 50, 200 for 500 of its short
    # epochs); al4dstem counts longer epochs (EPOCH_SAMPLES patterns): 100 for 50 labels, 50 for 500
    assert auto_epochs(50) == 100 and auto_epochs(500) == 50
    assert abs(auto_epochs(158) - 75) <= 1  # log-linear between
    values = [auto_epochs(n) for n in (1, 5, 20, 50, 100, 200, 500, 1000, 10_000, 10**6)]
    assert values == sorted(values, reverse=True)  # more labels, fewer epochs
    assert auto_epochs(1) == auto_epochs(2) == max(values) and auto_epochs(10**6) == auto_epochs(10**7) == min(values)
    assert min(values) >= 1


def test_class_weights_are_balanced():
    y = np.array([0] * 2 + [1] * 4 + [2] * 6)
    w = class_weights(y, "balanced", symmetric=False)
    np.testing.assert_allclose(w, [2.0, 1.0, 2 / 3], rtol=1e-6)
    counts = np.bincount(y)
    np.testing.assert_allclose(w * counts, len(y) / 3, rtol=1e-6)  # every class weighs the same in total
    ws = class_weights(y, "balanced", symmetric=True)  # vertical and horizontal share their counts
    np.testing.assert_allclose(ws, [2.0, 0.8, 0.8], rtol=1e-6)
    assert class_weights(np.array([0, 0, 1]), "balanced", symmetric=False)[2] == 0  # absent class: no weight
    assert class_weights(y, None, symmetric=False).tolist() == [1, 1, 1]
    with pytest.raises(Al4dstemError, match="unknown class weighting"):
        class_weights(y, "inverse", symmetric=False)


# ---------------------------------------------------------------- training: the loop


def _binned(y, seed=0):
    return Preprocessing(size=SIZE, scaling="linear", normalise="none")(make_patterns(y, seed=seed))


def _train(y, epochs, seed=0, network="default", **config):
    torch.manual_seed(seed)
    net = build_network(network, SIZE)
    result = train_network(net, _binned(y, seed), y, TrainConfig(epochs=epochs, seed=seed, **config), Finish())
    return net, result


def test_training_with_a_seed_is_repeatable():
    y = np.arange(24) % 3
    net_a, res_a = _train(y, epochs=3)
    net_b, res_b = _train(y, epochs=3)
    assert res_a.state_dict.keys() == res_b.state_dict.keys()
    assert all(torch.equal(res_a.state_dict[k], res_b.state_dict[k]) for k in res_a.state_dict)
    assert [h["val_loss"] for h in res_a.history] == [h["val_loss"] for h in res_b.history]
    x = torch.from_numpy(Preprocessing(size=SIZE)(make_patterns(y, seed=4)))[:, None]
    with torch.no_grad():
        assert torch.equal(net_a(x), net_b(x))


def test_the_best_validation_loss_weights_are_kept():
    y = np.repeat([NONE, VERTICAL, HORIZONTAL], [6, 12, 6])  # unbalanced: the training loss is weighted
    torch.manual_seed(0)
    net = build_network("default", SIZE)

    def sabotage(epoch, max_epochs, record):
        if epoch == 3:  # after epoch 3 is measured, wreck the classifier head in place: epoch 4 is far worse
            with torch.no_grad():
                net.head[1].weight.mul_(-20.0)

    res = train_network(net, _binned(y), y, TrainConfig(epochs=4, patience=100), Finish(), progress=sabotage)
    losses = [h["val_loss"] for h in res.history]
    assert res.epochs_run == 4 and res.stopped == "max-epochs" and [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    assert losses[3] > 2 * min(losses[:3])  # (the case under test: the last epoch is not the best)
    assert res.history[int(np.argmin(losses))]["epoch"] == res.best_epoch == res.summary()["best_epoch"] <= 3
    assert res.best_val_loss == min(losses)
    assert not net.training
    assert all(torch.equal(net.state_dict()[k], v) for k, v in res.state_dict.items())
    # the network holds the best weights (a copy taken then, not wrecked since): its validation loss is the best
    _, val = stratified_split(y, 0)
    xt = torch.from_numpy(_binned(y))[:, None]
    x_val, y_val = symmetric_views(Finish()(xt[val]), torch.from_numpy(y[val]), ROTATIONS)
    loss, acc = evaluate(net, x_val, y_val, torch.nn.CrossEntropyLoss())
    assert loss == pytest.approx(res.best_val_loss, rel=1e-5) and acc == pytest.approx(res.best_val_accuracy)
    assert loss < losses[-1] / 2


def test_early_stopping_on_an_easy_problem():
    y = np.arange(30) % 3
    _, res = _train(y, epochs=200, patience=3, lr=1e-2)
    assert res.stopped == "early" and res.epochs_run < 200
    assert res.epochs_run - res.best_epoch <= 3  # stopped `patience` epochs after the last real progress
    assert res.best_val_accuracy == 1.0


def test_early_stopping_without_progress_stops_after_patience():
    y = np.arange(15) % 3
    # the paper network has no batch norm statistics: with a vanishing step nothing moves at all
    _, res = _train(y, epochs=50, patience=4, lr=1e-12, weight_decay=0.0, network="paper")
    assert res.stopped == "early" and res.epochs_run == 1 + 4


def test_training_refuses_bad_epochs():
    y = np.arange(10) % 3
    with pytest.raises(Al4dstemError, match="epochs must be at least 1"):
        _train(y, epochs=0)


# ---------------------------------------------------------------- CNNClassifier


def test_batch_size_one_trains_or_is_refused_clearly():
    y = np.arange(9) % 3
    try:
        clf = classifier(epochs=1, batch_size=1).fit(make_patterns(y), y)
    except Al4dstemError as e:
        assert "batch" in str(e)
    else:
        assert clf.summary_["epochs_run"] == 1


def test_init_stores_parameters_only_and_clone_works():
    prep = Preprocessing(size=SIZE)
    clf = CNNClassifier(network="no-such-net", preprocessing=prep, epochs=-3, batch_size=0, random_state=5)
    params = clf.get_params()
    assert params["network"] == "no-such-net" and params["epochs"] == -3 and params["preprocessing"] is prep
    assert set(params) == {"network", "preprocessing", "dataset", "epochs", "batch_size", "lr", "weight_decay",
                           "patience", "augment", "class_weight", "n_threads", "random_state", "verbose",
                           "symmetries", "calibrate", "cv", "neighbourhood", "orientation", "schedule", "keep",
                           "semi_supervised", "init", "device"}
    assert not any(k.endswith("_") and not k.startswith("__") for k in vars(clf))  # nothing learned yet
    assert clf.set_params(network="paper", epochs=7) is clf
    assert clf.network == "paper" and clf.epochs == 7
    copy = clone(clf)
    assert copy is not clf and copy.get_params()["epochs"] == 7 and copy.get_params()["preprocessing"] == prep
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)
    with pytest.raises(NotFittedError):
        copy.predict(make_patterns([0]))


def test_fitted_classifier_is_sklearn_like(trained, split):
    pos, y, pool, _ = split
    check_is_fitted(trained)
    assert trained.classes_.tolist() == [0, 1, 2]
    p = trained.predict_proba(pool)
    assert p.shape == (len(pool), 3) and p.dtype == np.float32
    assert np.isfinite(p).all() and (p >= 0).all()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert np.array_equal(trained.predict(pool), p.argmax(1))
    assert trained.summary_["n_labels"] == len(y) and len(trained.history_) == trained.summary_["epochs_run"]
    assert trained.label_counts_ == {name: int((y == k).sum()) for k, name in enumerate(CLASSES)}
    cloned = clone(trained)  # a clone is unfitted, with the same parameters
    assert not hasattr(cloned, "network_") and cloned.get_params()["epochs"] == trained.epochs


def test_fit_returns_self_and_learns_an_easy_problem(scan, split):
    data, _ = scan
    pos, y, pool, y_pool = split
    clf = classifier(dataset=data, epochs=8)
    assert clf.fit(pos, y) is clf
    assert (clf.predict(pos) == y).mean() >= 0.9
    assert (clf.predict(pool) == y_pool).mean() >= 0.9  # and generalises to the rest of the scan
    assert clf.score(pool, y_pool) == pytest.approx((clf.predict(pool) == y_pool).mean())


def test_fit_on_positions_equals_fit_on_patterns(scan, split, trained):
    data, _ = scan
    pos, y, pool, _ = split
    patterns = data[pos[:, 1], pos[:, 0]]
    direct = classifier(epochs=8).fit(patterns, y)  # no dataset needed for patterns
    sd_a, sd_b = trained.network_.state_dict(), direct.network_.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert np.array_equal(trained.predict_proba(pool), direct.predict_proba(data[pool[:, 1], pool[:, 0]]))


def test_fit_is_repeatable_and_depends_on_random_state(scan, split, trained):
    data, _ = scan
    pos, y, pool, _ = split
    again = classifier(dataset=data, epochs=8).fit(pos, y)
    assert np.array_equal(again.predict_proba(pool), trained.predict_proba(pool))
    other = classifier(dataset=data, epochs=8, random_state=1).fit(pos, y)
    assert not np.array_equal(other.predict_proba(pool), trained.predict_proba(pool))


def test_fit_reports_progress_and_logs(capsys):
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    seen = []
    clf = classifier(epochs=3, verbose=True).fit(make_patterns(y), y, progress=lambda e, m, r: seen.append((e, m)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 and "val loss" in lines[0]
    assert clf.summary_["max_epochs"] == 3
    # with symmetry augmentation vertical and horizontal share their counts in the class weights
    train, _ = stratified_split(y, 0)
    expected = class_weights(y[train], "balanced", symmetric=True)
    assert not np.allclose(expected, class_weights(y[train], "balanced", symmetric=False))
    np.testing.assert_allclose(clf.summary_["class_weights"], expected, rtol=1e-6)


def test_scan_class_weight_balances_over_the_scans_own_shares(scan, split, tmp_path):
    """class_weight="scan": the unweighted model, its probabilities divided by the scan's class shares
    (its own mean probabilities over the scan) and renormalised; kept in the checkpoint."""
    from al4dstem.models.trained import TrainedNetwork

    data, _ = scan
    pos, y, pool, _ = split
    with torch_threads(1):
        plain = classifier(dataset=data, epochs=8, class_weight=None).fit(pos, y)
        shifted = classifier(dataset=data, epochs=8, class_weight="scan").fit(pos, y)
    shares = plain.predict_proba(all_positions()).mean(axis=0)  # 64 positions: the grid is all of them
    assert not np.allclose(shares, 1 / 3, atol=0.02)  # a scan whose classes are not equal in number
    expected = plain.predict_proba(pool) / shares
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shifted.predict_proba(pool), expected, atol=2e-5)
    record = shifted.summary_["class_shares"]
    assert record["positions"] == SCAN * SCAN
    np.testing.assert_allclose(list(record["shares"].values()), shares, atol=1e-4)
    shifted.save(tmp_path / "m.pt")
    light = TrainedNetwork.load(tmp_path / "m.pt")
    probs, ok = light.classify(data[pool[:, 1], pool[:, 0]])
    assert ok.all()
    np.testing.assert_allclose(probs, expected, atol=2e-5)  # what predict and every engine apply
    again = CNNClassifier.load(tmp_path / "m.pt", dataset=data)
    assert again.class_weight == "scan"
    np.testing.assert_allclose(again.predict_proba(pool), expected, atol=2e-5)
    # balancing again on the same scan gives the same offsets (the estimate starts from none)
    before = list(shifted.network_.config["class_bias"])
    shifted.balance_to_scans([data])
    np.testing.assert_allclose(shifted.network_.config["class_bias"], before, atol=1e-5)


def test_scan_class_weight_needs_the_scan():
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    with pytest.raises(Al4dstemError, match="class shares of the scan"):
        classifier(class_weight="scan").fit(make_patterns(y), y)
    with pytest.raises(Al4dstemError, match="balanced, scan or none"):
        classifier(class_weight="inverse").fit(make_patterns(y), y)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 5000))
def test_share_grid_covers_the_scan_within_the_limit(rows, cols, most):
    from al4dstem.models.classifier import share_grid

    grid = share_grid((rows, cols), most)
    assert 1 <= len(grid) <= min(most, rows * cols)
    assert grid[:, 0].min() >= 0 and grid[:, 0].max() < cols and grid[:, 1].min() >= 0 and grid[:, 1].max() < rows
    assert len(np.unique(grid, axis=0)) == len(grid)
    if rows * cols <= most:
        assert len(grid) == rows * cols


def test_fit_refuses_bad_labels():
    x = make_patterns([0] * 6)
    with pytest.raises(Al4dstemError, match="at least 2 classes, got 6 none"):
        classifier().fit(x, np.zeros(6, np.int64))
    with pytest.raises(Al4dstemError, match="class indices 0..2"):
        classifier().fit(x, np.array([0, 1, 2, 3, 0, 1]))
    with pytest.raises(Al4dstemError, match="class indices"):
        classifier().fit(x, np.array([0.0, 1, 2, 0, 1, 2]))
    with pytest.raises(Al4dstemError, match="6 patterns but 5 labels"):
        classifier().fit(x, np.array([0, 1, 2, 0, 1]))
    with pytest.raises(Al4dstemError, match="no dataset"):
        classifier().fit(all_positions()[:6], np.array([0, 1, 2, 0, 1, 2]))
    with pytest.raises(Al4dstemError, match="whole numbers"):
        classifier(dataset=make_scan()[0]).fit(all_positions()[:6] + 0.5, np.array([0, 1, 2, 0, 1, 2]))


def test_nan_patterns_predict_nan_rows_and_minus_one(trained):
    y = np.array([0, 1, 2, 1, 2])
    x = make_patterns(y, seed=11).astype(np.float32)
    x[1, 3, 4] = np.nan
    x[3] = np.inf
    p = trained.predict_proba(x)
    bad = np.array([False, True, False, True, False])
    assert np.isnan(p[bad]).all() and np.isfinite(p[~bad]).all()
    np.testing.assert_allclose(p[~bad], trained.predict_proba(x[~bad]), rtol=1e-5, atol=1e-6)
    pred = trained.predict(x)
    assert pred[bad].tolist() == [-1, -1] and (pred[~bad] >= 0).all()


def test_nan_in_training_patterns_is_a_clear_error():
    y = np.arange(9) % 3
    x = make_patterns(y).astype(np.float32)
    x[4, 0, 0] = np.nan
    x[7, 5, 5] = -np.inf
    with pytest.raises(Al4dstemError, match=r"2 labelled pattern\(s\) number 4, 7 contain NaN or inf"):
        classifier().fit(x, y)
    data = make_scan(dtype=np.float32)[0]
    data[2, 5, 0, 0] = np.nan  # scan row y=2, column x=5
    with pytest.raises(Al4dstemError, match=r"at x=5, y=2 contain NaN or inf"):
        classifier(dataset=data).fit(all_positions()[:24], np.arange(24) % 3)


def test_a_refused_fit_keeps_the_trained_model(scan, split):
    data, _ = scan
    pos, y, pool, _ = split
    clf = classifier(epochs=8).fit(data[pos[:, 1], pos[:, 0]], y)
    before = clf.predict_proba(data[pool[:, 1], pool[:, 0]])
    bad = data[pos[:, 1], pos[:, 0]].astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(Al4dstemError, match="NaN"):
        clf.fit(bad, y)
    np.testing.assert_array_equal(clf.predict_proba(data[pool[:, 1], pool[:, 0]]), before)
    with pytest.raises(Al4dstemError, match="batch size"):  # refused by the training loop itself
        clf.set_params(batch_size=1).fit(data[pos[:, 1], pos[:, 0]], y)
    np.testing.assert_array_equal(clf.predict_proba(data[pool[:, 1], pool[:, 0]]), before)
    assert clf.summary_["epochs_run"] >= 1


def test_checkpoint_keeps_model_settings_not_run_settings(trained, tmp_path):
    old = trained.get_params()
    try:
        trained.set_params(verbose=True, n_threads=1).save(tmp_path / "m.pt")
    finally:
        trained.set_params(verbose=old["verbose"], n_threads=old["n_threads"])
    params = CNNClassifier.load(tmp_path / "m.pt").get_params()
    assert params["verbose"] is False and params["n_threads"] is None
    assert params["random_state"] == trained.random_state and params["epochs"] == trained.epochs


def test_detector_shape_mismatch_names_both_shapes(trained, split):
    _, _, pool, _ = split
    small = make_patterns([0, 1, 2], det=24)
    with pytest.raises(Al4dstemError, match=r"trained on 32 x 32 detector patterns but the given pattern batch has "
                                            r"24 x 24 patterns"):
        trained.predict_proba(small)
    other = clone(trained).set_params(dataset=make_scan(det=24)[0])
    other.__dict__.update({k: v for k, v in vars(trained).items() if k.endswith("_")})
    with pytest.raises(Al4dstemError, match=r"32 x 32 .*<array> has 24 x 24"):
        other.predict(pool)
    with pytest.raises(Al4dstemError, match=r"32 x 32 .* 24 x 24"):
        trained.check_compatible(make_scan(det=24)[0])
    trained.check_compatible(make_scan()[0])  # the same detector is fine


def test_changing_the_dataset_reads_the_new_one(trained, split):
    _, _, pool, _ = split
    data2, labels2 = make_scan(seed=8)
    other = clone(trained).set_params(dataset=data2)
    other.__dict__.update({k: v for k, v in vars(trained).items() if k.endswith("_")})
    other._fast = None
    expected = trained.predict_proba(data2[pool[:, 1], pool[:, 0]])
    np.testing.assert_array_equal(other.predict_proba(pool), expected)
    assert open_dataset(data2).detector_shape == (DET, DET)


# ---------------------------------------------------------------- save and load


def test_save_load_round_trip(trained, split, tmp_path, scan):
    data, _ = scan
    _, _, pool, _ = split
    path = tmp_path / "model.pt"
    trained.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # atomic: no temporary left behind
    loaded = CNNClassifier.load(path, dataset=data)
    np.testing.assert_array_equal(loaded.predict_proba(pool), trained.predict_proba(pool))
    assert loaded.detector_shape_ == (DET, DET) and loaded.preprocessing_ == trained.preprocessing_
    assert loaded.label_counts_ == trained.label_counts_ and loaded.summary_["best_epoch"] == trained.summary_[
        "best_epoch"]
    for k in ("epochs", "batch_size", "lr", "weight_decay", "patience", "augment", "class_weight", "random_state"):
        assert loaded.get_params()[k] == trained.get_params()[k], k
    assert len(loaded.history_) == len(trained.history_)


def test_trained_network_classifies_as_the_classifier_without_scikit_learn(trained, split, tmp_path, scan):
    import subprocess
    import sys

    from al4dstem.engines.local import predict_dataset
    from al4dstem.models.trained import TrainedNetwork

    data, _ = scan
    trained.save(tmp_path / "model.pt")
    light = TrainedNetwork.load(tmp_path / "model.pt")
    assert light.name == trained.network and light.detector_shape_ == (DET, DET)
    np.testing.assert_allclose(predict_dataset(light, data)[0], predict_dataset(trained, data)[0], atol=1e-6)
    with pytest.raises(Al4dstemError, match="24 x 24"):
        light.check_compatible(make_scan(det=24)[0])
    code = ("import sys; from al4dstem.models.trained import TrainedNetwork; "
            f"TrainedNetwork.load({str(tmp_path / 'model.pt')!r}); print('sklearn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_checkpoint_loads_weights_only(trained, tmp_path):
    path = tmp_path / "model.pt"
    trained.save(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == checkpoint.FORMAT and payload["format_version"] == checkpoint.FORMAT_VERSION
    assert set(checkpoint.REQUIRED) <= set(payload)
    assert payload["network"] == "default" and payload["classes"] == list(CLASSES)
    assert payload["detector_shape"] == [DET, DET] and payload["preprocessing"]["size"] == SIZE
    assert all(torch.equal(v, trained.network_.state_dict()[k]) for k, v in payload["state_dict"].items())
    assert isinstance(payload["versions"]["torch"], str)


def _payload(trained, tmp_path):
    trained.save(tmp_path / "good.pt")
    return torch.load(tmp_path / "good.pt", weights_only=True)


def test_unreadable_model_files_are_clear_errors(trained, tmp_path):
    trained.save(tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(Al4dstemError, match=r"cut.pt: not a readable al4dstem model \(truncated or corrupt"):
        CNNClassifier.load(tmp_path / "cut.pt")
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(Al4dstemError, match=r"noise.pt: not a readable al4dstem model"):
        CNNClassifier.load(tmp_path / "noise.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(Al4dstemError, match=r"empty.pt: not a readable al4dstem model"):
        CNNClassifier.load(tmp_path / "empty.pt")
    torch.save({"state_dict": build_network("default", SIZE).state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(Al4dstemError, match=r"foreign.pt: not an al4dstem model file"):
        CNNClassifier.load(tmp_path / "foreign.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(Al4dstemError, match=r"tensor.pt: not an al4dstem model file"):
        CNNClassifier.load(tmp_path / "tensor.pt")
    with pytest.raises(Al4dstemError, match=r"missing.pt: no such model file"):
        CNNClassifier.load(tmp_path / "missing.pt")
    with pytest.raises(Al4dstemError, match="is a folder"):
        CNNClassifier.load(tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.update(format_version=checkpoint.FORMAT_VERSION + 1), "newer al4dstem"),
    (lambda p: p.pop("state_dict"), r"incomplete al4dstem model \(missing state_dict\)"),
    (lambda p: p.update(network="resnet"), "unknown network 'resnet'"),
    (lambda p: p.update(classes=["a", "b", "c"]), "classes"),
    (lambda p: p["network_config"].update(widths=[4, 8, 16, 32]), "damaged al4dstem model"),
    (lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))), "damaged al4dstem model"),
    (lambda p: p.update(preprocessing={"size": 16, "scaling": "cubic"}), "unknown scaling"),
])
def test_damaged_checkpoints_are_clear_errors(trained, tmp_path, damage, message):
    payload = _payload(trained, tmp_path)
    damage(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(Al4dstemError, match=message) as info:
        CNNClassifier.load(tmp_path / "bad.pt")
    assert "bad.pt" in str(info.value)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: p.update(format_version="one"), id="format_version-text"),
    pytest.param(lambda p: p.update(classes=None), id="classes-none"),
    pytest.param(lambda p: p.update(label_counts=[1, 2]), id="label_counts-list"),
    pytest.param(lambda p: p.update(history=3), id="history-number"),
    pytest.param(lambda p: p.update(detector_shape=[DET, DET, 3]), id="detector_shape-3d"),
])
def test_checkpoint_fields_of_the_wrong_type_are_clear_errors(trained, tmp_path, damage):
    """read_checkpoint promises: any unreadable or foreign file is an Al4dstemError."""
    payload = _payload(trained, tmp_path)
    damage(payload)
    torch.save(payload, tmp_path / "odd.pt")
    with pytest.raises(Al4dstemError, match="odd.pt"):
        CNNClassifier.load(tmp_path / "odd.pt").predict_proba(make_patterns([0]))


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_runs_no_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": checkpoint.FORMAT, "x": _Exploit(marker)}, f, protocol=2)
    torch.save({"format": checkpoint.FORMAT, "x": _Exploit(marker)}, tmp_path / "evil2.pt")
    for name in ("evil.pt", "evil2.pt"):
        with pytest.raises(Al4dstemError, match="not a readable al4dstem model"):
            CNNClassifier.load(tmp_path / name)
    assert not marker.exists()


def test_saving_into_a_missing_folder_or_unfitted_is_refused(trained, tmp_path):
    with pytest.raises(Al4dstemError, match=r"folder .*nowhere does not exist"):
        trained.save(tmp_path / "nowhere" / "model.pt")
    with pytest.raises(Al4dstemError, match="is a folder"):
        trained.save(tmp_path)
    with pytest.raises(NotFittedError):
        classifier().save(tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- modAL


def test_modal_query_strategies_with_a_fitted_classifier(trained, split):
    from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

    _, _, pool, _ = split
    p = trained.predict_proba(pool)
    expected = {
        uncertainty_sampling: 1 - p.max(1),
        margin_sampling: -(np.sort(p, 1)[:, -1] - np.sort(p, 1)[:, -2]),
        entropy_sampling: -(p * np.log(np.clip(p, 1e-12, 1))).sum(1),
    }
    for strategy, score in expected.items():
        idx, values = strategy(trained, pool, n_instances=5)
        idx = np.asarray(idx)
        assert idx.shape == (5,) and len(set(idx.tolist())) == 5 and ((idx >= 0) & (idx < len(pool))).all()
        # the chosen ones are (up to float ties) the 5 most uncertain by the strategy's own measure
        assert score[idx].min() >= np.sort(score)[-5] - 1e-5, strategy.__name__


def test_modal_active_learner_queries_and_teaches(scan, split):
    from modAL.batch import uncertainty_batch_sampling
    from modAL.models import ActiveLearner

    data, _ = scan
    pos, y, pool, y_pool = split
    learner = ActiveLearner(estimator=classifier(dataset=data, epochs=2), X_training=pos[:12], y_training=y[:12])
    check_is_fitted(learner.estimator)
    assert learner.estimator.summary_["n_labels"] == 12
    idx, chosen = learner.query(pool, n_instances=4)
    idx = np.asarray(idx)
    assert len(set(idx.tolist())) == 4 and ((idx >= 0) & (idx < len(pool))).all()
    assert np.array_equal(chosen, pool[idx])
    first = learner.estimator.network_
    learner.teach(pool[idx], y_pool[idx])  # retrains on all 16 labels
    check_is_fitted(learner.estimator)
    assert learner.estimator.summary_["n_labels"] == 16 and learner.estimator.network_ is not first
    assert len(learner.X_training) == 16
    assert learner.predict(pool).shape == (len(pool),)
    # ranked batch-mode sampling needs a learner (it spreads the batch away from X_training)
    batch, scores = uncertainty_batch_sampling(learner, pool, n_instances=5)
    batch = np.asarray(batch)
    assert len(set(batch.tolist())) == 5 and ((batch >= 0) & (batch < len(pool))).all() and len(scores) == 5
    batch_learner = ActiveLearner(estimator=classifier(dataset=data, epochs=2),
                                  query_strategy=uncertainty_batch_sampling, X_training=pos[:12], y_training=y[:12])
    b_idx, b_chosen = batch_learner.query(pool, n_instances=3)
    assert len(set(np.asarray(b_idx).tolist())) == 3 and np.array_equal(b_chosen, pool[np.asarray(b_idx)])
