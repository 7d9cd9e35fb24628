"""al4dstem: active-learning polarization domain mapping from 4D-STEM data.

Import stays fast: torch, py4DSTEM and LiberTEM are imported where they are used.
"""

from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES

__version__ = "0.1.0"

__all__ = ["Al4dstemError", "CLASSES", "__version__"]
