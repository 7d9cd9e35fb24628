"""Pre-training on simulated patterns (``al4dstem.models.pretrain``, ``al4dstem pretrain``, ``train --init``)
and ``train --device``."""

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run

from al4dstem.errors import Al4dstemError
from al4dstem.labels import Label, write_labels
from al4dstem.models import CNNClassifier
from al4dstem.models.pretrain import initial_weights, matched_lattice, pretrain, simulated_patterns
from al4dstem.simulate import simulate_scan

DET = 32


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrain")
    sim = simulate_scan(nx=12, ny=10, detector=DET, geometry="bullseye", seed=1, rotation=21.0, ghost_strength=0.03,
                        disk_radius=0.03, spacing=0.09)
    np.save(d / "scan.npy", sim.data)
    labelled = [(x, y) for y in range(0, 10, 2) for x in range(0, 12, 2)]
    write_labels(d / "labels.csv", [Label(x, y, int(sim.truth[y, x])) for x, y in labelled])
    return d, sim


def test_simulated_patterns_match_the_lattice_and_hold_every_class(scan):
    from al4dstem.models.features import find_scan_lattice, mean_raw_pattern

    _, sim = scan
    lattice = find_scan_lattice(mean_raw_pattern(sim.data.reshape(-1, DET, DET)))
    options = matched_lattice(lattice, (DET, DET))
    assert abs(options["rotation"] - 21.0) < 3 and abs(options["spacing"] - 0.09) < 0.01
    x, y, physics = simulated_patterns((DET, DET), lattice, n_patterns=1500, seed=0)
    assert x.shape == (1500, DET, DET) and x.dtype == np.uint16 and y.shape == (1500,)
    assert set(np.unique(y)) == {0, 1, 2}
    assert len(physics) == 2 and all(p["rotation"] == options["rotation"] for p in physics)
    assert len({p["ghost_strength"] for p in physics}) == 2  # the rest of the physics varies
    again, _, _ = simulated_patterns((DET, DET), lattice, n_patterns=1500, seed=0)
    assert np.array_equal(x, again)  # deterministic for a seed
    no_lattice = simulated_patterns((DET, DET), None, n_patterns=10, seed=0)[2]
    assert -45 <= no_lattice[0]["rotation"] <= 45


def test_pretrained_weights_are_where_fine_tuning_starts(scan, tmp_path):
    _, sim = scan
    torch.set_num_threads(1)
    pre = pretrain(sim.data, n_patterns=1024, epochs=4, n_threads=1)
    assert pre.network_name_ == "default" and pre.summary_["pretraining"]["simulated_patterns"] == 1024
    pre.save(tmp_path / "pre.pt")
    # the pre-trained network already tells the classes apart on the real scan, before any label
    positions = np.array([(x, y) for y in range(10) for x in range(12)])
    truth = sim.truth[positions[:, 1], positions[:, 0]]
    assert (pre.predict(sim.data.reshape(-1, DET, DET)) == sim.truth.ravel()).mean() > 0.5
    started = CNNClassifier(dataset=sim.data, init=tmp_path / "pre.pt").initialize((DET, DET))
    fresh = CNNClassifier(dataset=sim.data).initialize((DET, DET))
    weights = pre.network_.state_dict()
    for k, v in started.network_.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert not torch.equal(fresh.network_.state_dict()["head.1.weight"], weights["head.1.weight"])
    tuned = CNNClassifier(dataset=sim.data, init=tmp_path / "pre.pt", epochs=3, n_threads=1).fit(
        positions[::4], truth[::4])
    assert tuned.summary_["initial_weights"] == str(tmp_path / "pre.pt")
    # canonical orientation rebuilds the network: the initial weights survive that too
    canonical = CNNClassifier(dataset=sim.data, init=tmp_path / "pre.pt", orientation="canonical")
    canonical.initialize((DET, DET))
    from al4dstem.models.features import find_scan_lattice, mean_raw_pattern

    canonical._orient_network(find_scan_lattice(mean_raw_pattern(sim.data.reshape(-1, DET, DET))))
    assert canonical._canonical_active()
    assert torch.equal(canonical.network_.state_dict()["head.1.weight"], weights["head.1.weight"])


