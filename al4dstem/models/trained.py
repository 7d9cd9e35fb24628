"""A trained network with what it needs to classify patterns: the light object behind ``predict``.

``TrainedNetwork.load(path)`` reads and validates a checkpoint without importing scikit-learn or
the training code (``al4dstem predict`` starts ~2 s sooner on 2 cores). ``CNNClassifier`` shares
its checks and forward pass. Inference engines need only ``check_compatible``,
``preprocessing_`` and ``forward_preprocessed``, which both provide.
"""

from __future__ import annotations

import numpy as np

from al4dstem.data import Preprocessing, open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES
from al4dstem.models import checkpoint
from al4dstem.models.networks import NETWORKS, build_network, inference_network

CHUNK = 256  # patterns per network call when classifying many at once


def check_detector(model_shape, shape, source: str) -> None:
    """Refuse patterns of another detector size than the model's, naming both."""
    if tuple(shape) != tuple(model_shape):
        mr, mc = model_shape
        dr, dc = shape
        raise Al4dstemError(f"the model was trained on {mr} x {mc} detector patterns but {source} has "
                            f"{dr} x {dc} patterns: train a model on this detector size")


def forward(net, x: np.ndarray, size) -> np.ndarray:
    """Softmax probabilities ``(n, 3)`` float32 of ``net`` for preprocessed patterns ``(n, *size)``."""
    import torch

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or tuple(x.shape[1:]) != tuple(size):
        raise Al4dstemError(f"expected preprocessed patterns (n, {size[0]}, {size[1]}), got shape {x.shape}")
    out = np.empty((len(x), len(CLASSES)), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(x), CHUNK):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + CHUNK]))[:, None]
            out[i:i + CHUNK] = torch.softmax(net(xb), dim=1).numpy()
    return out


def _check_weights(name: str, config: dict, weights: dict) -> None:
    """The stored weights are exactly those of the network the config describes.

    The network is first built on torch's "meta" device (shapes, no memory): a forged config
    asking for billions of channels costs nothing, and a mismatch is named before any real
    allocation.
    """
    import torch

    try:
        with torch.device("meta"):
            shell = build_network(name, **dict(config))
    except Al4dstemError:
        raise
    except Exception as e:  # a constructor refusing forged arguments, whatever it raises
        raise ValueError(f"network_config: {_first_line(e)}") from None
    want = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in weights.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(f"weights {'missing ' + missing[0] if missing else 'not of this network: ' + extra[0]}")
    for k, shape in want.items():
        if got[k] != shape:
            raise ValueError(f"weights {k} have shape {got[k]}, the {name} network needs {shape}")
        if not (weights[k].is_floating_point() or k.endswith("num_batches_tracked")):
            raise ValueError(f"weights {k} are {weights[k].dtype}, not floating point")
        if weights[k].is_floating_point() and not bool(torch.isfinite(weights[k]).all()):
            raise ValueError(f"weights {k} hold NaN or inf")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


class TrainedNetwork:
    """The network (eval mode), preprocessing and detector shape of one checkpoint file.

    ``payload`` is the whole checkpoint dictionary (label counts, training summary, versions,
    the classifier's hyper-parameters).
    """

    def __init__(self, name: str, network_, preprocessing_: Preprocessing, detector_shape_, payload: dict):
        self.name = name
        self.network_ = network_
        self.preprocessing_ = preprocessing_
        self.detector_shape_ = tuple(detector_shape_)
        self.payload = payload
        self._fast = None

    @classmethod
    def load(cls, path) -> TrainedNetwork:
        """Read ``path``; any unreadable, foreign or damaged file is one ``Al4dstemError``."""
        payload = checkpoint.read_checkpoint(path)
        try:
            if not isinstance(payload["classes"], (list, tuple)) or list(payload["classes"]) != list(CLASSES):
                raise Al4dstemError(f"the model's classes {payload['classes']} are not {list(CLASSES)}")
            if payload["network"] not in NETWORKS:
                raise Al4dstemError(f"unknown network {payload['network']!r} (one of {', '.join(NETWORKS)})")
            prep = Preprocessing.from_dict({k: v for k, v in payload["preprocessing"].items() if k != "n_threads"})
            shape = tuple(payload["detector_shape"])
            prep.cropped_shape(shape)  # the crop leaves part of the detector
            _check_weights(payload["network"], payload["network_config"], payload["state_dict"])
            net = build_network(payload["network"], **dict(payload["network_config"]))
            net.load_state_dict(payload["state_dict"])
        except Al4dstemError as e:
            raise Al4dstemError(f"{path}: {e}") from None
        except (TypeError, ValueError, KeyError, RuntimeError) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise Al4dstemError(f"{path}: damaged al4dstem model ({reason})") from None
        return cls(payload["network"], net.eval(), prep, shape, payload)

    def check_compatible(self, dataset) -> None:
        """Refuse a dataset whose detector differs from the one the model was trained on."""
        ds = open_dataset(dataset)
        check_detector(self.detector_shape_, ds.detector_shape, ds.source)

    def forward_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, 3)`` for preprocessed patterns (batch norm folded for speed)."""
        if self._fast is None:
            self._fast = inference_network(self.network_)
        return forward(self._fast, x, self.preprocessing_.output_shape)
