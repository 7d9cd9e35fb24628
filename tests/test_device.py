"""--device cpu|cuda|auto: nothing needs a GPU; asking for one that is not there is one clear line."""

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, run

from al4dstem.data import Preprocessing
from al4dstem.engines.device import resolve_device
from al4dstem.errors import Al4dstemError
from al4dstem.models import CNNClassifier
from al4dstem.models.trained import TrainedNetwork

DET = 32
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("device")
    np.save(d / "scan.npy", np.random.default_rng(0).poisson(2.0, size=(3, 4, DET, DET)).astype(np.uint16))
    CNNClassifier(network="default", preprocessing=Preprocessing(size=16), random_state=0).initialize(
        (DET, DET)).save(d / "model.pt")
    return d


def test_device_names():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(Al4dstemError, match="one of auto, cpu, cuda"):
        resolve_device("tpu")


@no_gpu
def test_cuda_without_a_gpu_is_an_error_naming_the_way_out(files):
    with pytest.raises(Al4dstemError, match="sees no CUDA GPU; use --device cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(Al4dstemError, match="sees no CUDA GPU"):
        TrainedNetwork.load(files / "model.pt").to("cuda:0")
    assert_one_line_error(run("predict", files / "scan.npy", "--model", files / "model.pt", "--out", files / "m",
                              "--device", "cuda"), "--device cuda", "no CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_predict_on_cpu_and_auto_gives_the_same_map(files, device):
    p = run("predict", files / "scan.npy", "--model", files / "model.pt", "--out", files / device, "--device", device,
            "--no-figure")
    assert p.returncode == 0, p.stderr
    net = TrainedNetwork.load(files / "model.pt").to("cpu")
    assert net.device_ is None  # the CPU: the plain forward pass
    expected, _ = net.classify(np.load(files / "scan.npy").reshape(-1, DET, DET))
    np.testing.assert_allclose(np.load(files / f"{device}.npy").reshape(-1, 3), expected, atol=1e-5)


def test_bad_device_name_is_one_line(files):
    assert_one_line_error(run("predict", files / "scan.npy", "--model", files / "model.pt", "--out", files / "m",
                              "--device", "gpu9"), "--device gpu9")
