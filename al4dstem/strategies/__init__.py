"""Samplers: which scan positions to label next.

Built-ins: ``random``, ``grid-midpoint`` (the paper's), ``uncertainty`` (modAL) and ``hybrid``
(grid-midpoint, then model doubt along predicted walls). ``get_sampler`` also loads a user's
class from ``package.module:ClassName`` or the ``al4dstem.samplers`` entry-point group;
``al4dstem.strategies.testing.check_sampler`` is the template test every sampler must pass.
"""

from al4dstem.strategies.coordinate import CoordinateModel
from al4dstem.strategies.grid_midpoint import GridMidpointSampler
from al4dstem.strategies.hybrid import HybridSampler
from al4dstem.strategies.random import RandomSampler
from al4dstem.strategies.registry import SAMPLERS, get_sampler, known_samplers, sampler_class
from al4dstem.strategies.uncertainty import UncertaintySampler

__all__ = [
    "SAMPLERS",
    "CoordinateModel",
    "GridMidpointSampler",
    "HybridSampler",
    "RandomSampler",
    "UncertaintySampler",
    "get_sampler",
    "known_samplers",
    "sampler_class",
]
