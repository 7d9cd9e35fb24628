"""Data layer: the lazy Dataset, readers for every supported format, preprocessing."""

from al4dstem.data.calibration import Axis, Calibration
from al4dstem.data.dataset import Batch, Dataset, Survey
from al4dstem.data.preprocess import Preprocessing, finite_mask
from al4dstem.data.readers import open_dataset

__all__ = ["Axis", "Batch", "Calibration", "Dataset", "Preprocessing", "Survey", "finite_mask", "open_dataset"]
