"""Models: networks, physics-aware augmentation, training, and the ``CNNClassifier`` wrapper.

Importing this package imports torch (the rest of al4dstem stays fast to import without it).
"""

from al4dstem.models.classifier import CNNClassifier, default_preprocessing
from al4dstem.models.networks import NETWORKS, build_network

__all__ = ["CNNClassifier", "NETWORKS", "build_network", "default_preprocessing"]
