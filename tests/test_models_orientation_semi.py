"""Issue 12: canonical orientation, the learning-rate schedule and the kept weights, and
semi-supervised training on the scan's unlabelled patterns. Small simulated scans made here."""

import warnings

import numpy as np
import pytest
import torch

from al4dstem.errors import Al4dstemError
from al4dstem.models import CNNClassifier
from al4dstem.models.augment import Finish
from al4dstem.models.classifier import torch_threads
from al4dstem.models.networks import build_network, canonical_grid, inference_network
from al4dstem.models.semi import region, select, smooth
from al4dstem.models.trained import TrainedNetwork
from al4dstem.models.training import CollapseWarning, TrainConfig, train_network
from al4dstem.simulate import simulate_scan

_SCANS: dict = {}


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def small_scan(rotation=31.0, seed=2):
    key = (rotation, seed)
    if key not in _SCANS:
        _SCANS[key] = simulate_scan(nx=16, ny=12, detector=64, geometry="tilted", seed=seed, rotation=rotation,
                                    ghost_strength=0.05, dose=1e5, threads=1)
    return _SCANS[key]


def labelled(truth, per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    flat = truth.ravel()
    cols = truth.shape[1]
    pick = np.concatenate([rng.choice(np.flatnonzero(flat == c), per_class, replace=False) for c in range(3)])
    return np.stack([pick % cols, pick // cols], axis=1), flat[pick]


# ---------------------------------------------------------------- canonical orientation


def spot_image(size, centre, angle_deg, distance):
    """Two bright pixels at +-distance from ``centre`` along the direction ``angle_deg`` (x right, y down)."""
    img = torch.zeros(1, 1, size, size)
    t = np.radians(angle_deg)
    for sign in (1, -1):
        x = int(round(centre[0] + sign * distance * np.cos(t)))
        y = int(round(centre[1] + sign * distance * np.sin(t)))
        img[0, 0, y, x] = 1.0
    return img


def test_canonical_grid_turns_the_lattice_axis_onto_detector_x_and_centres_it():
    size, centre, angle = 64, (27.0, 35.0), 31.0
    net = build_network("default", size, orient={"rotation": angle, "centre": list(centre)})
    out = net.canonical(spot_image(size, centre, angle, 12))[0, 0]
    rows, cols = np.nonzero(out.numpy() > 0.05)
    c0 = (size - 1) / 2
    assert np.abs(rows - c0).max() <= 1.5  # both spots on the central row: the axis lies along x
    assert cols.min() < c0 - 9 and cols.max() > c0 + 9  # on either side of the image centre
    # rotation 0 about the image centre changes nothing
    same = build_network("default", size, orient={"rotation": 0.0, "centre": [c0, c0]})
    x = torch.rand(3, 1, size, size)
    assert torch.allclose(same.canonical(x), x, atol=1e-6)
    assert torch.allclose(canonical_grid(size, {"rotation": 0.0, "centre": [c0, c0]})[0, 5, 7],
                          torch.tensor([(2 * 7 + 1) / size - 1, (2 * 5 + 1) / size - 1]))


def test_canonical_orientation_is_stored_and_applied_at_predict_time(tmp_path):
    s = small_scan(rotation=31.0)
    pos, y = labelled(s.truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)  # three epochs teach little: orientation is tested here
        clf = CNNClassifier(dataset=s.data, orientation="canonical", epochs=3, random_state=0).fit(pos, y)
    orient = clf.network_.config["orient"]
    assert abs(orient["rotation"] - 31.0) < 2.0  # the lattice's angle, found from the mean pattern
    assert "canonical" in clf.summary_["orientation"] and clf.summary_["n_symmetries"] == 8
    clf.save(tmp_path / "m.pt")
    light = TrainedNetwork.load(tmp_path / "m.pt")
    assert light.network_.config["orient"] == orient and light.network_.canonical.active
    raw = s.data.reshape(-1, *s.data.shape[2:])[:20]
    want = clf.predict_proba(raw)
    got = light.forward_preprocessed(light.preprocessing_(raw))
    assert np.allclose(want, got, atol=1e-5)
    # without the resampling step the same weights give other probabilities: it is really applied
    plain = build_network("default", **{k: v for k, v in light.network_.config.items() if k != "orient"})
    plain.load_state_dict(light.network_.state_dict())
    x = torch.from_numpy(light.preprocessing_(raw))[:, None]
    assert not torch.allclose(torch.softmax(plain.eval()(x), 1), torch.from_numpy(got), atol=1e-3)
    fused = inference_network(light.network_)
    assert torch.allclose(fused(x), light.network_.eval()(x), atol=1e-5)


def test_bad_orientation_is_refused_before_training():
    s = small_scan()
    pos, y = labelled(s.truth)
    with pytest.raises(Al4dstemError, match="unknown orientation 'diagonal'"):
        CNNClassifier(dataset=s.data, orientation="diagonal").fit(pos, y)
    with pytest.raises(Al4dstemError, match="unknown schedule"):
        CNNClassifier(dataset=s.data, schedule="step").fit(pos, y)
    with pytest.raises(Al4dstemError, match="orient must be"):
        build_network("default", 64, orient={"rotation": 3.0})


# ---------------------------------------------------------------- schedule and kept weights


def test_cosine_schedule_runs_every_epoch_and_keeps_the_last_weights():
    rng = np.random.default_rng(0)
    x = rng.poisson(2.0, (30, 16, 16)).astype(np.float32)
    y = np.arange(30) % 3
    x[y == 1, 4:12, 8] += 20
    x[y == 2, 8, 4:12] += 20
    net = build_network("default", 16)
    cfg = TrainConfig(epochs=6, lr=2e-3, schedule="cosine", keep="last", patience=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        res = train_network(net, x, y, cfg, Finish())
    lrs = [h["lr"] for h in res.history]
    assert res.epochs_run == 6 and res.best_epoch == 6 and res.stopped == "max-epochs"  # patience 1 ignored
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.05 * 2e-3  # annealed to the floor
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in res.state_dict.items())
    with pytest.raises(Al4dstemError, match="unknown learning-rate schedule"):
        train_network(build_network("default", 16), x, y, TrainConfig(epochs=1, schedule="step"), Finish())


# ---------------------------------------------------------------- semi-supervised


def test_pseudo_labels_are_consistent_confident_and_balanced():
    probs = np.array([[0.1, 0.85, 0.05], [0.05, 0.95, 0.0], [0.02, 0.9, 0.08], [0.7, 0.2, 0.1],
                      [0.1, 0.1, 0.8], [0.1, 0.5, 0.4], [0.0, 0.0, 1.0]])
    consistent = np.array([True, True, True, True, True, True, False])
    idx, cls = select(probs, consistent, per_class=10, confidence=0.6)
    # one none (0.7) found, so one of each class: the most confident vertical, the only consistent horizontal
    assert sorted(zip(cls.tolist(), idx.tolist(), strict=True)) == [(0, 3), (1, 1), (2, 4)]
    idx, cls = select(probs, consistent, per_class=10, confidence=0.75)  # no none above 0.75: none at all
    assert len(idx) == 0 and len(cls) == 0
    idx, cls = select(probs, consistent, taught=[1, 2], per_class=10, confidence=0.75)  # none was not taught
    assert sorted(zip(cls.tolist(), idx.tolist(), strict=True)) == [(1, 1), (2, 4)]


def test_neighbourhood_smoothing_and_region():
    p = np.zeros((3, 4, 3))
    p[..., 1] = 1.0
    p[1, 1] = [1.0, 0.0, 0.0]  # a lone none among verticals
    s = smooth(p)
    assert s[1, 1].argmax() == 1 and np.allclose(s.sum(-1), 1.0)
    assert np.allclose(s[0, 3], [0, 1, 0])  # the corner's window shrinks to what exists
    assert region((10, 8), 100, 0) == (0, 10)
    r0, r1 = region((100, 8), 80, 3)
    assert r1 - r0 == 10 and 0 <= r0 and r1 <= 100


def test_semi_supervised_fit_uses_pseudo_labels_and_true_validation(tmp_path):
    s = small_scan(rotation=31.0)
    pos, y = labelled(s.truth, per_class=5)
    seen = []
    clf = CNNClassifier(dataset=s.data, semi_supervised=True, epochs=25, random_state=0)
    clf.fit(pos, y, progress=lambda step, total, record: seen.append(record.get("stage", "")))
    info = clf.summary_["semi_supervised"]
    n_pseudo = sum(info["pseudo_labels"].values())
    assert info["candidates"] == s.truth.size and n_pseudo > 0
    assert len(set(info["pseudo_labels"].values())) == 1  # as many of each class
    assert clf.summary_["n_val"] == 3  # the held-out true labels (20 % of 15), never pseudo-labels
    assert clf.summary_["n_train"] == 12 + n_pseudo
    assert any("semi-supervised 2/3" in t for t in seen) and any("semi-supervised 3/3" in t for t in seen)
    assert "calibration" in clf.summary_
    clf.save(tmp_path / "semi.pt")
    assert CNNClassifier.load(tmp_path / "semi.pt").semi_supervised is True
    with pytest.raises(Al4dstemError, match="pass scan positions"):
        CNNClassifier(semi_supervised=True, epochs=1).fit(s.data.reshape(-1, 64, 64)[:15], y)


# ---------------------------------------------------------------- one inference path


def test_classifier_classifies_through_its_trained_network():
    from al4dstem.models.networks import set_temperature

    s = small_scan(rotation=4.0)
    pos, y = labelled(s.truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        clf = CNNClassifier(dataset=s.data, epochs=2, calibrate=False).fit(pos, y)
    light = clf.trained_network()
    assert isinstance(light, TrainedNetwork) and light.network_ is clf.network_ and clf.trained_network() is light
    raw = s.data.reshape(-1, *s.data.shape[2:])[:10]
    before = clf.predict_proba(raw)
    assert np.allclose(before, light.forward_preprocessed(light.preprocessing_(raw)))
    set_temperature(clf.network_, 5.0)  # a new temperature: the fused copy must not be reused
    after = clf.predict_proba(raw)
    assert clf.trained_network() is not light and not np.allclose(before, after, atol=1e-4)
    assert np.array_equal(before.argmax(1), after.argmax(1))