def test_init_refuses_a_file_of_another_network(scan, tmp_path):
    _, sim = scan
    positions = np.array([(x, y) for y in range(0, 10, 2) for x in range(0, 12, 2)])
    y = sim.truth[positions[:, 1], positions[:, 0]]
    softmax = CNNClassifier(network="softmax", dataset=sim.data).fit(positions, y)
    softmax.save(tmp_path / "softmax.pt")
    with pytest.raises(Al4dstemError, match="holds a softmax network"):
        CNNClassifier(dataset=sim.data, init=tmp_path / "softmax.pt", epochs=1).fit(positions, y)
    with pytest.raises(Al4dstemError, match="cannot read"):
        CNNClassifier(dataset=sim.data, init=tmp_path / "missing.pt", epochs=1).fit(positions, y)
    net = CNNClassifier(network="default", dataset=sim.data).initialize((DET, DET)).network_
    other = CNNClassifier(network="default", dataset=sim.data).initialize((DET, DET))
    from al4dstem.models.networks import build_network

    other.network_ = build_network("default", 32, widths=(4, 8, 16, 32))
    other.save(tmp_path / "narrow.pt")
    with pytest.raises(Al4dstemError, match="other layer shapes"):
        initial_weights(tmp_path / "narrow.pt", "default", net)


def test_pretrain_and_train_init_from_the_command_line(scan):
    d, _ = scan
    p = run("pretrain", d / "scan.npy", "--out", d / "pre.pt", "--patterns", "600", "--epochs", "2", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    assert "600 simulated" in p.stdout and "degrees" in p.stdout and "train --init" in p.stdout
    p = run("train", d / "scan.npy", "--labels", d / "labels.csv", "--out", d / "tuned.pt", "--network", "default",
            "--epochs", "2", "--init", d / "pre.pt", "--device", "cpu")
    assert p.returncode == 0, p.stderr
    assert f"fine-tuned from the weights of {d / 'pre.pt'}" in p.stdout
    model = CNNClassifier.load(d / "tuned.pt", dataset=d / "scan.npy")
    assert model.summary_["initial_weights"] == str(d / "pre.pt")
    p = run("train", d / "scan.npy", "--labels", d / "labels.csv", "--out", d / "x.pt", "--init", d / "nothing.pt")
    assert_one_line_error(p, "--init", "nothing.pt")
    p = run("pretrain", d / "scan.npy", "--out", d / "scan.npy")
    assert_one_line_error(p, "overwrite")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where torch sees no GPU")
def test_train_device_cuda_without_a_gpu_is_one_line(scan):
    d, _ = scan
    p = run("train", d / "scan.npy", "--labels", d / "labels.csv", "--out", d / "gpu.pt", "--device", "cuda")
    assert_one_line_error(p, "--device cuda", "no CUDA GPU")
    p = run("train", d / "scan.npy", "--labels", d / "labels.csv", "--out", d / "gpu.pt", "--device", "tpu")
    assert_one_line_error(p, "--device tpu")
    assert not (d / "gpu.pt").exists()


def test_training_on_the_cpu_device_is_the_same_as_before(scan):
    _, sim = scan
    positions = np.array([(x, y) for y in range(0, 10, 2) for x in range(0, 12, 2)])
    y = sim.truth[positions[:, 1], positions[:, 0]]
    a = CNNClassifier(dataset=sim.data, epochs=3, n_threads=1, device="cpu").fit(positions, y)
    b = CNNClassifier(dataset=sim.data, epochs=3, n_threads=1, device="auto" if not torch.cuda.is_available()
                      else "cpu").fit(positions, y)
    for k, v in a.network_.state_dict().items():
        assert torch.equal(v, b.network_.state_dict()[k]), k
    assert next(a.network_.parameters()).device.type == "cpu"


@pytest.mark.parametrize("orientation", ["detector", "canonical"])
def test_the_device_path_of_training_gives_the_same_network(scan, orientation):
    """The code that moves the network and batches to a GPU, run with the CPU as the device: the same
    weights as without it (what a CPU-only machine can check of the GPU path)."""
    _, sim = scan
    positions = np.array([(x, y) for y in range(0, 10, 2) for x in range(0, 12, 2)])
    y = sim.truth[positions[:, 1], positions[:, 0]]
    from al4dstem.models import classifier

    a = CNNClassifier(dataset=sim.data, epochs=2, n_threads=1, orientation=orientation).fit(positions, y)
    real = classifier._gpu_or_none
    classifier._gpu_or_none = lambda device: device  # the CPU taken as a device to move to
    try:
        b = CNNClassifier(dataset=sim.data, epochs=2, n_threads=1, orientation=orientation).fit(positions, y)
    finally:
        classifier._gpu_or_none = real
    assert b._canonical_active() == (orientation == "canonical")
    for k, v in a.network_.state_dict().items():
        assert torch.equal(v, b.network_.state_dict()[k]), k
