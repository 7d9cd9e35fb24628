"""Inference engines: stream a whole scan through a model into a probability map.

``local`` runs on this machine (threads, bounded memory); every engine offers
``predict_dataset(model, dataset, ...) -> (probs, valid)``.
"""

from al4dstem.engines.local import predict_dataset

__all__ = ["predict_dataset"]
