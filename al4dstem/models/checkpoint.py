"""One checkpoint file per model: weights plus everything needed to use them safely.

A checkpoint is a ``torch.save`` dictionary read back with ``weights_only=True`` (no pickled
code runs on load). It holds the format tag and version, the network name and constructor
arguments, the weights, the preprocessing (as a dict), the class names, the detector shape,
the label count per class, the classifier's hyper-parameters, a training summary, and the
al4dstem / torch / numpy versions that wrote it. Files are written atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from al4dstem.errors import Al4dstemError

FORMAT = "al4dstem-model"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "network", "network_config", "state_dict", "preprocessing",
            "classes", "detector_shape")


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
    try:
        version = int(payload.get("format_version", 0))
    except (TypeError, ValueError):
        raise Al4dstemError(f"{path}: damaged al4dstem model (format version {payload.get('format_version')!r})") \
            from None
    if version > FORMAT_VERSION:
        raise Al4dstemError(f"{path}: written by a newer al4dstem (model format {payload['format_version']}, "
                            f"this one reads up to {FORMAT_VERSION}); upgrade al4dstem")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise Al4dstemError(f"{path}: incomplete al4dstem model (missing {', '.join(missing)})")
    return payload
