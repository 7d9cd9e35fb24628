"""al4dstem: active-learning polarization domain mapping from 4D-STEM data.

Import stays fast: torch, py4DSTEM and LiberTEM are imported where they are used.
``al4dstem.label(...)`` runs a labelling session (terminal, browser page or truth file), as
``al4dstem label`` does; it is imported on first use.
"""

from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES

__version__ = "0.1.0"

__all__ = ["Al4dstemError", "CLASSES", "__version__", "label"]


def __getattr__(name):
    if name == "label":  # the labelling entry point, loaded on first use
        from al4dstem.labeller import label

        return label
    raise AttributeError(f"module 'al4dstem' has no attribute {name!r}")
