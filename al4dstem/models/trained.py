"""A trained network with what it needs to classify patterns: the light object behind ``predict``.

``TrainedNetwork.load(path)`` reads and validates a checkpoint without importing scikit-learn or
the training code (``al4dstem predict`` starts ~2 s sooner on 2 cores). ``CNNClassifier`` shares
its checks and forward pass. ``TrainedNetwork`` is an ``al4dstem.base.PatternModel``
(``classify(raw) -> (probs, ok)``, the NaN/valid rule and the chunking in one place); any other
fitted model with ``preprocessing_`` and ``forward_preprocessed`` becomes one through
``as_pattern_model``. ``to(device)`` moves the network to a GPU: batches then go through pinned
host buffers, uploaded on a copy stream while the previous chunk computes.
"""

from __future__ import annotations

import numpy as np

from al4dstem.data import Preprocessing, finite_mask, open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES
from al4dstem.models import checkpoint
from al4dstem.models.networks import NETWORKS, build_network, inference_network

CHUNK = 256  # patterns per network call when classifying many at once
CPU_CHUNK = 128  # patterns per network call on a CPU (channels-last: measured best of 32..256 on 2 cores)
GPU_CHUNK = 128  # patterns per upload and network call on a GPU (a batch of 256 is two, overlapped)


def check_detector(model_shape, shape, source: str) -> None:
    """Refuse patterns of another detector size than the model's, naming both."""
    if tuple(shape) != tuple(model_shape):
        mr, mc = model_shape
        dr, dc = shape
        raise Al4dstemError(f"the model was trained on {mr} x {mc} detector patterns but {source} has "
                            f"{dr} x {dc} patterns: train a model on this detector size")


def forward(net, x: np.ndarray, size, device=None) -> np.ndarray:
    """Softmax probabilities ``(n, 3)`` float32 of ``net`` for preprocessed patterns ``(n, *size)``.

    ``device``: a CUDA ``torch.device`` the network lives on (None: the CPU).
    """
    import torch

    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or tuple(x.shape[1:]) != tuple(size):
        raise Al4dstemError(f"expected preprocessed patterns (n, {size[0]}, {size[1]}), got shape {x.shape}")
    if device is not None and device.type == "cuda":
        from al4dstem.engines.device import cuda_forward

        return cuda_forward(net, x, device, GPU_CHUNK)
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


class PatternClassifier:
    """``classify`` and ``classify_preprocessed`` (``al4dstem.base.PatternModel``) for a model with
    ``preprocessing_``, ``detector_shape_`` and ``forward_preprocessed``."""

    def classify_preprocessed(self, x: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, ok)``: NaN rows, ``ok`` False, where the pattern was not finite or the network's
        output is not."""
        x = np.asarray(x, dtype=np.float32)
        ok = np.array(ok, dtype=bool, copy=True)
        # on a GPU the whole batch goes in one call: cuda_forward splits it into uploads that overlap
        step = max(1, len(x)) if _on_gpu(self) else CPU_CHUNK
        probs = np.empty((len(x), len(CLASSES)), dtype=np.float32)
        for i in range(0, len(x), step):
            part = np.asarray(self.forward_preprocessed(x[i:i + step]), dtype=np.float32)
            if part.shape != (len(x[i:i + step]), len(CLASSES)):
                raise Al4dstemError(f"the model gives outputs of shape {part.shape}, expected (n, {len(CLASSES)})")
            probs[i:i + step] = part
        ok &= np.isfinite(probs).all(axis=1)
        probs[~ok] = np.nan
        return probs, ok

    def classify(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, ok)`` for raw patterns ``(n, det_rows, det_cols)`` (or one pattern)."""
        raw = np.asarray(raw)
        if raw.ndim == 2:
            raw = raw[None]
        if raw.ndim != 3:
            raise Al4dstemError(f"expected raw patterns (n, det_rows, det_cols), got shape {raw.shape}")
        check_detector(self.detector_shape_, raw.shape[1:], "the batch")
        return self.classify_preprocessed(self.preprocessing_(raw), finite_mask(raw))


def _on_gpu(model) -> bool:
    device = getattr(model, "device_", None)
    return device is not None and getattr(device, "type", "cpu") == "cuda"


class _PatternModelAdapter(PatternClassifier):
    """A fitted model seen as a ``PatternModel``: everything else is the model's own."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)


def as_pattern_model(model):
    """``model`` itself when it is a ``PatternModel``, else an adapter giving it ``classify``
    (a ``CNNClassifier`` or any object with ``preprocessing_``, ``detector_shape_``,
    ``check_compatible`` and ``forward_preprocessed``)."""
    if hasattr(model, "classify") and hasattr(model, "classify_preprocessed"):
        return model
    missing = [a for a in ("preprocessing_", "forward_preprocessed", "check_compatible") if not hasattr(model, a)]
    if missing:
        raise Al4dstemError(f"{type(model).__name__} is not a fitted pattern model (it lacks {', '.join(missing)})")
    return _PatternModelAdapter(model)


class TrainedNetwork(PatternClassifier):
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
        self.device_ = None  # None: the CPU; set by ``to``
        self._fast = None

    @classmethod
    def load(cls, path) -> TrainedNetwork:
        """Read ``path``; any unreadable, foreign or damaged file is one ``Al4dstemError``."""
        return cls.from_payload(checkpoint.read_checkpoint(path), path)

    @classmethod
    def from_payload(cls, payload: dict, path="<model>") -> TrainedNetwork:
        """Build from a checkpoint dictionary whose fields ``checkpoint.check_fields`` accepted
        (an engine's worker receives the dictionary, not the file); ``path`` names it in errors."""
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
            if self.device_ is not None:
                self._fast = self._fast.to(self.device_)
            else:
                import torch

                # oneDNN's channels-last convolutions: ~1.3x the default network's patterns/s on
                # one core (a 1-channel input is already laid out so; same outputs within 1e-7)
                self._fast = self._fast.to(memory_format=torch.channels_last)
        return forward(self._fast, x, self.preprocessing_.output_shape, self.device_)

    def to(self, device="auto") -> TrainedNetwork:
        """Run on ``device`` (``cpu``, ``cuda``, ``cuda:N`` or ``auto``: a GPU when torch sees one);
        returns self. Asking for a GPU torch cannot see is one ``Al4dstemError``."""
        from al4dstem.engines.device import resolve_device

        resolved = resolve_device(device)
        self.device_ = resolved if resolved.type == "cuda" else None
        self._fast = None
        return self
