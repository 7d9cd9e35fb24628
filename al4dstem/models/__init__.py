"""Models: networks, baselines, physics-aware augmentation, training, calibration, model selection, and
the ``CNNClassifier`` wrapper (every model: ``network=`` default, paper, ghost, softmax, pca-knn or auto).

The names below are imported on first use (PEP 562), so that light submodules such as
``al4dstem.models.checkpoint`` can be imported without torch; using any of them imports torch.
"""

import importlib

_EXPORTS = {
    "CNNClassifier": "al4dstem.models.classifier",
    "default_preprocessing": "al4dstem.models.classifier",
    "NETWORKS": "al4dstem.models.networks",
    "CHOICES": "al4dstem.models.networks",
    "expected_calibration_error": "al4dstem.models.calibration",
    "selection_table": "al4dstem.models.selection",
    "build_network": "al4dstem.models.networks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'al4dstem.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
