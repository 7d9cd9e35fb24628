"""One checkpoint file per model: weights plus everything needed to use them safely.

A checkpoint is a ``torch.save`` dictionary read back with ``weights_only=True`` (no pickled
code runs on load). It holds the format tag and version, the network name and constructor
arguments, the weights, the preprocessing (as a dict), the class names, the detector shape,
the label count per class, the classifier's hyper-parameters, a training summary, and the
al4dstem / torch / numpy versions that wrote it. Files are written atomically.

Reading checks every field's type and range (``check_fields``): a damaged or forged file (a
preprocessing size of 2**31, a seed of "abc") is one line naming the field, before anything
is built from it.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from al4dstem.errors import Al4dstemError

FORMAT = "al4dstem-model"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "network", "network_config", "state_dict", "preprocessing",
            "classes", "detector_shape")
MAX_INPUT_SIZE = 1024  # network input side: 256 x 256 batches of this size already take 1 GB
MAX_DETECTOR = 1 << 16  # pixels a side
MAX_SEED = 2**63 - 1  # numpy takes any non-negative seed, torch.manual_seed at most 64 bits
PREPROCESSING_KEYS = ("size", "crop", "scaling", "normalise", "n_threads")


def versions() -> dict:
    import numpy
    import torch

    from al4dstem import __version__

    # plain str: torch.__version__ is a TorchVersion, which weights_only loading refuses
    return {"al4dstem": str(__version__), "torch": str(torch.__version__), "numpy": str(numpy.__version__)}


def check_writable(path) -> Path:
    """Refuse, before any long work, an output path that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise Al4dstemError(f"{path}: is a folder, not a file name for the model")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise Al4dstemError(f"{path}: cannot write the model, folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise Al4dstemError(f"{path}: cannot write the model here (permission denied)")
    return path


def write_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` (with format tag and versions added) atomically to ``path``."""
    import torch

    path = check_writable(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(), **payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a model file is shared like any other output
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise Al4dstemError(f"{path}: cannot write the model ({e.strerror or e})") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def read_checkpoint(path) -> dict:
    """The checkpoint dictionary, validated; any unreadable or foreign file is an ``Al4dstemError``."""
    import torch

    path = Path(path)
    if not path.exists():
        raise Al4dstemError(f"{path}: no such model file")
    if path.is_dir():
        raise Al4dstemError(f"{path}: is a folder, not a model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip, pickle, EOF and unsupported-type errors all mean the same to a user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        raise Al4dstemError(f"{path}: not a readable al4dstem model (truncated or corrupt: {reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise Al4dstemError(f"{path}: not an al4dstem model file")
    version = payload.get("format_version")
    if not _is_int(version) or version < 1:
        raise Al4dstemError(f"{path}: damaged al4dstem model (format version {version!r})")
    if version > FORMAT_VERSION:
        raise Al4dstemError(f"{path}: written by a newer al4dstem (model format {payload['format_version']}, "
                            f"this one reads up to {FORMAT_VERSION}); upgrade al4dstem")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise Al4dstemError(f"{path}: incomplete al4dstem model (missing {', '.join(missing)})")
    try:
        check_fields(payload)
    except ValueError as e:
        raise Al4dstemError(f"{path}: damaged al4dstem model ({e})") from None
    return payload


# ---------------------------------------------------------------- field checks


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(name: str, v, low: int, high: int, none: bool = False) -> None:
    if v is None and none:
        return
    if not _is_int(v) or not low <= v <= high:
        expected = f"from {low} to {high}" if high < 1 << 32 else f"of at least {low}"
        raise ValueError(f"{name} is {v!r}, expected an integer {expected}")


def _number(name: str, v, low: float, none: bool = False, positive: bool = False) -> None:
    if v is None and none:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= low
    if not ok or (positive and v <= 0):
        raise ValueError(f"{name} is {v!r}, expected a finite number {'>' if positive else '>='} {low}")


def _kind(name: str, v, kind: type) -> None:
    if not isinstance(v, kind):
        raise ValueError(f"{name} is a {type(v).__name__}, not a {kind.__name__}")


def check_fields(payload: dict) -> None:
    """Raise ``ValueError`` naming the first field of a checkpoint with a wrong type or range.

    The network's own arguments and the weights' shapes are checked where the network is built
    (``TrainedNetwork.load``); this checks everything a caller reads as plain data.
    """
    import torch

    _kind("network", payload["network"], str)
    config = payload["network_config"]
    _kind("network_config", config, dict)
    if not all(isinstance(k, str) for k in config):
        raise ValueError("network_config has keys that are not names")
    _int("network_config input_size", config.get("input_size"), 4, MAX_INPUT_SIZE)
    weights = payload["state_dict"]
    _kind("state_dict", weights, dict)
    for k, v in weights.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValueError(f"state_dict entry {k!r} is a {type(v).__name__}, not a tensor")
    prep = payload["preprocessing"]
    _kind("preprocessing", prep, dict)
    unknown = sorted(set(map(str, prep)) - set(PREPROCESSING_KEYS))
    if unknown:
        raise ValueError(f"preprocessing has unknown field {unknown[0]!r}")
    _int("preprocessing size", prep.get("size"), 4, MAX_INPUT_SIZE)
    if prep["size"] != config["input_size"]:
        raise ValueError(f"preprocessing size {prep['size']} differs from the network input size "
                         f"{config['input_size']}")
    crop = prep.get("crop")
    if crop is not None:
        if not isinstance(crop, (list, tuple)) or len(crop) != 4:
            raise ValueError(f"preprocessing crop is {crop!r}, expected four margins (top, bottom, left, right)")
        for c in crop:
            _int("preprocessing crop margin", c, 0, MAX_DETECTOR)
    for key in ("scaling", "normalise"):
        if key in prep:
            _kind(f"preprocessing {key}", prep[key], str)
    _int("preprocessing n_threads", prep.get("n_threads"), 1, 4096, none=True)
    shape = payload["detector_shape"]
    if not isinstance(shape, (list, tuple)) or len(shape) != 2:
        raise ValueError(f"detector_shape is {shape!r}, expected (rows, cols)")
    for s in shape:
        _int("detector_shape", s, 1, MAX_DETECTOR)
    _check_optional(payload)


def _check_optional(payload: dict) -> None:
    """Fields a model file may lack (older files): counts, hyper-parameters, summaries, versions."""
    counts = payload.get("label_counts", {})
    _kind("label_counts", counts, dict)
    for name, n in counts.items():
        _kind("label_counts class", name, str)
        _int(f"label_counts {name}", n, 0, 1 << 62)
    _int("n_labels", payload.get("n_labels"), 0, 1 << 62, none=True)
    params = payload.get("params", {})
    _kind("params", params, dict)
    _int("params epochs", params.get("epochs"), 1, 1_000_000, none=True)
    _int("params batch_size", params.get("batch_size", 1), 1, 1 << 20)
    _number("params lr", params.get("lr"), 0, none=True, positive=True)
    _number("params weight_decay", params.get("weight_decay", 0), 0)
    _int("params patience", params.get("patience"), 1, 1_000_000, none=True)
    if not isinstance(params.get("augment", True), bool):
        raise ValueError(f"params augment is {params['augment']!r}, expected true or false")
    if params.get("class_weight") not in (None, "balanced", "scan"):
        raise ValueError(f"params class_weight is {params['class_weight']!r}, expected 'balanced', 'scan' or None")
    _int("params random_state", params.get("random_state"), 0, MAX_SEED, none=True)
    _kind("training", payload.get("training", {}), dict)
    history = payload.get("history", [])
    _kind("history", history, list)
    if not all(isinstance(h, dict) for h in history):
        raise ValueError("history holds entries that are not records")
    versions = payload.get("versions", {})
    _kind("versions", versions, dict)
    _kind("provenance", payload.get("provenance", {}), dict)  # see al4dstem.provenance; shown, never acted on


def add_fields(path, **fields) -> Path:
    """Add top-level fields (such as ``provenance``) to an existing checkpoint, rewriting it atomically."""
    import torch

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise Al4dstemError(f"{path}: not a readable al4dstem model ({_first_line(e)})") from None
    payload.update(fields)
    return write_checkpoint(path, {k: v for k, v in payload.items() if k not in ("format", "format_version")})


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
