"""Data: built-in datasets, train/dev/test splits, label encoding."""
from .datasets import DATASETS, load_dataset, make_blobs, make_circles, make_moons, make_spirals, make_teacher
from .datasets import load_digits, make_teacher_npy
from .batches import batch_sizes, epoch_order, stream_order
from .split import Splits, from_one_hot, one_hot, split
from .augment import Augment
from .preprocessing import Standardizer
from .distribution import DistributionCheck, check_same_distribution

__all__ = ["DATASETS", "load_dataset", "make_blobs", "make_circles", "make_moons",
           "make_spirals", "make_teacher", "Splits", "split", "one_hot", "from_one_hot",
           "Standardizer", "Augment"]
__all__ += ["load_digits", "make_teacher_npy", "batch_sizes", "epoch_order", "stream_order"]
__all__ += ["check_same_distribution", "DistributionCheck"]
