"""Data sources, validation and splits."""

from transferkit.data.dataset import Dataset
from transferkit.data.sources import from_arrays, load_data, load_image_folder, load_table
from transferkit.data.splits import sample_per_class, stratified_split
from transferkit.data.validation import DataWarning, validate_dataset, validate_splits

__all__ = ["Dataset", "DataWarning", "from_arrays", "load_data", "load_image_folder", "load_table",
           "sample_per_class", "stratified_split", "validate_dataset", "validate_splits"]
