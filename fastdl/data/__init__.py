"""Data: built-in datasets, train/dev/test splits, label encoding."""
from .datasets import DATASETS, load_dataset, make_blobs, make_circles, make_moons, make_spirals, make_teacher
from .split import Splits, from_one_hot, one_hot, split

__all__ = ["DATASETS", "load_dataset", "make_blobs", "make_circles", "make_moons",
           "make_spirals", "make_teacher", "Splits", "split", "one_hot", "from_one_hot"]
